"""Readers of a dataset that is still being written read one fixed prefix (issue 17, items 2, 3, 7), and
export cleans the temporaries of exporters killed with -9 (item 4).

Growth is made deterministic here: a complete dataset is cut back to its first tasks (a run that has not
finished, as a reader sees it), and :meth:`Growing.grow` appends the rest in one commit, as a writer does,
at the exact moment a reader is most exposed (between two of its reads, or between two DataLoader workers
starting). ``tests/test_fuzz_growing.py`` does the same against a real ``generate`` process.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, get_worker_info

import unitarium
from unitarium.interop import export as export_module
from unitarium.interop import parquet as parquet_module
from unitarium.interop.export import export
from unitarium.torch import ShuffledBatches, UnitaryDataset

from conftest import cli, one_error_line, wait_until


class Growing:
    """A copy of a complete dataset file cut back to its first ``keep`` tasks; :meth:`grow` appends the
    rest (tasks rows, summary, completion) in one transaction. Picklable (paths and rows only)."""

    def __init__(self, source: Path, path: Path, keep: int) -> None:
        self.path = path
        src, dst = sqlite3.connect(source), sqlite3.connect(path)
        src.backup(dst)
        src.close()
        dst.execute("PRAGMA journal_mode=WAL")
        self.rows = dst.execute("SELECT * FROM tasks WHERE task_id >= ? ORDER BY task_id", (keep,)).fetchall()
        self.meta = dict(dst.execute("SELECT key, value FROM meta WHERE key IN ('state', 'summary')").fetchall())
        summary = json.loads(self.meta["summary"])
        held = dst.execute(
            "SELECT coalesce(sum(count), 0), coalesce(sum(candidates), 0) FROM tasks WHERE task_id < ?", (keep,)
        )
        summary["records"], summary["candidates"] = held.fetchone()
        summary["tasks"] = keep
        with dst:
            dst.execute("DELETE FROM tasks WHERE task_id >= ?", (keep,))
            dst.execute("UPDATE meta SET value = ? WHERE key = 'summary'", (json.dumps(summary),))
            dst.execute("UPDATE meta SET value = ? WHERE key = 'state'", (json.dumps({"complete": False, "runs": 1}),))
        dst.close()
        self.grown = False

    def grow(self) -> None:
        if self.grown:
            return
        conn = sqlite3.connect(self.path, timeout=30)
        with conn:
            conn.executemany(f"INSERT INTO tasks VALUES ({','.join('?' * len(self.rows[0]))})", self.rows)
            for key, value in self.meta.items():
                conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
        conn.close()
        self.grown = True


@pytest.fixture(scope="module")
def full(made) -> Path:
    return made(gates="h,s,t,cx", qubits=2, count=40_000, length="1:8", seed=5)


@pytest.fixture
def growing(full: Path, tmp_path: Path) -> Growing:
    g = Growing(full, tmp_path / "growing.db", keep=4)
    with unitarium.open(g.path) as ds:
        assert 0 < len(ds) < 40_000 and not ds.complete
    return g


def ids_of(batches) -> np.ndarray:
    return np.concatenate([b["id"].numpy() for b in batches]) if batches else np.zeros(0, np.int64)


# -- torch (item 2) ------------------------------------------------------------------------------------------


class Staggered(ShuffledBatches):
    """Worker 0 starts its epoch; only then does the dataset grow and worker 1 start (a late worker)."""

    growth: Growing
    flag: Path

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        assert info is not None
        if info.id == 0:
            batches = super().__iter__()
            first = next(batches)  # worker 0 has cut its piece
            self.flag.touch()
            yield first
            yield from batches
        else:
            wait_until(self.flag.exists, timeout=120, what="worker 0 to start")
            self.growth.grow()
            yield from super().__iter__()


@pytest.mark.slow
def test_workers_starting_apart_read_one_prefix_exactly_once(growing: Growing, tmp_path: Path) -> None:
    ds = unitarium.open(growing.path)
    n0 = len(ds)
    sb = Staggered(ds, 512, seed=3)
    sb.growth, sb.flag = growing, tmp_path / "worker0-started"
    seen = ids_of(list(DataLoader(sb, batch_size=None, num_workers=2)))
    assert len(ds) > n0  # it grew while the epoch ran
    assert np.array_equal(np.sort(seen), np.arange(n0)), (len(seen), len(np.unique(seen)), n0)
    sb.set_epoch(1)  # the next epoch takes what is committed now
    assert sb.records == len(ds)


@pytest.mark.slow
def test_persistent_workers_follow_set_epoch_and_its_count(growing: Growing) -> None:
    ds = unitarium.open(growing.path)
    n0 = len(ds)
    sb = ShuffledBatches(ds, 512, seed=4)
    loader = DataLoader(sb, batch_size=None, num_workers=2, persistent_workers=True)
    first = ids_of(list(loader))
    growing.grow()
    sb.set_epoch(1)
    second = ids_of(list(loader))  # the same worker processes
    fresh = ShuffledBatches(ds, 512, seed=4)
    fresh.set_epoch(1)
    assert np.array_equal(np.sort(first), np.arange(n0))
    assert np.array_equal(second, ids_of(list(DataLoader(fresh, batch_size=None, num_workers=2))))
    assert np.array_equal(np.sort(second), np.arange(len(ds)))


def test_count_fixed_until_set_epoch_and_map_style_length(growing: Growing) -> None:
    ds = unitarium.open(growing.path)
    n0 = len(ds)
    sb, ud = ShuffledBatches(ds, 1000, seed=1), UnitaryDataset(ds)
    growing.grow()
    assert len(ds) > n0
    assert np.array_equal(np.sort(ids_of(list(sb))), np.arange(n0))
    assert len(ud) == n0
    with pytest.raises(IndexError):
        ud[n0]
    sb.set_epoch(1)
    assert np.array_equal(np.sort(ids_of(list(sb))), np.arange(len(ds)))
    sb.set_epoch(2, records=5000)
    assert np.array_equal(np.sort(ids_of(list(sb))), np.arange(5000))
    assert len(UnitaryDataset(ds, records=7)) == 7
    with pytest.raises(unitarium.SpecError, match="records 10000000 must be an integer from 0 to the"):
        sb.set_epoch(3, records=10_000_000)


def _rank(rank: int, path: str, n0: int, init: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=2)
    try:
        ds = unitarium.open(path)
        source = ds.snapshot(n0) if rank == 0 else ds  # rank 0 counted before the dataset grew
        sb = ShuffledBatches(source, 700, seed=2)
        ud = UnitaryDataset(source)
        np.save(Path(out) / f"{rank}.npy", np.r_[len(ud), ids_of(list(sb))])
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ranks_agree_on_the_smallest_count(full: Path, tmp_path: Path) -> None:
    ds = unitarium.open(full)
    n0 = 12_345
    torch.multiprocessing.spawn(_rank, args=(str(full), n0, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    got = [np.load(tmp_path / f"{r}.npy") for r in (0, 1)]
    assert [int(g[0]) for g in got] == [n0, n0]  # UnitaryDataset: one length on every rank
    both = np.concatenate([g[1:] for g in got])
    assert len(ds) > n0 and np.array_equal(np.sort(both), np.arange(n0))


# -- split and sample (siblings of item 2) ------------------------------------------------------------------


def test_split_and_sample_of_a_dataset_growing_meanwhile(
    growing: Growing, full: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import unitarium._read.split as split_module

    ds = unitarium.open(growing.path)
    n0 = len(ds)
    real_groups, real_lengths = split_module.group_keys, split_module._lengths_of

    def groups_after_growth(*args, **kwargs):
        growing.grow()
        return real_groups(*args, **kwargs)

    monkeypatch.setattr(split_module, "group_keys", groups_after_growth)
    parts = ds.split({"a": 0.7, "b": 0.3}, seed=1, stratify_by_length=True)
    assert len(ds) > n0
    assert np.array_equal(np.sort(np.concatenate([v.ids for v in parts.values()])), np.arange(n0))

    small = Growing(full, tmp_path / "again.db", keep=2)  # another prefix, for sample
    ds2 = unitarium.open(small.path)
    n2 = len(ds2)

    def lengths_after_growth(*args, **kwargs):
        small.grow()
        return real_lengths(*args, **kwargs)

    monkeypatch.setattr(split_module, "_lengths_of", lengths_after_growth)
    view = ds2.sample(50, length=3, seed=0)
    assert len(view) == 50 and view.ids.max() < n2 < len(ds2)
    assert np.all(ds2.lengths(0, n2)[view.ids] == 3)


def test_verify_while_the_dataset_grows(growing: Growing, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tasks, the summary and the completion flag are read from one commit."""
    ds = unitarium.open(growing.path)
    real = unitarium.Dataset.summary

    def summary_after_growth(self):
        growing.grow()
        return real.fget(self)

    monkeypatch.setattr(unitarium.Dataset, "summary", property(summary_after_growth))
    report = ds.verify(sample=200)
    assert report.ok, report.problems


