"""The dataset schema, the checks every reader and writer runs before trusting a file, and its metadata
(a task's rows: :mod:`.rows`).

Schema (version :data:`SCHEMA_VERSION`, in ``PRAGMA user_version``; versions from
:data:`OLDEST_SCHEMA` are read and resumed; ``PRAGMA application_id`` is :data:`APPLICATION_ID`
so a foreign SQLite file is never mistaken for a dataset). A *dataset file* and the *manifest* of
a sharded directory share it::

    meta(key TEXT PRIMARY KEY, value TEXT)          JSON values: spec, format (with the dataset's
                                                    random id, dataset_id), state, summary
    gates(gate INTEGER PRIMARY KEY, name TEXT, qubits INTEGER, matrix BLOB)
    moves(code INTEGER PRIMARY KEY, text TEXT, gate INTEGER, qubits TEXT)
    tasks(task_id INTEGER PRIMARY KEY, level INTEGER, first_id INTEGER,
          count INTEGER, candidates INTEGER, shard INTEGER)   one row per committed task
    shards(shard INTEGER PRIMARY KEY, name TEXT UNIQUE, bytes INTEGER)
    blocks(task_id INTEGER PRIMARY KEY, count INTEGER, offsets BLOB, codes BLOB,
           unitaries BLOB, keys BLOB, checks BLOB)
    lookup(key INTEGER, task_id INTEGER, row INTEGER, PRIMARY KEY (key, task_id, row)) WITHOUT ROWID
    segment(dataset TEXT, first_task INTEGER, last_task INTEGER)     segments only (schema 3): whose
                                                    they are, and the range of the tasks they hold

Task ``t`` holds records ``first_id .. first_id + count - 1``; its block (layout and checksums:
:mod:`.._core.codec`) is the row ``task_id = t`` of ``blocks`` in shard ``shard``: 0 is the file itself
(a dataset file), any other the segment file ``shards/<name>.db`` of a directory
(:mod:`.shards`), which holds ``blocks``, ``lookup`` and ``segment`` only. ``lookup`` maps a coarse
key to row ``row`` of task ``task_id`` (unique datasets).

A dataset is untrusted input (datasets are shared): before the first read, :func:`check_schema`
refuses any table, index, view or trigger that is not exactly the schema's (a view where a table
belongs could run for ever), and :func:`check_structure` checks that the tasks are the prefix
they must be (ids ``0..n-1``, first ids the running sum of the counts) with one O(tasks) query.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._core.codec import BlockFormat, code_dtype, page_records
from .._core.kernels import KERNELS
from .._errors import DatasetDamagedError, NotADatasetError, SchemaVersionError, StorageError
from .._spec.spec import Spec
from .filemap import read_header
from .sqlite import (
    PAGE_SIZE,
    QUERY_STEPS,
    SMALL_PAGE_SIZE,
    bounded,
    check_regular,
    connect,
    path_text,
    sqlite_errors,
)

SCHEMA_VERSION = 3
"""3: a dataset id in ``meta.format``, bound into every block's checksums; segments name their
dataset and task range (table ``segment``)."""


OLDEST_SCHEMA = 2
"""The oldest schema still read and resumed (2: no dataset id, checksum seed 0)."""


APPLICATION_ID = 0x556E6974  # "Unit"


_SQLITE_HEADER = b"SQLite format 3\x00"


_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE gates (gate INTEGER PRIMARY KEY, name TEXT NOT NULL, qubits INTEGER NOT NULL, matrix BLOB NOT NULL);
CREATE TABLE moves (code INTEGER PRIMARY KEY, text TEXT NOT NULL, gate INTEGER NOT NULL, qubits TEXT NOT NULL);
CREATE TABLE tasks (
    task_id INTEGER PRIMARY KEY, level INTEGER NOT NULL, first_id INTEGER NOT NULL,
    count INTEGER NOT NULL, candidates INTEGER NOT NULL, shard INTEGER NOT NULL);
CREATE INDEX tasks_by_first_id ON tasks (first_id);
CREATE TABLE shards (shard INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, bytes INTEGER NOT NULL);
"""


