"""Labels carried by the data (issue #20, item 2): ``ds[i].label``, ``ds[ids]``, iteration, views,
``ds.labels()``, the torch datasets (map-style and ShuffledBatches, 0 and 2 DataLoader workers) and
the exports (Parquet read back with pyarrow, npz), each checked against an independent Dijkstra
search over unitaries (tests/test_cost.py); only a complete labels file is carried (kill -9 of
``unitarium label``, then resume); foreign, crafted or damaged files are refused."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import unitarium
from test_cost import CLIFFORD_GENS, cost_levels, keys
from unitarium._errors import DatasetDamagedError, DatasetError
from unitarium._read.labels import LabelsWarning

from conftest import cli, kill_group, label_rows, start_cli, wait_until

RANDOM = ("--gates", "h,s,cx", "--qubits", "2", "--length", "0:12", "-q")


@pytest.fixture(scope="module")
def exact() -> dict[bytes, tuple[int, int]]:
    """Least (CX-count, length) of every 2-qubit Clifford up to phase (Dijkstra, tests/test_cost.py)."""
    return cost_levels([(g, 1 if i >= 4 else 0) for i, g in enumerate(CLIFFORD_GENS)], 3)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CX-count table complete to cost 1: reach R = 2C - w_max + 1 = 2."""
    path = tmp_path_factory.mktemp("table") / "cx1.db"
    cli("generate", path, "--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--unique", "--cost", "cx=1",
        "--max-cost", "1", "-q")  # fmt: skip
    return path


def oracle(ds: unitarium.Dataset, exact: dict[bytes, tuple[int, int]]) -> np.ndarray:
    """Each record's label by the independent search: its CX-count, or -(R + 1) = -3 beyond R = 2."""
    costs = [exact[k][0] for k in keys(ds.unitaries(0, len(ds)))]
    return np.array([c if c <= 2 else -3 for c in costs], dtype=np.int64)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory, table: Path) -> Path:
    """A directory dataset of 700 random circuits, labelled by the table."""
    path = tmp_path_factory.mktemp("labelled") / "rnd"
    cli("generate", f"{path}/", "--count", "700", *RANDOM)
    cli("label", path, "--table", table, "-q")
    return path


def test_records_carry_labels(labelled: Path, exact: dict[bytes, tuple[int, int]]) -> None:
    ds = unitarium.open(labelled)
    want = oracle(ds, exact)
    assert set(want.tolist()) >= {0, 1, 2, -3}  # every kind of label occurs
    assert np.array_equal(ds.labels(), want)
    assert [ds[i].label for i in range(len(ds))] == want.tolist()
    assert ds[-1].label == want[-1] and "label=" in repr(ds[3])
    ids = [699, 5, 5, 0, 333]
    assert [r.label for r in ds[ids]] == want[ids].tolist()
    assert ds.labels(np.array(ids)).tolist() == want[ids].tolist()
    assert [r.label for r in ds[100:140]] == want[100:140].tolist()
    assert [r.label for r in ds] == want.tolist()
    parts = ds.split({"train": 0.7, "test": 0.3}, seed=1)
    for view in parts.values():
        assert [r.label for r in view] == want[view.ids].tolist()
        assert view[0].label == want[view.ids[0]]
    snap = ds.snapshot(50)  # a prefix: its records are all labelled
    assert [r.label for r in snap] == want[:50].tolist()


def test_no_labels_file_no_label_and_no_lookup_per_read(tmp_path: Path, table: Path) -> None:
    """Without a labels file, records say None; the file is looked for once, at open: a handle opened
    before labelling carries nothing, a new handle (or the labelling handle) carries them."""
    path = tmp_path / "plain.db"
    cli("generate", path, "--count", "40", *RANDOM)
    before = unitarium.open(path)
    assert before._labels is None
    assert before[0].label is None and all(r.label is None for r in before)
    with pytest.raises(DatasetError, match="no labels"):
        before.labels()
    cli("label", path, "--table", table, "-q")
    assert before[0].label is None  # looked for at open only
    assert len(before.labels()) == 40  # an explicit read looks again
    fresh = unitarium.open(path)
    assert fresh[0].label is not None
    third = tmp_path / "third.db"
    cli("generate", third, "--count", "40", "--seed", "4", *RANDOM)
    handle = unitarium.open(third)
    handle.label(table)  # labelling through a handle refreshes it
    assert [r.label for r in handle] == handle.labels().tolist()