# -- export (items 3 and 4) ---------------------------------------------------------------------------------


def test_export_refuses_an_incomplete_dataset_unless_allowed(growing: Growing, tmp_path: Path) -> None:
    n0 = len(unitarium.open(growing.path))
    proc = cli("export", growing.path, tmp_path / "out", check=False)
    assert proc.returncode == 2 and not (tmp_path / "out").exists()
    line = one_error_line(proc.stderr)
    assert "is not complete" in line and "--allow-incomplete" in line and "nothing was written" in line
    proc = cli("export", growing.path, tmp_path / "out", "--format", "npz", "--allow-incomplete")
    assert f"wrote {n0:,} records" in proc.stdout and "incomplete" in proc.stdout
    with np.load(tmp_path / "out" / "data" / "train.npz") as z:
        assert np.array_equal(z["id"], np.arange(n0))
    readme = (tmp_path / "out" / "README.md").read_text()
    assert f"({n0:,} records)" in readme and f"**Incomplete:** {n0:,} records exported of the spec's 40,000" in readme


@pytest.mark.parametrize("fmt", ["parquet", "npz"])
def test_export_counts_the_rows_it_writes_while_the_dataset_grows(
    growing: Growing, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = unitarium.open(growing.path)
    n0 = len(ds)
    real_parquet, real_npz = parquet_module.write_split, export_module._write_npz

    def parquet_then_grow(*args, **kwargs):
        out = real_parquet(*args, **kwargs)
        growing.grow()
        return out

    def npz_then_grow(*args, **kwargs):
        real_npz(*args, **kwargs)
        growing.grow()

    monkeypatch.setattr(parquet_module, "write_split", parquet_then_grow)
    monkeypatch.setattr(export_module, "_write_npz", npz_then_grow)
    sizes = export(ds, tmp_path / "out", format=fmt, split="a=0.5,b=0.5", allow_incomplete=True)
    assert len(ds) > n0 and sum(sizes.values()) == n0
    readme = (tmp_path / "out" / "README.md").read_text()
    assert f"({n0:,} records)" in readme and "Incomplete" in readme
    for name, count in sizes.items():
        if fmt == "parquet":
            import pyarrow.parquet as pq

            rows = sum(pq.read_metadata(p).num_rows for p in (tmp_path / "out" / "data").glob(f"{name}-*.parquet"))
        else:
            with np.load(tmp_path / "out" / "data" / f"{name}.npz") as z:
                rows = len(z["id"])
        assert rows == count and f"| {name} | {count:,} |" in readme


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_export_removes_dead_exporters_temporaries_only(full: Path, tmp_path: Path) -> None:
    import fcntl

    dead = _dead_pid()
    abandoned = [tmp_path / f".old.unitarium-export-{dead}", tmp_path / f".x.unitarium-export-{dead}-0a1b2c3d"]
    for d in abandoned:
        (d / "data").mkdir(parents=True)
        (d / "data" / "train-00000-of-00001.parquet").write_bytes(b"x" * 8192)
    live = tmp_path / f".y.unitarium-export-{os.getpid()}-00000000"  # a live process's (ours)
    locked = tmp_path / f".z.unitarium-export-{dead}-11111111"  # a pid we cannot see, holding its lock
    live.mkdir()
    locked.mkdir()
    fd = os.open(locked, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        cli("export", full, tmp_path / "out")
        left = sorted(p.name for p in tmp_path.iterdir())
    finally:
        os.close(fd)
    assert left == sorted(["out", live.name, locked.name]), left


@pytest.mark.slow
def test_export_killed_with_9_leaves_nothing_after_the_next_export(full: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "unitarium", "export", str(full), str(tmp_path / "a"), "--split", "x=0.5,y=0.5"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        found = wait_until(
            lambda: [p for p in tmp_path.iterdir() if ".unitarium-export-" in p.name], timeout=120, what="a temporary"
        )
        time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    if (tmp_path / "a").exists():  # it finished first: nothing to clean (rare on a loaded machine)
        pytest.skip("the export finished before it was killed")
    assert found[0].exists()
    cli("export", full, tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


# -- seeds, fractions, sample sizes (item 7) ---------------------------------------------------------------


SPLIT_PINS = {  # sha256 of the parts' ids as on 1ecd914: seeds below 2**64 keep their parts
    0: "399f60aa8abff2ce",
    12345: "649d25147a68f03e",
    2**63 - 1: "5ecec204a3a80e99",
    2**63: "a6143342efd4d16a",
    2**64 - 1: "4689e1214a514364",
}


@pytest.fixture(scope="module")
def small(made) -> Path:
    return made(gates="h,s,cx", qubits=2, count=3000, length="1:8", seed=1)


def test_split_seeds_of_any_size(small: Path, tmp_path: Path) -> None:
    path, ds = small, unitarium.open(small)
    fractions = {"a": 0.5, "b": 0.3, "c": 0.2}
    for seed, pin in SPLIT_PINS.items():
        parts = ds.split(fractions, seed=seed)
        assert hashlib.sha256(b"".join(parts[k].ids.tobytes() for k in "abc")).hexdigest()[:16] == pin, seed
    big = [ds.split(fractions, seed=2**70 + k)["a"].ids for k in (0, 0, 1)]
    assert np.array_equal(big[0], big[1]) and not np.array_equal(big[0], big[2])
    assert not np.array_equal(big[0], ds.split(fractions, seed=0)["a"].ids)  # 2**70 is not seed 0
    assert len(ds.sample(5, seed=2**70)) == 5
    proc = cli("export", path, tmp_path / "out", "--split", "train=0.5,val=0.5", "--seed", str(2**70))
    assert "wrote 3,000 records" in proc.stdout


def test_nan_fraction_and_a_sample_too_large_for_memory(small: Path, tmp_path: Path) -> None:
    ds = unitarium.open(small)
    proc = cli("export", small, tmp_path / "o2", "--split", "train=nan,val=0.5", check=False)
    assert one_error_line(proc.stderr) == "unitarium: error: split fraction train=nan must be a finite number"
    with pytest.raises(unitarium.SpecError, match="split fraction train=inf must be a finite number"):
        ds.split("train=inf,val=0.5")
    with pytest.raises(unitarium.SpecError, match=r"cannot sample 10,000,000,000 records: their ids take about"):
        ds.sample(10**10, replace=True)
