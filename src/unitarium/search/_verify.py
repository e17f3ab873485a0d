"""Synthesis's candidates verified (:mod:`.mitm`): each target's least ``(cost, length, id of A, id of B)`` whose
``B A`` equals it up to global phase, without forming the others.

Every prefix ``A`` whose key matches that of ``U A^dag`` in the table is a candidate, and for a Clifford target at a
level nearly every prefix matches: forming and checking them all formed thousands of products a target. Here each
target's least candidate is checked first (the four fields packed into one int64: a minimum per target, no sort);
where it fails (a false key match: rare) the next; the first that holds is the answer. Past :data:`_PICKS` failed
picks, or where the fields do not pack, the candidates left are sorted and checked in rounds. Runs on the scan's
threads (numpy only).
"""

from __future__ import annotations

import numpy as np

from ._table import SearchTable

__all__ = ["least_verified", "settle", "verify"]


def _cost_length(
    table: SearchTable, costs: np.ndarray, i: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The cost and the length of each candidate circuit ``A; B`` (int64)."""
    return costs[i].astype(np.int64) + costs[rows], table.lengths[i].astype(np.int64) + table.lengths[rows]


def _firsts(x: np.ndarray) -> np.ndarray:
    """Whether each entry of ``x`` (grouped: equal entries adjacent) is the first of its group."""
    first = np.ones(len(x), dtype=bool)
    first[1:] = x[1:] != x[:-1]
    return first


def _order(table: SearchTable, costs: np.ndarray, t: np.ndarray, i: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Candidates as rows ``(target, cost, length, id of A, id of B)``, sorted (each target's least first)."""
    cost, length = _cost_length(table, costs, i, rows)
    return np.stack([t, cost, length, i, rows], axis=1)[np.lexsort((rows, i, length, cost, t))]


def least_verified(
    table: SearchTable,
    costs: np.ndarray,
    targets: np.ndarray,
    t: np.ndarray,
    i: np.ndarray,
    rows: np.ndarray,
    atol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of the candidates ``(t, i, rows)``, the least ``(cost, length, id of A, id of B)`` of each target whose
    ``B A`` equals it (:func:`verify`): each target's least candidate is verified, and where it fails (a false
    key match: rare) the next; the first that holds is the least, the ones after it are never formed (forming them
    all, as before, formed every match of a Clifford target). The least is found without a sort where the four
    fields pack into one int64 (:func:`_packed`); past :data:`_PICKS` rounds, or where they do not pack, the
    candidates left are sorted (:func:`_by_rounds`)."""
    packed = _packed(table, costs, t, i, rows)
    if packed is None:
        return _by_rounds(table, targets, _order(table, costs, t, i, rows), atol)
    if len(t) > 1 and np.any(t[1:] < t[:-1]):  # (find() hands them grouped by target: kept as a guard)
        order = np.argsort(t, kind="stable")
        t, i, rows, packed = t[order], i[order], rows[order], packed[order]
    starts = np.flatnonzero(_firsts(t))
    group = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(t))))
    dead = np.iinfo(np.int64).max
    wins: list[np.ndarray] = []
    for _ in range(_PICKS):
        least = np.minimum.reduceat(packed, starts)
        pick = np.flatnonzero((packed == least[group]) & (packed != dead))  # (one per target: (A, B) unique)
        if not len(pick):
            break
        ok = verify(table, targets[t[pick]], i[pick], rows[pick], atol)
        wins.append(pick[ok])
        done = np.zeros(len(starts), dtype=bool)
        done[group[pick[ok]]] = True
        packed[pick[~ok]] = dead
        packed[done[group]] = dead
    won = np.concatenate(wins) if wins else np.zeros(0, np.int64)
    left = np.flatnonzero(packed != dead)
    if len(left):  # (targets whose first _PICKS candidates all failed)
        more = _by_rounds(table, targets, _order(table, costs, t[left], i[left], rows[left]), atol)
        return tuple(np.concatenate([x[won], y]) for x, y in zip((t, i, rows), more, strict=True))  # type: ignore[return-value]
    return t[won], i[won], rows[won]


_PICKS = 4
"""Rounds of :func:`least_verified` that verify each target's least candidate left before the rest are sorted."""


def _packed(table: SearchTable, costs: np.ndarray, t: np.ndarray, i: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
    """``(cost, length, id of A, id of B)`` of each candidate as one non-negative int64 in the same order, or None
    where they do not fit in 62 bits (a table of more than about 2^25 records; 63 bits all set would be the mark of a
    candidate checked and failed)."""
    if not len(t):
        return None
    cost, length = _cost_length(table, costs, i, rows)
    if cost.min() < 0:
        return None
    ids = max(1, (len(table) - 1).bit_length())
    lbits = max(1, int(length.max()).bit_length())
    if int(cost.max()).bit_length() + lbits + 2 * ids > 62:
        return None
    return (cost << (lbits + 2 * ids)) | (length << (2 * ids)) | (i.astype(np.int64) << ids) | rows.astype(np.int64)


def _by_rounds(
    table: SearchTable, targets: np.ndarray, cand: np.ndarray, atol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`least_verified` by sorting: each target's candidates in order (``cand``: :func:`_order`'s rows),
    verified in rounds of at most ``1, 2, 4, ...`` a target."""
    wins = []
    width = 1
    while len(cand):
        owner = cand[:, 0]
        starts = np.flatnonzero(_firsts(owner))
        rank = np.arange(len(cand)) - np.repeat(starts, np.diff(np.append(starts, len(cand))))
        now = np.flatnonzero(rank < width)
        ok = verify(table, targets[owner[now]], cand[now, 3], cand[now, 4], atol)
        won = now[ok]
        first = won[_firsts(owner[won])]
        wins.append(cand[first])
        cand = cand[(rank >= width) & ~np.isin(owner, owner[first])]
        width *= 2
    out = np.concatenate(wins) if wins else np.zeros((0, 5), np.int64)
    return out[:, 0], out[:, 3], out[:, 4]


def settle(
    table: SearchTable, costs: np.ndarray, t: np.ndarray, i: np.ndarray, rows: np.ndarray, best: np.ndarray
) -> None:
    """Lower ``best`` to the least of the verified candidates ``(t, i, rows)`` (:func:`.mitm._candidates`) where it
    wins."""
    if not len(t):
        return
    cand = _order(table, costs, t, i, rows)
    cand = cand[_firsts(cand[:, 0])]  # each target's least
    cand = cand[_below(cand[:, 1:], best[cand[:, 0]])]
    best[cand[:, 0]] = cand[:, 1:]


def _below(cand: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Whether each row of ``cand`` is lexicographically less than the same row of ``best`` (both ``(n, 4)``)."""
    less = np.zeros(len(cand), dtype=bool)
    equal = np.ones(len(cand), dtype=bool)
    for k in range(cand.shape[1]):
        less |= equal & (cand[:, k] < best[:, k])
        equal &= cand[:, k] == best[:, k]
    return less


def verify(table: SearchTable, targets: np.ndarray, a: np.ndarray, b: np.ndarray, atol: float) -> np.ndarray:
    """Whether ``B A`` equals each target up to global phase, entrywise within ``atol``."""
    if not len(a):
        return np.zeros(0, dtype=bool)
    product = table.take(b) @ table.take(a)
    overlap = np.einsum("nij,nij->n", np.conj(product), targets)
    mag = np.abs(overlap)
    phase = np.where(mag > 0, overlap / np.where(mag > 0, mag, 1), 1)
    return np.abs(targets - phase[:, None, None] * product).max(axis=(1, 2)) <= atol
