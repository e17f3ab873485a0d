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

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._core.kernels import one_blas_thread
from .._errors import SearchCostError
from . import _table
from ._progress import progress
from ._table import SearchTable

__all__ = ["MAX_PAIRS", "SearchCost", "approximate_cost", "approximate_many", "distance", "estimate", "nearest_ids"]

MAX_PAIRS = 5 * 10**8
"""Default refusal threshold of :func:`approximate_many`: pairs ``(A, B)`` scored over all
targets (tens of seconds on two cores; BENCHMARKS.md, "Search memory")."""

_ENTRIES = 1 << 22
"""Scores formed at once (64 MiB of complex128)."""

PAIRS_PER_SECOND = 2.5e7
"""Brute-force scoring rate used by :func:`estimate` (2 qubits on the 2-core machine of
BENCHMARKS.md: 2.6e7 pairs/s of CPU at a load average of 2-3, 1.5-1.8e7 under a load of 14,
faster when quiet; BENCHMARKS.md, "Search": the estimate against a real search)."""
_SMALL_BYTES = 1 << 23
"""Allowance of :func:`estimate` for what the search allocates besides its chunks: small arrays,
an index reader's reads rounded out to its 4,096-row checksums (1 MiB each), the answer."""
SCAN_RECORDS_PER_SECOND = {"memory": 4e6, "index": 2e6, "computed": 5e5}
"""Records per second of the first pass over the table (every record of length ``<= max_length``
scored alone), by where their unitaries come from: kept in memory, read from a search index, or
recomputed from the codes (a table above :data:`~._table.CACHE_BYTES`). A record of that pass
costs 6 to 50 scored pairs: counting it as one pair (issue #21's closing note) made a
``max_length 10`` search of 1M records look like under a second."""
KD_STEPS_PER_SECOND = 5e5
"""The same for the one-qubit k-d trees (a query of ``log2 N_b`` steps counts that many; 4-6e5
measured on 3,404 records under load)."""


