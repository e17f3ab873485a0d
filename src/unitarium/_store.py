"""The SQLite store: schema, connection settings, the transaction helper, and the writer.

Schema (version :data:`SCHEMA_VERSION`, in ``PRAGMA user_version``; ``PRAGMA
application_id`` is :data:`APPLICATION_ID` so a foreign SQLite file is never mistaken
for a dataset)::

    meta(key TEXT PRIMARY KEY, value TEXT)          JSON values: spec, format, state
    gates(gate INTEGER PRIMARY KEY, name TEXT, qubits INTEGER, matrix BLOB)
    moves(code INTEGER PRIMARY KEY, text TEXT, gate INTEGER, qubits TEXT)
    tasks(task_id INTEGER PRIMARY KEY, level INTEGER, first_id INTEGER,
          count INTEGER, candidates INTEGER)        one row per finished task
    blocks(first_id INTEGER PRIMARY KEY, count INTEGER, task_id INTEGER,
           offsets BLOB, codes BLOB, unitaries BLOB, keys BLOB)
    lookup(key INTEGER, id INTEGER, PRIMARY KEY (key, id)) WITHOUT ROWID

A block holds the records ``first_id .. first_id + count - 1`` of one task. Record
``first_id + j`` has circuit ``codes[offsets[j]:offsets[j+1]]`` (move codes, see
``moves``) and unitary ``unitaries[j]``. All arrays are raw little-endian: offsets
``uint32`` (count + 1 of them), codes ``uint8`` or ``uint16`` (meta ``format``),
unitaries ``complex64`` or ``complex128`` of shape ``(count, d, d)``, row-major.

Settings (one place, :func:`connect`): WAL, ``synchronous=NORMAL`` (a power cut may
drop the last commits but never corrupts), 64 KiB pages, a busy timeout, and writes in
``BEGIN IMMEDIATE`` transactions through :func:`atomic`. Exactly one process writes a
file at a time: the writer holds an exclusive ``flock`` on the database file for the
whole run, so a second writer is refused at once instead of meeting "database is locked".

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from ._errors import (
    DatasetBusyError,
    DatasetError,
    DatasetMissingError,
    NotADatasetError,
    SchemaVersionError,
    SpecError,
    SpecMismatchError,
    StorageError,
)
from ._spec import Spec

__all__ = [
    "APPLICATION_ID",
    "JOURNAL_MODES",
    "NETWORK_FILESYSTEMS",
    "SCHEMA_VERSION",
    "TaskResult",
    "Writer",
    "atomic",
    "connect",
    "filesystem_type",
    "open_readonly",
    "parse_mountinfo",
]

SCHEMA_VERSION = 1
APPLICATION_ID = 0x556E6974  # "Unit"
BUSY_TIMEOUT_S = 30.0
PAGE_SIZE = 65536
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
    count INTEGER NOT NULL, candidates INTEGER NOT NULL);
CREATE TABLE blocks (
    first_id INTEGER PRIMARY KEY, count INTEGER NOT NULL, task_id INTEGER NOT NULL,
    offsets BLOB NOT NULL, codes BLOB NOT NULL, unitaries BLOB NOT NULL, keys BLOB);
CREATE TABLE lookup (key INTEGER NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (key, id)) WITHOUT ROWID;
"""


