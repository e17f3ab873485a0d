"""A dataset is untrusted input (issue #17, items 1, 5, 6, 10): a segment of another dataset, or of other
tasks, is refused, never served; a structurally broken manifest is refused by ``pack``, by readers and at
resume; no segment name leads out of ``shards/``; a crafted schema (a view where a table belongs) cannot hang
a command. Each test fails on 1ecd914 (before the fix); the schema-2 test checks that older datasets still
read and resume."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

import unitarium
from unitarium import DatasetDamagedError, DatasetError
from unitarium._run.pack import pack

from conftest import cli, dataset_digest, edit_sqlite, one_error_line

SPEC = {"gates": "h,t,cx", "qubits": 2, "count": 20_000, "length": 8}
SPEC_ARGS = ("--gates", "h,t,cx", "--qubits", "2", "--count", "20000", "--length", "8")
RUNAWAY = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 400000000) SELECT max(n) FROM c"
VIEW_SQL = "SELECT {columns} FROM {table}_real WHERE (" + RUNAWAY + ") > 0"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two directory datasets of the same gate set, another seed, two segments each (same names)."""
    root = tmp_path_factory.mktemp("pair")
    for name, seed in (("a", 1), ("b", 2)):
        unitarium.generate(f"{root / name}/", unitarium.make_spec(**SPEC, seed=seed), workers=2)
    return root / "a", root / "b"


@pytest.fixture
def a(pair: tuple[Path, Path], tmp_path: Path) -> Path:
    shutil.copytree(pair[0], tmp_path / "a", symlinks=True)
    return tmp_path / "a"


def segments(path: Path) -> list[str]:
    return sorted(p.name for p in (path / "shards").iterdir())


def first_record_of(path: Path, segment: str) -> int:
    with sqlite3.connect(path / "manifest.db") as conn:
        (first,) = conn.execute(
            "SELECT min(first_id) FROM tasks t JOIN shards s ON t.shard = s.shard WHERE s.name = ? AND count > 0",
            (segment.removesuffix(".db"),),
        ).fetchone()
    conn.close()
    return int(first)


def fix_summary(manifest: Path) -> None:
    """Make meta.summary agree with the tasks left, so only the task structure is wrong."""
    conn = sqlite3.connect(manifest)
    records, tasks, candidates = conn.execute(
        "SELECT coalesce(sum(count), 0), count(*), coalesce(sum(candidates), 0) FROM tasks"
    ).fetchone()
    summary = {"records": records, "tasks": tasks, "candidates": candidates, "lengths": {"8": records}}  # SPEC
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'summary'", (json.dumps(summary),))
    conn.close()


def refused_by_cli(*args: str | Path) -> str:
    proc = cli(*args, check=False, timeout=60)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
    return one_error_line(proc.stderr)


# -- 1. a segment carries the identity of its dataset and its tasks ------------------------------------------


@pytest.mark.parametrize("how", ["copy", "symlink"])
def test_a_segment_of_another_dataset_is_refused(pair: tuple[Path, Path], a: Path, how: str) -> None:
    """Same gate set, same segment names, another seed: the foreign segment is never served, verify fails."""
    name = segments(a)[0]
    (a / "shards" / name).unlink()
    if how == "copy":
        shutil.copy(pair[1] / "shards" / name, a / "shards" / name)
    else:
        (a / "shards" / name).symlink_to(pair[1] / "shards" / name)
    i = first_record_of(a, name)
    why = r"another dataset" if how == "copy" else r"symbolic link out of shards/"
    with unitarium.open(a) as ds, pytest.raises(DatasetDamagedError, match=why):
        ds[i]
    for args in (("show", a, str(i)), ("verify", a, "--all"), ("info", a)):
        assert re.search(why, refused_by_cli(*args))


def test_a_resume_refuses_a_segment_of_another_dataset(pair: tuple[Path, Path], a: Path) -> None:
    """Resuming would add to a dataset that readers refuse: refused before anything changes."""
    name = segments(a)[0]
    shutil.copy(pair[1] / "shards" / name, a / "shards" / name)
    edit_sqlite(
        a / "manifest.db", "UPDATE meta SET value = json_set(value, '$.complete', json('false')) WHERE key = 'state'"
    )
    before = tree(a)
    with pytest.raises(DatasetDamagedError, match="another dataset"):
        unitarium.generate(f"{a}/", unitarium.make_spec(**SPEC, seed=1), workers=1)
    assert tree(a) == before