_BLOCK_SCHEMA = """
CREATE TABLE blocks (
    task_id INTEGER PRIMARY KEY, count INTEGER NOT NULL, offsets BLOB NOT NULL, codes BLOB NOT NULL,
    unitaries BLOB, keys BLOB, checks BLOB NOT NULL);
CREATE TABLE lookup (key INTEGER NOT NULL, task_id INTEGER NOT NULL, row INTEGER NOT NULL,
    PRIMARY KEY (key, task_id, row)) WITHOUT ROWID;
"""


_SEGMENT_SCHEMA = """
CREATE TABLE segment (dataset TEXT NOT NULL, first_task INTEGER NOT NULL, last_task INTEGER NOT NULL);
"""


_AUTOINDEXES = {"sqlite_autoindex_meta_1": "meta", "sqlite_autoindex_shards_1": "shards"}


_STATISTICS = ("sqlite_stat1", "sqlite_stat4")
"""Tables ``ANALYZE`` adds (planner statistics: they change no result)."""


def _read_header(path: Path) -> tuple[bytes, int]:
    """The first 100 bytes (SQLite's header) and the size of a regular file."""
    check_regular(path)
    try:  # (a descriptor closed beside SQLite's locks would drop them: see _filemap.read_header)
        return read_header(path)
    except OSError as exc:
        raise StorageError(f"cannot read {path_text(path)}: {exc.strerror}") from exc


_LOOKS = 20  # looks at a file's header and length: a mismatch that moves between two was a commit under way


def check_file(path: Path) -> int:
    """Refuse a missing or irregular file, a non-SQLite file, a foreign SQLite file, or another
    schema (:func:`check_schema`); returns its schema version."""
    header, size = _read_header(path)
    if header[:16] != _SQLITE_HEADER:
        raise NotADatasetError(f"{path_text(path)} is not a unitarium dataset (not an SQLite file)")
    for _ in range(_LOOKS):
        if not _settled(path):  # SQLite first replays its WAL or rolls back its hot journal
            roll_back_hot_journal(path)
            break
        try:
            check_length(path, header, size)
            break
        except DatasetDamagedError:
            # a rollback-journal writer mid-commit at the header's read, done by _settled(): a cut file stays cut
            again = _read_header(path)
            if again == (header, size) and _settled(path):
                raise
            header, size = again
    with sqlite_errors(path, "opening"):
        conn = connect(path, readonly=True)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if app_id == APPLICATION_ID and OLDEST_SCHEMA <= version <= SCHEMA_VERSION:
                check_schema(conn, path, _SCHEMA + _BLOCK_SCHEMA)
        finally:
            conn.close()
    if app_id != APPLICATION_ID:
        raise NotADatasetError(f"{path_text(path)} is an SQLite database but not a unitarium dataset")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path_text(path)} has schema version {version}, newer than this unitarium's {SCHEMA_VERSION}: "
            "upgrade unitarium"
        )
    if version < OLDEST_SCHEMA:
        raise SchemaVersionError(
            f"{path_text(path)} has schema version {version} (unitarium 0.1: no block checksums), which this "
            f"unitarium (schema {SCHEMA_VERSION}) no longer reads: re-run its generate command into a new path "
            "to rebuild it (or read it with unitarium 0.1)"
        )
    return int(version)


def check_schema(conn: sqlite3.Connection, path: Path, expected: str) -> None:
    """Refuse a file whose schema is not exactly ``expected`` (CREATE statements): no other table,
    no view, trigger or virtual table, no table or index of another definition (a view where a
    table belongs, or a generated column, runs code on every read). Reads ``sqlite_master`` only."""
    want = {name: sql for name, sql in _statements(expected)}
    with sqlite_errors(path, "opening"), bounded(conn, path):
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    seen = set()
    for kind, name, table, sql in rows:
        if kind == "table" and name in _STATISTICS:
            continue
        if kind == "index" and sql is None and _AUTOINDEXES.get(name) == table and table in want:
            continue
        text = " ".join(sql.split()) if isinstance(sql, str) else None
        if name not in want or text != want[name] or kind != ("index" if text.startswith("CREATE INDEX") else "table"):
            raise DatasetDamagedError(
                f"{path_text(path)} is not a unitarium dataset as written: its schema has {kind} {name!r} "
                "where unitarium's has none of that definition (crafted or edited: not read)"
            )
        seen.add(name)
    missing = sorted(set(want) - seen - {"tasks_by_first_id"})
    if missing:
        raise DatasetDamagedError(f"{path_text(path)} is damaged: it has no {missing[0]!r} table")


