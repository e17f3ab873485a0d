"""The SQLite store: schema, connection settings, the transaction helper, and the file writer.

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
:mod:`._codec`) is the row ``task_id = t`` of ``blocks`` in shard ``shard``: 0 is the file itself
(a dataset file), any other the segment file ``shards/<name>.db`` of a directory
(:mod:`._shards`), which holds ``blocks``, ``lookup`` and ``segment`` only. ``lookup`` maps a coarse
key to row ``row`` of task ``task_id`` (unique datasets).

A dataset is untrusted input (datasets are shared): before the first read, :func:`check_schema`
refuses any table, index, view or trigger that is not exactly the schema's (a view where a table
belongs could run for ever), every connection runs with ``trusted_schema=OFF`` and
``cell_size_check=ON``, metadata queries run under a budget of SQLite steps (:func:`bounded`),
and :func:`check_structure` checks that the tasks are the prefix they must be (ids ``0..n-1``,
first ids the running sum of the counts) with one O(tasks) query.

Settings (one place, :func:`connect`): WAL, ``synchronous=NORMAL`` (a power cut may
drop the last commits but never corrupts), 64 KiB pages, a busy timeout, and writes in
``BEGIN IMMEDIATE`` transactions through :func:`atomic`. Exactly one process writes a
dataset at a time: the writer holds an exclusive ``flock`` on the database file (a directory:
on ``<dir>/lock``) for the whole run, so a second writer is refused at once instead of
meeting "database is locked".

WAL needs memory shared by all processes that open the file, which network filesystems
(NFS, SMB, sshfs...) do not provide: there the writer refuses WAL and asks for the
``delete`` journal (:data:`JOURNAL_MODES`), and locks ``<file>-lock`` instead of the
file itself (over NFS, ``flock`` becomes a whole-file POSIX lock that would block
SQLite's own locks). The journal mode is not part of the spec: either mode resumes the other's file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import resource
import secrets
import shutil
import sqlite3
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from .._core.codec import BlockFormat, code_dtype, encode, page_records
from .._errors import (
    DatasetBusyError,
    DatasetDamagedError,
    DatasetError,
    DatasetMissingError,
    NotADatasetError,
    SchemaVersionError,
    SpecError,
    SpecMismatchError,
    StorageError,
)
from .._spec.sources import TaskResult
from .._spec.spec import Spec

__all__ = [
    "APPLICATION_ID",
    "JOURNAL_MODES",
    "NETWORK_FILESYSTEMS",
    "OLDEST_SCHEMA",
    "QUERY_STEPS",
    "SCHEMA_VERSION",
    "SQLITE_ERRORS",
    "Writer",
    "atomic",
    "bounded",
    "check_schema",
    "check_structure",
    "connect",
    "filesystem_type",
    "open_readonly",
    "parse_mountinfo",
    "sqlite_errors",
    "storage_error",
]

SCHEMA_VERSION = 3
"""3: a dataset id in ``meta.format``, bound into every block's checksums; segments name their
dataset and task range (table ``segment``)."""
OLDEST_SCHEMA = 2
"""The oldest schema still read and resumed (2: no dataset id, checksum seed 0)."""
QUERY_STEPS = 50_000_000
"""SQLite virtual-machine steps one metadata query may take (~1 s): more means a crafted file."""
_STEPS_PER_CHECK = 10_000
APPLICATION_ID = 0x556E6974  # "Unit"
BUSY_TIMEOUT_S = 30.0
PAGE_SIZE = 65536
SMALL_PAGE_SIZE = 4096
"""Page size of datasets without stored unitaries: their blocks are ~64 KiB, and the partly
filled last page of each block's overflow chain costs half a page per block on average."""
READER_MMAP_BYTES = 1_099_511_627_776  # 1 TiB
"""Memory-map limit for readers (SQLite caps it at its build's maximum, 2 GiB by default)."""
JOURNAL_MODES = ("wal", "delete")
"""``wal`` (default): readers never wait, ``synchronous=NORMAL``; local filesystems only.
``delete``: a rollback journal with ``synchronous=FULL``, for network filesystems; readers
wait while a transaction commits."""
NETWORK_FILESYSTEMS = frozenset(
    {
        *("nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs", "lustre", "gpfs"),
        *("beegfs", "davfs", "fuse.sshfs", "fuse.glusterfs", "fuse.cephfs", "fuse.s3fs", "fuse.gcsfuse"),
        *("fuse.rclone", "fuse.davfs2"),
    }
)
"""Filesystem types (as in ``/proc/self/mountinfo``) where WAL is refused."""
_NO_SPACE = (
    *("SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_TRUNCATE"),
    *("SQLITE_IOERR_SHMOPEN", "SQLITE_IOERR_SHMSIZE"),
)
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


