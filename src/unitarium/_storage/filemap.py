"""Where a row's BLOBs lie in a SQLite file, read through ``mmap``: the fast path of record reads.

SQLite stores a ``blocks`` row as one record (a header of serial types, then the columns' bytes);
the first bytes sit in the row's cell on a b-tree leaf page, the rest in a chain of overflow pages
(each: a 4-byte next-page number, then ``usable - 4`` bytes of payload). :class:`FileMap` finds a
row by its rowid (walking the table's b-tree from its root page) and returns a :class:`RowMap`:
each column's place in the record, a copy of the cell's bytes and the overflow chain, so that any
byte range of a column is a slice of the map (one slice, unless the range crosses a page).

This is an accelerator, never an authority. The main file is read as it is on disk: in a WAL-mode
file the newest pages may still be in the ``-wal`` (not yet checkpointed), where only SQLite sees
them. So every answer is bounds-checked (anything odd: None, the caller reads through SQLite), and
the caller checks every byte it gets here against the block's checksums (read through SQLite)
before serving it, falling back to SQLite's BLOB reads when they disagree. The bytes a row holds
once committed never change (blocks are only appended, and their overflow pages are never freed
while the row exists); the cell itself may move when the b-tree rebalances, which is why its bytes
are copied, not mapped. Format: https://www.sqlite.org/fileformat2.html (b-tree pages, cell
payload, overflow pages).
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from pathlib import Path

__all__ = ["FileMap", "RowMap"]

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_LEAF, _INTERIOR = 0x0D, 0x05
_MAX_DEPTH = 40


def _varint(buf: bytes | mmap.mmap, at: int) -> tuple[int, int]:
    """SQLite's big-endian varint at ``at``: ``(value, next position)``."""
    value = 0
    for k in range(8):
        byte = buf[at + k]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + k + 1
    return (value << 8) | buf[at + 8], at + 9


def _serial_size(serial: int) -> int:
    if serial >= 12:
        return (serial - 12) // 2 if serial % 2 == 0 else (serial - 13) // 2
    return (0, 1, 2, 3, 4, 6, 8, 8, 0, 0, -1, -1)[serial]


class RowMap:
    """One row's columns as byte ranges of a mapped file (see the module docstring)."""

    __slots__ = ("_chain", "_columns", "_file", "_local", "_room")

    def __init__(self, file: FileMap, columns: dict[str, tuple[int, int]], local: bytes, chain: list[int]) -> None:
        self._file = file
        self._columns = columns  # name -> (start in the record, bytes)
        self._local = local
        self._chain = chain  # file position of each overflow page's payload
        self._room = file.usable - 4

    def length(self, column: str) -> int | None:
        """Bytes of ``column`` (None: not a BLOB of this row)."""
        found = self._columns.get(column)
        return None if found is None else found[1]

    def position(self, column: str, at: int) -> int | None:
        """Where byte ``at`` of ``column`` lies in the file (None: in the cell, or not in this row)."""
        found = self._columns.get(column)
        if found is None or not 0 <= at < found[1] or found[0] + at < len(self._local):
            return None
        page, off = divmod(found[0] + at - len(self._local), self._room)
        return self._chain[page] + off

    def read(self, column: str, at: int, size: int) -> bytes | None:
        """``size`` bytes of ``column`` from byte ``at`` (None: not in this row, or out of the map)."""
        found = self._columns.get(column)
        if found is None or at < 0 or size < 0 or at + size > found[1]:
            return None
        p = found[0] + at - len(self._local)
        if p >= 0:  # in the overflow pages (a record's bytes mostly are): one slice unless it crosses a page
            page, off = divmod(p, self._room)
            if off + size <= self._room and page < len(self._chain):
                pos = self._chain[page] + off
                data = self._file.mm[pos : pos + size]
                return data if len(data) == size else None
        elif p + size <= 0:
            return self._local[p + len(self._local) : p + len(self._local) + size]
        return self._pieces(p + len(self._local), size)

    def _pieces(self, p: int, size: int) -> bytes | None:
        out, local, room, end = [], len(self._local), self._room, p + size
        if p < local:
            out.append(self._local[p:local])
            p = local
        while p < end:
            page, off = divmod(p - local, room)
            if page >= len(self._chain):
                return None
            take = min(room - off, end - p)
            pos = self._chain[page] + off
            data = self._file.mm[pos : pos + take]
            if len(data) != take:
                return None
            out.append(data)
            p += take
        return b"".join(out)