@pytest.mark.parametrize("workers", [0, 2])
def test_torch_batches_carry_labels(labelled: Path, exact: dict[bytes, tuple[int, int]], workers: int) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from unitarium.torch import ShuffledBatches, UnitaryDataset

    ds = unitarium.open(labelled)
    want = oracle(ds, exact)
    mapped = UnitaryDataset(ds)
    loader = DataLoader(mapped, batch_size=64, shuffle=True, num_workers=workers, collate_fn=UnitaryDataset.collate)
    seen = []
    for batch in loader:
        assert batch["label"].dtype == torch.int64 and batch["label"].shape == batch["id"].shape
        assert np.array_equal(batch["label"].numpy(), want[batch["id"].numpy()])
        seen.extend(batch["id"].tolist())
    assert sorted(seen) == list(range(len(ds)))
    assert int(mapped[7]["label"]) == want[7]
    sb = ShuffledBatches(ds, batch_size=50, seed=3, buffer_size=200)
    seen = []
    for batch in DataLoader(sb, batch_size=None, num_workers=workers):
        assert batch["label"].dtype == torch.int64
        assert np.array_equal(batch["label"].numpy(), want[batch["id"].numpy()])
        seen.extend(batch["id"].tolist())
    assert sorted(seen) == list(range(len(ds)))
    view = ds.split({"train": 0.5, "test": 0.5}, seed=2)["test"]
    for batch in DataLoader(ShuffledBatches(view, batch_size=32), batch_size=None, num_workers=workers):
        assert np.array_equal(batch["label"].numpy(), want[batch["id"].numpy()])


