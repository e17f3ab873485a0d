"""Blocks: how one task's records are laid out in BLOBs, and their checksums. Pure numpy, no I/O.

A block holds ``n`` records of one task as raw little-endian arrays (never pickle):

- ``offsets`` uint32, ``n + 1`` of them: record ``j`` has codes ``codes[offsets[j]:offsets[j+1]]``;
- ``codes`` uint8 (uint16 with more than 256 moves): the move codes of every circuit, concatenated;
- ``unitaries`` ``(n, d, d)`` complex64/complex128, row-major, or absent (``--unitaries computed``);
- ``keys`` ``(n, 2)`` int64 dedup keys (unique mode), or absent;
- ``checks`` uint64: one checksum per *page* of ``P`` consecutive records (the last page may be shorter).

The checksum of page ``k`` (records ``a = kP .. b - 1``, ``b = min(n, (k+1)P)``) is XXH3-64
(the ``xxhash`` library) of the bytes of ``offsets[a : b + 1]``, ``codes[offsets[a] : offsets[b]]``,
``unitaries[a:b]`` and ``keys[a:b]`` in that order, chained through the seed: each part's
digest is the seed of the next part's, and absent parts are skipped. The first seed binds the
block to its place (:func:`task_seed`): XXH3-64 of the dataset's 16-byte id followed by the task id
(8 bytes, little-endian), so a block moved to another task, or a segment copied from another
dataset, fails its checksums (0 in datasets of schema 2, which have no id). Every
byte of a block is covered by some page (each offset by the page that starts or ends with it), so
a flipped byte anywhere is caught by the first read that touches it. Pages are about
:data:`PAGE_BYTES`: reading one record checks one page, not the whole block. (XXH3 because the
checksums are computed for every record written and read: zlib's CRC-32 ran at ~0.5 GB/s here
and cost as much CPU as computing a 2-qubit record; XXH3 runs at several GB/s. Measured:
BENCHMARKS.md, "Checksums".)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xxhash

__all__ = [
    "PAGE_BYTES",
    "Block",
    "BlockFormat",
    "Damage",
    "code_dtype",
    "encode",
    "page_records",
    "read_rows",
    "task_seed",
]

PAGE_BYTES = 16384
"""Target payload of one checksummed page: a record read costs at most this many extra bytes."""


def code_dtype(num_moves: int) -> np.dtype:
    """``uint8`` move codes while there are at most 256 moves, else ``uint16``."""
    return np.dtype("<u1") if num_moves <= 256 else np.dtype("<u2")


def page_records(unitary_bytes: int, unique: bool) -> int:
    """Records per checksummed page: about :data:`PAGE_BYTES` of payload, at least 1."""
    per_record = unitary_bytes + 16 + (16 if unique else 0)
    return max(1, PAGE_BYTES // per_record)


@dataclass(frozen=True)
class BlockFormat:
    """The dtypes and shapes every block of a dataset shares, and the dataset's id (stored in
    ``meta.format``; None in datasets of schema 2)."""

    dim: int
    unitary_dtype: np.dtype
    code_dtype: np.dtype
    stored_unitaries: bool
    keyed: bool
    page: int
    dataset: bytes | None = None

    @property
    def unitary_bytes(self) -> int:
        """Bytes of one stored unitary (0 when unitaries are computed on read)."""
        return self.dim * self.dim * self.unitary_dtype.itemsize if self.stored_unitaries else 0


@dataclass
class Block:
    """Records ``lo .. lo + n - 1`` of a block, decoded: ``offsets`` (n + 1, rebased to start at
    0), ``codes``, ``unitaries`` ``(n, d, d)`` or None, ``keys`` ``(n, 2)`` or None."""

    offsets: np.ndarray
    codes: np.ndarray
    unitaries: np.ndarray | None
    keys: np.ndarray | None

    @property
    def count(self) -> int:
        return len(self.offsets) - 1

    def slice(self, lo: int, hi: int) -> Block:
        """Records ``lo .. hi - 1`` of this one (offsets rebased)."""
        a, b = int(self.offsets[lo]), int(self.offsets[hi])
        return Block(
            self.offsets[lo : hi + 1] - a,
            self.codes[a:b],
            None if self.unitaries is None else self.unitaries[lo:hi],
            None if self.keys is None else self.keys[lo:hi],
        )


def task_seed(fmt: BlockFormat, task_id: int) -> int:
    """The first checksum seed of task ``task_id``'s block: its dataset id and task id, hashed."""
    if fmt.dataset is None:
        return 0
    return xxhash.xxh3_64_intdigest(fmt.dataset + int(task_id).to_bytes(8, "little", signed=True))


def _le(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))