def storage_error(exc: sqlite3.Error, path: str | Path, action: str) -> DatasetError:
    """Map an sqlite3 error to unitarium's tree (use as ``raise storage_error(...) from exc``)."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in _NO_SPACE:
        return _no_space(name, Path(path), action)
    if name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED"):
        return DatasetBusyError(f"{str(path)!r} stayed locked by another process while {action} it: try again")
    if name == "SQLITE_NOTADB":
        return NotADatasetError(f"{str(path)!r} is not an SQLite database")
    if name == "SQLITE_READONLY_DIRECTORY" and action != "writing":
        return StorageError(
            f"cannot read {str(path)!r} here: readers of a WAL dataset create {Path(path).name}-shm beside it, and "
            "this directory is not writable: make it writable, or convert the dataset once by re-running its "
            "generate command with --journal delete (such datasets read from read-only places)"
        )
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        flags = os.O_RDONLY if name.startswith("SQLITE_CANTOPEN") else os.O_RDWR
        reason = _os_reason(Path(path), flags) or f"{exc}: check the permissions of it, its -wal/-shm and its directory"
        return StorageError(f"cannot open {str(path)!r} while {action} it: {reason}")
    return StorageError(f"storage error while {action} {str(path)!r}: {exc}")


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
    return StorageError(f"{action} {str(path)!r} failed: {what} ({'; '.join(facts)}); {then}")


def connect(path: str | Path, *, readonly: bool, journal: str = "wal") -> sqlite3.Connection:
    """Open a connection with the project's settings (autocommit; use :func:`atomic`).
    A writable one also sets the page size (new files), ``journal`` and its ``synchronous``."""
    mode = "ro" if readonly else "rw"
    uri = f"file:{quote(str(Path(path).absolute()))}?mode={mode}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    if readonly:
        # Readers map the file (pages come from the OS page cache, shared by every reader, no
        # copy per process): random ds[i] ~2x faster than through SQLite's 2 MB default cache.
        # Safe here because the writer never shrinks the file (no VACUUM, no truncation).
        conn.execute(f"PRAGMA mmap_size={READER_MMAP_BYTES}")
    else:
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
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


def check_file(path: Path) -> None:
    """Refuse a missing file, a non-SQLite file, a foreign SQLite file or a newer schema."""
    try:
        with path.open("rb") as f:
            header = f.read(16)
    except FileNotFoundError:
        raise DatasetMissingError(f"no dataset at {str(path)!r}: check the path") from None
    except IsADirectoryError:
        raise NotADatasetError(f"{str(path)!r} is a directory, not a dataset file") from None
    except OSError as exc:
        raise StorageError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    if header != _SQLITE_HEADER:
        raise NotADatasetError(f"{str(path)!r} is not a unitarium dataset (not an SQLite file)")
    try:
        conn = connect(path, readonly=True)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise storage_error(exc, path, "opening") from exc
    if app_id != APPLICATION_ID:
        raise NotADatasetError(f"{str(path)!r} is an SQLite database but not a unitarium dataset")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{str(path)!r} has schema version {version}, newer than this unitarium's {SCHEMA_VERSION}: "
            "upgrade unitarium"
        )


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A checked read-only connection to a dataset."""
    path = Path(path)
    check_file(path)
    try:
        return connect(path, readonly=True)
    except sqlite3.Error as exc:
        raise storage_error(exc, path, "opening") from exc


def read_meta(conn: sqlite3.Connection) -> dict[str, Any]:
    """All ``meta`` entries, JSON-decoded; ValueError if one is not JSON (or absurdly nested)."""
    return {k: load_json(v) for k, v in conn.execute("SELECT key, value FROM meta")}


def damaged_meta(path: str | Path, detail: object) -> NotADatasetError:
    """The error for a dataset whose ``meta`` table cannot be used."""
    return NotADatasetError(f"{str(path)!r} has a damaged meta table: {detail}")


def load_json(text: object) -> Any:
    """``json.loads`` for what a file holds: ValueError for anything but sane JSON text."""
    if not isinstance(text, str):
        raise ValueError(f"expected JSON text, found {type(text).__name__}")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def le_bytes(array: np.ndarray) -> memoryview:
    """A contiguous little-endian byte view of ``array`` for a BLOB."""
    arr = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return memoryview(arr).cast("B")  # type: ignore[arg-type]  # ndarray implements the buffer protocol


def code_dtype(num_moves: int) -> np.dtype:
    """``uint8`` codes while there are at most 256 moves, else ``uint16``."""
    return np.dtype("<u1") if num_moves <= 256 else np.dtype("<u2")


@dataclass
class TaskResult:
    """What a worker hands the writer for one task. ``codes``/``offsets`` describe the
    circuits as stored; ``dedup``/``lookup`` are the canonical keys (unique mode)."""

    task_id: int
    level: int
    candidates: int
    codes: np.ndarray
    offsets: np.ndarray
    unitaries: np.ndarray
    dedup: np.ndarray | None = None
    alternates: dict[int, list[int]] | None = None
    lookup: np.ndarray | None = None

    @property
    def count(self) -> int:
        return len(self.unitaries)

    def select(self, keep: np.ndarray) -> TaskResult:
        """The same task with only the rows where ``keep`` is true."""
        lengths = np.diff(self.offsets)[keep]
        starts = self.offsets[:-1][keep]
        codes = np.concatenate(
            [self.codes[s : s + n] for s, n in zip(starts, lengths, strict=True)] or [self.codes[:0]]
        )
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.uint32)
        return TaskResult(
            self.task_id,
            self.level,
            self.candidates,
            codes,
            offsets,
            self.unitaries[keep],
            None if self.dedup is None else self.dedup[keep],
            None,
            None if self.lookup is None else self.lookup[keep],
        )


