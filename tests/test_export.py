"""unitarium export: Parquet shards in Hugging Face layout read by datasets, pandas, polars and DuckDB
(without unitarium), npz, the dataset card, and refusals that change nothing."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import unitarium
from unitarium.interop.export import export
from unitarium.interop.parquet import SHARD_BYTES, shard_names

from conftest import cli, one_error_line


@pytest.fixture(scope="module")
def dataset(made) -> Path:
    return made(gates="clifford+t", qubits=2, count=6000, length="0:9", seed=4)


@pytest.fixture(scope="module")
def exported(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "hf"
    proc = cli("export", dataset, out, "--split", "train=0.8,val=0.1,test=0.1", "--seed", "3")
    assert "wrote 6,000 records" in proc.stdout
    return out


def check_rows(dataset: Path, ids, circuits, tokens, lengths, unitaries) -> None:
    """Exported rows against the dataset, record by record."""
    ds = unitarium.open(dataset)
    for k, i in enumerate(ids):
        rec = ds[int(i)]
        assert circuits[k] == str(rec.circuit)
        assert list(tokens[k]) == rec.circuit.codes.tolist() and lengths[k] == len(rec.circuit)
        u = np.asarray(unitaries[k], dtype=np.float32).view(np.complex64).reshape(4, 4)
        assert np.array_equal(u, rec.unitary)


def test_layout_card_and_split(exported: Path, dataset: Path) -> None:
    files = sorted(p.name for p in (exported / "data").iterdir())
    # --split val=... is written under Hugging Face's name, validation
    assert files == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    card = (exported / "README.md").read_text()
    assert card.startswith("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n")
    assert "    path: data/validation-*" in card and '"gates": [' in card and "least significant" in card
    parts = unitarium.open(dataset).split({"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    assert f"| validation | {len(parts['val']):,} |" in card


READER = r"""
import sys, json
import numpy as np
sys.modules["unitarium"] = None  # reading must not need unitarium
out = sys.argv[1]
import pandas, polars, duckdb, datasets, pyarrow.parquet as pq
val = pandas.read_parquet(f"{out}/data/validation-00000-of-00001.parquet")
every = polars.read_parquet(f"{out}/data/*.parquet")
counts = duckdb.sql(f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{out}/data/*.parquet')").fetchall()[0]
hf = datasets.load_dataset(out, cache_dir=sys.argv[2])
meta = json.loads(pq.read_schema(f"{out}/data/validation-00000-of-00001.parquet").metadata[b"unitarium"])
row = hf["test"][0]
print(json.dumps({
    "val": {k: val[k].head(20).map(lambda v: v.tolist() if hasattr(v, "tolist") else v).tolist()
            for k in ("id", "circuit", "tokens", "length", "unitary")},
    "polars_rows": every.height, "duckdb": list(counts),
    "hf": {k: len(v) for k, v in hf.items()}, "hf_row": row, "dim": meta["dim"],
}))
"""


def test_read_without_unitarium_by_pandas_polars_duckdb_and_datasets(
    exported: Path, dataset: Path, tmp_path: Path
) -> None:
    import json

    proc = subprocess.run(
        [sys.executable, "-c", READER, str(exported), str(tmp_path / "hf-cache")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["polars_rows"] == 6000 and got["duckdb"] == [6000, 6000] and got["dim"] == 4
    assert sum(got["hf"].values()) == 6000 and set(got["hf"]) == {"train", "validation", "test"}
    val = got["val"]
    check_rows(dataset, val["id"], val["circuit"], val["tokens"], val["length"], val["unitary"])
    row = got["hf_row"]
    check_rows(dataset, [row["id"]], [row["circuit"]], [row["tokens"]], [row["length"]], [row["unitary"]])


def test_npz(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "npz"
    cli("export", dataset, out, "--format", "npz")
    z = np.load(out / "data" / "train.npz", allow_pickle=False)
    assert len(z["id"]) == 6000 and z["unitary"].dtype == np.complex64 and z["tokens"].shape == (6000, 9)
    ds = unitarium.open(dataset)
    assert np.array_equal(z["unitary"], ds.unitaries())
    pad = len(ds.gateset.moves)
    for i in (0, 17, 5999):
        assert z["circuit"][i] == str(ds[i].circuit)
        n = int(z["length"][i])
        assert z["tokens"][i, :n].tolist() == ds[i].circuit.codes.tolist() and set(z["tokens"][i, n:]) <= {pad}
    assert list(z["moves"]) == [m.text for m in ds.gateset.moves]
    assert "path: data/train.npz" in (out / "README.md").read_text()


def test_export_a_view_from_python(dataset: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    ds = unitarium.open(dataset)
    view = ds.sample(100, length=5, seed=0)
    sizes = export(view, tmp_path / "s", format="parquet")
    assert sizes == {"train": 100}
    t = pq.read_table(tmp_path / "s" / "data" / "train-00000-of-00001.parquet")
    assert t.column("id").to_pylist() == view.ids.tolist()
    assert set(t.column("length").to_pylist()) == {5}


def test_shard_names() -> None:
    names = shard_names("train", 10, SHARD_BYTES // 3)
    assert names == [(f"train-0000{k}-of-00004.parquet", 3 * k, min(10, 3 * k + 3)) for k in range(4)]
    assert shard_names("val", 0, 100) == [("val-00000-of-00001.parquet", 0, 0)]


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_refusals_change_nothing(dataset: Path, tmp_path: Path) -> None:
    full = tmp_path / "full"
    (full / "data").mkdir(parents=True)
    (full / "data" / "keep.txt").write_text("mine")
    before = tree_digest(tmp_path)
    cases = [
        (["export", dataset, full], "export target '" + str(full) + "' is a directory that is not empty"),
        (["export", dataset, tmp_path / "full" / "data" / "keep.txt"], "is a file: choose a new directory"),
        (["export", dataset, tmp_path / "x", "--split", "train=0.8,val=0.3"], "sum to 1.1, not 1"),
        (["export", dataset, tmp_path / "x", "--split", "train=-0.5,val=1.5"], "train=-0.5 is negative"),
        (["export", dataset, tmp_path / "x", "--split", "train"], "must be NAME=FRACTION"),
        (["export", dataset, tmp_path / "no" / "such"], "is not an existing directory"),
        (["export", tmp_path / "missing.db", tmp_path / "x"], "no dataset at"),
    ]
    for args, message in cases:
        proc = cli(*args, check=False)
        assert proc.returncode == 2, proc.stderr
        assert message in one_error_line(proc.stderr)
    assert tree_digest(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no temporary directory left


def test_empty_directory_is_filled(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    cli("export", dataset, out, "--format", "npz")
    assert (out / "README.md").exists() and (out / "data" / "train.npz").exists()
