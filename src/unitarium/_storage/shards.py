"""Sharded datasets: a directory of segment files under one manifest.

Layout of a dataset directory ``DIR/``::

    DIR/manifest.db           the manifest: the dataset schema of :mod:`._store` (meta, gates,
                              moves, tasks, shards), written by the driver alone
    DIR/shards/<name>.db      segments: finished, immutable SQLite files holding ``blocks`` and
                              ``lookup`` rows of some tasks (any order), written by one worker each;
                              ``r<run>-w<worker>-<seq>`` (local engine) or ``t<first>-<last>`` (the
                              Ray engine: tasks ``first..last``, a name a re-run reuses, same content);
                              each names its dataset and task range in its table ``segment``
    DIR/shards/.<name>.*.tmp  a segment being written (never read; removed at resume)

**The manifest is the one commit point.** A worker appends the blocks of the tasks it computes to
its open segment, a private temporary file, then *publishes* it: commit, ``fsync``, rename to its
final name, ``fsync`` the directory. Only then does it tell the driver, which lists those tasks in
the manifest (``tasks.shard`` names the segment), in task order, in one transaction. Readers go
through the manifest only, never a directory listing, so a segment (or a block in a segment) that
the manifest does not list is ignored; resuming deletes such segments and rewrites segments of the
interrupted run without their unlisted blocks. Published segments never change in place, so
readers open them ``immutable=1`` (no locks, no ``-shm``: safe on network filesystems too).

**A segment is bound to its place.** Its blocks' checksums are seeded by the dataset id and the
task id (:func:`._codec.task_seed`), its ``segment`` row names the dataset and its task range, and
the manifest records its size (``shards.bytes``): a segment of another dataset, or of other tasks
(copied, linked, swapped, renamed), or replaced, is refused on open, never served. Every path to a
segment goes through :func:`segment_file`, which refuses names that could lead out of ``shards/``;
a resume checks every listed segment's identity before it changes anything.

On a network filesystem (NFS, SMB...) a segment is built in the local temporary directory and
copied into place (copy, ``fsync``, rename, ``fsync`` the directory); the manifest uses the
rollback journal (``--journal delete``), as a dataset file does there.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .._core.codec import BlockFormat
from .._errors import DatasetDamagedError, NotADatasetError, StorageError
from .._spec.sources import TaskResult
from .._spec.spec import Spec
from .manifest import Manifest, ManifestHolder, make_parents
from .rows import insert_block
from .schema import check_schema, create_tables, merge_state, page_size, segment_schema
from .sqlite import atomic, bounded, connect, path_text, sqlite_errors

__all__ = [
    "MANIFEST",
    "SHARDS",
    "DirectoryWriter",
    "Published",
    "SegmentWriter",
    "is_directory_path",
    "range_segment_name",
    "segment_file",
    "segment_name",
]

MANIFEST = "manifest.db"
SHARDS = "shards"
_SEGMENT = re.compile(r"r(\d+)-w(\d+)-(\d+)\.db|t(\d+)-(\d+)\.db")


def is_directory_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a sharded dataset: it ends in ``/`` or is an existing directory."""
    text = os.fspath(path)
    return text.endswith(os.sep) or os.path.isdir(text)


def segment_file(directory: Path, name: object) -> Path:
    """The file of the segment ``name`` (as the manifest lists it) of the dataset ``directory``.
    Refuses what is not a segment name (``..``, an absolute path, a separator: only the names
    :func:`segment_name` and :func:`range_segment_name` make), a ``shards/`` that is a link, and a
    symbolic link leading out of ``shards/``: no command reads a file outside the dataset."""
    if not isinstance(name, str) or not _SEGMENT.fullmatch(f"{name}.db"):
        raise DatasetDamagedError(
            f"{path_text(directory)} is damaged: its manifest lists a segment named {name!r}, which is no "
            "segment name (edited?): not read"
        )
    shards = directory / SHARDS
    path = shards / f"{name}.db"
    try:
        inside = os.path.realpath(shards) == os.path.join(os.path.realpath(directory), SHARDS)
        inside = inside and os.path.dirname(os.path.realpath(path)) == os.path.realpath(shards)
    except OSError as exc:
        raise StorageError(f"cannot access {path_text(path)}: {exc.strerror}") from exc
    if not inside:
        raise DatasetDamagedError(
            f"{path_text(directory)} is damaged: its segment {SHARDS}/{name}.db is a symbolic link out of "
            f"{SHARDS}/ (edited?): not read"
        )
    return path


