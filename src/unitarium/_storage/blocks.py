"""Where a dataset's blocks live: one :class:`BlockStore` for a file and for a directory.

A dataset file is its own manifest and its only shard (shard 0). A directory has a manifest
(``manifest.db``) whose ``tasks`` rows name the segment (``shards/<name>.db``) holding each
task's block. Readers find blocks through the manifest only (see :mod:`._shards`), read them in
BLOB pieces (incremental BLOB I/O, a page at a time) and check every piece's checksum
(:func:`._codec.read_rows`). Connections are per process; a store reconnects after a fork.

What a store opens is untrusted: the manifest's schema and task structure are checked when it is
first opened (:func:`._store.check_schema`, :func:`._store.check_structure`), a segment's schema,
identity (dataset id, task range) and size when it is first opened, and its task range again for
every block read from it (:meth:`BlockStore.shard`, :meth:`BlockStore.read`).

Single records take a faster road (:meth:`BlockStore.mapped`, :mod:`._mapped`): the block's file
(a segment, or the dataset file) is mapped and each page of a block is checked against its checksums
the first time this store reads it; the bytes of a checked page are then served straight from the map.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .._core.codec import Block, BlockFormat, Damage, Reader, read_rows
from .._errors import DatasetDamagedError, DatasetMissingError, NotADatasetError
from .mapped import MappedBlock, Maps
from .schema import (
    check_file,
    check_schema,
    check_segment,
    check_structure,
    damaged_meta,
    dataset_id,
    load_json,
    segment_schema,
)
from .shards import MANIFEST, SHARDS, is_directory_path, segment_file
from .sqlite import bounded, connect, path_text, sqlite_errors, storage_error

__all__ = ["BlockStore", "Span"]

_OPEN_SHARDS = 64
"""Segment connections kept open per process (least recently used are closed)."""
_SMALL_COLUMNS = ("offsets", "checks")
_SMALL_CACHED = 4096
"""Blocks whose small columns (offsets, checksums: ~16 KiB) a process keeps: a random ``ds[i]``
then opens two BLOBs (codes, unitaries) instead of four. Published blocks never change."""

Span = tuple[int, int, int, int, int, int]
"""``(task_id, shard, first_id, count, lo, hi)``: rows ``lo .. hi - 1`` of that task's block."""


