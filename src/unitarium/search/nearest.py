"""Nearest unitaries and approximate synthesis, by exact brute force on matrix products.

The distance is the phase-invariant Frobenius distance
``D(U, V) = min_phi ||U - e^{i phi} V||_F = sqrt(2 d - 2 |tr(U^dag V)|)``, a metric on
unitaries up to global phase; for one qubit it orders pairs as Qiskit's Solovay-Kitaev
search does (the SO(3) distance is a monotone function of ``|tr(U^dag V)|``).

``|tr(U^dag V)|`` for every query and record is one complex matrix product of the
``(q, d^2)`` conjugated queries with the ``(d^2, N)`` records (BLAS), so the results are
exact, not approximate: an index library only pays where it may miss neighbours
(BENCHMARKS.md, "Search"). Ties go to the lower record id.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ._table import SearchTable

__all__ = ["approximate_many", "distance", "nearest_ids"]

_ENTRIES = 1 << 22
"""Scores formed at once (64 MiB of complex128)."""


def distance(score: np.ndarray | float, d: int) -> np.ndarray:
    """``D`` from ``|tr(U^dag V)|`` (clipped at 0 against rounding)."""
    return np.sqrt(np.maximum(0.0, 2.0 * d - 2.0 * np.asarray(score, dtype=np.float64)))


def nearest_ids(targets: np.ndarray, blocks: Iterable[tuple[int, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest records of each of the ``(q, d, d)`` targets: ids ``(q, k')`` and
    distances ``(q, k')``, nearest first (``k' = min(k, N)``). ``blocks`` lists the records
    as ``(first id, (b, d, d) complex128 unitaries)``."""
    q, d = len(targets), targets.shape[-1]
    flat = np.conj(targets).reshape(q, -1)
    best_ids = np.zeros((q, 0), dtype=np.int64)
    best_scores = np.zeros((q, 0))
    for first, block in blocks:
        cols = block.reshape(len(block), -1).T
        for lo in range(0, len(block), max(1, _ENTRIES // max(q, 1))):
            part = cols[:, lo : lo + _ENTRIES // max(q, 1)]
            scores = np.abs(flat @ part)
            ids = np.broadcast_to(np.arange(first + lo, first + lo + part.shape[1]), scores.shape)
            best_ids, best_scores = _top(
                np.concatenate([best_ids, ids], axis=1), np.concatenate([best_scores, scores], axis=1), k
            )
    return best_ids, distance(best_scores, d)


def _top(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` highest scores (ties: lower id first), sorted."""
    if scores.shape[1] > k:
        keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # argpartition may cut through a tie at the k-th score: take every tied id, then sort
        kth = np.take_along_axis(scores, keep, axis=1).min(axis=1, keepdims=True)
        if np.count_nonzero(scores >= kth) > kth.size * k:
            return _top_ties(ids, scores, k, kth)
        ids, scores = np.take_along_axis(ids, keep, axis=1), np.take_along_axis(scores, keep, axis=1)
    order = np.lexsort((ids, -scores), axis=1)
    return np.take_along_axis(ids, order, axis=1)[:, :k], np.take_along_axis(scores, order, axis=1)[:, :k]


def _top_ties(ids: np.ndarray, scores: np.ndarray, k: int, kth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out_ids, out_scores = np.empty((len(ids), k), dtype=np.int64), np.empty((len(ids), k))
    for r in range(len(ids)):
        sel = np.flatnonzero(scores[r] >= kth[r, 0])
        order = np.lexsort((ids[r, sel], -scores[r, sel]))[:k]
        out_ids[r], out_scores[r] = ids[r, sel[order]], scores[r, sel[order]]
    return out_ids, out_scores


def approximate_many(table: SearchTable, targets: np.ndarray, max_length: int) -> list[tuple[int, int, float]]:
    """For each target, ``(id of A, id of B, D)`` minimising ``D(U, B A)`` over all table
    records with ``len(A) + len(B) <= max_length`` (at most ``2 L``).

    Every unitary with a circuit of length ``l <= max_length`` is such a product with
    ``len(A) = ceil(l / 2)`` and ``len(B) = floor(l / 2)`` (halves of a shortest circuit are
    shortest, hence in the table), so only those pairs are scored (``len(B)`` is
    ``len(A) - 1`` or ``len(A)``) and the result is the best over *all* circuits of length
    ``<= max_length``. Ties within ``1e-10 d`` go to the shorter circuit, then lower ids."""
    return [_approximate_one(table, u, max_length) for u in targets]


def _pairs(table: SearchTable, max_length: int) -> list[tuple[int, slice]]:
    """``(a, ids of B)`` for each prefix level ``a``: suffixes of length ``a - 1`` and ``a``
    within the budget (levels are contiguous id ranges, so two levels are one slice)."""
    out = []
    for a in range(min(table.max_length, (max_length + 1) // 2) + 1):
        top = min(a, max_length - a)
        if top >= 0:
            out.append((a, slice(table.level(max(a - 1, 0)).start, table.level(top).stop)))
    return out


def _approximate_one(table: SearchTable, u: np.ndarray, max_length: int) -> tuple[int, int, float]:
    d, tol = table.dim, 1e-10 * table.dim
    best = -1.0
    cands: list[np.ndarray] = []  # rows (score, length, i, j) within tol of the best so far
    for a, suffix in _pairs(table, max_length):
        level = table.level(a)
        if level.stop == level.start or suffix.stop == suffix.start:
            continue
        # |tr((B A)^dag U)| = |<B, U A^dag>|: rows are prefixes, columns suffixes
        queries = (u[None] @ np.conj(np.swapaxes(table.unitaries[level], 1, 2))).reshape(-1, d * d)
        cols = np.conj(table.unitaries[suffix]).reshape(-1, d * d).T
        step = max(1, _ENTRIES // cols.shape[1])
        for lo in range(0, len(queries), step):
            scores = np.abs(queries[lo : lo + step] @ cols)
            top = float(scores.max())
            if top < best - tol:
                continue
            best = max(best, top)
            r, c = np.nonzero(scores >= best - tol)
            i, j = level.start + lo + r, suffix.start + c
            length = table.lengths[i] + table.lengths[j]
            cands.append(np.stack([scores[r, c], length, i, j], axis=1))
    rows = np.concatenate(cands)
    rows = rows[rows[:, 0] >= best - tol]
    pick = rows[np.lexsort((rows[:, 3], rows[:, 2], rows[:, 1]))[0]]
    i, j = int(pick[2]), int(pick[3])
    exact = abs(np.vdot(table.unitaries[j] @ table.unitaries[i], u))
    return i, j, float(distance(exact, d))
