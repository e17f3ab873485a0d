"""The mapped road of single-record reads: blocks read through an ``mmap`` of their file.

:class:`Maps` (one per :class:`._blocks.BlockStore` and process) maps each shard's file once
(:class:`._filemap.FileMap`: a directory's segments, and a dataset file itself, shared by the
process's readers through :func:`._filemap.acquire`) and keeps, for the blocks read lately, a
:class:`MappedBlock`: where its columns lie in the map, its offsets (read through SQLite) and a flag
per page. Each page is checked whole against its checksums (read through SQLite) the first time the
store reads it (:meth:`MappedBlock.check`); a checked page's bytes are then served straight from the
map. A page whose mapped bytes fail the check while SQLite's pass sends its block back to SQLite's
BLOB reads, checked on every read: so a WAL-mode file whose newest pages are still in its ``-wal``
(where only SQLite sees them) is read through SQLite where the main file is behind. Every page is
checked on the first read of it by a store; a file changed on disk after that is caught by the next
store that opens it (or by ``verify``, which always reads through SQLite), not by this one. Blocks
never change once committed (segments are published whole; a dataset file's blocks are only
appended, and a rewrite at resume is a new segment renamed over the old: the map keeps the old one).

:meth:`Maps.version` tells a commit by another connection cheaply: a file in rollback-journal mode
(every complete dataset) increments the change counter of its header at every commit, read here with
one ``pread``; a WAL-mode file asks SQLite (``PRAGMA data_version``, a read transaction).
"""

from __future__ import annotations

import os
import weakref
from array import array
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.codec import Block, BlockFormat, Damage, read_rows
from .._errors import DatasetDamagedError
from .filemap import FileMap, RowMap, acquire, release
from .sqlite import bounded, sqlite_errors

if TYPE_CHECKING:
    from .blocks import BlockStore

__all__ = ["CACHED", "MappedBlock", "Maps"]

CACHED = 4096
"""Blocks whose map and page flags a store keeps (each: its offsets, ~16 KiB, and a byte a page)."""
_COLUMNS = ("task_id", "count", "offsets", "codes", "unitaries", "keys", "checks")
"""The columns of a ``blocks`` row, in the order of its schema (checked when a shard is opened)."""
_THROUGH_SQLITE = ("offsets", "checks")
_U32 = "I" if array("I").itemsize == 4 else "L"
"""Columns always read through SQLite (and kept whole by the store): what the mapped bytes are checked by."""


