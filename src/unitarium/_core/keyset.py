"""A set of 128-bit keys: a hash table of numpy arrays (no Python object per key).

A key is a pair of int64 words ``(hi, lo)`` (``KeyScheme.wide_keys``): 64-bit keys alone would
collide (~2,400 pairs among 3e11 unitaries), and a collision would drop a distinct unitary;
with 128 bits the chance is ~1e-16 at that scale.

Every key scheme spreads both words evenly (``exact``'s module docstring), so a key's bucket is its first
word scaled: the 32 bits of ``hi`` below its top 6 (:data:`_SHIFT`), times the bucket count, over 2^32. Not the
top bits: a partition owns a range of first words, and its keys would crowd a share of the buckets (chains of
full buckets through the rest); a range of a partition of at most 64 is at least 2^58 wide, so its keys spread
over every bucket, and keys sorted by ``hi`` read the buckets in at most 64 ascending sweeps. A bucket holds
:data:`SLOTS` keys; a full one passes new keys on to the next (linear probing; nothing is ever deleted, so a
query stops at the first bucket that has it or is not full). A membership query is a few passes over the
queries whatever the set's size: one gather of its bucket's 8 first words, compared as one 8-byte mask, then,
for the few whose bucket was full, the next buckets (the last few queries, and an insert's last few keys, one at
a time: a pass over arrays costs ~50 us whatever their length). The table grows by half (:data:`GROWTH`) once
:data:`MAX_LOAD` of its slots are used: 16 bytes a slot and a count byte per bucket, 21.5-32 bytes a key; while
it grows, the old table beside the new one (2.5 times the old's bytes at most). Under a byte limit (a key
store's share of the budget) the last growth goes to the limit, and the table then fills to :data:`FULL_LOAD`
(17.9 bytes a key) before the caller spills it; a spilled set's next table starts at its last size.

Measured against the sorted runs that this replaced (a log-structured merge of O(log n) runs, each searched
per query), 5M queries against ~700k keys in tasks of 4,096: membership 1.07 -> 0.43 s, inserts 0.17 -> 0.37 s;
whole runs in BENCHMARKS.md ("Unique runs with a hash table of keys").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .keykernels import kernels

__all__ = [
    "Alternates",
    "KeySet",
    "alternate_rows",
    "drop_for_alternates",
    "first_occurrences",
    "first_sorted",
    "keep_mask",
    "merge_runs",
    "select_new",
]

SLOTS = 8
"""Keys per bucket: a bucket's first words are one gather of 64 bytes, compared as one 8-byte mask."""
MAX_LOAD = 0.75
"""The share of slots in use past which the table grows (a bucket is then full with probability ~0.2)."""
FULL_LOAD = 0.9
"""The share of slots a table at its byte limit fills before it can take no more (the caller then spills it)."""
GROWTH = 1.5
"""How much the bucket count grows by (at least to a load of a half; to the limit at most)."""
_AT_LIMIT = 1.2
"""A table within this factor of its limit's bucket count grows no more: it fills to :data:`FULL_LOAD`."""
_BUCKET_BYTES = SLOTS * 16 + 1
_MIN_BUCKETS = 16
_SHIFT = np.uint64(6)
"""Bucket bits: the 32 below the top 6 of the first word (a partition of at most 64 owns a range of first words at
least 2^58 wide, so its keys spread over every bucket; keys sorted by ``hi`` read buckets in at most 64 sweeps)."""
_SLOT = np.arange(SLOTS)
_AHEAD = 4
"""Buckets read at once by a query whose own bucket is full and lacks it (the chain of full buckets it may be in)."""
_ONE_BY_ONE = 64
"""Keys :meth:`_Table.place` puts one at a time (a pass over arrays costs ~50 us whatever their length, one key
~1 us): the ~30 left after a task's first pass at 75% load, and the few that then go on from bucket to bucket."""
_ONE_BY_ONE_FIND = 8
"""Queries :meth:`_Table.find` follows one at a time past their own bucket (~2 us a bucket; a pass over arrays
~45 us): a task's first pass past its own buckets leaves ~40 (in 4 buckets, most are answered), then a few."""
_MOVE = 1 << 16
"""Buckets moved at once when the table grows (the old table's keys go over in slices: no whole copy)."""