def _statements(schema: str) -> list[tuple[str, str]]:
    """``(name, CREATE statement with single spaces)`` of each statement of ``schema``."""
    out = []
    for statement in filter(str.strip, schema.split(";")):
        text = " ".join(statement.split())
        out.append((text.split(" ")[2], text))
    return out


_STRUCTURE = """
SELECT t.task_id, t.first_id, t.count, t.shard, p.first_id + p.count FROM tasks t
LEFT JOIN tasks p ON p.task_id = t.task_id - 1
WHERE t.first_id IS NOT coalesce(p.first_id + p.count, 0) OR (p.task_id IS NULL AND t.task_id != 0)
   OR t.count != CAST(t.count AS INTEGER) OR t.count < 0
   OR (t.count > 0 AND (t.shard = 0) = ?)
   OR (t.shard != 0 AND NOT EXISTS (SELECT 1 FROM shards s WHERE s.shard = t.shard))
LIMIT 1
"""
"""The first task that breaks the prefix: every task but task 0 follows its predecessor (task id - 1),
starting where it ends (task 0 at 0), with integer counts (so integer first ids), its block where the
layout puts blocks. (A self-join on the primary key: SQLite 3.40's window functions took 2-4x longer
on 250k tasks; CAST rather than typeof(), a function call per row, saves another 20%.)"""


def check_structure(conn: sqlite3.Connection, path: str | Path, *, directory: bool) -> None:
    """Refuse tasks that are not the committed prefix: task ids ``0..n-1``, each first id the sum
    of the counts before it, each block in the file itself (a file) or in a listed segment (a
    directory), and a summary that agrees. One O(tasks) query, in one read snapshot."""
    with sqlite_errors(path, "reading"):
        conn.execute("BEGIN")
        try:
            with bounded(conn, path):
                (tasks,) = conn.execute("SELECT count(*) FROM tasks").fetchone()
            with bounded(conn, path, QUERY_STEPS + 200 * int(tasks)):
                bad = conn.execute(_STRUCTURE, (directory,)).fetchone()
                last = conn.execute(
                    "SELECT task_id, first_id + count FROM tasks ORDER BY task_id DESC LIMIT 1"
                ).fetchone()
                summary = conn.execute("SELECT value FROM meta WHERE key = 'summary'").fetchone()
        finally:
            conn.execute("COMMIT")
    if bad is not None:
        task_id, first, count, shard, follows = bad
        raise DatasetDamagedError(
            f"{path_text(path)} is damaged: its task list breaks at task {task_id!r} (first id {first!r}, "
            f"{count!r} records, shard {shard!r}; the task before ends at {follows!r}): not read"
        )
    total = 0 if last is None else last[1]  # the chain holds: the last task ends where the records do
    try:
        said = load_json(summary[0]) if summary else None
    except ValueError:
        said = None
    if not isinstance(said, dict) or said.get("records") != total or said.get("tasks") != tasks:
        records = said.get("records") if isinstance(said, dict) else None
        raise DatasetDamagedError(
            f"{path_text(path)} is damaged: its summary says {records!r} records, its tasks hold {total}: not read"
        )


def _settled(path: Path) -> bool:
    """Whether the database file alone holds the last commit: no non-empty ``-wal`` (frames not yet
    checkpointed) and no non-empty ``-journal`` (a hot journal a crash left, rolled back on open).
    Only then must the file be as long as its header says."""
    for suffix in ("-wal", "-journal"):
        try:
            if os.stat(f"{os.fsdecode(path)}{suffix}").st_size > 0:
                return False
        except OSError:
            continue
    return True


def roll_back_hot_journal(path: Path) -> None:
    """Let SQLite roll back the unfinished commit of a writer that was killed in rollback-journal mode
    (``--journal delete``): its hot ``-journal`` holds the pages the commit had begun to overwrite.
    Only a connection that may write does that (a read-only one refuses the file: "attempt to write a
    readonly database"), so a reader opens one for a moment and reads the header; SQLite tells a hot
    journal from a live writer's by its locks, so this changes nothing while a writer lives, and what
    it restores is the last commit, as a resumed run would. Where the file cannot be written, one
    clear error says what to do (:data:`.sqlite.SQLITE_ERRORS`, action "recovering")."""
    journal = Path(f"{os.fsdecode(path)}-journal")
    try:
        if journal.stat().st_size == 0:
            return
    except OSError:
        return
    with sqlite_errors(path, "recovering"):
        conn = connect(path, readonly=False, journal=None)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        finally:
            conn.close()