def tree(path: Path) -> dict[str, bytes]:
    """The bytes of every file under ``path`` (but -wal/-shm and the lock file)."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm")) and p.name != "lock"
    }


def test_swapped_segments_are_refused(a: Path) -> None:
    """Two segments of the same dataset exchanging names: each holds other tasks than the manifest says."""
    first, second = (a / "shards" / n for n in segments(a))
    first.rename(a / "shards" / "tmp")
    second.rename(first)
    (a / "shards" / "tmp").rename(second)
    with unitarium.open(a) as ds, pytest.raises(DatasetDamagedError, match=r"swapped|recorded"):
        ds[first_record_of(a, first.name)]
    refused_by_cli("verify", a)
    refused_by_cli("info", a)


def test_a_block_moved_to_another_task_fails_its_checksum(tmp_path: Path) -> None:
    """In a file: the blocks of tasks 1 and 2 (same record count) exchanged; each is refused, not served."""
    path = tmp_path / "f.db"
    unitarium.generate(path, unitarium.make_spec(**SPEC), workers=1)
    edit_sqlite(
        path,
        "UPDATE blocks SET task_id = -1 WHERE task_id = 1",
        "UPDATE blocks SET task_id = 1 WHERE task_id = 2",
        "UPDATE blocks SET task_id = 2 WHERE task_id = -1",
    )
    with unitarium.open(path) as ds:
        first = ds._query("SELECT first_id FROM tasks WHERE task_id = 1")[0][0]
        with pytest.raises(DatasetDamagedError, match="checksum"):
            ds[first]


def test_a_segment_replaced_by_another_size_is_refused(a: Path) -> None:
    """The manifest records each segment's size: a segment grown (or replaced) is refused on open."""
    name = segments(a)[0]
    with open(a / "shards" / name, "ab") as f:
        f.write(b"\0" * 4096)
    with unitarium.open(a) as ds, pytest.raises(DatasetDamagedError, match="recorded"):
        ds[first_record_of(a, name)]


# -- 5. the task structure is checked by pack, readers and resume ----------------------------------------------


def test_pack_refuses_a_manifest_with_a_hole(a: Path, tmp_path: Path) -> None:
    """A deleted task row (summary made to agree): pack used to pack the rest into a file with a hole."""
    edit_sqlite(a / "manifest.db", "DELETE FROM tasks WHERE task_id = 1")
    fix_summary(a / "manifest.db")
    with pytest.raises(DatasetError, match="task list breaks at task 2"):
        pack(a, tmp_path / "packed.db")
    assert not (tmp_path / "packed.db").exists()
    assert "task list breaks" in refused_by_cli("info", a)


def test_shifted_first_ids_are_refused(a: Path, tmp_path: Path) -> None:
    """first_id shifted from task 2 on: refused on open (pack, readers), and by ds[i] of a reader already open."""
    with unitarium.open(a) as ds:
        i = ds._query("SELECT first_id FROM tasks WHERE task_id = 2")[0][0]
        ds[i]
        edit_sqlite(a / "manifest.db", "UPDATE tasks SET first_id = first_id + 1 WHERE task_id >= 2")
        with pytest.raises(DatasetDamagedError, match="task 2 starts at id"):
            ds[i + 1]
    with pytest.raises(DatasetError, match="task list breaks at task 2"):
        pack(a, tmp_path / "packed.db")
    refused_by_cli("show", a, str(i + 1))


def test_resume_refuses_a_broken_task_list(tmp_path: Path) -> None:
    """A file whose task rows were edited is not resumed (the writer would append after a hole)."""
    path = tmp_path / "f.db"
    unitarium.generate(path, unitarium.make_spec(**SPEC), workers=1)
    edit_sqlite(
        path,
        "DELETE FROM tasks WHERE task_id = 1",
        "UPDATE meta SET value = json_set(value, '$.complete', json('false')) WHERE key = 'state'",
    )
    fix_summary(path)
    with pytest.raises(DatasetError, match="task list breaks"):
        unitarium.generate(path, unitarium.make_spec(**SPEC), workers=1)