def _pairs(keys: np.ndarray) -> np.ndarray:
    return np.asarray(keys, dtype=np.int64).reshape(-1, 2)


class _Table:
    """The hash table of a :class:`KeySet` (see the module's docstring)."""

    def __init__(self, buckets: int = _MIN_BUCKETS) -> None:
        if buckets >= 1 << 32:
            raise MemoryError(f"a key table of {buckets:,} buckets is past the bucket rule's 2^32")
        self.hi = np.zeros((buckets, SLOTS), dtype=np.int64)
        self.lo = np.zeros((buckets, SLOTS), dtype=np.int64)
        self.count = np.zeros(buckets, dtype=np.uint8)
        """Slots in use per bucket (slots ``0 .. count-1``; the others are zero)."""
        self.n = 0

    @property
    def nbytes(self) -> int:
        return self.hi.nbytes + self.lo.nbytes + self.count.nbytes

    def bucket(self, hi: np.ndarray) -> np.ndarray:
        """Each first word's home bucket: its 32 bits below the top 6 (:data:`_SHIFT`) scaled to the bucket count
        (a partition's keys share the top bits of their first word, not these)."""
        low = (hi.view(np.uint64) << _SHIFT) >> np.uint64(32)
        return ((low * np.uint64(len(self.count))) >> np.uint64(32)).astype(np.intp)

    def find(self, hi: np.ndarray, lo: np.ndarray, found: np.ndarray) -> None:
        """Set ``found`` where ``(hi, lo)`` (contiguous int64) is in the table. First each query's own bucket:
        its 8 first words compared at once (an 8-byte mask whose lowest set byte is the first slot with the
        query's first word); then, for the queries whose bucket is full and lacks them, :data:`_AHEAD`
        buckets at once, and so on. Compiled where this process has loaded :mod:`.keykernels`."""
        if (compiled := kernels()) is not None:
            compiled[0](self.hi, self.lo, self.count, hi, lo, found)
            return
        bucket = self.bucket(hi)
        count = self.count[bucket]
        same = np.take(self.hi, bucket, axis=0) == hi[:, None]
        mask = same.view(np.uint64).ravel()  # byte j is 1 where slot j has the query's first word
        rows = np.flatnonzero(mask)
        bits = mask[rows]
        lowest = bits & (~bits + np.uint64(1))
        slot = np.log2(lowest.astype(np.float64)).astype(np.intp) >> 3  # (a power of two: exact)
        hit = (slot < count[rows]) & (np.take(self.lo.ravel(), bucket[rows] * SLOTS + slot) == lo[rows])
        found[rows[hit]] = True
        go_on = (count == SLOTS) & ~found
        go_on[rows[(bits != lowest) & ~hit]] = True  # more than one slot with its first word (~never)
        ask = np.flatnonzero(go_on)
        start = bucket[ask]
        buckets = len(self.count)
        while len(ask):  # (the few left: several buckets at once, from their own)
            if len(ask) <= _ONE_BY_ONE_FIND:
                self._find_each(hi[ask].tolist(), lo[ask].tolist(), start.tolist(), ask, found)
                return
            at = (start[:, None] + np.arange(_AHEAD)) % buckets
            counts = self.count[at]
            both = (self.hi[at] == hi[ask, None, None]) & (self.lo[at] == lo[ask, None, None])
            hit = (both & (counts[..., None] > _SLOT)).any(axis=(1, 2))
            found[ask[hit]] = True
            more = ~hit & (counts == SLOTS).all(axis=1)
            ask, start = ask[more], (start[more] + _AHEAD) % buckets

    def _find_each(self, hi: list[int], lo: list[int], start: list[int], ask: np.ndarray, found: np.ndarray) -> None:
        """:meth:`find` one query at a time (query ``ask[i]`` from bucket ``start[i]``): bucket after bucket
        until one has it or is not full."""
        count, buckets = self.count, len(self.count)
        for i, (h, lo_, b) in enumerate(zip(hi, lo, start, strict=True)):
            while True:
                used = int(count[b])
                words = self.hi[b, :used].tolist()
                if h in words and any(w == h and self.lo[b, j] == lo_ for j, w in enumerate(words)):
                    found[ask[i]] = True
                    break
                if used < SLOTS:
                    break
                b = b + 1 if b + 1 < buckets else 0

    def place(self, hi: np.ndarray, lo: np.ndarray) -> None:
        """Put keys in the first free slots of their buckets, in order; those past a full bucket go on
        to the next one, until every key has a slot (the table is never more than :data:`FULL_LOAD` full).
        The last few (at most :data:`_ONE_BY_ONE`) one at a time; all of them so where this process has loaded
        :mod:`.keykernels`."""
        self.n += len(hi)
        if (compiled := kernels()) is not None:
            compiled[1](self.hi, self.lo, self.count, hi, lo)
            return
        bucket = self.bucket(hi)
        buckets = len(self.count)
        while len(bucket):
            n = len(bucket)
            if n <= _ONE_BY_ONE:
                self._place_each(hi.tolist(), lo.tolist(), bucket.tolist())
                return
            if n > 1 and np.any(bucket[1:] < bucket[:-1]):
                order = np.argsort(bucket, kind="stable")
                hi, lo, bucket = hi[order], lo[order], bucket[order]
            starts = np.empty(n, dtype=bool)
            starts[0] = True
            np.not_equal(bucket[1:], bucket[:-1], out=starts[1:])
            index = np.arange(n)
            rank = index - np.maximum.accumulate(np.where(starts, index, 0))  # place among its bucket's keys
            slot = self.count[bucket].astype(np.intp) + rank
            fits = slot < SLOTS
            placed = bucket[fits] * SLOTS + slot[fits]
            self.hi.ravel()[placed] = hi[fits]
            self.lo.ravel()[placed] = lo[fits]
            last = fits.copy()  # the last key placed in each bucket sets its count
            last[:-1] &= ~(fits[1:] & ~starts[1:])
            self.count[bucket[last]] = slot[last] + 1
            over = ~fits
            hi, lo, bucket = hi[over], lo[over], bucket[over]
            ahead = (bucket[:, None] + np.arange(1, _AHEAD + 1)) % buckets  # on to the first of these not full
            bucket = (bucket + 1 + np.argmin(self.count[ahead] == SLOTS, axis=1)) % buckets

    def _place_each(self, hi: list[int], lo: list[int], bucket: list[int]) -> None:
        """:meth:`place` one key at a time: each in the first bucket from its own that is not full."""
        count, buckets = self.count, len(self.count)
        for h, lo_, b in zip(hi, lo, bucket, strict=True):
            while (used := int(count[b])) == SLOTS:
                b = b + 1 if b + 1 < buckets else 0
            self.hi[b, used] = h
            self.lo[b, used] = lo_
            count[b] = used + 1

    def moved(self, buckets: int) -> _Table:
        """A table of ``buckets`` buckets with every key of this one, moved a slice at a time."""
        table = _Table(buckets)
        for a in range(0, len(self.count), _MOVE):
            used = self.count[a : a + _MOVE, None] > _SLOT
            hi, lo = self.hi[a : a + _MOVE][used], self.lo[a : a + _MOVE][used]
            table.place(hi, lo)
        return table

    def take_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Every key, in bucket order; the table is left empty, each word's slots freed once taken (at most
        the table and one word of its keys at once, besides the words taken)."""
        used = self.count[:, None] > _SLOT
        hi = self.hi[used]
        self.hi = np.zeros((0, SLOTS), dtype=np.int64)
        lo = self.lo[used]
        self.lo, self.count, self.n = np.zeros((0, SLOTS), dtype=np.int64), np.zeros(0, dtype=np.uint8), 0
        return hi, lo


class KeySet:
    """Membership of 128-bit keys ``(n, 2)`` int64, for deduplication (a unique run's keys in RAM): a hash
    table (see the module's docstring). ``limit``: the bytes the table may grow to (None: no limit); a table
    at its limit fills to :data:`FULL_LOAD` and then takes no more keys than :meth:`fits` says (the key store
    spills it first), unless a single batch needs more."""

    def __init__(self, keys: np.ndarray | None = None, *, limit: int | None = None) -> None:
        self._table = _Table()
        self._cap = None if limit is None else max(_MIN_BUCKETS, limit // _BUCKET_BYTES)
        self._again = 0
        if keys is not None and len(keys):
            self.add(np.unique(_pairs(keys), axis=0))

    def __len__(self) -> int:
        return self._table.n

    @property
    def nbytes(self) -> int:
        return self._table.nbytes

    def _room(self, buckets: int) -> int:
        """Keys a table of ``buckets`` buckets holds before it grows (or, at the limit, before it is full)."""
        at_limit = self._cap is not None and buckets * _AT_LIMIT > self._cap
        return int((FULL_LOAD if at_limit else MAX_LOAD) * buckets * SLOTS)

    def _buckets_for(self, n: int) -> int | None:
        """The bucket count to hold ``n`` keys: None where the table holds them as it is; else grown by
        :data:`GROWTH` (at least to a load of a half), to the limit at most, unless even that is too few."""
        buckets = len(self._table.count)
        if n <= self._room(buckets):
            return None
        grown = max(int(buckets * GROWTH), -(-n * 2 // SLOTS))
        if self._cap is not None and grown > self._cap and n <= self._room(max(self._cap, buckets)):
            grown = max(self._cap, buckets)
        return None if grown == buckets else grown

    def fits(self, more: int) -> bool:
        """Whether ``more`` keys can be added within the limit (always, without one)."""
        n = len(self) + more
        buckets = self._buckets_for(n) or len(self._table.count)
        return self._cap is None or (buckets <= max(self._cap, len(self._table.count)) and n <= self._room(buckets))

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask: which of the ``(n, 2)`` keys are in the set."""
        keys = _pairs(keys)
        return self.contains_sorted(keys[:, 0], keys[:, 1])

    def contains_sorted(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """:meth:`contains` of keys given as their two words (sorted by ``hi`` or not: the same)."""
        found = np.zeros(len(hi), dtype=bool)
        if len(hi) and len(self):
            self._table.find(np.ascontiguousarray(hi, dtype=np.int64), np.ascontiguousarray(lo, dtype=np.int64), found)
        return found

    def add(self, keys: np.ndarray) -> None:
        """Add keys not yet in the set (the caller filters; a key added twice takes two slots)."""
        keys = _pairs(keys)
        self.add_sorted(keys[:, 0], keys[:, 1])

    def add_sorted(self, hi: np.ndarray, lo: np.ndarray) -> None:
        """:meth:`add` of keys given as their two words (the key store's come sorted by ``hi``; no matter)."""
        if not len(hi):
            return
        if not len(self) and self._again:  # (allocated zero: its pages are taken as keys land)
            self._table, self._again = _Table(self._again), 0
        buckets = self._buckets_for(len(self) + len(hi))
        if buckets is not None:
            self._table = self._table.moved(buckets)
        hi = np.ascontiguousarray(hi, dtype=np.int64)
        self._table.place(hi, np.ascontiguousarray(lo, dtype=np.int64))

    def select_new(self, primary: np.ndarray, alternates: dict[int, np.ndarray]) -> np.ndarray:
        """Which rows of a batch are new (:func:`select_new` against this set)."""
        return select_new(self.contains, primary, alternates)

    def drain(self) -> tuple[np.ndarray, np.ndarray]:
        """Every key as one run ``(hi, lo)`` sorted by ``hi``; the set is left empty (for spilling to disk).
        The keys are taken out (the table freed as they are) and sorted one word at a time: at most about 1.8
        times the table's bytes at once (at :data:`FULL_LOAD`: 32 bytes a key while sorted, the table 17.9)."""
        self._again = len(self._table.count)  # (a spilled set fills again: its next table starts this size)
        hi, lo = self._table.take_keys()
        self._table = _Table()
        order = np.argsort(hi, kind="stable")
        hi = hi[order]
        lo = lo[order]
        return hi, lo


def merge_runs(
    older: tuple[np.ndarray, np.ndarray], newer: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Two runs ``(hi, lo)`` sorted by ``hi`` as one, in the order a stable sort of ``older`` then
    ``newer`` gives (equal first words: the older run's first). Placed, not sorted: the output
    (16 bytes a key) plus 8 bytes per key of ``newer`` and 1 per key beside the inputs, so about 2.3
    times the keys' bytes at the peak (a concatenation sorted by ``argsort`` took 3.5 times)."""
    old_hi, old_lo = older
    new_hi, new_lo = newer
    n = len(old_hi) + len(new_hi)
    at = np.searchsorted(old_hi, new_hi, side="right")
    at += np.arange(len(new_hi), dtype=at.dtype)  # the newer keys' places in the output
    theirs = np.ones(n, dtype=bool)
    theirs[at] = False  # the older keys' places
    hi, lo = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    hi[at], lo[at] = new_hi, new_lo
    hi[theirs], lo[theirs] = old_hi, old_lo
    return hi, lo


def select_new(
    contains: Callable[[np.ndarray], np.ndarray], primary: np.ndarray, alternates: dict[int, np.ndarray]
) -> np.ndarray:
    """Which rows of a batch are new: not in the set (``contains``: its membership mask), and not
    equal to an earlier row of the batch, under their primary key or any alternate key.

    ``primary`` is ``(batch, 2)`` int64; ``alternates`` maps a row to its ``(k, 2)``
    alternate keys (rows near a grid boundary). Earlier rows win, so order decides ties.
    """
    primary = _pairs(primary)
    rows, alts = alternate_rows(alternates)
    return keep_mask(primary, contains(primary), rows, alts, contains(np.concatenate(alts)) if rows else None)


class Alternates(dict[int, np.ndarray]):
    """A task's alternate keys, row -> ``(k, 2)`` int64 (a dict), pickled as three arrays (its rows, their counts,
    the keys concatenated) rather than an array per row: a unique task's keys message with ~40 alternates took 90 us
    to pickle, 43 us so (and fewer objects to unpickle); unpickled, each row's keys are a view of the one array."""

    def __reduce__(self) -> tuple[Any, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        rows = np.fromiter(self, dtype=np.int64, count=len(self))
        arrays = [_pairs(a) for a in self.values()]
        sizes = np.array([len(a) for a in arrays], dtype=np.int64)
        keys = np.concatenate(arrays) if arrays else np.zeros((0, 2), np.int64)
        return _alternates_of, (rows, sizes, keys)


def _alternates_of(rows: np.ndarray, sizes: np.ndarray, keys: np.ndarray) -> Alternates:
    """:class:`Alternates` from its three arrays (as pickled)."""
    ends = np.cumsum(sizes).tolist()
    return Alternates((int(r), keys[e - n : e]) for r, n, e in zip(rows.tolist(), sizes.tolist(), ends, strict=True))


def alternate_rows(alternates: dict[int, np.ndarray]) -> tuple[list[int], list[np.ndarray]]:
    """The rows that have alternates, in order, and their ``(k, 2)`` alternate keys."""
    rows = sorted(alternates)
    return rows, [_pairs(alternates[r]) for r in rows]


def keep_mask(
    primary: np.ndarray, in_set: np.ndarray, rows: list[int], alts: list[np.ndarray], alts_in_set: np.ndarray | None
) -> np.ndarray:
    """:func:`select_new` from the membership already known: ``in_set`` of the primary keys, and
    ``alts_in_set`` of the alternates ``alts`` of ``rows`` concatenated (a partitioned authority asks
    each partition for its share of both at once)."""
    keep = ~in_set & first_occurrences(primary)
    if not rows:
        return keep
    assert alts_in_set is not None
    stored = np.split(alts_in_set, np.cumsum([len(a) for a in alts])[:-1])
    for row, row_alts, found in zip(rows, alts, stored, strict=True):
        if keep[row] and (found.any() or _rows_in(row_alts, primary[:row][keep[:row]]).any()):
            keep[row] = False
    return keep


def drop_for_alternates(
    keep: np.ndarray,
    hi: np.ndarray,
    lo: np.ndarray,
    order: np.ndarray,
    rows: list[int],
    alt_keys: np.ndarray,
    sizes: list[int],
    alt_found: np.ndarray,
) -> np.ndarray:
    """:func:`keep_mask`'s alternates on the one-sort path: ``keep`` holds the rows kept by their primary
    key alone (first of their key, not stored); ``hi, lo`` are the primary keys ``primary[order]``
    sorted stably by ``hi``, where equal first words mean equal keys (:func:`first_sorted` did not
    return None); ``alt_keys`` the alternates of ``rows`` concatenated (``sizes`` each), ``alt_found``
    their membership. A kept row is dropped when one of its alternates is stored or is the key of an
    earlier kept row (whose fate is settled first: rows in order). Updates ``keep``; returns the
    dropped rows, in order."""
    owner = np.repeat(np.asarray(rows, dtype=np.intp), sizes)
    pos = np.minimum(np.searchsorted(hi, alt_keys[:, 0], side="left"), len(hi) - 1)
    same = (hi[pos] == alt_keys[:, 0]) & (lo[pos] == alt_keys[:, 1])
    earliest = np.where(same, order[pos], len(hi))  # the first row whose key is the alternate
    dropped = []
    for k in np.flatnonzero(alt_found | (earliest < owner)):  # few; in row order
        row = owner[k]
        if keep[row] and (alt_found[k] or keep[earliest[k]]):
            keep[row] = False
            dropped.append(row)
    return np.array(dropped, dtype=np.intp)


def first_sorted(hi: np.ndarray, lo: np.ndarray) -> np.ndarray | None:
    """For keys sorted by their first word ``hi`` (stably: equal keys in row order), the mask of those
    not equal to an earlier one, in that order; None when two different keys share a first word (~never
    with well-mixed keys: the caller falls back to :func:`first_occurrences`)."""
    first = np.ones(len(hi), dtype=bool)
    if len(hi) < 2:
        return first
    same_hi = hi[1:] == hi[:-1]
    same = same_hi & (lo[1:] == lo[:-1])
    if not np.array_equal(same, same_hi):
        return None
    first[1:] = ~same
    return first


def first_occurrences(keys: np.ndarray) -> np.ndarray:
    """Boolean mask of the ``(n, 2)`` keys that do not equal an earlier row: what
    ``np.unique(keys, axis=0, return_index=True)`` tells, ~5x faster. One stable sort by the first
    word (:func:`first_sorted`); a stable sort by both words when two different pairs share a first
    word (~never with well-mixed keys)."""
    keys = _pairs(keys)
    order = np.argsort(keys[:, 0], kind="stable")
    first = first_sorted(keys[order, 0], keys[order, 1])
    if first is None:
        order = np.lexsort((keys[:, 1], keys[:, 0]))  # (stable: the earliest row of equal ones comes first)
        hi, lo = keys[order, 0], keys[order, 1]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    out = np.empty(len(keys), dtype=bool)
    out[order] = first
    return out


def _rows_in(rows: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Which rows of ``rows`` ``(k, 2)`` occur in ``table`` ``(m, 2)``."""
    if not len(table):
        return np.zeros(len(rows), dtype=bool)
    return (rows[:, None, :] == table[None, :, :]).all(axis=2).any(axis=1)