class FileMap:
    """A SQLite file mapped read-only, and its table rows located by rowid (see the module
    docstring). ``row()`` answers None for anything it cannot map: the caller reads through SQLite."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        self._lock = threading.Lock()
        self.mm: mmap.mmap | bytes = b""
        self.page_size = self.usable = 0
        try:
            self._remap()
            header = self.mm[:100]
            size = _U16(header, 16)[0]
            self.page_size = 65536 if size == 1 else size
            self.usable = self.page_size - header[20]
        except (OSError, ValueError, struct.error, IndexError):
            self.page_size = 0  # not mappable: row() answers None

    def _remap(self) -> bool:
        """Map the file's current length (it grows while a run writes); whether it grew."""
        size = os.fstat(self._fd).st_size
        if size <= len(self.mm):
            return False
        self.mm = mmap.mmap(self._fd, size, access=mmap.ACCESS_READ)
        return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.mm = b""  # (slices already taken are copies; the old map goes with its last reference)

    def _page(self, number: int) -> int | None:
        """The file position of page ``number`` (None: past the file)."""
        if number < 1 or self.page_size < 512:
            return None
        pos = (number - 1) * self.page_size
        if pos + self.page_size > len(self.mm) and not (self._remap() and pos + self.page_size <= len(self.mm)):
            return None
        return pos

    def row(self, root: int, rowid: int, columns: tuple[str, ...]) -> RowMap | None:
        """The row ``rowid`` of the table whose b-tree starts at page ``root``, its record's columns
        named ``columns`` in order (None: not found or not mappable)."""
        if self.page_size < 512:
            return None
        with self._lock:
            try:
                return self._row(root, rowid, columns)
            except (IndexError, ValueError, struct.error, OSError):
                return None

    def _row(self, root: int, rowid: int, columns: tuple[str, ...]) -> RowMap | None:
        number = root
        for _ in range(_MAX_DEPTH):
            base = self._page(number)
            if base is None:
                return None
            head = base + (100 if number == 1 else 0)
            mm = self.mm
            kind, cells = mm[head], _U16(mm, head + 3)[0]
            if kind == _INTERIOR:
                number = _U32(mm, head + 8)[0]  # the right-most child unless a cell's key is >= rowid
                lo, hi = 0, cells
                while lo < hi:  # the first cell whose key is >= rowid
                    mid = (lo + hi) // 2
                    cell = base + _U16(mm, head + 12 + 2 * mid)[0]
                    if _varint(mm, cell + 4)[0] >= rowid:
                        hi = mid
                    else:
                        lo = mid + 1
                if lo < cells:
                    number = _U32(mm, base + _U16(mm, head + 12 + 2 * lo)[0])[0]
                continue
            if kind != _LEAF:
                return None
            lo, hi = 0, cells
            while lo < hi:
                mid = (lo + hi) // 2
                cell = base + _U16(mm, head + 8 + 2 * mid)[0]
                size, at = _varint(mm, cell)
                key, at = _varint(mm, at)
                if key == rowid:
                    return self._record(base, at, size, columns)
                if key < rowid:
                    lo = mid + 1
                else:
                    hi = mid
            return None
        return None

    def _record(self, base: int, at: int, size: int, columns: tuple[str, ...]) -> RowMap | None:
        u = self.usable
        if size <= u - 35:
            local = size
        else:
            least = (u - 12) * 32 // 255 - 23
            local = least + (size - least) % (u - 4)
            local = local if local <= u - 35 else least
        if at + local + (4 if local < size else 0) > base + self.page_size:
            return None
        cell = bytes(self.mm[at : at + local])
        chain: list[int] = []
        if local < size:
            pages = -(-(size - local) // (u - 4))
            number = _U32(self.mm, at + local)[0]
            for _ in range(pages):
                pos = self._page(number)
                if pos is None:
                    return None
                chain.append(pos + 4)
                number = _U32(self.mm, pos)[0]
        header, p = _varint(cell, 0)
        offset, found = header, {}
        for name in columns:
            if p >= header:
                return None
            serial, p = _varint(cell, p)
            length = _serial_size(serial)
            if length < 0:
                return None
            if serial >= 12 and serial % 2 == 0:  # a BLOB
                found[name] = (offset, length)
            offset += length
        if offset != size:
            return None
        return RowMap(self, found, cell, chain)