# -- 6. one check for every path to a segment ------------------------------------------------------------------


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_no_segment_name_leads_out_of_the_dataset(a: Path, tmp_path: Path, where: str) -> None:
    """info used to read the header and count the size of whatever a segment name pointed at."""
    name = segments(a)[0]
    outside = tmp_path / "outside.db"
    shutil.copy(a / "shards" / name, outside)  # a file that would pass every other check
    if where == "symlink":
        (a / "shards" / name).unlink()
        (a / "shards" / name).symlink_to(outside)
    else:
        target = str(outside.with_suffix("")) if where == "absolute" else "../../outside"
        edit_sqlite(a / "manifest.db", f"UPDATE shards SET name = '{target}' WHERE name = '{name[:-3]}'")
    for args in (("info", a), ("show", a, "0"), ("verify", a), ("pack", a, tmp_path / "p.db")):
        assert "segment" in refused_by_cli(*args)
    with pytest.raises(DatasetDamagedError, match="segment"):
        unitarium.open(a).info()


# -- 10. a crafted schema cannot hang a command -----------------------------------------------------------------


def replace_by_view(path: Path, table: str, columns: str) -> None:
    edit_sqlite(
        path,
        f"ALTER TABLE {table} RENAME TO {table}_real",
        f"CREATE VIEW {table} AS {VIEW_SQL.format(columns=columns, table=table)}",
    )


@pytest.mark.parametrize(
    "where", ["file meta", "file tasks", "manifest meta", "manifest tasks", "segment trigger", "file index"]
)
def test_a_crafted_schema_is_refused_at_once(a: Path, tmp_path: Path, where: str) -> None:
    """A view counting to 4e8 in place of meta or tasks made info and show run until killed."""
    if where.startswith("file"):
        path = tmp_path / "f.db"
        unitarium.generate(path, unitarium.make_spec(**SPEC), workers=1)
        target = path
    else:
        path = a
        target = a / ("manifest.db" if where.startswith("manifest") else f"shards/{segments(a)[0]}")
    if where.endswith("meta"):
        replace_by_view(target, "meta", "key, value")
    elif where.endswith("tasks"):
        replace_by_view(target, "tasks", "task_id, level, first_id, count, candidates, shard")
    elif where.endswith("trigger"):
        edit_sqlite(
            target,
            "CREATE TABLE log (x)",
            "CREATE TRIGGER t AFTER INSERT ON blocks BEGIN INSERT INTO log VALUES (1); END",
        )
    else:
        edit_sqlite(target, "CREATE INDEX evil ON blocks (count + 1)")
    for args in (("info", path), ("show", path, "0")):
        t0 = time.monotonic()
        line = refused_by_cli(*args)
        assert time.monotonic() - t0 < 20 and "schema" in line, line


def test_a_metadata_query_has_a_step_budget() -> None:
    """Whatever passes the schema check, one metadata query cannot run for ever."""
    from unitarium._storage.sqlite import bounded

    conn = sqlite3.connect(":memory:")
    t0 = time.monotonic()
    with pytest.raises(DatasetDamagedError, match="ran past 1,000,000 SQLite steps"), bounded(conn, "x", 1_000_000):
        conn.execute(RUNAWAY).fetchall()
    assert time.monotonic() - t0 < 5
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the handler is removed afterwards


# -- older datasets ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_a_schema_2_dataset_still_reads_and_resumes(
    layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Schema 2 (no dataset id, checksum seed 0) is read and resumed as such, with the same content."""
    from unitarium._storage import manifest as _manifest

    spec = unitarium.make_spec(**SPEC)
    path = tmp_path / "old" if layout == "directory" else tmp_path / "old.db"
    target = f"{path}/" if layout == "directory" else path
    with monkeypatch.context() as m:
        m.setattr(_manifest, "new_dataset_id", lambda: None)
        unitarium.generate(target, spec, workers=2 if layout == "directory" else 1)
    manifest = path / "manifest.db" if layout == "directory" else path
    edit_sqlite(
        manifest,
        "DELETE FROM blocks WHERE task_id = (SELECT max(task_id) FROM tasks)",  # (a file's; a manifest has none)
        "DELETE FROM tasks WHERE task_id = (SELECT max(task_id) FROM tasks)",
        "UPDATE meta SET value = json_set(value, '$.complete', json('false')) WHERE key = 'state'",
    )
    fix_summary(manifest)  # as a crash before the last commit leaves it
    unitarium.generate(target, spec, workers=2 if layout == "directory" else 1)  # resumed by this unitarium
    with sqlite3.connect(manifest) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        fmt = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0])
    conn.close()
    assert "dataset_id" not in fmt
    fresh = tmp_path / "new.db"
    unitarium.generate(fresh, spec, workers=1)
    assert dataset_digest(path) == dataset_digest(fresh)
    with unitarium.open(path) as ds:
        assert ds.verify(sample=None).ok
    assert os.path.exists(manifest)
