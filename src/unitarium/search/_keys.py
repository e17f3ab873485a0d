"""An in-memory hash index of unitaries up to global phase, for batched exact matching.

The scheme is :mod:`unitarium._core.canonical`'s (smooth phase fixing, random projections
rounded to a grid, neighbouring cells near a boundary), with its own coarse grid: cells
of ``DELTA = 2**-5`` and a margin ``ETA = 2**-9`` (about 2e-3, ten to a hundred times what
an error of ``1e-5`` per entry moves a coordinate). The *table* side stores each
entry under its primary key and every alternate key (each subset of its near coordinates
moved to the neighbouring cell); a *query* then needs its primary key only: a query
within ``ETA`` of an entry in every coordinate has its cells either equal to the entry's
or, where they differ, the entry's coordinate lies within ``ETA`` of that boundary and
so is near, and the alternate moving exactly those coordinates is the query's key.
Candidates are always verified, so collisions cost time, never correctness.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["ETA", "KeyIndex", "bloom", "primary_keys"]

DIMS = 8
DELTA = 2.0**-5
ETA = 2.0**-9


@functools.cache
def _scheme(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase weights ``(d, d)``, projections ``(2 d^2, DIMS)`` and odd salts ``(DIMS,)`` for dimension ``d``."""
    rng = np.random.default_rng(np.random.SeedSequence(0x5EA4C4, spawn_key=(d,)))
    weights = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
    proj = rng.normal(size=(2 * d * d, DIMS))
    proj /= np.linalg.norm(proj, axis=0)
    salt = rng.integers(1, 2**62, size=DIMS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    return weights, proj, salt


def _coordinates(u: np.ndarray) -> np.ndarray:
    """``(n, DIMS)`` grid coordinates of ``(n, d, d)`` unitaries with their phase fixed
    (the phase of ``sum(W * U)`` rotated to zero)."""
    weights, proj, _ = _scheme(u.shape[-1])
    s = np.einsum("ij,nij->n", weights, u)
    mag = np.abs(s)
    phase = np.where(mag > 0, np.conj(s) / np.where(mag > 0, mag, 1), 1)
    v = u * phase[:, None, None]
    flat = np.concatenate([v.real, v.imag], axis=-1).reshape(len(v), -1)
    return (flat @ proj) / DELTA


def _mix(cells: np.ndarray, d: int) -> np.ndarray:
    """One int64 key per row of ``(n, DIMS)`` integer cells: the splitmix64 finaliser (a
    bijection) of the cells as eight signed bytes when they fit one (``|cell| <= 32 sqrt(d) + 1``:
    up to ``d = 8``), else of their salted sum."""
    if _bytes_fit(d):
        x = np.ascontiguousarray(cells, dtype=np.int8).view(np.uint64)[:, 0]
    else:
        salt = _scheme(d)[2]
        with np.errstate(over="ignore"):
            x = (cells.astype(np.uint64) * salt).sum(axis=-1, dtype=np.uint64)
    return splitmix(x).view(np.int64)


def _bytes_fit(d: int) -> bool:
    """Whether every cell of dimension ``d`` fits a signed byte: a coordinate is a unit vector
    times the phase-fixed unitary (Frobenius norm ``sqrt(d)``) over ``DELTA``; alternates add 1."""
    return DIMS == 8 and np.sqrt(d) / DELTA + 2 <= 127


def splitmix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of uint64 ``x`` (a bijection that spreads the bits)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))  # type: ignore[no-any-return]


def primary_keys(u: np.ndarray) -> np.ndarray:
    """``(n,)`` int64 keys of ``(n, d, d)`` unitaries (the cell each lies in)."""
    return _mix(np.floor(_coordinates(u) + 0.5).astype(np.int64), u.shape[-1])