def check_length(path: Path, header: bytes, size: int) -> None:
    """Refuse a database file shorter than its own header says (truncated: a copy cut short, a
    full disk while copying). SQLite would read the missing pages as zeros or call the file
    malformed only when a query reaches them; the header's page count (bytes 28..31, valid when
    bytes 92..95 equal the change counter at 24..27) is what the file held at its last commit
    or checkpoint, and the file never shrinks (no VACUUM)."""
    if len(header) < 100:
        raise DatasetDamagedError(f"{path_text(path)} is truncated: {size} bytes, not even an SQLite header")
    page = int.from_bytes(header[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(header[28:32], "big")
    if header[24:28] == header[92:96] and size < pages * page:
        raise DatasetDamagedError(
            f"{path_text(path)} is truncated: it holds {size:,} bytes but its header says {pages * page:,}; "
            "restore it from a complete copy, or re-run its generate command into a new path"
        )


def check_segment(path: Path) -> None:
    """Refuse a segment file of a directory that is missing, irregular, not SQLite or truncated."""
    header, size = _read_header(path)
    if header[:16] != _SQLITE_HEADER:
        raise DatasetDamagedError(f"segment {path_text(path)} is not an SQLite file (overwritten?)")
    check_length(path, header, size)


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A checked read-only connection to a dataset."""
    path = Path(path)
    check_file(path)
    with sqlite_errors(path, "opening"):
        return connect(path, readonly=True)


def read_meta(conn: sqlite3.Connection) -> dict[str, Any]:
    """All ``meta`` entries, JSON-decoded; ValueError if one is not JSON (or absurdly nested)."""
    return {k: load_json(v) for k, v in conn.execute("SELECT key, value FROM meta")}


def damaged_meta(path: str | Path, detail: object) -> DatasetDamagedError:
    """The error for a dataset whose ``meta`` table cannot be used."""
    return DatasetDamagedError(f"{path_text(path)} has a damaged meta table: {detail}")


def load_json(text: object) -> Any:
    """``json.loads`` for what a file holds: ValueError for anything but sane JSON text."""
    if not isinstance(text, str):
        raise ValueError(f"expected JSON text, found {type(text).__name__}")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def page_size(fmt: BlockFormat) -> int:
    """SQLite page size for a dataset of this block format (new files only)."""
    return PAGE_SIZE if fmt.stored_unitaries else SMALL_PAGE_SIZE


def block_format(spec: Spec, dataset: bytes | None = None) -> BlockFormat:
    """The block layout of a dataset of ``spec`` whose id is ``dataset`` (None: schema 2)."""
    udt = spec.np_dtype.newbyteorder("<")
    u_bytes = spec.gateset.dim**2 * udt.itemsize if spec.stored_unitaries else 0
    return BlockFormat(
        dim=spec.gateset.dim,
        unitary_dtype=udt,
        code_dtype=code_dtype(len(spec.gateset.moves)),
        stored_unitaries=spec.stored_unitaries,
        keyed=spec.unique,
        page=page_records(u_bytes, spec.unique),
        dataset=dataset,
    )


def new_dataset_id() -> bytes:
    """A new dataset's id: 16 random bytes."""
    return secrets.token_bytes(16)


def dataset_id(path: str | Path, fmt: Any, version: int) -> bytes | None:
    """The dataset id in ``meta.format`` (schema 3; None in schema 2), checked."""
    text = fmt.get("dataset_id") if isinstance(fmt, dict) else None
    if version < 3:
        return None
    if not (isinstance(text, str) and re.fullmatch(r"[0-9a-f]{32}", text)):
        raise damaged_meta(path, f"format dataset_id {text!r} is not 32 hex digits")
    return bytes.fromhex(text)


def format_json(fmt: BlockFormat, layout: str) -> dict[str, Any]:
    """``meta.format``: everything a reader needs to decode blocks without unitarium's code."""
    return {
        "layout": layout,
        "dim": fmt.dim,
        "unitary_dtype": fmt.unitary_dtype.name,
        "unitaries": "stored" if fmt.stored_unitaries else "computed",
        "code_dtype": fmt.code_dtype.name,
        "offset_dtype": "uint32",
        "keys": "dedup128" if fmt.keyed else None,
        "page_records": fmt.page,
        "checksum": "xxh3_64 per page, parts chained through the seed, first seed xxh3_64(dataset id + task id)",
        "byte_order": "little",
        "qubit_order": "qiskit (little-endian: qubit 0 is the least significant bit)",
        **({} if fmt.dataset is None else {"dataset_id": fmt.dataset.hex()}),
    }


def create_tables(conn: sqlite3.Connection, *, blocks: bool, manifest: bool, segment: bool = False) -> None:
    """The schema's tables: the manifest's (meta, gates, moves, tasks, shards) and/or the blocks',
    and a segment's identity table."""
    text = (_SCHEMA if manifest else "") + (_BLOCK_SCHEMA if blocks else "") + (_SEGMENT_SCHEMA if segment else "")
    for statement in filter(str.strip, text.split(";")):
        conn.execute(statement)


def segment_schema(dataset: bytes | None) -> str:
    """The schema of a segment of the dataset of id ``dataset`` (None: schema 2, no identity table)."""
    return _BLOCK_SCHEMA + (_SEGMENT_SCHEMA if dataset is not None else "")


def write_header(conn: sqlite3.Connection, spec: Spec, layout: str, fmt: BlockFormat) -> None:
    """The header rows of a new dataset file or manifest: pragmas, meta, gates and moves."""
    gs = spec.gateset
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}" if fmt.dataset else f"PRAGMA user_version={OLDEST_SCHEMA}")
    rows = [
        ("spec", spec.to_json()),
        ("format", format_json(fmt, layout)),
        ("state", {"complete": False, "runs": 0}),
        ("summary", {"records": 0, "tasks": 0, "candidates": 0, "lengths": {}}),
    ]
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in rows])
    conn.executemany(
        "INSERT INTO gates VALUES (?, ?, ?, ?)",
        [(i, g.name, g.num_qubits, g.matrix.astype("<c16").tobytes()) for i, g in enumerate(gs.gates)],
    )
    conn.executemany(
        "INSERT INTO moves VALUES (?, ?, ?, ?)",
        [(i, m.text, m.gate, " ".join(map(str, m.qubits))) for i, m in enumerate(gs.moves)],
    )


