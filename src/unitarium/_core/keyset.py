"""A set of 128-bit keys held as sorted numpy arrays (no Python object per key).

A key is a pair of int64 words ``(hi, lo)`` (``KeyScheme.wide_keys``): 64-bit keys alone would
collide (~2,400 pairs among 3e11 unitaries), and a collision would drop a distinct unitary;
with 128 bits the chance is ~1e-16 at that scale. Keys live in a few runs sorted by ``hi``
(``lo`` alongside) whose sizes at least double from newest to oldest (a log-structured merge):
adding ``k`` keys costs an ``O(k log k)`` sort plus amortised linear merges, a membership query
``O(log^2 n)``. Memory is 16 bytes per key, plus about 1.3 times the largest run while it merges (:func:`merge_runs`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "KeySet",
    "alternate_rows",
    "drop_for_alternates",
    "first_occurrences",
    "first_sorted",
    "keep_mask",
    "merge_runs",
    "select_new",
]


def _pairs(keys: np.ndarray) -> np.ndarray:
    return np.asarray(keys, dtype=np.int64).reshape(-1, 2)


class KeySet:
    """Membership of 128-bit keys ``(n, 2)`` int64, for deduplication in the driver."""

    def __init__(self, keys: np.ndarray | None = None) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        if keys is not None and len(keys):
            self.add(np.unique(_pairs(keys), axis=0))

    def __len__(self) -> int:
        return sum(len(hi) for hi, _ in self._runs)

    @property
    def nbytes(self) -> int:
        return sum(hi.nbytes + lo.nbytes for hi, lo in self._runs)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask: which of the ``(n, 2)`` keys are in the set."""
        keys = _pairs(keys)
        order = np.argsort(keys[:, 0], kind="stable")  # sorted queries walk each run in order: ~4x faster
        found = self.contains_sorted(keys[order, 0], keys[order, 1])
        out = np.empty_like(found)
        out[order] = found
        return out

    def contains_sorted(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """:meth:`contains` of keys already sorted by their first word ``hi`` (mask in that order)."""
        found = np.zeros(len(hi), dtype=bool)
        for run_hi, run_lo in self._runs:
            # One search per query: the first entry with the same first word, if any, is at ``left``;
            # a query whose first word occurs more than once there (~never) scans all of them.
            left = np.searchsorted(run_hi, hi, side="left")
            at = np.minimum(left, len(run_hi) - 1)
            hit = run_hi[at] == hi
            found |= hit & (run_lo[at] == lo)
            more = np.flatnonzero(hit & (at + 1 < len(run_hi)))
            more = more[run_hi[at[more] + 1] == hi[more]]
            for r in more:
                right = np.searchsorted(run_hi, hi[r], side="right")
                found[r] |= bool(np.any(run_lo[left[r] : right] == lo[r]))
        return found

    def add(self, keys: np.ndarray) -> None:
        """Add keys not yet in the set (the caller filters; duplicates waste space only)."""
        keys = _pairs(keys)
        order = np.argsort(keys[:, 0], kind="stable")
        self.add_sorted(keys[order, 0], keys[order, 1])

    def add_sorted(self, hi: np.ndarray, lo: np.ndarray) -> None:
        """:meth:`add` of keys already sorted by their first word ``hi`` (no sort: the decision path
        sorts a task's keys once)."""
        if not len(hi):
            return
        self._runs.append((np.array(hi, dtype=np.int64), np.array(lo, dtype=np.int64)))
        while len(self._runs) > 1 and 2 * len(self._runs[-1][0]) >= len(self._runs[-2][0]):
            newer = self._runs.pop()
            self._runs.append(merge_runs(self._runs.pop(), newer))

    def select_new(self, primary: np.ndarray, alternates: dict[int, np.ndarray]) -> np.ndarray:
        """Which rows of a batch are new (:func:`select_new` against this set)."""
        return select_new(self.contains, primary, alternates)

    def drain(self) -> tuple[np.ndarray, np.ndarray]:
        """Every key as one run ``(hi, lo)`` sorted by ``hi``; the set is left empty (for spilling
        to disk: transient memory about 2.3 times the set's, :func:`merge_runs`)."""
        runs, self._runs = self._runs, []
        if not runs:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        merged = runs.pop()
        while runs:  # newest (smallest) first: each input is freed once merged
            merged = merge_runs(runs.pop(), merged)
        return merged


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