class Writer:
    """The single writer of a dataset file. Creates or validates the file, holds its
    write lock until :meth:`close`, and commits whole tasks atomically."""

    def __init__(self, path: str | Path, spec: Spec, *, journal: str = "wal") -> None:
        self.path = Path(path)
        self.spec = spec
        self.journal = journal
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
            raise StorageError(f"cannot access {str(self.path)!r}: {exc.strerror}") from exc

    def _on_network_filesystem(self) -> bool:
        """Check ``journal`` against the filesystem: WAL is refused on a network one."""
        if self.journal not in JOURNAL_MODES:
            raise SpecError(f"journal mode {self.journal!r} is not supported: use {' or '.join(JOURNAL_MODES)}")
        kind = filesystem_type(self.path.absolute().parent)
        if kind not in NETWORK_FILESYSTEMS:
            return False
        if self.journal == "wal":
            raise StorageError(
                f"{str(self.path)!r} is on a network filesystem ({kind}): SQLite's WAL mode needs memory shared "
                "between processes, which it cannot provide there; use --journal delete (a rollback journal: "
                "safe there, but readers wait while a task commits)"
            )
        return True

    def _lock_sidecar(self) -> int:
        """On a network filesystem: hold ``<path>-lock`` rather than ``flock`` the database."""
        try:
            fd = os.open(f"{self.path}-lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot create the lock file {str(self.path)!r}-lock: {exc.strerror}") from exc
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
            f"another unitarium process is writing {str(self.path)!r}: wait for it to finish or use another file"
        )

    def _create(self) -> int | None:
        """Build a new dataset beside ``path`` and hard-link it into place, holding its
        lock: readers never see a half-made file, a failure leaves nothing behind, and of
        two racing creators one wins. None when ``path`` appeared meanwhile."""
        parent = self.path.absolute().parent
        if not parent.is_dir():
            raise StorageError(f"cannot create {str(self.path)!r}: {str(parent)!r} is not an existing directory")
        tmp = parent / f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot create {str(self.path)!r}: {exc.strerror}") from exc
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
            raise StorageError(f"cannot create {str(self.path)!r}: {exc.strerror or exc}") from exc
        except BaseException:
            os.close(fd)
            raise
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return fd

    def _lock_existing(self) -> int:
        if not self.path.is_file():
            raise NotADatasetError(f"{str(self.path)!r} is not a regular file")
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError as exc:
            raise StorageError(f"cannot open {str(self.path)!r} for writing: {exc.strerror}") from exc
        try:
            if self._sidecar is None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._busy() from None
        return fd

    def _open(self) -> sqlite3.Connection:
        check_file(self.path)
        try:
            conn = connect(self.path, readonly=True)
            try:
                stored = read_meta(conn).get("spec")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path, "opening") from exc
        except ValueError as exc:  # not JSON
            raise damaged_meta(self.path, exc) from exc
        if stored != self.spec.to_json():
            raise SpecMismatchError(_mismatch_message(self.path, stored or {}, self.spec.to_json()))
        try:
            return connect(self.path, readonly=False, journal=self.journal)
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path, "opening") from exc

    def _initialise(self, path: Path) -> None:
        """Schema, header rows and settings into the new (still private) file ``path``."""
        try:
            conn = connect(path, readonly=False, journal=self.journal)
            try:
                with atomic(conn):
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        conn.execute(statement)
                    self._write_header(conn)
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path, "creating") from exc

    def _write_header(self, conn: sqlite3.Connection) -> None:
        gs = self.spec.gateset
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        fmt = {
            "dim": gs.dim,
            "unitary_dtype": self.spec.dtype,
            "code_dtype": code_dtype(len(gs.moves)).name,
            "offset_dtype": "uint32",
            "byte_order": "little",
            "qubit_order": "qiskit (little-endian: qubit 0 is the least significant bit)",
        }
        rows = [("spec", self.spec.to_json()), ("format", fmt), ("state", {"complete": False})]
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in rows])
        conn.executemany(
            "INSERT INTO gates VALUES (?, ?, ?, ?)",
            [(i, g.name, g.num_qubits, le_bytes(g.matrix)) for i, g in enumerate(gs.gates)],
        )
        conn.executemany(
            "INSERT INTO moves VALUES (?, ?, ?, ?)",
            [(i, m.text, m.gate, " ".join(map(str, m.qubits))) for i, m in enumerate(gs.moves)],
        )

    # -- state -------------------------------------------------------------------------

    def tasks_done(self) -> int:
        """How many tasks are committed (always tasks ``0 .. n-1``: commits are in order)."""
        return int(self.conn.execute("SELECT count(*) FROM tasks").fetchone()[0])

    def next_id(self) -> int:
        """The id the next committed record gets (= the number of records)."""
        row = self.conn.execute("SELECT first_id + count FROM blocks ORDER BY first_id DESC LIMIT 1").fetchone()
        return int(row[0]) if row else 0

    def level_range(self, level: int) -> tuple[int, int] | None:
        """``(first_id, end_id)`` of the records of enumeration level ``level``, or None."""
        row = self.conn.execute(
            "SELECT min(first_id), max(first_id + count), count(*) FROM tasks WHERE level = ?", (level,)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row[2] else None

    def stored_dedup_keys(self) -> np.ndarray:
        """All dedup keys of committed records (to rebuild the key set on resume)."""
        parts = [
            np.frombuffer(b, dtype="<i8") for (b,) in self.conn.execute("SELECT keys FROM blocks ORDER BY first_id")
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    # -- writes ------------------------------------------------------------------------

    def commit(self, results: Sequence[TaskResult]) -> None:
        """Commit whole tasks (their rows and done-marks) in one transaction."""
        try:
            with atomic(self.conn) as conn:
                first = self.next_id()
                for r in results:
                    self._insert(conn, r, first)
                    first += r.count
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path, "writing") from exc

    def _insert(self, conn: sqlite3.Connection, r: TaskResult, first: int) -> None:
        conn.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, ?)", (r.task_id, r.level, first, r.count, r.candidates))
        if not r.count:
            return
        conn.execute(
            "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                first,
                r.count,
                r.task_id,
                le_bytes(r.offsets.astype(np.uint32, copy=False)),
                le_bytes(r.codes.astype(code_dtype(len(self.spec.gateset.moves)), copy=False)),
                le_bytes(r.unitaries.astype(self.spec.np_dtype, copy=False)),
                None if r.dedup is None else le_bytes(r.dedup.astype(np.int64)),
            ),
        )
        if r.lookup is not None:
            ids = range(first, first + r.count)
            conn.executemany("INSERT INTO lookup VALUES (?, ?)", zip(r.lookup.tolist(), ids, strict=True))

    def set_state(self, **state: Any) -> None:
        """Update the ``state`` meta entry (e.g. ``complete=True``)."""
        try:
            with atomic(self.conn) as conn:
                row = conn.execute("SELECT value FROM meta WHERE key = 'state'").fetchone()
                merged = {**json.loads(row[0]), **state}
                conn.execute("UPDATE meta SET value = ? WHERE key = 'state'", (json.dumps(merged),))
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path, "writing") from exc

    def close(self) -> None:
        """Checkpoint, close the connection, then release the write lock (idempotent)."""
        if self._fd < 0:
            return
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.conn.close()
        os.close(self._fd)
        self._fd = -1
        self._unlock_sidecar()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mismatch_message(path: Path, stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    diffs = [k for k in sorted(set(stored) | set(wanted)) if stored.get(k) != wanted.get(k)]
    parts = [f"{k}: file has {json.dumps(stored.get(k))}, asked {json.dumps(wanted.get(k))}" for k in diffs[:3]]
    return (
        f"{str(path)!r} holds a dataset of another spec ({'; '.join(parts)}): "
        "re-run with the file's options to resume, or write to a new file"
    )