class BlockStore:
    """The manifest and shards of a dataset at ``path`` (a file, or a directory)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.directory = self.path if is_directory_path(path) else None
        self.manifest = self.path / MANIFEST if self.directory is not None else self.path
        self._pid = -1
        self._conn: sqlite3.Connection | None = None
        self._shards: OrderedDict[int, sqlite3.Connection] = OrderedDict()
        self._names: dict[int, str] = {}
        self._ranges: dict[int, tuple[int, int]] = {}
        self._small: OrderedDict[tuple[int, int, str], bytes] = OrderedDict()
        self.maps = Maps(self)
        self._lock = threading.Lock()
        self.identity: bytes | None = None
        """The dataset's id (None: schema 2), read when the manifest is opened."""

    def connection(self) -> sqlite3.Connection:
        """The manifest's read-only connection in this process (checked when first opened)."""
        if self._conn is None or self._pid != os.getpid():
            self._shards.clear()
            self._small.clear()
            self._ranges.clear()
            self.maps = Maps(self)  # (a forked child's maps are its parent's: dropped, not closed)
            self._lock = threading.Lock()  # (after a fork, another thread's hold on it is gone with the thread)
            try:
                version = self._check_manifest()
            except NotADatasetError:
                if self.directory is not None or not os.path.isdir(self.path):
                    raise
                version = self._check_manifest()  # it became a directory meanwhile (a run was starting)
            with sqlite_errors(self.manifest, "opening"):
                conn = connect(self.manifest, readonly=True)
            try:
                check_structure(conn, self.manifest, directory=self.directory is not None)
                self.identity = dataset_id(self.path, self._format(conn), version)
            except BaseException:
                conn.close()
                raise
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _format(self, conn: sqlite3.Connection) -> object:
        with sqlite_errors(self.manifest, "reading"), bounded(conn, self.manifest):
            row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        try:
            return load_json(row[0]) if row else None
        except ValueError as exc:
            raise damaged_meta(self.path, exc) from exc

    def _check_manifest(self) -> int:
        if self.directory is None and os.path.isdir(self.path):
            self.directory, self.manifest = self.path, self.path / MANIFEST
        if self.directory is not None and not self.manifest.exists() and not self.manifest.is_symlink():
            raise DatasetMissingError(
                f"{path_text(self.path)} is a directory without a {MANIFEST}: not a unitarium dataset directory"
            )
        return check_file(self.manifest)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of a read query on the manifest (errors mapped to unitarium's), within the budget
        of a metadata query (:func:`._store.bounded`)."""
        conn = self.connection()
        with sqlite_errors(self.manifest, "reading"), self._lock, bounded(conn, self.manifest):
            return conn.execute(sql, args).fetchall()

    def shard(self, shard: int) -> sqlite3.Connection:
        """The connection holding the blocks of ``shard`` (0: the dataset file itself)."""
        conn = self.connection()
        if shard == 0:
            return conn
        if shard in self._shards:
            self._shards.move_to_end(shard)
            return self._shards[shard]
        path = self.segment_path(shard)
        self.check_segment(path)
        with sqlite_errors(path, "opening"):
            segment = connect(path, readonly=True, immutable=True)
        try:
            self._check_identity(shard, segment, path)
        except BaseException:
            segment.close()
            raise
        self._shards[shard] = segment
        if len(self._shards) > _OPEN_SHARDS:
            gone, conn = self._shards.popitem(last=False)
            conn.close()
            self.maps.drop(gone)
        return segment

    def _check_identity(self, shard: int, conn: sqlite3.Connection, path: Path) -> None:
        """Refuse a segment that is not the one the manifest listed: another schema, another
        dataset's, another task range's (swapped, renamed), or another size than recorded."""
        check_schema(conn, path, segment_schema(self.identity))
        if self.identity is None:
            return  # schema 2: its blocks are not bound to their place
        name = f"{SHARDS}/{path.name}"
        with sqlite_errors(path, "opening"), bounded(conn, path):
            rows = conn.execute("SELECT dataset, first_task, last_task FROM segment").fetchall()
        if len(rows) != 1 or rows[0][0] != self.identity.hex():
            raise self.damaged(None, f"its segment {name} belongs to another dataset (copied or linked in?): not read")
        first, last = rows[0][1], rows[0][2]
        if not (isinstance(first, int) and isinstance(last, int)):
            raise self.damaged(None, f"its segment {name} names no task range")
        recorded = self.query("SELECT bytes FROM shards WHERE shard = ?", (shard,))
        size = os.stat(path).st_size
        if not recorded or recorded[0][0] != size:
            said = recorded[0][0] if recorded else None
            raise self.damaged(None, f"its segment {name} holds {size:,} bytes, its manifest recorded {said!r}")
        self._ranges[shard] = (first, last)

    def check_segments(self) -> None:
        """Open every listed segment (identity, size) and check that the tasks the manifest
        assigns to each lie in its task range (one GROUP BY over the tasks)."""
        if self.directory is None:
            return
        rows = self.query("SELECT shard, min(task_id), max(task_id) FROM tasks WHERE count > 0 GROUP BY shard")
        for shard, first, last in rows:
            self.shard(shard)
            self.in_range(shard, first)
            self.in_range(shard, last)

    def in_range(self, shard: int, task_id: int) -> None:
        if shard in self._ranges:
            first, last = self._ranges[shard]
            if not first <= task_id <= last:
                raise self.damaged(
                    None,
                    f"its segment {SHARDS}/{self._names[shard]}.db holds tasks {first}..{last}, not task "
                    f"{task_id} (swapped or renamed?): not read",
                )

    def segment_path(self, shard: int) -> Path:
        """The file of segment ``shard`` (a directory's): :func:`._shards.segment_file` of its name."""
        assert self.directory is not None, "a dataset file has no segments"
        if shard not in self._names:
            rows = self.query("SELECT name FROM shards WHERE shard = ?", (shard,))
            if not rows:
                raise self.damaged(None, f"the manifest lists no segment {shard}")
            segment_file(self.directory, rows[0][0])
            self._names[shard] = rows[0][0]
        return segment_file(self.directory, self._names[shard])

    def check_segment(self, path: Path) -> None:
        """Refuse a listed segment file that is missing, not a regular file, not SQLite or truncated."""
        if not os.path.lexists(path):
            raise DatasetMissingError(
                f"{path_text(self.path)} is missing its segment file {SHARDS}/{path.name} (listed in its manifest): "
                "restore it from a copy of the directory, or re-run the generate command into a new path"
            )
        check_segment(path)

    def segments(self) -> list[tuple[int, Path]]:
        """Every listed segment ``(shard, path)`` (none for a file)."""
        if self.directory is None:
            return []
        rows = self.query("SELECT shard, name FROM shards ORDER BY shard")
        return [(int(s), segment_file(self.directory, n)) for s, n in rows]

    def damaged(self, records: tuple[int, int] | None, detail: str) -> DatasetDamagedError:
        """The error for a damaged block (``records``: the affected ids ``[a, b)``), or for damaged
        tables (``records`` None: ``detail`` says which)."""
        if records is None:
            return DatasetDamagedError(f"{path_text(self.path)} is damaged: {detail}")
        return DatasetDamagedError(
            f"{path_text(self.path)} has a damaged block (records {records[0]}..{records[1] - 1}): {detail}"
        )

    def read(self, fmt: BlockFormat, span: Span) -> Block:
        """Rows ``lo .. hi - 1`` of a task's block, checked."""
        task_id, shard, first, count, lo, hi = span
        try:
            reader = self.column_reader(shard, task_id)
            self.in_range(shard, task_id)
            return read_rows(fmt, task_id, count, lo, hi, reader)
        except Damage as exc:
            rows = (first, first + count) if exc.rows is None else (first + exc.rows[0], first + exc.rows[1])
            raise self.damaged(rows, f"task {task_id}: {exc.detail}") from None

    def column_reader(self, shard: int, task_id: int) -> Reader:
        blob_part = _blob_reader(self.shard(shard), task_id, self.path)

        def read(column: str, at: int, size: int, total: int | None) -> bytes:
            if column not in _SMALL_COLUMNS or total is None:
                return blob_part(column, at, size, total)
            key = (shard, task_id, column)
            whole = self._small.get(key)
            if whole is None:
                whole = blob_part(column, 0, total, total)
                self._small[key] = whole
                if len(self._small) > _SMALL_CACHED:
                    self._small.popitem(last=False)
            if at + size > len(whole):
                raise Damage(f"its {column} end at byte {len(whole)}, before byte {at + size}")
            return whole[at : at + size]

        return read

    # -- the mapped road (single records) ---------------------------------------------------

    def data_version(self) -> int:
        """SQLite's ``data_version`` of the manifest: changes whenever another connection commits."""
        conn = self._conn if self._pid == os.getpid() and self._conn is not None else self.connection()
        try:  # (once per ds[i]: no context manager, no lock: it touches no progress handler)
            return int(conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise storage_error(exc, self.manifest, "reading") from exc

    def mapped(self, fmt: BlockFormat, task_id: int, shard: int, first: int, count: int) -> MappedBlock | None:
        """Task ``task_id``'s block (records ``first ..``, ``count`` of them, in ``shard``) read through
        the map of its file (:class:`._mapped.Maps`), or None: read it through :meth:`read`."""
        return self.maps.block(fmt, (task_id, shard, first, count))

    def close(self) -> None:
        """Close this process's connections (idempotent)."""
        if self._pid == os.getpid():
            for conn in self._shards.values():
                conn.close()
            if self._conn is not None:
                self._conn.close()
            self.maps.close()
        self._shards.clear()
        self._small.clear()
        self.maps = Maps(self)
        self._conn = None


def _blob_reader(conn: sqlite3.Connection, task_id: int, path: Path) -> Reader:
    """Pieces of task ``task_id``'s block columns in ``conn`` (a dataset at ``path``), by incremental BLOB I/O."""

    def read(column: str, at: int, size: int, total: int | None) -> bytes:
        try:
            with conn.blobopen("blocks", column, task_id, readonly=True) as blob:
                length = len(blob)
                if total is not None and length != total:
                    raise Damage(f"its {column} hold {length} bytes, expected {total}")
                if at + size > length:
                    raise Damage(f"its {column} end at byte {length}, before byte {at + size}")
                blob.seek(at)
                data = blob.read(size)
        except sqlite3.Error as exc:
            # SQLITE_ERROR from a checked schema: no such row, or a value that is not a BLOB
            mapped = storage_error(exc, path, "reading")
            if getattr(exc, "sqlite_errorname", None) == "SQLITE_ERROR" or isinstance(mapped, DatasetDamagedError):
                raise Damage(f"its {column} cannot be read ({exc})") from exc
            raise mapped from exc
        if len(data) != size:
            raise Damage(f"its {column} gave {len(data)} bytes, expected {size}")
        return data

    return read