def _named(*prefixes: str) -> Callable[[str, str], bool]:
    """A predicate of the table: the error's name starts with one of ``prefixes``."""
    return lambda name, action: name.startswith(prefixes)


def _busy(exc: sqlite3.Error, path: Path, action: str, name: str) -> DatasetError:
    return DatasetBusyError(f"{path_text(path)} stayed locked by another process while {action} it: try again")


def _not_sqlite(exc: sqlite3.Error, path: Path, action: str, name: str) -> DatasetError:
    return NotADatasetError(f"{path_text(path)} is not an SQLite database")


def _corrupt(exc: sqlite3.Error, path: Path, action: str, name: str) -> DatasetError:
    return DatasetDamagedError(
        f"{path_text(path)} is damaged: SQLite finds it malformed while {action} it ({exc}): not read; restore it "
        "from a complete copy, or re-run its generate command into a new path"
    )


def _shm_directory(exc: sqlite3.Error, path: Path, action: str, name: str) -> DatasetError:
    return StorageError(
        f"cannot read {path_text(path)} here: readers of a WAL dataset create {path.name}-shm beside it, and "
        "this directory is not writable: make it writable, or convert the dataset once by re-running its "
        "generate command with --journal delete (such datasets read from read-only places)"
    )


def _refused(exc: sqlite3.Error, path: Path, action: str, name: str) -> DatasetError:
    flags = os.O_RDONLY if name.startswith("SQLITE_CANTOPEN") else os.O_RDWR
    reason = _os_reason(path, flags) or f"{exc}: check the permissions of it, its -wal/-shm and its directory"
    return StorageError(f"cannot open {path_text(path)} while {action} it: {reason}")


def _other(exc: sqlite3.Error, path: Path, action: str, name: str) -> DatasetError:
    return StorageError(f"storage error while {action} {path_text(path)}: {exc}")


_Factory = Callable[[sqlite3.Error, Path, str, str], DatasetError]
SQLITE_ERRORS: tuple[tuple[Callable[[str, str], bool], _Factory], ...] = (
    (lambda name, action: name in _NO_SPACE, lambda exc, path, action, name: _no_space(name, path, action)),
    (_named("SQLITE_BUSY", "SQLITE_LOCKED"), _busy),
    (_named("SQLITE_NOTADB"), _not_sqlite),
    (_named("SQLITE_CORRUPT"), _corrupt),
    (lambda name, action: name == "SQLITE_READONLY_DIRECTORY" and action != "writing", _shm_directory),
    (_named("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM"), _refused),
    (lambda name, action: True, _other),
)
"""The one mapping of SQLite's errors to unitarium's, first matching row wins: ``(predicate on
(sqlite_errorname, action), factory(exc, path, action, name))``. A full disk, quota or file-size
limit: :class:`StorageError` naming what may be full; busy or locked: :class:`DatasetBusyError`;
not a database: :class:`NotADatasetError`; malformed: :class:`DatasetDamagedError`; refused
(read-only, cannot open, permission): :class:`StorageError` with the OS's reason; anything else:
:class:`StorageError`. Applied by :func:`storage_error` (and so :func:`sqlite_errors`) only."""