def segment_name(run: int, worker: int, seq: int) -> str:
    """The name of segment ``seq`` of ``worker`` in run ``run`` (unique without coordination)."""
    return f"r{run:04d}-w{worker:03d}-{seq:06d}"


def range_segment_name(first: int, last: int) -> str:
    """The name of the segment of tasks ``first..last`` (Ray engine): deterministic, so a re-run of
    the same Ray task writes the same content under the same name."""
    return f"t{first:09d}-{last:09d}"


@dataclass(frozen=True)
class Published:
    """A task whose block is in a published segment (``segment`` None: the task kept no record)."""

    task_id: int
    level: int
    count: int
    candidates: int
    lengths: dict[int, int]
    segment: str | None
    segment_bytes: int

    def length_counts(self) -> dict[int, int]:
        return self.lengths


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentWriter:
    """One worker's open segment: blocks are appended in one transaction to a private file, which
    :meth:`publish` makes durable and moves into place atomically."""

    def __init__(self, directory: Path, name: str, fmt: BlockFormat, *, network: bool) -> None:
        self.final = directory / SHARDS / f"{name}.db"
        self.name = name
        self.fmt = fmt
        self.network = network
        build_dir = Path(tempfile.gettempdir()) if network else directory / SHARDS
        self.attempt = f"{os.getpid()}.{secrets.token_hex(4)}"  # unique per attempt, even across hosts
        self.tmp = build_dir / f".{name}.{self.attempt}.tmp"
        self.tasks: list[Published] = []
        self.nbytes = 0
        self.conn: sqlite3.Connection | None = None
        self.task_range: tuple[int, int] | None = None

    def _open(self) -> sqlite3.Connection:
        try:
            os.close(os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644))
            with sqlite_errors(self.final, "writing"):
                conn = connect(self.tmp, readonly=False, journal="delete", page_size=page_size(self.fmt))
                # A private file until published: no rollback journal is needed (a crash discards it).
                conn.execute("PRAGMA journal_mode=OFF")
                create_tables(conn, blocks=True, manifest=False, segment=self.fmt.dataset is not None)
                conn.execute("BEGIN")
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot write {path_text(self.tmp)}: {exc.strerror}") from exc
        return conn

    def add(self, result: TaskResult) -> None:
        """Append task ``result``'s block (nothing for a task that kept no record)."""
        if result.count:
            if self.conn is None:
                self.conn = self._open()
            with sqlite_errors(self.final, "writing"):
                insert_block(self.conn, self.fmt, result)
            self.nbytes += result.offsets.nbytes + result.codes.nbytes
            self.nbytes += 0 if result.unitaries is None else result.unitaries.nbytes
            a, b = self.task_range or (result.task_id, result.task_id)
            self.task_range = (min(a, result.task_id), max(b, result.task_id))
        lengths = result.length_counts()
        self.tasks.append(Published(result.task_id, result.level, result.count, result.candidates, lengths, None, 0))

    def publish(self) -> list[Published]:
        """Make the segment durable under its final name; returns its tasks (then empty)."""
        tasks, self.tasks, self.nbytes = self.tasks, [], 0
        if self.conn is None:
            return tasks
        conn, self.conn = self.conn, None
        task_range, self.task_range = self.task_range, None
        try:
            with sqlite_errors(self.final, "writing"):
                if self.fmt.dataset is not None and task_range is not None:
                    conn.execute("INSERT INTO segment VALUES (?, ?, ?)", (self.fmt.dataset.hex(), *task_range))
                conn.execute("COMMIT")
                conn.close()
            size = self._move_into_place()
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(
                f"writing {path_text(self.final)} failed: {exc.strerror}; everything committed is kept: "
                "make room and re-run the same command to resume"
            ) from exc
        return [Published(**{**t.__dict__, "segment": self.name, "segment_bytes": size}) for t in tasks]

    def _move_into_place(self) -> int:
        fd = os.open(self.tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        source = self.tmp
        if self.network:  # copy onto the share under a temporary name first
            source = self.final.parent / f".{self.name}.{self.attempt}.tmp"
            shutil.copyfile(self.tmp, source)
            fd = os.open(source, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self.tmp.unlink()
        os.replace(source, self.final)
        _fsync_directory(self.final.parent)
        return size

    def discard(self) -> None:
        """Drop the unpublished segment (its tasks were never committed)."""
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            self.conn = None
        with contextlib.suppress(OSError):
            self.tmp.unlink()
        self.tasks, self.nbytes, self.task_range = [], 0, None


class DirectoryWriter(ManifestHolder):
    """The driver's side of a sharded dataset: holds the :class:`.Manifest` (and so the write lock),
    lists published segments in it, names the segments of this run, and cleans what a crash left at
    start."""

    def __init__(self, directory: str | os.PathLike[str], spec: Spec, *, journal: str = "wal") -> None:
        self.directory = Path(directory)
        _prepare(self.directory)
        self.manifest = Manifest(self.directory / MANIFEST, spec, kind="directory", journal=journal, name=directory)
        self.path, self.spec, self.fmt = self.manifest.path, spec, self.manifest.fmt
        self.network, self.journal = self.manifest.network, journal
        self.location = self.directory
        """The path a reader of this dataset opens."""
        try:
            (self.directory / SHARDS).mkdir(exist_ok=True)
            self._check_listed()  # before anything changes
            self.run = self._start_run()
            self._clean()
        except StorageError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise StorageError(f"cannot write in {path_text(self.directory)}: {exc.strerror}") from exc
        except BaseException:
            self.close()
            raise

    def _start_run(self) -> int:
        with self.manifest.transaction() as conn:
            state = merge_state(conn)
            return int(merge_state(conn, runs=int(state.get("runs", 0)) + 1)["runs"])

    def _clean(self) -> None:
        """Remove what no committed task refers to: temporaries, unlisted segments, and the
        unlisted blocks of segments written since the last clean run."""
        with sqlite_errors(self.path, "reading"):
            listed = dict(self.manifest.conn.execute("SELECT name, shard FROM shards").fetchall())
        state = self.manifest.state()
        clean_through = int(state.get("clean_through_run", 0))
        for entry in sorted((self.directory / SHARDS).iterdir()):
            match = _SEGMENT.fullmatch(entry.name)
            temporary = entry.name.startswith(".") and entry.name.endswith(".tmp")
            if temporary or (match and entry.name[:-3] not in listed):
                entry.unlink()
            elif match and match.group(1) is not None and int(match.group(1)) > clean_through:
                # (a Ray segment, t<first>-<last>, is listed whole in one transaction: never pruned)
                self._prune(entry, listed[entry.name[:-3]])
        _fsync_directory(self.directory / SHARDS)
        with self.manifest.transaction() as conn:
            merge_state(conn, clean_through_run=self.run - 1)

    def _check_listed(self) -> None:
        with sqlite_errors(self.path, "reading"):
            listed = {name for (name,) in self.manifest.conn.execute("SELECT name FROM shards")}
        for entry in sorted((self.directory / SHARDS).iterdir()):
            if _SEGMENT.fullmatch(entry.name) and entry.name[:-3] in listed:
                self._check_own(entry)

    def _check_own(self, entry: Path) -> None:
        """Refuse to resume with a listed segment that is not this dataset's (a link out of
        ``shards/``, a crafted schema, another dataset's id): readers would refuse it anyway."""
        segment = segment_file(self.directory, entry.name[:-3])
        with sqlite_errors(segment, "opening"):
            probe = connect(segment, readonly=True, immutable=True)
            try:
                check_schema(probe, segment, segment_schema(self.fmt.dataset))
                if self.fmt.dataset is None:
                    return
                with bounded(probe, segment):
                    rows = probe.execute("SELECT dataset FROM segment").fetchall()
            finally:
                probe.close()
        if rows != [(self.fmt.dataset.hex(),)]:
            raise DatasetDamagedError(
                f"{path_text(self.directory)} is damaged: its segment {SHARDS}/{entry.name} belongs to another "
                "dataset (copied or linked in?): not resumed; restore the directory from a copy"
            )

    def _prune(self, segment: Path, shard: int) -> None:
        """Rewrite ``segment`` without the blocks the manifest does not list (copy, delete, fsync,
        rename: readers that have it open keep the old file)."""
        with sqlite_errors(self.path, "reading"):
            listed = {t for (t,) in self.manifest.conn.execute("SELECT task_id FROM tasks WHERE shard = ?", (shard,))}
        with sqlite_errors(segment, "opening"):
            probe = connect(segment, readonly=True, immutable=True)
            try:
                check_schema(probe, segment, segment_schema(self.fmt.dataset))  # a crafted segment: refused, not run
                with bounded(probe, segment):
                    present = {t for (t,) in probe.execute("SELECT task_id FROM blocks")}
            finally:
                probe.close()
        extra = sorted(present - listed)
        if not extra:
            return
        tmp = segment.with_name(f".{segment.name}.{os.getpid()}.tmp")
        shutil.copyfile(segment, tmp)
        with sqlite_errors(segment, "writing"):
            conn = connect(tmp, readonly=False, journal="delete")
            try:
                with atomic(conn):
                    conn.executemany("DELETE FROM blocks WHERE task_id = ?", [(t,) for t in extra])
                    conn.executemany("DELETE FROM lookup WHERE task_id = ?", [(t,) for t in extra])
            finally:
                conn.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        # the size readers check (a crash between: re-pruned at resume)
        with self.manifest.transaction() as manifest:
            manifest.execute("UPDATE shards SET bytes = ? WHERE shard = ?", (size, shard))
        os.replace(tmp, segment)

    def commit_published(self, tasks: list[Published]) -> None:
        """List ``tasks`` (the next ones, in task order) in the manifest, in one transaction."""
        with self.manifest.transaction() as conn:
            listed = []
            for t in tasks:
                shard = 0
                if t.segment is not None:
                    conn.execute(
                        "INSERT INTO shards (name, bytes) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                        (t.segment, t.segment_bytes),
                    )
                    (shard,) = conn.execute("SELECT shard FROM shards WHERE name = ?", (t.segment,)).fetchone()
                listed.append((t, shard))
            self.manifest.list_tasks(conn, listed)


def _prepare(directory: Path) -> None:
    """Create the dataset directory if needed; refuse a file, or a non-empty directory that is
    not a dataset (its files are not ours to mix with)."""
    try:
        if directory.exists() and not directory.is_dir():
            raise NotADatasetError(f"{path_text(directory)} is a file, not a dataset directory")
        make_parents(directory.absolute().parent, directory)
        directory.mkdir(exist_ok=True)
        if not (directory / MANIFEST).exists() and any(
            not p.name.startswith((".", MANIFEST)) and p.name != SHARDS for p in directory.iterdir()
        ):
            raise NotADatasetError(
                f"{path_text(directory)} is a non-empty directory without a {MANIFEST}: not a unitarium dataset "
                "directory; use an empty or new one"
            )
    except (StorageError, NotADatasetError):
        raise
    except OSError as exc:
        raise StorageError(f"cannot create {path_text(directory)}: {exc.strerror}") from exc