@dataclass(frozen=True)
class SearchCost:
    """What an ``approximate`` search will cost, estimated from the table's level sizes before
    it starts (within about 2x: :func:`estimate`): ``pairs`` scored (or k-d tree steps) over
    all targets, ``seconds`` of CPU, ``memory`` bytes of the search's peak working buffers (and
    k-d trees) on top of the table, ``table_memory`` bytes of the table in memory (small when it
    is mapped from a search index); the interpreter's own ~50 MiB is in neither."""

    records: int
    targets: int
    max_length: int
    pairs: int
    seconds: float
    memory: int
    table_memory: int
    kd: bool

    def describe(self) -> str:
        of = f" for {self.targets:,} targets" if self.targets != 1 else ""
        unit = "k-d tree steps" if self.kd else "pairs"
        return (
            f"approximate at max_length {self.max_length} over {self.records:,} records{of}: "
            f"about {self.pairs:.2g} {unit}, ~{_duration(self.seconds)}, "
            f"~{(self.memory + self.table_memory) / 2**20:,.0f} MiB of table and buffers"
        )


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    for unit, size in (("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.2g} {unit}"
    return f"{seconds:.2g} s"


def estimate(table: SearchTable, max_length: int, targets: int) -> SearchCost:
    """The :class:`SearchCost` of :func:`approximate_many` for ``targets`` targets: an honest
    estimate, not a bound. ``pairs`` is exact; ``memory`` is what the search allocates at its peak
    within about 2x (tests/test_search_limits.py measures it); ``seconds`` is within about 2x of
    the CPU time on the 2-core machine of BENCHMARKS.md at a moderate load (a loaded or faster
    machine differs by its own factor), and a whole CLI call adds its start and the table's load."""
    kd = table.dim == 2 and _scipy()
    pairs = approximate_cost(table, max_length, kd=kd) * targets
    scanned = table.upto(min(max_length, table.max_length)) * targets
    where = "memory" if table.cache is not None else "index" if table.stored is not None else "computed"
    d2 = table.dim**2
    # the first pass: a chunk's conjugate, and the chunk itself unless it is a view of the
    # memory table (an index reader keeps the previous chunk while it reads the next)
    work = {"memory": 1, "computed": 2, "index": 3}[where] * min(_table.CHUNK, scanned) * d2 * 16
    for a, b in _splits(table, max_length):
        # U A^dag: a prefix chunk (read), its conjugate transpose, the queries; a suffix chunk and
        # its conjugate; the scores: each complex product (16 bytes an entry) and its modulus (8),
        # while the previous modulus still lives (8 more) when a chunk pair takes several products
        na, nb = min(_table.CHUNK, a.stop - a.start), min(_table.CHUNK, b.stop - b.start)
        entries = min(_ENTRIES, na * nb)
        scores = 0 if kd else entries * (24 if na * nb <= _ENTRIES else 32)
        work = max(work, (3 * na + 2 * nb) * d2 * 16 + scores)
    work += _SMALL_BYTES
    if kd:  # the trees over the suffix levels: d^4 floats a record, about twice that with the tree
        levels = {(b.start, b.stop) for _, b in _splits(table, max_length)}
        work += sum(2 * (hi - lo) * d2 * d2 * 8 for lo, hi in levels)
    resident = table.lengths.nbytes + table.codes.nbytes + (0 if table.cache is None else table.cache.nbytes)
    index = table.__dict__.get("index")
    resident += 0 if index is None else index.packed.nbytes
    rate = KD_STEPS_PER_SECOND if kd else PAIRS_PER_SECOND
    seconds = (pairs - scanned) / rate + scanned / SCAN_RECORDS_PER_SECOND[where]
    return SearchCost(len(table), targets, max_length, pairs, seconds, work, resident, kd)


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
            if k == 1:  # argmax: the first (lowest id) of equal maxima
                col = np.argmax(scores, axis=1)[:, None]
                ids, scores = first + lo + col, np.take_along_axis(scores, col, axis=1)
            else:
                ids = np.broadcast_to(np.arange(first + lo, first + lo + part.shape[1]), scores.shape)
            if best_ids.shape[1]:
                ids, scores = np.concatenate([best_ids, ids], axis=1), np.concatenate([best_scores, scores], axis=1)
            best_ids, best_scores = _top(ids, scores, k)
    return best_ids, distance(best_scores, d)


SCORE_MARGIN = 1e-4
"""How far below the ``k``-th best complex64 score a record stays a candidate of
:func:`nearest_in_table`: complex64 scores are within about ``5e-6`` of the exact ones (entries
rounded to 6e-8, sums of 16 products of at most ``d`` in all), so a margin of twice any error
loses no record of the exact top ``k``."""


def nearest_in_table(table: SearchTable, targets: np.ndarray, k: int, bar: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_ids` over a search table, in two passes: every record scored in complex64
    (the index's copy: half the bytes, one float32 product; :func:`._table.scan` on every core),
    keeping the records within :data:`SCORE_MARGIN` of each target's ``k``-th best score, then
    those candidates scored exactly in complex128, each by the same arithmetic whatever the other
    candidates (so the answer does not depend on the index: ties to the lower id). The answer is
    :func:`nearest_ids`'s on the complex128 unitaries, up to rounding (1e-16 in a score: a BLAS
    product there)."""
    q, d = len(targets), targets.shape[-1]
    flat = np.conj(targets).reshape(q, d * d)
    coarse = flat.astype(np.complex64).T  # (d^2, q)
    floor = np.full(q, -np.inf, dtype=np.float32)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def work(start: int, stop: int) -> np.ndarray:
        with table.coarse(start, stop) as block:
            return np.abs(block.reshape(len(block), d * d) @ coarse).T  # type: ignore[no-any-return]

    spans = table.spans(0, len(table))
    # the scan's threads are the parallelism (and no idle BLAS team spins)
    with one_blas_thread() if len(spans) > 1 else contextlib.nullcontext():
        for (lo, hi), scores in zip(spans, _table.scan(work, spans), strict=True):
            if hi - lo >= k:
                np.maximum(floor, -np.partition(-scores, k - 1, axis=1)[:, k - 1], out=floor)
            row, col = np.nonzero(scores >= (floor - SCORE_MARGIN)[:, None])
            found.append((row, lo + col, scores[row, col]))
            if bar is not None:
                bar.advance(hi - lo)
    row, ids, approx = (np.concatenate(x) for x in zip(*found, strict=True))
    keep = approx >= floor[row] - SCORE_MARGIN  # the final floor: fewer candidates
    row, ids = row[keep], ids[keep]
    n = min(k, len(table))
    out_ids, out_scores = np.zeros((q, n), dtype=np.int64), np.zeros((q, n))
    for t in range(q):
        cand = ids[row == t]
        # per record, the same arithmetic whatever the candidates (products summed in a fixed order)
        exact = np.abs((table.take(cand).reshape(len(cand), d * d) * flat[t]).sum(axis=1))[None]
        out_ids[t], out_scores[t] = (x[0] for x in _top(cand[None], exact, n))
    return out_ids, distance(out_scores, d)


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


def approximate_cost(table: SearchTable, max_length: int, *, kd: bool) -> int:
    """The pairs ``(A, B)`` :func:`approximate_many` scores per target for ``max_length``: one
    scan of the records of length ``<= max_length``, then ``N_A N_B`` per split (with the
    one-qubit k-d trees, ``N_A`` queries of about ``log2 N_B`` steps each)."""
    total = table.upto(min(max_length, table.max_length))
    for prefixes, suffixes in _splits(table, max_length):
        na, nb = prefixes.stop - prefixes.start, suffixes.stop - suffixes.start
        total += na * (max(nb, 1).bit_length() if kd else nb)
    return total


def approximate_many(
    table: SearchTable, targets: np.ndarray, max_length: int, *, max_pairs: int = MAX_PAIRS
) -> list[tuple[int, int, float]]:
    """For each target, ``(id of A, id of B, D)`` minimising ``D(U, B A)`` over all table
    records with ``len(A) + len(B) <= max_length`` (at most ``2 L``).

    Every unitary with a circuit of length ``l <= max_length`` is such a product with
    ``len(A) = ceil(l / 2)`` and ``len(B) = floor(l / 2)`` (halves of a shortest circuit are
    shortest, hence in the table), so only those pairs are scored, one pair of levels per
    ``l``, and the result is the best over *all* circuits of length ``<= max_length``. Lengths
    are tried in increasing order and a pair replaces the best only when nearer by more than
    ``1e-10 d``: of near-ties, the shorter circuit wins; of exact ties within a length, the
    lowest ``(id of A, id of B)``.

    One qubit (``d = 2``) with SciPy: each suffix level is a ``cKDTree`` over the embedding
    ``V -> vec(V) vec(V)^dag`` (16 reals; ``||E(U) - E(V)||^2 = 2 d^2 - 2 |tr(U^dag V)|^2``, a
    monotone function of ``D``, so Euclidean neighbours are exact ``D`` neighbours), queried
    with the best distance so far as the bound. Otherwise brute force on matrix products, in
    chunks of :data:`~._table.CHUNK` records of each level (memory independent of ``N``).

    Raises :class:`~unitarium.SearchCostError` before scoring anything when the pairs to
    score (:func:`approximate_cost` times the targets) exceed ``max_pairs``."""
    kd = table.dim == 2 and _scipy()
    per_target = approximate_cost(table, max_length, kd=kd)
    if per_target * len(targets) > max_pairs:
        _refuse(table, len(targets), max_length, max_pairs, kd=kd)
    with progress("approximating", per_target * len(targets)) as bar:
        return [_approximate_one(table, u, max_length, kd=kd, bar=bar) for u in targets]


def _refuse(table: SearchTable, n: int, max_length: int, max_pairs: int, *, kd: bool) -> None:
    cost = approximate_cost(table, max_length, kd=kd) * n
    fits = [m for m in range(max_length) if approximate_cost(table, m, kd=kd) * n <= max_pairs]
    hint = f"use max_length <= {fits[-1]}" if fits else "use fewer targets"
    of = f" for {n:,} targets" if n != 1 else ""
    raise SearchCostError(
        f"approximate with max_length {max_length} would score about {cost:.2g} pairs over "
        f"{len(table):,} records{of}, more than max_pairs = {max_pairs:.2g}: {hint}, "
        "or raise max_pairs (--max-pairs on the command line) to wait for it"
    )


def _scipy() -> bool:
    try:
        import scipy.spatial  # noqa: F401
    except ImportError:
        return False
    return True


def _splits(table: SearchTable, max_length: int) -> list[tuple[slice, slice]]:
    """``(ids of A, ids of B)`` for ``l = 0 .. max_length``: the levels ``ceil(l/2)`` and ``floor(l/2)``."""
    out = []
    for length in range(max_length + 1):
        a, b = (length + 1) // 2, length // 2
        if a <= table.max_length:
            out.append((table.level(a), table.level(b)))
    return out


Best = tuple[float, int, int]
"""``(score, id of A, id of B)``: ``score = |tr(U^dag B A)|``."""


def _better(found: Best | None, best: Best | None) -> Best | None:
    """The higher score of the two; of equal scores, the lower ``(id of A, id of B)``."""
    if found is None:
        return best
    if best is None or found[0] > best[0] or (found[0] == best[0] and found[1:] < best[1:]):
        return found
    return best


def _approximate_one(
    table: SearchTable, u: np.ndarray, max_length: int, *, kd: bool, bar: Any = None
) -> tuple[int, int, float]:
    d, tol = table.dim, 1e-10 * table.dim
    scan: Best | None = None
    for first, block in table.blocks(0, table.upto(min(max_length, table.max_length)), bar=bar):
        scores = np.abs(np.conj(block).reshape(len(block), -1) @ u.reshape(-1))
        col = int(np.argmax(scores))
        scan = _better((float(scores[col]), 0, first + col), scan)
    assert scan is not None  # the table holds the identity
    # a bound that the nearest record (A = identity) passes when its own split comes
    best, pick = scan[0] - 2 * tol, scan[1:]
    for prefixes, suffixes in _splits(table, max_length):
        if prefixes.start == prefixes.stop or suffixes.start == suffixes.stop:
            continue
        split: Best | None = None
        for lo in range(prefixes.start, prefixes.stop, _table.CHUNK):
            hi = min(prefixes.stop, lo + _table.CHUNK)
            queries = u[None] @ np.conj(np.swapaxes(table.block(lo, hi), 1, 2))  # U A^dag
            bound = best if split is None else max(best, split[0])
            found = _best_kd(table, queries, suffixes, bound) if kd else _best_brute(table, queries, suffixes)
            split = _better(None if found is None else (found[0], lo + found[1], found[2]), split)
            if bar is not None:
                bar.advance(
                    (hi - lo)
                    * (max(suffixes.stop - suffixes.start, 1).bit_length() if kd else suffixes.stop - suffixes.start)
                )
        if split is not None and split[0] > best + tol:
            best, pick = split[0], split[1:]
    i, j = pick
    exact = abs(np.vdot(table.take(np.array([j]))[0] @ table.take(np.array([i]))[0], u))
    return i, j, float(distance(exact, d))


def _best_brute(table: SearchTable, queries: np.ndarray, suffixes: slice) -> Best | None:
    """The highest ``|<B, Q>|`` over queries ``Q`` and suffixes ``B`` (ids): ``(score, row, id)``,
    exact ties to the lowest ``(row, id)``."""
    d = table.dim
    flat = queries.reshape(len(queries), -1)
    best: Best | None = None
    for first, block in table.blocks(suffixes.start, suffixes.stop):
        cols = np.conj(block).reshape(-1, d * d).T
        step = max(1, _ENTRIES // cols.shape[1])
        for lo in range(0, len(flat), step):
            scores = np.abs(flat[lo : lo + step] @ cols)
            r, c = np.unravel_index(int(np.argmax(scores)), scores.shape)
            best = _better((float(scores[r, c]), lo + int(r), first + int(c)), best)
    return best


def _embed(u: np.ndarray) -> np.ndarray:
    """``(n, d^4)`` reals: the independent entries of ``vec(U) vec(U)^dag`` (off-diagonal ones
    times sqrt 2, so that Euclidean distances are Frobenius distances)."""
    v = u.reshape(len(u), -1)
    outer = v[:, :, None] * np.conj(v[:, None, :])
    upper = np.triu_indices(v.shape[1], 1)
    off = outer[:, upper[0], upper[1]] * np.sqrt(2)
    return np.concatenate([np.einsum("nii->ni", outer).real, off.real, off.imag], axis=1)


def _best_kd(table: SearchTable, queries: np.ndarray, suffixes: slice, bound: float) -> Best | None:
    """As :func:`_best_brute`, through a k-d tree, among suffixes scoring above ``bound`` only."""
    d = table.dim
    tree = _tree(table, suffixes)
    limit = np.sqrt(max(0.0, 2.0 * d * d - 2.0 * max(bound, 0.0) ** 2)) * (1 + 1e-9) + 1e-12
    dist, idx = tree.query(_embed(queries), k=1, distance_upper_bound=limit)
    r = int(np.argmin(dist))
    if not np.isfinite(dist[r]):
        return None
    c = suffixes.start + int(idx[r])
    return float(abs(np.vdot(table.take(np.array([c]))[0], queries[r]))), r, c


def _tree(table: SearchTable, suffixes: slice) -> Any:
    """The k-d tree over the embedded unitaries of ids ``suffixes`` (built once per table)."""
    from scipy.spatial import cKDTree

    trees = table.__dict__.setdefault("_trees", {})
    key = (suffixes.start, suffixes.stop)
    if key not in trees:
        trees[key] = cKDTree(_embed(table.block(suffixes.start, suffixes.stop)))
    return trees[key]