def _all_keys(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every key (primary and alternates) of each unitary: ``(keys, rows)``, flat."""
    y = _coordinates(u) + 0.5
    cells = np.floor(y)
    frac = y - cells
    near = np.minimum(frac, 1 - frac) < ETA / DELTA
    neighbour = np.where(frac < 0.5, cells - 1, cells + 1)
    rows = np.arange(len(u))
    variants = cells.astype(np.int64)
    for k in range(DIMS):  # double the variants of rows near in coordinate k
        pick = np.flatnonzero(near[rows, k])
        moved = variants[pick].copy()
        moved[:, k] = neighbour[rows[pick], k]
        variants = np.concatenate([variants, moved])
        rows = np.concatenate([rows, rows[pick]])
    return _mix(variants, u.shape[-1]), rows


@dataclass(frozen=True, eq=False)
class KeyIndex:
    """Every key of a stack of unitaries, packed and sorted: ``find`` returns, for query keys,
    the rows whose cell (or neighbouring cell) matches, as ``(query, row)`` pairs.

    One uint64 an entry: the key's high ``64 - row_bits`` bits above the row number (so the
    index costs 8 bytes an entry, about ``2.6 N`` entries for ``N`` rows: each of the
    ``DIMS`` coordinates is near a boundary for a fraction ``2 ETA / DELTA = 1/8`` of rows).
    Dropping the low key bits only adds candidates, which the caller verifies anyway."""

    packed: np.ndarray
    row_bits: int

    @classmethod
    def build(cls, blocks: Iterable[tuple[int, np.ndarray]], n: int) -> KeyIndex:
        """The index of ``n`` rows given as ``(first row, (b, d, d) unitaries)`` blocks."""
        row_bits = max(1, int(n).bit_length())
        packed, used = np.empty(3 * n + 1, dtype=np.uint64), 0  # about 2.6 n keys: one array, filled in place
        for first, u in blocks:
            keys, rows = _all_keys(u)
            if used + len(keys) > len(packed):
                packed = np.concatenate([packed[:used], np.empty(len(packed) // 2 + len(keys), dtype=np.uint64)])
            packed[used : used + len(keys)] = _pack(keys, row_bits) | (rows.astype(np.uint64) + np.uint64(first))
            used += len(keys)
        packed.resize(used, refcheck=False)  # shrinks in place
        packed.sort()
        dup = np.flatnonzero(packed[1:] == packed[:-1])  # the same (key, row) twice: practically never
        return cls(np.delete(packed, dup + 1) if len(dup) else packed, row_bits)

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(q, rows)``: query ``q[j]`` matched table row ``rows[j]``; rows ascend per query."""
        low = _pack(keys, self.row_bits)
        order = np.argsort(low)  # sorted needles: each search starts where the last ended (cache-friendly)
        lo, hi = np.empty(len(keys), np.intp), np.empty(len(keys), np.intp)
        lo[order] = np.searchsorted(self.packed, low[order], side="left")
        hi[order] = np.searchsorted(self.packed, low[order] | np.uint64((1 << self.row_bits) - 1), side="right")
        count = hi - lo
        q = np.repeat(np.arange(len(keys)), count)
        first = np.repeat(lo - np.concatenate([[0], np.cumsum(count)[:-1]]), count)
        found = self.packed[first + np.arange(len(q))] & np.uint64((1 << self.row_bits) - 1)
        return q, found.astype(np.int64)


def _pack(keys: np.ndarray, row_bits: int) -> np.ndarray:
    """The high ``64 - row_bits`` bits of int64 ``keys``, as uint64 with the low bits zero."""
    shift = np.uint64(row_bits)
    return (keys.view(np.uint64) >> shift) << shift


def bloom(packed: np.ndarray, row_bits: int) -> tuple[np.ndarray, int]:
    """A one-hash Bloom filter of the sorted ``packed`` keys: ``(bits, nbits)``, bit ``h``
    (byte ``h >> 3``, bit ``h & 7``) set when some key has top ``nbits`` bits ``h``; about 8
    bits a key (one in nine absent keys passes), ``2^nbits / 8`` bytes. A query key passes when
    its top ``nbits`` bits are set: a key in the index always does."""
    nbits = int(min(max(3, max(len(packed), 1).bit_length() + 3), 64 - row_bits))
    seen = np.zeros(1 << nbits, dtype=bool)
    seen[packed >> np.uint64(64 - nbits)] = True
    return np.packbits(seen, bitorder="little"), nbits


def passes(bits: np.ndarray, nbits: int, keys: np.ndarray) -> np.ndarray:
    """Whether each int64 key may be in the filter of :func:`bloom` (no false negatives)."""
    h = keys.view(np.uint64) >> np.uint64(64 - nbits)
    return (bits[h >> np.uint64(3)] >> (h & np.uint64(7)).astype(np.uint8)) & np.uint8(1) != 0
