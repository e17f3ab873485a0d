"""Exact synthesis by meet in the middle over a unique enumerated table.

Let the table hold a complete unique enumeration of max length ``L``: for every length
``l <= L`` its records of length ``l`` are exactly one per unitary (up to global phase)
whose shortest circuit has ``l`` moves, and each record's circuit is a shortest one
(breadth-first order keeps the first circuit found for a unitary; the enumeration's
pruning never loses a unitary reachable within the limit, see ``unitarium._spec.sources``).

**Why the answer is shortest.** Let ``c`` be a shortest circuit of ``U``, of length
``l <= 2L``, and ``a`` any split point with ``l - L <= a <= L``. The prefix ``c[:a]`` and
the suffix ``c[a:]`` are shortest circuits of their unitaries ``A`` and ``B`` (a shorter
circuit for either would shorten ``c``), so ``A`` is a table record of length exactly
``a`` and ``B`` one of length ``l - a``: the table keeps one circuit per unitary, which is
enough because only the unitaries matter, and the record's circuit has the same length.
``U = B A``, i.e. ``U A^dag = B``. The search takes every record ``A`` of length
``a = 0, 1, 2, ...`` in turn and looks ``U A^dag`` up among *all* records; a hit ``B``
gives the circuit ``A; B`` of length ``a + len(B)``. Every hit is a real circuit, so the
best hit is never shorter than ``l``; after level ``a`` every length ``<= L + a`` has been
tried (its split ``a' = max(0, l - L) <= a`` was), so a best hit of length ``<= L + a + 1``
is shortest and the target is settled. A target with no hit after level ``L`` has no
circuit of length ``<= 2L``. Ties: the least ``(length, id of A, id of B)``.

**Matching.** ``U A^dag`` is looked up in an in-memory hash index (:mod:`._keys`) and
every candidate ``B`` is verified: ``B A`` must equal ``U`` up to global phase, entrywise
within ``atol`` (as :func:`unitarium._core.canonical.equal_up_to_phase`). The index finds every
``B`` whose key coordinates lie within ``ETA`` (2e-3) of those of ``U A^dag``; an error of
``atol = 1e-5`` per entry moves a coordinate by about ``1e-4`` typically, so ``atol`` is
capped at ``MAX_ATOL``.
"""

from __future__ import annotations

import numpy as np

from .._core.circuit import Circuit
from .._errors import SpecError
from . import _table
from ._keys import query_keys
from ._progress import progress
from ._table import SearchTable

__all__ = ["MAX_ATOL", "synthesize_many"]

MAX_ATOL = 1e-4
_PAIRS = 1 << 19
"""Matrix entries (pairs x d^2) formed at once: 8 MiB of complex128 products (and a few times
that in key coordinates)."""


def synthesize_many(table: SearchTable, targets: np.ndarray, *, atol: float) -> list[Circuit | None]:
    """A shortest circuit for each of the ``(n, d, d)`` targets, or None where none of length
    ``<= 2 * table.max_length`` exists (see the module docstring for why)."""
    if not 0 < atol <= MAX_ATOL:
        raise SpecError(
            f"atol {atol!r} is out of range for exact synthesis: use 0 < atol <= {MAX_ATOL:g} "
            "(for looser matches use approximate())"
        )
    n = len(targets)
    best = np.full((n, 3), np.iinfo(np.int64).max, dtype=np.int64)  # (length, id of A, id of B)
    active = np.arange(n)
    table.index  # noqa: B018  # built (with its own progress) before the search's bar starts
    with progress("synthesising", n * table.upto(table.max_length)) as bar:
        for a in range(table.max_length + 1):
            if not len(active):
                break
            level = table.level(a)
            for lo in range(level.start, level.stop, _table.CHUNK):
                _search_prefixes(table, targets, active, slice(lo, min(level.stop, lo + _table.CHUNK)), best, atol)
                bar.advance(len(active) * (min(level.stop, lo + _table.CHUNK) - lo))
            settled = best[active, 0] <= table.max_length + a + 1
            bar.advance(int(settled.sum()) * (table.upto(table.max_length) - level.stop))
            active = active[~settled]
    found = best[:, 0] <= 2 * table.max_length
    return [table.circuit(int(best[t, 1]), int(best[t, 2])) if found[t] else None for t in range(n)]


def _search_prefixes(
    table: SearchTable, targets: np.ndarray, active: np.ndarray, ids: slice, best: np.ndarray, atol: float
) -> None:
    """Try every record of ``ids`` (one level) as the prefix of every active target; update ``best``."""
    prefixes = np.conj(np.swapaxes(table.block(ids.start, ids.stop), 1, 2))  # A^dag, (m, d, d)
    m, d = len(prefixes), table.dim
    if m == 0:
        return
    step = max(1, _PAIRS // (m * d * d))
    for lo in range(0, len(active), step):
        chunk = active[lo : lo + step]
        products = (targets[chunk][:, None] @ prefixes[None]).reshape(-1, d, d)  # U A^dag
        keys, have = query_keys(products, table.keys)  # tableau tables: non-Clifford products have no key
        query, rows = table.index.find(keys)
        query = have[query]
        t, i = chunk[query // m], ids.start + query % m
        ok = _verify(table, targets[t], i, rows, atol)
        _improve(best, t[ok], table.lengths[i[ok]].astype(np.int64) + table.lengths[rows[ok]], i[ok], rows[ok])


def _verify(table: SearchTable, targets: np.ndarray, a: np.ndarray, b: np.ndarray, atol: float) -> np.ndarray:
    """Whether ``B A`` equals each target up to global phase, entrywise within ``atol``."""
    if not len(a):
        return np.zeros(0, dtype=bool)
    product = table.take(b) @ table.take(a)
    overlap = np.einsum("nij,nij->n", np.conj(product), targets)
    mag = np.abs(overlap)
    phase = np.where(mag > 0, overlap / np.where(mag > 0, mag, 1), 1)
    return np.abs(targets - phase[:, None, None] * product).max(axis=(1, 2)) <= atol


def _improve(best: np.ndarray, t: np.ndarray, length: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Lower ``best[t]`` to ``(length, a, b)`` where that is lexicographically smaller."""
    if not len(t):
        return
    order = np.lexsort((b, a, length, t))
    t, length, a, b = t[order], length[order], a[order], b[order]
    first = np.concatenate([[True], t[1:] != t[:-1]])  # the least candidate of each target
    for target, cand in zip(t[first], np.stack([length, a, b], axis=1)[first], strict=True):
        if tuple(cand) < tuple(best[target]):
            best[target] = cand
