"""Layouts as users meet them: missing parent directories are created, a complete dataset leaves no
``-wal``/``-shm`` beside it after any read, a refused writer changes no byte, and errors of the run's
surroundings have classes of their own (a disk too small: StorageError; an unreachable cluster:
ClusterError)."""

from __future__ import annotations

from pathlib import Path

import pytest

import unitarium
from unitarium._storage.layout import DirectoryLayout, FileLayout, layout_of

from conftest import cli, dataset_digest

SPEC = dict(gates="h,t,cx", qubits=2, count=3000, length="1:8", seed=4)


def sidecars(path: Path) -> list[str]:
    """``-wal``, ``-shm`` and ``-journal`` files beside a dataset file or its manifest."""
    folder = path if path.is_dir() else path.parent
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(("-wal", "-shm", "-journal")))


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_missing_parent_directories_are_created(tmp_path: Path, layout: str) -> None:
    target = f"{tmp_path}/runs/2026/big/" if layout == "directory" else tmp_path / "runs" / "2026" / "big.db"
    summary = unitarium.generate(target, unitarium.make_spec(**SPEC), workers=1)
    assert summary.records == 3000 and unitarium.open(target)[0] is not None


def test_missing_parents_from_the_cli_and_a_parent_that_is_a_file(tmp_path: Path) -> None:
    args = ("--gates", "h,t,cx", "--qubits", "2", "--count", "200", "--length", "3", "--quiet")
    assert cli("generate", tmp_path / "a" / "b" / "x.db", *args).returncode == 0
    (tmp_path / "plain").write_text("not a directory")
    result = cli("generate", tmp_path / "plain" / "x.db", *args, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "not a directory" in result.stderr
    assert (tmp_path / "plain").read_text() == "not a directory"


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_a_complete_dataset_leaves_no_wal_or_shm_after_reads(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "d" if layout == "directory" else tmp_path / "d.db"
    target = f"{path}/" if layout == "directory" else path
    unitarium.generate(target, unitarium.make_spec(**SPEC), workers=2 if layout == "directory" else 1)
    assert sidecars(path) == []
    digest = dataset_digest(target)
    for command in (["info"], ["show", "7"], ["verify"]):
        assert cli(*command[:1], target, *command[1:]).returncode == 0
    with unitarium.open(target) as ds:
        assert len(ds) == 3000 and ds[2999] is not None
    assert sidecars(path) == [], "a read of a complete dataset left files beside it"
    # a resume of a complete dataset (nothing to do) leaves it as it was
    unitarium.generate(target, unitarium.make_spec(**SPEC), workers=1)
    assert sidecars(path) == [] and dataset_digest(target) == digest


def test_a_refused_writer_changes_no_byte_of_a_complete_file(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    unitarium.generate(path, unitarium.make_spec(**SPEC), workers=1)
    before = path.read_bytes()
    with pytest.raises(unitarium.SpecMismatchError):
        unitarium.generate(path, unitarium.make_spec(**{**SPEC, "seed": 5}), workers=1)
    assert path.read_bytes() == before and sidecars(path) == []


def test_an_interrupted_dataset_stays_readable_while_incomplete(tmp_path: Path) -> None:
    """Only a complete dataset leaves WAL: one still being written keeps it (readers never wait)."""
    path = tmp_path / "d.db"
    unitarium.generate(path, unitarium.make_spec(**SPEC), workers=1)
    with unitarium.open(path) as ds:
        assert ds.complete
    assert path.read_bytes()[18:20] == b"\x01\x01"  # the rollback journal (WAL is 2, 2)


def test_layout_of_names_what_a_path_is(tmp_path: Path) -> None:
    (tmp_path / "existing").mkdir()
    assert layout_of(f"{tmp_path}/new/") == DirectoryLayout(tmp_path / "new")
    assert layout_of(tmp_path / "existing") == DirectoryLayout(tmp_path / "existing")
    assert layout_of(tmp_path / "x.db") == FileLayout(tmp_path / "x.db")
    assert layout_of(f"{tmp_path}/new/").manifest == tmp_path / "new" / "manifest.db"


def test_a_disk_too_small_is_a_storage_error_before_anything_is_written(tmp_path: Path) -> None:
    spec = unitarium.make_spec(gates="h,t,cx", qubits=2, count=10**15, length="1:8")
    with pytest.raises(unitarium.StorageError, match="GiB free"):
        unitarium.generate(tmp_path / "new" / "x.db", spec)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_ray_cluster_is_a_cluster_error(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    spec = unitarium.make_spec(**SPEC)
    with pytest.raises(unitarium.ClusterError, match="cannot reach the Ray cluster"):
        unitarium.generate(f"{tmp_path}/d/", spec, engine="ray", ray_address="127.0.0.1:9")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("page_size", [4096, 65536])
def test_lookup_rows_in_64_row_statements_write_the_bytes_of_one_row_at_a_time(tmp_path: Path, page_size: int) -> None:
    """A segment's lookup rows go in 64 at a time (then 32, 16, ... 1): the same rows in the same order as one
    ``INSERT`` per row, so the same b-tree, byte for byte, as before (tasks of every size around 64)."""
    import sqlite3

    import numpy as np

    from unitarium._storage.rows import _insert_lookup_rows
    from unitarium._storage.schema import _BLOCK_SCHEMA

    rng = np.random.default_rng(5)
    tasks = []
    for task, n in enumerate([0, 1, 63, 64, 65, 127, 200, 3000, 7]):
        keys = np.sort(rng.integers(-(2**63), 2**63 - 1, n))
        tasks.append(np.stack([keys, np.full(n, task), rng.permutation(n)], axis=1).astype(np.int64))
    files = []
    for way in ("one row at a time", "64 at a time"):
        path = tmp_path / f"{way}.db"
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute(f"PRAGMA page_size={page_size}")
        conn.executescript(_BLOCK_SCHEMA)
        conn.execute("BEGIN")
        for rows in tasks:
            if way == "64 at a time":
                _insert_lookup_rows(conn, rows)
            else:
                conn.executemany("INSERT INTO lookup VALUES (?, ?, ?)", rows.tolist())
        conn.execute("COMMIT")
        conn.close()
        files.append(path.read_bytes())
    assert files[0] == files[1]
    assert len(files[0]) >= 3 * page_size  # (a tree of several pages)
