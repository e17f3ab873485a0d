"""The manifest: the one writer's lock on a dataset and its connection to the SQLite file that is the
dataset's commit point (a dataset file is its own manifest; a directory's is ``manifest.db``).

Exactly one process writes a dataset at a time: :class:`Manifest` holds an exclusive ``flock`` on
the manifest file for the whole run, so a second writer is refused at once instead of meeting
"database is locked". A new manifest is built beside its path and hard-linked into place while
locked: readers never see a half-made file, and of two racing creators one wins. An existing one
is checked (schema, structure, spec) before anything changes.

On a network filesystem (NFS, SMB, sshfs...) WAL is refused (use the ``delete`` journal) and the
lock is ``<file>-lock`` rather than the file itself (over NFS, ``flock`` becomes a whole-file POSIX
lock that would block SQLite's own locks). The journal mode is not part of the spec: either mode
resumes the other's file.

What goes into the dataset besides the manifest's rows is the layout's business
(:mod:`.layout`: a file's blocks; :mod:`.shards`: a directory's segments).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, Self

from .._core.codec import BlockFormat
from .._errors import (
    DatasetBusyError,
    DatasetError,
    SpecError,
    SpecMismatchError,
    StorageError,
)
from .._spec.spec import Spec
from .filemap import settle
from .schema import (
    block_format,
    check_file,
    check_structure,
    create_tables,
    damaged_meta,
    dataset_id,
    merge_state,
    mismatch_message,
    new_dataset_id,
    page_size,
    read_meta,
    update_summary,
    write_header,
)
from .sqlite import (
    JOURNAL_MODES,
    NETWORK_FILESYSTEMS,
    atomic,
    bounded,
    check_regular,
    connect,
    filesystem_type,
    path_text,
    set_journal,
    sqlite_errors,
)


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


class Manifest:
    """The one writer's hold on a dataset's manifest: creates or validates it, holds its write lock
    until :meth:`close`, answers what is committed, and runs the commit transactions. ``kind`` is
    the layout (``"file"``: the manifest holds the blocks too; ``"directory"``: segments do);
    ``name`` is the path a message names (the directory, for a directory's ``manifest.db``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        spec: Spec,
        *,
        kind: str,
        journal: str = "wal",
        fmt: BlockFormat | None = None,
        name: str | os.PathLike[str] | None = None,
    ) -> None:
        """``fmt``: the block format of a new dataset (``pack``: the source's, id included); else one
        with a new id. An existing dataset keeps its own."""
        self.path = Path(path)
        self.name = Path(name) if name is not None else self.path
        self.spec = spec
        self.kind = kind
        self.fmt = fmt or block_format(spec, new_dataset_id())
        self.journal = journal
        self.network = False
        self._journal_set = False
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
        other = "file" if self.kind == "file" else "path"
        return DatasetBusyError(
            f"another unitarium process is writing {path_text(self.name)}: wait for it to finish or use another {other}"
        )

    def _create(self) -> int | None:
        """Build a new dataset beside ``path`` and hard-link it into place, holding its
        lock: readers never see a half-made file, a failure leaves nothing behind, and of
        two racing creators one wins. None when ``path`` appeared meanwhile."""
        parent = self.path.absolute().parent
        make_parents(parent, self.path)
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
                check_structure(conn, self.path, directory=self.kind == "directory")
            finally:
                conn.close()
        stored = meta.get("spec")
        if stored != self.spec.to_json():
            raise SpecMismatchError(mismatch_message(self.path, stored or {}, self.spec.to_json()))
        self.fmt = block_format(self.spec, dataset_id(self.path, meta.get("format"), version))
        with sqlite_errors(self.path, "opening"):
            return connect(self.path, readonly=False, journal=None)  # the journal mode: at the first write

    def _initialise(self, path: Path) -> None:
        """Schema, header rows and settings into the new (still private) file ``path``."""
        with sqlite_errors(self.path, "creating"):
            conn = connect(path, readonly=False, journal=self.journal, page_size=page_size(self.fmt))
            try:
                with atomic(conn):
                    create_tables(conn, blocks=True, manifest=True)
                    write_header(conn, self.spec, self.kind, self.fmt)
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

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One commit: a write transaction on the manifest, its SQLite errors mapped (the first
        sets the journal mode: until then the writer has changed nothing)."""
        with sqlite_errors(self.path, "writing"):
            if not self._journal_set:
                set_journal(self.conn, self.journal)
                self._journal_set = True
            with atomic(self.conn) as conn:
                yield conn

    def list_tasks(self, conn: sqlite3.Connection, tasks: Sequence[tuple[Committed, int]]) -> None:
        """List ``(task, shard)`` (the next tasks, in task order) and add them to the summary, in the
        caller's :meth:`transaction`; shard 0 is the manifest file itself."""
        first = update_summary(conn, [(t.count, t.candidates, t.length_counts()) for t, _ in tasks])
        for t, shard in tasks:
            conn.execute(
                "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?)", (t.task_id, t.level, first, t.count, t.candidates, shard)
            )
            first += t.count

    def state(self) -> dict[str, Any]:
        """The ``state`` meta entry (``complete``, ``runs``...)."""
        with sqlite_errors(self.path, "reading"):
            (text,) = self.conn.execute("SELECT value FROM meta WHERE key = 'state'").fetchone()
        return dict(json.loads(text))

    def set_state(self, **state: Any) -> None:
        """Update the ``state`` meta entry (e.g. ``complete=True``)."""
        with self.transaction() as conn:
            merge_state(conn, **state)

    def close(self) -> None:
        """Checkpoint, close the connection, then release the write lock (idempotent). A complete
        dataset leaves WAL mode (:func:`leave_wal`), so its readers leave no ``-wal``/``-shm`` files."""
        if self._fd < 0:
            return
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a finished run leaves no -wal bytes
            if self._journal_set and self.journal == "wal" and self.state().get("complete"):
                leave_wal(self.conn)
        self.conn.close()
        os.close(self._fd)
        self._fd = -1
        self._unlock_sidecar()
        settle()  # (readers' descriptors kept open beside this writer's locks: closed now)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ManifestHolder:
    """What a layout's writer shares: it holds a :class:`Manifest`, and closing it (or leaving its
    ``with``) closes the manifest and releases the write lock."""

    manifest: Manifest

    def close(self) -> None:
        self.manifest.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Committed(Protocol):
    """What :meth:`Manifest.list_tasks` lists: a computed task (file) or a published one (directory)."""

    @property
    def task_id(self) -> int: ...
    @property
    def level(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def candidates(self) -> int: ...
    def length_counts(self) -> dict[int, int]: ...


def leave_wal(conn: sqlite3.Connection) -> None:
    """Switch a finished dataset from WAL to the rollback journal: a read-only reader of a WAL file
    creates ``-wal`` and ``-shm`` beside it (and cannot read from a read-only place), one of a
    rollback-journal file creates nothing. Best effort: with a reader still attached (it holds the
    WAL open) it stays in WAL, which is as safe; the next writer switches back to WAL when it resumes."""
    conn.execute("PRAGMA busy_timeout=100")
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA journal_mode=DELETE")


def make_parents(parent: Path, path: Path) -> None:
    """Create the missing directories above a new dataset (``runs/big/`` without ``runs/``)."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StorageError(f"cannot create {path_text(path)}: {path_text(parent)} is not a directory") from None
    except OSError as exc:
        raise StorageError(
            f"cannot create {path_text(path)}: cannot create {path_text(parent)}: {exc.strerror}"
        ) from exc