def encode(
    fmt: BlockFormat,
    task_id: int,
    offsets: np.ndarray,
    codes: np.ndarray,
    unitaries: np.ndarray | None,
    keys: np.ndarray | None,
) -> dict[str, bytes | None]:
    """The BLOBs of a block (column name -> bytes; absent columns None), checksums included."""
    off = _le(offsets, np.dtype(np.uint32))
    cod = _le(codes, fmt.code_dtype)
    uni = _le(unitaries, fmt.unitary_dtype) if fmt.stored_unitaries and unitaries is not None else None
    key = _le(keys, np.dtype(np.int64)) if fmt.keyed and keys is not None else None
    checks = page_checks(fmt, task_id, off, cod, uni, key)
    return {
        "offsets": off.tobytes(),
        "codes": cod.tobytes(),
        "unitaries": None if uni is None else uni.tobytes(),
        "keys": None if key is None else key.tobytes(),
        "checks": checks.tobytes(),
    }


def page_checks(
    fmt: BlockFormat,
    task_id: int,
    offsets: np.ndarray,
    codes: np.ndarray,
    unitaries: np.ndarray | None,
    keys: np.ndarray | None,
) -> np.ndarray:
    """The checksum of each page of a run of whole pages of a block (the last may be short).
    ``offsets`` are the block's own values (not rebased) for the run's rows and the one after,
    ``codes`` start at ``offsets[0]``; ``unitaries`` and ``keys`` start at the run's first row; the
    block is task ``task_id``'s (its seed)."""
    n = len(offsets) - 1
    p = fmt.page
    base = int(offsets[0])
    out = np.empty(-(-n // p), dtype="<u8")
    digest = xxhash.xxh3_64_intdigest
    seed = task_seed(fmt, task_id)
    off_bytes = _bytes(offsets)
    code_bytes = _bytes(codes)
    uni_bytes = None if unitaries is None else _bytes(unitaries)
    key_bytes = None if keys is None else _bytes(keys)
    cs, us, ks = codes.itemsize, fmt.unitary_bytes, 16
    for k in range(len(out)):
        a, b = k * p, min(n, (k + 1) * p)
        h = digest(off_bytes[4 * a : 4 * (b + 1)], seed)
        h = digest(code_bytes[(int(offsets[a]) - base) * cs : (int(offsets[b]) - base) * cs], h)
        if uni_bytes is not None:
            h = digest(uni_bytes[a * us : b * us], h)
        if key_bytes is not None:
            h = digest(key_bytes[a * ks : b * ks], h)
        out[k] = h
    return out


def _bytes(array: np.ndarray) -> memoryview:
    """The bytes of an array (made contiguous) as a flat memoryview, for the hash."""
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    return memoryview(flat)  # type: ignore[arg-type]  # ndarray implements the buffer protocol


class Damage(Exception):
    """A block's bytes disagree with their checksums or shapes: ``rows`` ``(a, b)`` are the block
    rows affected (``None``: the whole block), ``detail`` says what is wrong."""

    def __init__(self, detail: str, rows: tuple[int, int] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.rows = rows


Reader = Callable[[str, int, int, int | None], bytes]
"""``read(column, at, size, total)``: ``size`` bytes of a block's ``column`` BLOB from byte ``at``;
the BLOB must hold ``total`` bytes unless None. Raises :class:`Damage` for a short read."""


def read_rows(fmt: BlockFormat, task_id: int, count: int, lo: int, hi: int, read: Reader) -> Block:
    """Records ``lo .. hi - 1`` of task ``task_id``'s block of ``count`` records, read through ``read`` a page at a
    time (only the pages holding them) and checked against their checksums."""
    p = fmt.page
    a, b = (lo // p) * p, min(count, -(-hi // p) * p)
    first_page, pages = a // p, -(-count // p)
    off = np.frombuffer(read("offsets", 4 * a, 4 * (b - a + 1), 4 * (count + 1)), "<u4")
    if np.any(off[1:] < off[:-1]):
        raise Damage("its offsets decrease", (a, b))
    cs = fmt.code_dtype.itemsize
    total = int(off[-1]) * cs if b == count else None
    codes = np.frombuffer(read("codes", int(off[0]) * cs, int(off[-1] - off[0]) * cs, total), fmt.code_dtype)
    uni = keys = None
    if fmt.stored_unitaries:
        us = fmt.unitary_bytes
        uni = np.frombuffer(read("unitaries", a * us, (b - a) * us, count * us), fmt.unitary_dtype)
    if fmt.keyed:
        keys = np.frombuffer(read("keys", a * 16, (b - a) * 16, count * 16), "<i8")
    stored = np.frombuffer(read("checks", 8 * first_page, 8 * (-(-b // p) - first_page), 8 * pages), "<u8")
    bad = np.flatnonzero(page_checks(fmt, task_id, off, codes, uni, keys) != stored)
    if bad.size:
        k = int(bad[0])
        raise Damage(
            "its checksum does not match its bytes (bit rot, changed outside unitarium, or moved from another "
            "task or dataset)",
            (a + k * p, min(count, a + (k + 1) * p)),
        )
    d = fmt.dim
    block = Block(
        off.astype(np.int64) - int(off[0]),
        codes,
        None if uni is None else uni.reshape(-1, d, d),
        None if keys is None else keys.reshape(-1, 2),
    )
    return block.slice(lo - a, hi - a)
