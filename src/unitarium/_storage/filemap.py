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

Descriptors of files SQLite may lock (dataset files, manifests: :func:`acquire`, :func:`read_header`)
follow SQLite's own rule (``unixInodeInfo``/``pUnused`` in its ``os_unix.c``): POSIX locks belong to a
process and an inode, and closing *any* descriptor of a file drops every lock the process holds on it,
SQLite's included (a writer in this process would lose its locks, and another process could then
switch the file out of WAL or truncate its ``-shm`` under it). So such a descriptor (and its maps,
which hold descriptors of their own) is closed only while this process holds no POSIX lock on the
file (``/proc/locks``); otherwise it is parked and closed later (:func:`settle`, called on every
acquire and release and by the writer when it closes). Where ``/proc/locks`` cannot be read (not
Linux), dataset files are not mapped and headers are read as before.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import threading
from pathlib import Path

__all__ = ["FileMap", "RowMap", "acquire", "read_header", "release", "settle"]

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_LEAF, _INTERIOR = 0x0D, 0x05
_MAX_DEPTH = 40
_REMAPS = 64
"""Maps of a lockable file kept at most (one more each time a growing file is read past its map)."""


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

    __slots__ = ("_chain", "_columns", "_file", "_local", "_pair", "_room")

    def __init__(self, file: FileMap, columns: dict[str, tuple[int, int]], local: bytes, chain: list[int]) -> None:
        self._file = file
        self._columns = columns  # name -> (start in the record, bytes)
        self._local = local
        self._chain = chain  # file position of each overflow page's payload
        self._room = file.usable - 4
        self._pair: tuple[int, int, int, int] | None = None

    def pair(self, first: str, second: str) -> None:
        """Name the two columns :meth:`read_pair` reads (each: a BLOB of this row, or not read)."""
        a, b = self._columns.get(first, (0, -1)), self._columns.get(second, (0, -1))
        local = len(self._local)
        self._pair = (a[0] - local, a[1], b[0] - local, b[1])

    def read_pair(self, at: int, size: int, at2: int, size2: int) -> tuple[bytes, bytes] | None:
        """:meth:`read` of the two columns named by :meth:`pair` at once (``size2`` 0: the second
        is not read, ``b""``): the hot path of a single record, one call for both of its slices."""
        pair = self._pair
        if pair is None or at < 0 or at2 < 0 or at + size > pair[1] or (size2 and at2 + size2 > pair[3]):
            return None
        room, chain, mm = self._room, self._chain, self._file.mm
        p = pair[0] + at
        page, off = divmod(p, room)
        if p >= 0 and off + size <= room and page < len(chain):
            pos = chain[page] + off
            one = mm[pos : pos + size]
        else:
            one = self._span(p, size)  # type: ignore[assignment]
        if not size2:
            return None if one is None or len(one) != size else (one, b"")
        p = pair[2] + at2
        page, off = divmod(p, room)
        if p >= 0 and off + size2 <= room and page < len(chain):
            pos = chain[page] + off
            two = mm[pos : pos + size2]
        else:
            two = self._span(p, size2)  # type: ignore[assignment]
        if one is None or two is None or len(one) != size or len(two) != size2:
            return None
        return one, two

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

    def _span(self, p: int, size: int) -> bytes | None:
        """``size`` bytes from ``p`` (relative to the end of the cell's bytes): in the cell, or across pages."""
        local = len(self._local)
        if p + size <= 0:
            return self._local[p + local : p + local + size]
        return self._pieces(p + local, size)

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
    docstring). ``row()`` answers None for anything it cannot map: the caller reads through SQLite.
    ``lockable``: a file SQLite may lock (see the module docstring): its maps are kept until
    :meth:`close` (a map dropped on its own would close its descriptor), and only :func:`release`
    closes it."""

    def __init__(self, path: str | os.PathLike[str], *, lockable: bool = False, fd: int | None = None) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY) if fd is None else fd
        stat = os.fstat(self._fd)
        self.key = (stat.st_dev, stat.st_ino)
        self.lockable = lockable
        self._lock = threading.Lock()
        self.mm: mmap.mmap | bytes = b""
        self._old: list[mmap.mmap] = []
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
        """Map the file's current length (it grows while a run writes); whether it grew. A file
        shorter than its map (truncated under it: damage) is not read through the map any more."""
        size = os.fstat(self._fd).st_size
        if size == len(self.mm):
            return False
        if size < len(self.mm):
            if self.lockable and isinstance(self.mm, mmap.mmap):
                self._old.append(self.mm)
            self.mm, self.page_size = b"", 0
            return False
        if isinstance(self.mm, mmap.mmap) and not self._retire():
            return False
        self.mm = mmap.mmap(self._fd, size, access=mmap.ACCESS_READ)
        return True

    def _retire(self) -> bool:
        """Stop using the current map; a lockable file's is kept until :meth:`close` (False: too
        many kept, keep using it)."""
        if self.lockable and isinstance(self.mm, mmap.mmap):
            if len(self._old) >= _REMAPS:
                return False
            self._old.append(self.mm)
        return True

    @property
    def fd(self) -> int:
        """The descriptor (-1 once closed): ``os.pread`` reads the file now, never past its end."""
        return self._fd

    def close(self) -> None:
        """Close the descriptor and the maps (a lockable file's: through :func:`release` only)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for old in self._old:
            old.close()
        self._old.clear()
        if isinstance(self.mm, mmap.mmap):
            with contextlib.suppress(BufferError):  # (a slice still exported: closed with its last view)
                self.mm.close()
        self.mm = b""  # (slices already taken are copies)

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
                self._remap()  # (the file's length now: never walk past its end)
                return self._row(root, rowid, columns) if self.page_size >= 512 else None
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


# -- descriptors of files SQLite may lock (see the module docstring) -------------------------------

_FILES: dict[tuple[int, int], tuple[FileMap, int]] = {}
"""The lockable files mapped in this process, by (device, inode): the map and its users."""
_PARKED: list[tuple[FileMap | int, tuple[int, int]]] = []
"""Maps and descriptors released while this process held a POSIX lock on their file."""
_FILES_LOCK = threading.RLock()
"""Re-entrant: reading ``/proc/locks`` under it may run the garbage collector, and a dropped reader's
finalizer then calls :func:`release` in the same thread (a plain lock deadlocked there)."""
_PROC_LOCKS = Path("/proc/locks")


def _locked_files() -> set[tuple[int, int]] | None:
    """The files ``(device, inode)`` on which this process holds a POSIX lock (None: cannot tell),
    from one read of ``/proc/locks``."""
    pid = str(os.getpid())
    try:
        text = _PROC_LOCKS.read_text()
    except OSError:
        return None
    found = set()
    for line in text.splitlines():  # "1: POSIX  ADVISORY  READ 1234 08:01:5678 1073741824 1073741824"
        fields = line.split()
        if "POSIX" not in fields or pid not in fields:
            continue
        try:
            at = fields.index(pid)
            major, minor, ino = fields[at + 1].split(":")
            found.add((os.makedev(int(major, 16), int(minor, 16)), int(ino)))
        except (ValueError, IndexError):
            continue
    return found


def _locked_here(key: tuple[int, int], locked: set[tuple[int, int]] | None = None) -> bool | None:
    """Whether this process holds a POSIX lock on the file ``key`` (None: cannot tell); ``locked``: a
    :func:`_locked_files` already read."""
    locked = _locked_files() if locked is None else locked
    return None if locked is None else key in locked


def _close_when_unlocked(
    item: FileMap | int, key: tuple[int, int], *, unknown: bool = False, locked: set[tuple[int, int]] | None = None
) -> None:
    """Close ``item`` (a map, or a descriptor) now if that drops no lock of this process, else park
    it (``unknown``: what to do where that cannot be told: close, as before)."""
    held = _locked_here(key, locked)
    if held is False or (held is None and unknown):
        if isinstance(item, FileMap):
            item.close()
        else:
            os.close(item)
    else:
        _PARKED.append((item, key))


def settle() -> None:
    """Close what was parked, where this process now holds no POSIX lock on its file."""
    with _FILES_LOCK:
        if not _PARKED:
            return
        parked = list(_PARKED)
        _PARKED.clear()
        locked = _locked_files()  # (once for all of them)
        for item, key in parked:
            _close_when_unlocked(item, key, locked=locked)


def _parked(key: tuple[int, int], kind: type) -> FileMap | int | None:
    """Take back a parked map (``kind`` FileMap) or descriptor (``int``) of the file ``key``, if any:
    reused instead of opening another that would have to be parked too (while this process holds a
    lock on a file, e.g. the writer's in WAL mode all run long, every release would park one more)."""
    for k, (item, parked_key) in enumerate(_PARKED):
        if parked_key == key and isinstance(item, kind):
            del _PARKED[k]
            return item
    return None


def _key(stat: os.stat_result) -> tuple[int, int]:
    return (stat.st_dev, stat.st_ino)


def acquire(path: str | os.PathLike[str]) -> FileMap | None:
    """The map of the lockable file at ``path`` (shared by this process's readers; give it back with
    :func:`release`), or None where it cannot be closed safely later (no ``/proc/locks``) or opened."""
    settle()
    if not _PROC_LOCKS.exists():
        return None
    try:
        with _FILES_LOCK:
            key = _key(os.stat(path))
            found = _FILES.get(key)
            if found is not None:
                _FILES[found[0].key] = (found[0], found[1] + 1)
                return found[0]
            revived = _parked(key, FileMap)
            if isinstance(revived, FileMap):  # (the same file: its maps follow its growth)
                _FILES[key] = (revived, 1)
                return revived
            file = FileMap(path, lockable=True)  # (opening a descriptor drops nothing)
            found = _FILES.get(file.key)
            if found is not None:  # (replaced meanwhile by a file mapped already)
                _PARKED.append((file, file.key))
                return None
            _FILES[file.key] = (file, 1)
            return file
    except OSError:
        return None


def release(file: FileMap) -> None:
    """Give back a map from :func:`acquire`: closed with its last user, once that drops no lock."""
    with _FILES_LOCK:
        found = _FILES.get(file.key)
        if found is None or found[0] is not file:
            return
        if found[1] > 1:
            _FILES[file.key] = (file, found[1] - 1)
            return
        del _FILES[file.key]
        _close_when_unlocked(file, file.key)


def read_header(path: str | os.PathLike[str], size: int = 100) -> tuple[bytes, int]:
    """The first ``size`` bytes of the file at ``path`` and its length, its descriptor closed only
    once that drops no lock of this process (see the module docstring)."""
    with _FILES_LOCK:
        try:
            reused = _parked(_key(os.stat(path)), int)
        except OSError:
            reused = None
    fd = reused if isinstance(reused, int) else os.open(path, os.O_RDONLY)
    stat = os.fstat(fd)
    try:
        data = os.pread(fd, size, 0)
    finally:
        with _FILES_LOCK:
            _close_when_unlocked(fd, _key(stat), unknown=True)
    return data, stat.st_size


def _after_fork() -> None:
    global _FILES_LOCK
    _FILES_LOCK = threading.RLock()


os.register_at_fork(after_in_child=_after_fork)