class Maps:
    """The mapped files and blocks of one store (see the module docstring)."""

    def __init__(self, store: BlockStore) -> None:
        self._store = store
        self._files: dict[int, tuple[FileMap, int] | None] = {}
        self._blocks: OrderedDict[tuple[int, int], MappedBlock] = OrderedDict()
        self._manifest: FileMap | bool | None = None
        """The manifest's map (shared in this process: :func:`._filemap.acquire`; False: none)."""
        self._finalizer: weakref.finalize | None = None
        self._fd = -1

    def version(self) -> object:
        """What changes whenever another connection commits to the manifest: its header's journal
        mode and change counter while it is in rollback-journal mode, else SQLite's ``data_version``."""
        fd = self._fd if self._manifest is not None else self._watch()
        if fd >= 0:
            mm = self._manifest.mm  # type: ignore[union-attr]  # (fd >= 0: a FileMap)
            # The header through the file's shared map (what write() changed, without a system call;
            # the first page of a database file is never truncated away), else by pread.
            head = mm[18:28] if len(mm) >= 100 else os.pread(fd, 10, 18)
            if head[0] == 1 and head[1] == 1:  # (bytes 18, 19: 1, rollback journal; 24..27: the counter)
                return head
        return self._store.data_version()

    def _watch(self) -> int:
        self._store.connection()  # (the manifest checked first)
        file = acquire(self._store.manifest)
        self._manifest = file or False
        if file is not None:  # (a handle dropped unclosed gives it back too)
            self._finalizer = weakref.finalize(self, release, file)
            self._finalizer.atexit = False  # (at exit the process's descriptors close anyway)
            self._fd = file.fd
        return self._fd

    def block(self, fmt: BlockFormat, task: tuple[int, int, int, int]) -> MappedBlock | None:
        """The block of ``task`` = ``(task_id, shard, first_id, count)`` through the map, or None."""
        task_id, shard, first, count = task
        found = self._blocks.get((shard, task_id))
        if found is not None:
            return found if found.row is not None and found.first == first and found.count == count else None
        self._store.in_range(shard, task_id)
        row = self._row(shard, task_id)
        if row is None:
            return None
        size = 4 * (count + 1)
        try:
            offsets = self._store.column_reader(shard, task_id)("offsets", 0, size, size)
        except Damage as exc:
            raise self._store.damaged((first, first + count), f"task {task_id}: {exc.detail}") from None
        found = MappedBlock(self._store, fmt, task, row, offsets)
        self._blocks[(shard, task_id)] = found
        if len(self._blocks) > CACHED:
            self._blocks.popitem(last=False)
        return found

    def forget_unmapped(self) -> None:
        """Drop what could not be mapped (after a commit: a checkpoint may have settled it)."""
        for key in [k for k, b in self._blocks.items() if b.row is None]:
            del self._blocks[key]
        for shard in [s for s, f in self._files.items() if f is None]:
            del self._files[shard]

    def _row(self, shard: int, task_id: int) -> RowMap | None:
        if shard not in self._files:
            store = self._store
            conn = store.shard(shard)
            path = store.manifest if shard == 0 else store.segment_path(shard)
            root: Any = None
            file: FileMap | None = None
            try:
                with sqlite_errors(path, "reading"), bounded(conn, path):
                    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'blocks'").fetchone()
                # A dataset file is shared with SQLite's locks: never closed beside them (see _filemap).
                if shard == 0 and self._manifest is None:
                    self._watch()
                file = (self._manifest or None) if shard == 0 else FileMap(path)  # type: ignore[assignment]
            except (OSError, DatasetDamagedError):
                pass
            ok = file is not None and root is not None and isinstance(root[0], int)
            self._files[shard] = (file, int(root[0])) if ok else None  # type: ignore[assignment]  # (None: through SQLite)
        found = self._files[shard]
        return None if found is None else found[0].row(found[1], task_id, _COLUMNS)

    def drop(self, shard: int) -> None:
        """Forget ``shard`` (its connection was closed)."""
        found = self._files.pop(shard, None)
        if found is not None and shard != 0:
            found[0].close()
        for key in [k for k in self._blocks if k[0] == shard]:
            del self._blocks[key]

    def close(self) -> None:
        for shard, found in self._files.items():
            if found is not None and shard != 0:
                found[0].close()
        if self._finalizer is not None:
            self._finalizer()
        self._manifest, self._fd = False, -1
        self._files.clear()
        self._blocks.clear()


class MappedBlock:
    """A task's block read through the map of its file: ``offsets`` (the block's, read through
    SQLite), ``checked[page]`` (0: not yet read; else what the reader marked after :meth:`check`)
    and ``row`` (the columns' places in the map; None once the map disagreed with SQLite)."""

    __slots__ = ("checked", "count", "first", "fmt", "offsets", "row", "shard", "store", "task_id")

    def __init__(
        self, store: BlockStore, fmt: BlockFormat, task: tuple[int, int, int, int], row: RowMap, offsets: bytes
    ) -> None:
        self.store, self.fmt = store, fmt
        self.task_id, self.shard, self.first, self.count = task
        self.row: RowMap | None = row
        row.pair("codes", "unitaries")
        self.offsets = array(_U32, np.frombuffer(offsets, "<u4").astype("=u4", copy=False).tobytes())
        """(An ``array``: Python ints at a fraction of a list's memory.)"""
        self.checked = bytearray(-(-self.count // fmt.page))

    def check(self, page: int, start: int | None = None, end: int | None = None) -> tuple[Block, int, int] | None:
        """Read page ``page``, or the pages ``start .. end - 1`` around it, through the map and check
        them, one read and one pass for the run: ``(its records, its first page, the page after its
        last)`` (the caller then marks ``checked``). Where a page of a longer run fails its check,
        only ``page`` is read and checked (a damaged neighbour must not cost a sound page its record). None (and
        the block unmapped) where the map disagrees with SQLite and SQLite's bytes are sound.
        Damage of ``page`` raises, as from :meth:`BlockStore.read`."""
        p = self.fmt.page
        start, end = (page, page + 1) if start is None or end is None else (start, end)
        lo, hi = start * p, min(self.count, end * p)
        try:
            return read_rows(self.fmt, self.task_id, self.count, lo, hi, self._read), start, end
        except Damage:
            if end - start > 1:
                return self.check(page)
        self.store.read(self.fmt, (self.task_id, self.shard, self.first, self.count, lo, hi))  # raises if damaged
        self.row = None
        return None

    def _read(self, column: str, at: int, size: int, total: int | None) -> bytes:
        row = self.row
        if column not in _THROUGH_SQLITE and row is not None and (total is None or row.length(column) == total):
            data = row.read(column, at, size)
            if data is not None:
                return data
        return self.store.column_reader(self.shard, self.task_id)(column, at, size, total)
