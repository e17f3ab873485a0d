"""unitarium plot: the numbers against the records, the text chart by its content, the PNG read back,
the figure in export's dataset card, and the command without matplotlib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

import unitarium
from unitarium.plot import profile

from conftest import cli


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plot") / "p.db"
    spec = unitarium.make_spec(gates="h,t,cx", qubits=2, count=6000, length="2:9", seed=4)
    unitarium.generate(path, spec, workers=1)
    return path


def test_profile_counts_the_records(data: Path) -> None:
    ds = unitarium.open(data)
    p = profile(ds)
    records = ds[list(range(len(ds)))]
    lengths = np.bincount([len(r.circuit) for r in records])
    assert p.lengths == {k: int(v) for k, v in enumerate(lengths) if v}
    uses = np.bincount(np.concatenate([r.circuit.codes for r in records]), minlength=len(ds.gateset.moves))
    assert np.array_equal(p.move_counts, uses) and p.counted == p.records == len(ds) == p.per_task.sum()
    assert p.moves == [m.text for m in ds.gateset.moves]
    sampled = profile(ds, sample=640)  # evenly spaced ranges: 640 circuits counted
    assert sampled.counted == 640 and sampled.move_counts.sum() < p.move_counts.sum()


def test_text_chart(data: Path) -> None:
    ds = unitarium.open(data)
    hist = ds.info()["length_histogram"]
    out = cli("plot", data).stdout
    assert "6,000 records" in out and "circuit length" in out and "records per task" in out
    rows = {int(line.split()[0]): line for line in out.splitlines() if line.split() and line.split()[0].isdigit()}
    assert sorted(rows) == sorted(hist)
    top = max(hist, key=hist.get)
    for length, count in hist.items():
        assert f"{count:,}" in rows[length]
        assert rows[length].count("█") <= rows[top].count("█") == 40  # the longest bar fills the width
    moves = [m.text for m in ds.gateset.moves]
    assert all(any(line.split()[:1] == [m.split()[0]] for line in out.splitlines()) for m in moves[:3])


def test_png_read_back(data: Path, tmp_path: Path) -> None:
    png = tmp_path / "p.png"
    result = cli("plot", data, "--out", png)
    assert result.stdout.strip() == f"wrote {png}"
    image = matplotlib.image.imread(png)
    assert image.shape[:2] == (420, 1500)  # 15 x 4.2 inches at 100 dpi
    rgb = image[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05 and len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 20  # not blank
    assert (rgb < 0.9).any(axis=1).mean() > 0.03  # bars and text cover part of it


def test_bad_out_and_missing_dataset(data: Path, tmp_path: Path) -> None:
    for args, message in [
        (("--out", tmp_path / "p.txt"), "must name a .png file"),
        (("--out", tmp_path / "no" / "p.png"), "does not exist"),
    ]:
        r = cli("plot", data, *args, check=False)
        assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1
        assert r.stderr.startswith("unitarium: error: ")
    r = cli("plot", tmp_path / "absent.db", check=False)
    assert r.returncode == 2 and r.stderr.startswith("unitarium: error: ")


def test_without_matplotlib(data: Path, tmp_path: Path) -> None:
    """In a process where matplotlib cannot be imported: the text chart works, --out says what to install."""
    script = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from unitarium.cli.main import main\n"
        "main(sys.argv[1:], prog_name='unitarium')\n"
    )
    text = subprocess.run([sys.executable, "-c", script, "plot", str(data)], capture_output=True, text=True)
    assert text.returncode == 0 and "circuit length" in text.stdout
    png = subprocess.run(
        [sys.executable, "-c", script, "plot", str(data), "--out", str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
    )
    assert png.returncode == 2 and "pip install 'unitarium[plot]'" in png.stderr
    assert png.stderr.count("\n") == 1 and not (tmp_path / "x.png").exists()


def test_export_card_carries_the_figure(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli("export", data, out, "--format", "npz")
    card = (out / "README.md").read_text()
    assert "](profile.png)" in card
    image = matplotlib.image.imread(out / "profile.png")
    assert image.shape[:2] == (420, 1500) and image[..., :3].std() > 0.05
