"""A set of 64-bit keys held as sorted numpy arrays (no Python object per key).

Keys live in a few sorted runs whose sizes at least double from newest to oldest
(a log-structured merge): adding ``k`` keys costs an ``O(k log k)`` sort plus amortised
linear merges, a membership query ``O(log^2 n)``. Memory is 8 bytes per key, plus a
transient copy of the largest run while it merges.
"""

from __future__ import annotations

import numpy as np

__all__ = ["KeySet"]


class KeySet:
    """Membership of int64 keys, for deduplication in the writer."""

    def __init__(self, keys: np.ndarray | None = None) -> None:
        self._runs: list[np.ndarray] = []
        if keys is not None and len(keys):
            self.add(np.unique(np.asarray(keys, dtype=np.int64)))

    def __len__(self) -> int:
        return sum(len(r) for r in self._runs)

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self._runs)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``keys`` are in the set."""
        keys = np.asarray(keys, dtype=np.int64)
        found = np.zeros(len(keys), dtype=bool)
        for run in self._runs:
            idx = np.minimum(np.searchsorted(run, keys), len(run) - 1)
            found |= run[idx] == keys
        return found

    def add(self, keys: np.ndarray) -> None:
        """Add keys not yet in the set (the caller filters; duplicates waste space only)."""
        if not len(keys):
            return
        self._runs.append(np.sort(np.asarray(keys, dtype=np.int64)))
        while len(self._runs) > 1 and 2 * len(self._runs[-1]) >= len(self._runs[-2]):
            newest = self._runs.pop()
            merged = np.concatenate([self._runs.pop(), newest])
            merged.sort(kind="stable")
            self._runs.append(merged)

    def select_new(self, primary: np.ndarray, alternates: dict[int, list[int]]) -> np.ndarray:
        """Which rows of a batch are new: not in the set, and not equal to an earlier
        row of the batch, under their primary key or any alternate key.

        ``primary`` is ``(batch,)`` int64; ``alternates`` maps a row to its alternate
        keys (rows near a grid boundary). Earlier rows win, so order decides ties.
        """
        keep = ~self.contains(primary)
        _, first = np.unique(primary, return_index=True)
        first_mask = np.zeros(len(primary), dtype=bool)
        first_mask[first] = True
        keep &= first_mask
        for row in sorted(alternates):
            if not keep[row]:
                continue
            alts = np.asarray(alternates[row], dtype=np.int64)
            earlier = primary[:row][keep[:row]]
            if self.contains(alts).any() or np.isin(alts, earlier).any():
                keep[row] = False
        return keep