def storage_error(exc: sqlite3.Error, path: str | Path, action: str) -> DatasetError:
    """``exc`` mapped by :data:`SQLITE_ERRORS` (for a handler that does more than map: raise it
    ``from exc``; one that only maps is :func:`sqlite_errors`)."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    for matches, make in SQLITE_ERRORS:
        if matches(name, action):
            return make(exc, Path(path), action, name)
    raise AssertionError("the last row of SQLITE_ERRORS matches every error")  # pragma: no cover


@contextlib.contextmanager
def sqlite_errors(path: str | Path, action: str) -> Iterator[None]:
    """Every SQLite error raised in the block, mapped by :data:`SQLITE_ERRORS` (``action``:
    "opening", "reading", "writing", "creating": the message's verb) and raised from it."""
    try:
        yield
    except sqlite3.Error as exc:
        raise storage_error(exc, path, action) from exc


def _os_reason(path: Path, flags: int) -> str | None:
    """Why the OS refuses to open ``path`` (SQLite's errors do not say): "Permission denied",
    "Too many open files"...; None if it opens."""
    try:
        os.close(os.open(path, flags))
    except OSError as exc:
        return exc.strerror
    return None


def _no_space(name: str, path: Path, action: str) -> StorageError:
    """SQLite reports a full disk (ENOSPC) as SQLITE_FULL but a quota or file-size limit
    (EDQUOT, EFBIG) as a write error: name what may be full, and what was kept."""
    facts = []
    with contextlib.suppress(OSError):
        facts.append(f"{shutil.disk_usage(path.absolute().parent).free / 2**20:,.1f} MiB free")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        facts.append(f"file size limit {limit:,} bytes, see ulimit -f")
    if name == "SQLITE_FULL":
        what = "the disk is full"
    elif name.startswith("SQLITE_IOERR_SHM"):
        what = f"cannot set up its shared-memory file {path.name}-shm (no space, file size limit or permissions)"
    else:
        what = "no space (disk full, quota, file size limit) or I/O error"
    then = (
        "nothing was created: make room and try again"
        if action == "creating"
        else "everything committed is kept: make room and re-run the same command to resume"
    )
    return StorageError(f"{action} {path_text(path)} failed: {what} ({'; '.join(facts)}); {then}")


def uri(path: str | Path, mode: str, *, immutable: bool = False) -> str:
    """The ``file:`` URI of ``path`` (any bytes: paths need not be UTF-8 on Linux)."""
    raw = os.fsencode(Path(path).absolute())
    return f"file:{quote(raw)}?mode={mode}" + ("&immutable=1" if immutable else "")


def connect(
    path: str | Path, *, readonly: bool, journal: str = "wal", immutable: bool = False, page_size: int = PAGE_SIZE
) -> sqlite3.Connection:
    """Open a connection with the project's settings (autocommit; use :func:`atomic`).
    A writable one also sets the page size (new files), ``journal`` and its ``synchronous``.
    ``immutable`` (read-only): a file that never changes again (a finished shard): no locks."""
    conn = sqlite3.connect(
        uri(path, "ro" if readonly else "rw", immutable=immutable),
        uri=True,
        isolation_level=None,
        timeout=BUSY_TIMEOUT_S,
        check_same_thread=False,
    )
    # A dataset is untrusted input: functions in its schema never run, damaged cells are caught.
    conn.execute("PRAGMA trusted_schema=OFF")
    conn.execute("PRAGMA cell_size_check=ON")
    if readonly:
        # Readers map the file (pages come from the OS page cache, shared by every reader, no
        # copy per process): random ds[i] ~2x faster than through SQLite's 2 MB default cache.
        # Safe here because the writer never shrinks the file (no VACUUM, no truncation).
        conn.execute(f"PRAGMA mmap_size={READER_MMAP_BYTES}")
    else:
        conn.execute(
            f"PRAGMA page_size={SMALL_PAGE_SIZE}" if page_size == SMALL_PAGE_SIZE else f"PRAGMA page_size={PAGE_SIZE}"
        )
        conn.execute("PRAGMA journal_mode=WAL" if journal == "wal" else "PRAGMA journal_mode=DELETE")
        conn.execute("PRAGMA synchronous=NORMAL" if journal == "wal" else "PRAGMA synchronous=FULL")
        conn.execute("PRAGMA cache_size=-65536")
    return conn


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """``(mount point, filesystem type)`` for each line of ``/proc/self/mountinfo``, in order.

    A line reads ``ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE SOURCE
    SUPER_OPTIONS``; octal escapes (``\\040`` for a space) are decoded."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) > 7 and "-" in fields[6:-1]:
            kind = fields[fields.index("-", 6) + 1]
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            mounts.append((point, kind))
    return mounts


def filesystem_type(path: str | Path, mountinfo: str | None = None) -> str | None:
    """The type of the filesystem holding ``path`` (``"ext4"``, ``"nfs4"``...): that of
    the last-mounted, longest mount point containing it. ``mountinfo`` defaults to
    ``/proc/self/mountinfo``; None where there is none (not Linux)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    target = os.path.realpath(path)
    best, found = -1, None
    for point, kind in parse_mountinfo(mountinfo):
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:
            best, found = len(point), kind
    return found


@contextlib.contextmanager
def atomic(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def check_regular(path: Path) -> None:
    """Refuse what is not a regular file before anything opens it (a FIFO would hang every
    reader, a device or socket is never a dataset)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise DatasetMissingError(f"{path_text(path)} is a symbolic link to nothing: check the path") from None
        raise DatasetMissingError(f"no dataset at {path_text(path)}: check the path") from None
    except OSError as exc:
        raise StorageError(f"cannot access {path_text(path)}: {exc.strerror}") from exc
    if stat.S_ISDIR(mode):
        raise NotADatasetError(f"{path_text(path)} is a directory, not a dataset file")
    if not stat.S_ISREG(mode):
        raise NotADatasetError(f"{path_text(path)} is not a regular file (a FIFO, device or socket)")


def path_text(path: str | Path) -> str:
    """``path`` quoted for a message (bytes that are not UTF-8 shown escaped, never an error)."""
    # repr shows an undecodable byte 0xE9 as \udce9 (its surrogate escape): show it as \xe9
    return re.sub(r"\\udc([89a-f][0-9a-f])", r"\\x\1", repr(os.fsdecode(path)))


def _read_header(path: Path) -> tuple[bytes, int]:
    """The first 100 bytes (SQLite's header) and the size of a regular file."""
    check_regular(path)
    try:
        with path.open("rb") as f:
            return f.read(100), os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise StorageError(f"cannot read {path_text(path)}: {exc.strerror}") from exc


def check_file(path: Path) -> int:
    """Refuse a missing or irregular file, a non-SQLite file, a foreign SQLite file, or another
    schema (:func:`check_schema`); returns its schema version."""
    header, size = _read_header(path)
    if header[:16] != _SQLITE_HEADER:
        raise NotADatasetError(f"{path_text(path)} is not a unitarium dataset (not an SQLite file)")
    if _settled(path):  # else SQLite first replays its WAL or rolls back its hot journal
        check_length(path, header, size)
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


@contextlib.contextmanager
def bounded(conn: sqlite3.Connection, path: str | Path, steps: int = QUERY_STEPS) -> Iterator[sqlite3.Connection]:
    """Run the queries of the block (fetch inside it) under a budget of ``steps`` SQLite
    virtual-machine steps: past it, a :class:`DatasetDamagedError` (a crafted file, not a slow disk)."""
    calls = 0
    limit = max(1, steps // _STEPS_PER_CHECK)

    def tick() -> int:
        nonlocal calls
        calls += 1
        return int(calls > limit)

    conn.set_progress_handler(tick, _STEPS_PER_CHECK)
    try:
        yield conn
    except sqlite3.OperationalError as exc:
        if calls > limit:
            raise DatasetDamagedError(
                f"{path_text(path)}: a metadata query ran past {steps:,} SQLite steps, which no dataset of "
                "unitarium needs (crafted or damaged: not read further)"
            ) from exc
        raise
    finally:
        conn.set_progress_handler(None, 0)


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


def insert_block(conn: sqlite3.Connection, fmt: BlockFormat, r: TaskResult) -> None:
    """Task ``r``'s block (and lookup rows, in unique mode) into ``conn``'s ``blocks`` table."""
    if not r.count:
        return
    blobs = encode(fmt, r.task_id, r.offsets, r.codes, r.unitaries, r.dedup)
    conn.execute(
        "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?)",
        (r.task_id, r.count, blobs["offsets"], blobs["codes"], blobs["unitaries"], blobs["keys"], blobs["checks"]),
    )
    if r.lookup is not None:
        rows = ((key, r.task_id, j) for j, key in enumerate(r.lookup.tolist()))
        conn.executemany("INSERT INTO lookup VALUES (?, ?, ?)", rows)


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


def remove_stale_temporaries(directory: Path, name: str) -> None:
    """Delete ``.<name>.<pid>.<hex>.tmp`` files left by creators that died (kill -9 while
    creating): only those whose process no longer exists."""
    pattern = re.compile(rf"\.{re.escape(name)}\.(\d+)\.[0-9a-f]+\.tmp")
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            match = pattern.fullmatch(entry.name)
            if match and not _alive(int(match.group(1))) and _unlocked(entry):
                with contextlib.suppress(OSError):
                    entry.unlink()


def remove_abandoned(directory: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Delete the entries of ``directory`` (files or directory trees) whose name matches ``pattern``
    (group 1: the pid of the process that made it) when that process is gone and nobody holds the
    entry's ``flock``: temporaries of a process killed with -9. Returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            match = pattern.fullmatch(entry.name)
            if not match or _alive(int(match.group(1))) or not _lock_free(entry):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
            removed.append(entry)
    return removed


def _lock_free(path: Path, *, directories: bool = True) -> bool:
    """Whether nobody holds the ``flock`` of ``path``, a regular file or (``directories``) a
    directory; never through a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or (directories and stat.S_ISDIR(mode))):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the lock
    return True


def _unlocked(path: Path) -> bool:
    """Whether nobody holds the ``flock`` of ``path``, a regular file (a creator holds its
    temporary's lock until it is linked into place: this also protects one whose pid we cannot see,
    in another PID namespace on the same filesystem)."""
    return _lock_free(path, directories=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Writer:
    """The single writer of a dataset file. Creates or validates the file, holds its
    write lock until :meth:`close`, and commits whole tasks atomically."""

    def __init__(
        self,
        path: str | Path,
        spec: Spec,
        *,
        journal: str = "wal",
        layout: str = "file",
        fmt: BlockFormat | None = None,
    ) -> None:
        """``fmt``: the block format of a new file (``pack``: the source's, id included); else one
        with a new id. An existing file keeps its own."""
        self.path = Path(path)
        self.spec = spec
        self.fmt = fmt or block_format(spec, new_dataset_id())
        self.journal = journal
        self.layout = layout
        self.network = False
        self._sidecar = self._lock_sidecar() if self._on_network_filesystem() else None
        try:
            fd = self._create() if not self._exists() else None
            self._fd = self._lock_existing() if fd is None else fd
        except BaseException:
            self._unlock_sidecar()
            raise
        try:
            self.conn = self._open()
        except BaseException:
            os.close(self._fd)
            self._unlock_sidecar()
            raise

    def _exists(self) -> bool:
        try:
            return self.path.exists()
        except OSError as exc:  # e.g. a directory on the way that we may not enter
            raise StorageError(f"cannot access {path_text(self.path)}: {exc.strerror}") from exc

    def _on_network_filesystem(self) -> bool:
        """Check ``journal`` against the filesystem: WAL is refused on a network one."""
        if self.journal not in JOURNAL_MODES:
            raise SpecError(f"journal mode {self.journal!r} is not supported: use {' or '.join(JOURNAL_MODES)}")
        kind = filesystem_type(self.path.absolute().parent)
        if kind not in NETWORK_FILESYSTEMS:
            return False
        self.network = True
        if self.journal == "wal":
            raise StorageError(
                f"{path_text(self.path)} is on a network filesystem ({kind}): SQLite's WAL mode needs memory shared "
                "between processes, which it cannot provide there; use --journal delete (a rollback journal: "
                "safe there, but readers wait while a task commits)"
            )
        return True

    def _lock_sidecar(self) -> int:
        """On a network filesystem: hold ``<path>-lock`` rather than ``flock`` the database."""
        try:
            fd = os.open(f"{self.path}-lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot create the lock file {path_text(self.path)}-lock: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._busy() from None
        return fd

    def _unlock_sidecar(self) -> None:
        if self._sidecar is not None:
            os.close(self._sidecar)
            self._sidecar = None

    def _busy(self) -> DatasetBusyError:
        return DatasetBusyError(
            f"another unitarium process is writing {path_text(self.path)}: wait for it to finish or use another file"
        )

    def _create(self) -> int | None:
        """Build a new dataset beside ``path`` and hard-link it into place, holding its
        lock: readers never see a half-made file, a failure leaves nothing behind, and of
        two racing creators one wins. None when ``path`` appeared meanwhile."""
        parent = self.path.absolute().parent
        if not parent.is_dir():
            raise StorageError(
                f"cannot create {path_text(self.path)}: {path_text(parent)} is not an existing directory"
            )
        remove_stale_temporaries(parent, self.path.name)
        tmp = parent / f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot create {path_text(self.path)}: {exc.strerror}") from exc
        try:
            if self._sidecar is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._initialise(tmp)
            os.link(tmp, self.path)
        except FileExistsError:
            os.close(fd)
            return None
        except StorageError:
            os.close(fd)
            raise
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"cannot create {path_text(self.path)}: {exc.strerror or exc}") from exc
        except BaseException:
            os.close(fd)
            raise
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return fd

    def _lock_existing(self) -> int:
        check_regular(self.path)
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError as exc:
            raise StorageError(f"cannot open {path_text(self.path)} for writing: {exc.strerror}") from exc
        try:
            if self._sidecar is None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._busy() from None
        return fd

    def _open(self) -> sqlite3.Connection:
        version = check_file(self.path)
        with sqlite_errors(self.path, "opening"):
            conn = connect(self.path, readonly=True)
            try:
                try:
                    with bounded(conn, self.path):
                        meta = read_meta(conn)
                except DatasetError:
                    raise
                except ValueError as exc:  # not JSON
                    raise damaged_meta(self.path, exc) from exc
                check_structure(conn, self.path, directory=self.layout == "directory")
            finally:
                conn.close()
        stored = meta.get("spec")
        if stored != self.spec.to_json():
            raise SpecMismatchError(mismatch_message(self.path, stored or {}, self.spec.to_json()))
        self.fmt = block_format(self.spec, dataset_id(self.path, meta.get("format"), version))
        with sqlite_errors(self.path, "opening"):
            return connect(self.path, readonly=False, journal=self.journal)

    def _initialise(self, path: Path) -> None:
        """Schema, header rows and settings into the new (still private) file ``path``."""
        with sqlite_errors(self.path, "creating"):
            conn = connect(path, readonly=False, journal=self.journal, page_size=page_size(self.fmt))
            try:
                with atomic(conn):
                    create_tables(conn, blocks=True, manifest=True)
                    write_header(conn, self.spec, self.layout, self.fmt)
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()

    # -- state -------------------------------------------------------------------------

    def tasks_done(self) -> int:
        """How many tasks are committed (always tasks ``0 .. n-1``: commits are in order)."""
        with sqlite_errors(self.path, "reading"):
            return int(self.conn.execute("SELECT count(*) FROM tasks").fetchone()[0])

    def next_id(self) -> int:
        """The id the next committed record gets (= the number of records)."""
        with sqlite_errors(self.path, "reading"):
            row = self.conn.execute("SELECT max(first_id + count) FROM tasks").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def candidates_done(self) -> int:
        with sqlite_errors(self.path, "reading"):
            return int(self.conn.execute("SELECT coalesce(sum(candidates), 0) FROM tasks").fetchone()[0])

    def level_range(self, level: int) -> tuple[int, int] | None:
        """``(first_id, end_id)`` of the records of enumeration level ``level``, or None."""
        with sqlite_errors(self.path, "reading"):
            row = self.conn.execute(
                "SELECT min(first_id), max(first_id + count), count(*) FROM tasks WHERE level = ?", (level,)
            ).fetchone()
        return (int(row[0]), int(row[1])) if row[2] else None

    # -- writes ------------------------------------------------------------------------

    def commit(self, results: Sequence[TaskResult]) -> None:
        """Commit whole tasks (their blocks, rows and summary) in one transaction."""
        with sqlite_errors(self.path, "writing"), atomic(self.conn) as conn:
            first = update_summary(conn, [(r.count, r.candidates, r.length_counts()) for r in results])
            for r in results:
                conn.execute(
                    "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, 0)",
                    (r.task_id, r.level, first, r.count, r.candidates),
                )
                insert_block(conn, self.fmt, r)
                first += r.count

    def set_state(self, **state: Any) -> None:
        """Update the ``state`` meta entry (e.g. ``complete=True``)."""
        with sqlite_errors(self.path, "writing"), atomic(self.conn) as conn:
            merge_state(conn, **state)

    def close(self) -> None:
        """Checkpoint, close the connection, then release the write lock (idempotent)."""
        if self._fd < 0:
            return
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a finished run leaves no -wal bytes
        self.conn.close()
        os.close(self._fd)
        self._fd = -1
        self._unlock_sidecar()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mismatch_message(path: Path, stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    diffs = [k for k in sorted(set(stored) | set(wanted)) if stored.get(k) != wanted.get(k)]
    parts = [f"{k}: file has {json.dumps(stored.get(k))}, asked {json.dumps(wanted.get(k))}" for k in diffs[:3]]
    return (
        f"{path_text(path)} holds a dataset of another spec ({'; '.join(parts)}): "
        "re-run with the file's options to resume, or write to a new file"
    )