def update_summary(conn: sqlite3.Connection, entries: Sequence[tuple[int, int, dict[int, int]]]) -> int:
    """Add committed tasks ``(records, candidates, length counts)`` to ``meta.summary`` (in the
    caller's transaction); returns the number of records before them (the next first id)."""
    (text,) = conn.execute("SELECT value FROM meta WHERE key = 'summary'").fetchone()
    summary = json.loads(text)
    before = int(summary["records"])
    lengths = summary["lengths"]
    for records, candidates, counts in entries:
        summary["records"] += records
        summary["candidates"] += candidates
        summary["tasks"] += 1
        for length, n in counts.items():
            lengths[str(length)] = lengths.get(str(length), 0) + n
    conn.execute("UPDATE meta SET value = ? WHERE key = 'summary'", (json.dumps(summary),))
    return before


def merge_state(conn: sqlite3.Connection, **state: Any) -> dict[str, Any]:
    """Merge ``state`` into ``meta.state`` (in the caller's transaction); returns the new state."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'state'").fetchone()
    merged = {**json.loads(row[0]), **state}
    conn.execute("UPDATE meta SET value = ? WHERE key = 'state'", (json.dumps(merged),))
    return merged


def mismatch_message(path: Path, stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    diffs = [k for k in sorted(set(stored) | set(wanted)) if stored.get(k) != wanted.get(k)]
    if diffs == ["kernel_version"]:
        return (
            f"{path_text(path)} was made by kernel version {json.dumps(stored.get('kernel_version'))}, which this "
            f"unitarium no longer computes (it resumes versions {', '.join(map(str, KERNELS))}): finish it with the "
            "unitarium that made it, or write to a new path (it stays readable)"
        )
    parts = [f"{k}: file has {json.dumps(stored.get(k))}, asked {json.dumps(wanted.get(k))}" for k in diffs[:3]]
    return (
        f"{path_text(path)} holds a dataset of another spec ({'; '.join(parts)}): "
        "re-run with the file's options to resume, or write to a new file"
    )