def test_torch_without_labels_has_no_label_field(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from unitarium.torch import ShuffledBatches, UnitaryDataset

    cli("generate", tmp_path / "p.db", "--count", "30", *RANDOM)
    ds = unitarium.open(tmp_path / "p.db")
    assert "label" not in UnitaryDataset(ds)[0]
    assert all("label" not in b for b in ShuffledBatches(ds, batch_size=8))


def test_exports_carry_labels(labelled: Path, tmp_path: Path, exact: dict[bytes, tuple[int, int]]) -> None:
    import json

    import pyarrow.parquet as pq

    want = oracle(unitarium.open(labelled), exact)
    cli("export", labelled, tmp_path / "hf", "--split", "train=0.8,test=0.2")
    seen = []
    for f in sorted((tmp_path / "hf" / "data").glob("*.parquet")):
        t = pq.read_table(f)
        assert t.schema.field("label").type == "int32"
        ids, labels = t.column("id").to_numpy(), t.column("label").to_numpy()
        assert np.array_equal(labels, want[ids])
        seen.extend(ids.tolist())
        meta = json.loads(t.schema.metadata[b"unitarium"])["label"]
        assert meta["cost"] == {"h": 0, "s": 0, "cx": 1} and meta["reach"] == 2
    assert sorted(seen) == list(range(len(want)))
    assert "`label`" in (tmp_path / "hf" / "README.md").read_text()
    cli("export", labelled, tmp_path / "npz", "--format", "npz")
    z = np.load(tmp_path / "npz" / "data" / "train.npz")
    assert np.array_equal(z["label"], want[z["id"]])
    plain = tmp_path / "plain.db"
    cli("generate", plain, "--count", "20", *RANDOM)
    cli("export", plain, tmp_path / "hf2")
    (f,) = (tmp_path / "hf2" / "data").glob("*.parquet")
    assert "label" not in pq.read_table(f).schema.names
    assert "`label`" not in (tmp_path / "hf2" / "README.md").read_text()


def test_labelling_many_cliffords_stays_small(tmp_path: Path, table: Path, exact: dict[bytes, tuple[int, int]]) -> None:
    """4,096 records in one chunk on the CX table: a Clifford target matches nearly every prefix of a level, and
    forming every match peaked at 2.2 GB (then 355 MB with them all kept until verified); verified best-first within
    bounded batches, the labeller's peak RSS stays near the interpreter's (61 MB measured). The labels are the
    independent search's."""
    data = tmp_path / "many.db"
    cli("generate", data, "--count", "4096", *RANDOM)
    # measured from a small parent: a child's peak counts the image it was forked from, until it execs
    peak = (
        "import resource, subprocess, sys\n"
        "proc = subprocess.run([sys.executable, '-m', 'unitarium', 'label', *sys.argv[1:]], capture_output=True)\n"
        "print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, proc.stderr.decode())\n"
    )
    args = [sys.executable, "-c", peak, str(data), "--table", str(table), "-q"]
    code, kib, err = subprocess.run(args, capture_output=True, text=True, check=True).stdout.split(" ", 2)
    assert code == "0", err
    assert int(kib) < 200 * 1024, f"peak RSS {int(kib) / 1024:.0f} MiB"
    ds = unitarium.open(data)
    assert np.array_equal(ds.labels(), oracle(ds, exact))


LABELLED = 4800
"""Records of the kill -9 test: 24 chunks of 200 (about 0.05 s each), so that the kill lands mid-way."""


def test_incomplete_labels_are_not_carried_and_resume_completes_them(
    tmp_path: Path, table: Path, exact: dict[bytes, tuple[int, int]]
) -> None:
    """kill -9 of ``unitarium label`` partway: the incomplete file is not carried (no label, a
    warning), its labelled prefix still reads; the same command resumes, and then every carrier
    (records, torch, Parquet) has the complete column, equal to an uninterrupted labelling's and
    to the independent search's."""
    import pyarrow.parquet as pq

    torch = pytest.importorskip("torch")  # noqa: F841
    from unitarium.torch import ShuffledBatches

    data = tmp_path / "big.db"
    cli("generate", data, "--count", str(LABELLED), *RANDOM)
    copy = tmp_path / "copy.db"
    shutil.copy(data, copy)
    proc = start_cli("label", data, "--table", table, "-q", "--chunk", "200")
    try:
        wait_until(lambda: label_rows(data) >= 2, timeout=300, what="two committed label chunks")
    finally:
        kill_group(proc)
    rows = label_rows(data)
    assert 2 <= rows < LABELLED // 200
    ds = unitarium.open(data)
    want = oracle(ds, exact)
    with pytest.warns(LabelsWarning, match="incomplete"):
        assert ds[0].label is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per handle
        assert all(r.label is None for r in ds[0:300])
        assert all("label" not in b for b in ShuffledBatches(ds, batch_size=400))
    assert np.array_equal(ds.labels(0, rows * 200), want[: rows * 200])  # the labelled prefix reads
    with pytest.raises(DatasetError, match="labelled up to record"):
        ds.labels()
    proc2 = cli("export", data, tmp_path / "early", check=False)
    assert proc2.returncode == 0 and "warning" in proc2.stderr and "incomplete" in proc2.stderr
    (f,) = (tmp_path / "early" / "data").glob("*.parquet")
    assert "label" not in pq.read_table(f).schema.names
    out = cli("label", data, "--table", table, "-q", "--chunk", "200").stdout
    assert f"{LABELLED - rows * 200:,} new" in out
    cli("label", copy, "--table", table, "-q")
    done = unitarium.open(data)
    assert [r.label for r in done] == want.tolist() == unitarium.open(copy).labels().tolist()
    got = {}
    for batch in ShuffledBatches(done, batch_size=256):
        got.update(zip(batch["id"].tolist(), batch["label"].tolist(), strict=True))
    assert [got[i] for i in range(LABELLED)] == want.tolist()
    cli("export", data, tmp_path / "late")
    (f,) = (tmp_path / "late" / "data").glob("*.parquet")
    t = pq.read_table(f)
    assert np.array_equal(t.column("label").to_numpy(), want[t.column("id").to_numpy()])


def test_foreign_crafted_and_damaged_labels_are_refused(tmp_path: Path, labelled: Path, table: Path) -> None:
    args = ("--count", "60", *RANDOM)
    a, twin = tmp_path / "a.db", tmp_path / "b.db"
    cli("generate", a, *args)
    cli("generate", twin, *args)  # the same spec and records, another dataset id
    cli("label", a, "--table", table, "-q")
    shutil.copyfile(f"{a}.labels", f"{twin}.labels")
    foreign = unitarium.open(twin)
    for read in (lambda: foreign[0], lambda: list(foreign), lambda: foreign.labels()):
        with pytest.raises(DatasetError, match="another dataset"):
            read()
    proc = cli("export", twin, tmp_path / "x", check=False)
    assert proc.returncode == 2 and "another dataset" in proc.stderr and not (tmp_path / "x").exists()

    crafted = tmp_path / "c.db"
    shutil.copy(a, crafted)
    shutil.copyfile(f"{a}.labels", f"{crafted}.labels")
    conn = sqlite3.connect(f"{crafted}.labels")
    conn.execute("CREATE VIEW v AS SELECT 1")
    conn.commit()
    conn.close()
    with pytest.raises(DatasetDamagedError, match="not a labels file"):
        unitarium.open(crafted)[0]

    damaged = tmp_path / "d.db"
    shutil.copy(a, damaged)
    shutil.copyfile(f"{a}.labels", f"{damaged}.labels")
    conn = sqlite3.connect(f"{damaged}.labels")
    conn.execute("UPDATE labels SET costs = substr(costs, 1, 8)")
    conn.commit()
    conn.close()
    with pytest.raises(DatasetDamagedError, match="damaged"):
        unitarium.open(damaged)[5]
    # copies with their own labels file are fine (a file dataset copied whole is the same dataset)
    assert unitarium.open(a)[5].label == unitarium.open(a).labels(5, 6)[0]


def test_a_torch_batch_reads_its_labels_once(labelled: Path, exact: dict[bytes, tuple[int, int]], monkeypatch) -> None:
    """issue #21's closing note: ``UnitaryDataset`` read a batch's labels twice (``ds[ids]`` carries them, then
    it read them again). Counted through the real labels reader of a labelled dataset."""
    pytest.importorskip("torch")
    from unitarium._read.labels import Labels
    from unitarium.torch import UnitaryDataset

    reads: list[int] = []
    real = Labels._take

    def counted(self, firsts, counts, ids):  # the real read, counted
        reads.append(len(ids))
        return real(self, firsts, counts, ids)

    ds = unitarium.open(labelled)
    want = oracle(ds, exact)
    mapped = UnitaryDataset(ds)
    monkeypatch.setattr(Labels, "_take", counted)
    ids = [699, 5, 5, 0, 333, 64]
    batch = UnitaryDataset.collate(mapped.__getitems__(ids))
    assert batch["label"].tolist() == want[ids].tolist()
    assert reads == [len(ids)]
    reads.clear()
    assert int(mapped[7]["label"]) == want[7]
    assert len(reads) == 1
