"""SQLite as unitarium uses it: connection settings, the transaction helper, the query budget, and the
one table mapping SQLite's errors to unitarium's.

Settings (one place, :func:`connect`): WAL, ``synchronous=NORMAL`` (a power cut may drop the last
commits but never corrupts), 64 KiB pages (4 KiB without stored unitaries), a busy timeout, and
writes in ``BEGIN IMMEDIATE`` transactions through :func:`atomic`. Every connection runs with
``trusted_schema=OFF`` and ``cell_size_check=ON`` (a dataset is untrusted input), and metadata
queries run under a budget of SQLite steps (:func:`bounded`). Every SQLite error is mapped by
:data:`SQLITE_ERRORS` through :func:`sqlite_errors` (or :func:`storage_error`), nowhere else.

WAL needs memory shared by all processes that open the file, which network filesystems (NFS,
SMB, sshfs...) do not provide: :func:`filesystem_type` tells, and the writer then asks for the
``delete`` journal (:data:`JOURNAL_MODES`).
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from .._errors import (
    DatasetBusyError,
    DatasetDamagedError,
    DatasetError,
    DatasetMissingError,
    NotADatasetError,
    StorageError,
)

QUERY_STEPS = 50_000_000
"""SQLite virtual-machine steps one metadata query may take (~1 s): more means a crafted file."""


_STEPS_PER_CHECK = 10_000


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


_REFUSED = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")


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


def _hot_journal(exc: sqlite3.Error, path: Path, action: str, name: str) -> DatasetError:
    return StorageError(
        f"{path_text(path)} was left mid-commit by an interrupted writer (its -journal is hot) and cannot be "
        "written here to roll that back: open it once where it can be written, or resume it with the same "
        "generate command"
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
    (lambda name, action: action == "recovering" and name.startswith(_REFUSED), _hot_journal),
    (_named(*_REFUSED), _refused),
    (lambda name, action: True, _other),
)
"""The one mapping of SQLite's errors to unitarium's, first matching row wins: ``(predicate on
(sqlite_errorname, action), factory(exc, path, action, name))``. A full disk, quota or file-size
limit: :class:`StorageError` naming what may be full; busy or locked: :class:`DatasetBusyError`;
not a database: :class:`NotADatasetError`; malformed: :class:`DatasetDamagedError`; refused
(read-only, cannot open, permission): :class:`StorageError` with the OS's reason, or, rolling back
a hot journal (action "recovering"), what to do about it; anything else:
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
    path: str | Path,
    *,
    readonly: bool,
    journal: str | None = "wal",
    immutable: bool = False,
    page_size: int = PAGE_SIZE,
) -> sqlite3.Connection:
    """Open a connection with the project's settings (autocommit; use :func:`atomic`).
    A writable one also sets the page size (new files), and ``journal`` and its ``synchronous``
    (:func:`set_journal`; None: later, before the first write, so that a refused writer changes nothing).
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
        if journal is not None:
            set_journal(conn, journal)
        conn.execute("PRAGMA cache_size=-65536")
    return conn


def set_journal(conn: sqlite3.Connection, journal: str) -> None:
    """``journal`` (:data:`JOURNAL_MODES`) and its ``synchronous`` on a writable connection (a
    change of mode writes the file's header)."""
    conn.execute("PRAGMA journal_mode=WAL" if journal == "wal" else "PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA synchronous=NORMAL" if journal == "wal" else "PRAGMA synchronous=FULL")


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
