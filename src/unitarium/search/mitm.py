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
circuit of length ``<= 2L``. Ties: the least ``(length, id of A, id of B)``. In practice the
search jumps to level ``L`` once the levels get large (:func:`_by_length`): level ``L`` alone
decides every length from ``L`` to ``2L``, so a target with no circuit costs level ``L``'s
prefixes rather than all of them, and the answer is the same.

**Under a cost model** (a table enumerated with ``--cost``: weights ``w`` per gate, complete up
to cost ``C``, each record a least-cost circuit of its unitary, ties to the shorter), the same
argument runs on ``(cost, length)``, compared lexicographically. Let ``c`` be a least
``(cost, length)`` circuit of ``U``, of cost ``K``; its prefix and suffix at any split are least
``(cost, length)`` circuits of their unitaries (a better one would improve ``c``), so they are
records of exactly their costs and lengths when their costs are at most ``C``. The prefix costs
``k_0 = 0 <= k_1 <= ...`` grow by at most ``w_max`` (the heaviest gate) a move; take the first
split ``j`` with ``k_j >= K - C``: then ``K - k_j <= C`` and ``k_j <= K - C - 1 + w_max``, which is
at most ``C`` when ``K <= 2C - w_max + 1``. The search takes the records by increasing cost as
prefixes (the table is in ``(cost, length)`` order, so a cost level is an id range); after prefix
cost ``a``, every ``K <= C + a - w_max + 1`` has met its split, so a best hit of that cost is
final (its cost and length least; later prefixes have larger ids). A target with no hit of cost
``<= 2C - w_max + 1`` is reported as None. Ties: the least ``(cost, length, id of A, id of B)``.
With every gate weighing 1 this is the length argument above (``w_max = 1``; there a hit of cost
``L + a + 1`` is already final, as cost and length coincide).

**Matching.** ``U A^dag`` is looked up in an in-memory hash index (:mod:`._keys`) and a
candidate ``B`` is an answer only once verified: ``B A`` must equal ``U`` up to global phase, entrywise
within ``atol`` (as :func:`unitarium._core.canonical.equal_up_to_phase`); each target's candidates are
verified least first, and the first that holds is its answer (:mod:`._verify`). The index finds every
``B`` whose key coordinates lie within ``ETA`` (2e-3) of those of ``U A^dag``; an error of
``atol = 1e-5`` per entry moves a coordinate by about ``1e-4`` typically, so ``atol`` is
capped at ``MAX_ATOL``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.circuit import Circuit
from .._core.cost import move_weights
from .._core.kernels import one_blas_thread
from .._errors import DatasetError, SpecError
from .._spec.spec import MAX_LENGTH
from . import _keys
from ._keys import primary_keys
from ._progress import progress
from ._table import SearchTable, scan
from ._verify import least_verified, settle

if TYPE_CHECKING:
    from .._spec.spec import Spec

__all__ = ["MAX_ATOL", "CostView", "by_cost", "cost_reach", "directory", "find", "synthesize_many"]

MAX_ATOL = 1e-4
_PAIRS = 1 << 19
"""Matrix entries (pairs x d^2) formed at once: 8 MiB of complex128 products (and a few times
that in key coordinates)."""


def synthesize_many(
    table: SearchTable, targets: np.ndarray, *, atol: float, spec: Spec | None = None
) -> list[Circuit | None]:
    """A least-cost circuit (ties to the shorter) for each of the ``(n, d, d)`` targets, or None
    where none of cost ``<= 2C - w_max + 1`` exists (``C`` the table's max cost; with every gate 1,
    its max length, so ``2 L``); see the module docstring for why. ``spec``: the table's (its cost
    model; None: every gate 1)."""
    if not 0 < atol <= MAX_ATOL:
        raise SpecError(
            f"atol {atol!r} is out of range for exact synthesis: use 0 < atol <= {MAX_ATOL:g} "
            "(for looser matches use approximate())"
        )
    best, reach = _search(table, targets, atol, spec)
    found = best[:, 0] <= reach
    return [table.circuit(int(best[t, 2]), int(best[t, 3])) if found[t] else None for t in range(len(targets))]


def _search(table: SearchTable, targets: np.ndarray, atol: float, spec: Spec | None) -> tuple[np.ndarray, int]:
    """``(best, reach)``: per target the least ``(cost, length, id of A, id of B)`` of
    :func:`synthesize_many` (:data:`_NONE` where no hit), and the highest cost that is an answer."""
    costs, levels, top, heaviest = _cost_levels(table, spec)
    n = len(targets)
    best = np.full((n, 4), _NONE, dtype=np.int64)  # (cost, length, id of A, id of B)
    table.index  # noqa: B018  # built (with its own progress) before the search's bar starts
    with progress("synthesising", n * len(table)) as bar, contextlib.ExitStack() as blas:
        run = _Run(table, costs, targets, best, atol, bar, blas)
        if spec is None or spec.cost is None:
            _by_length(run, levels)
        else:
            _by_cost(run, levels, top, heaviest)
    return best, 2 * top - heaviest + 1


_NONE = np.iinfo(np.int64).max
"""``best`` of a target with no hit yet."""

JUMP_SHARE = 1 / 8
"""Levels ``1, 2, ...`` of prefixes are scanned in order while together they hold at most this
share of the longest level ``L``'s records; the targets left then go to level ``L`` at once
(:func:`_by_length`): about a third fewer prefixes to rule out a ``2 L``-move circuit on a table
whose levels grow threefold."""


class _Run:
    """One search: the table, the targets, their best hits so far and the progress bar."""

    def __init__(
        self,
        table: SearchTable,
        costs: np.ndarray,
        targets: np.ndarray,
        best: np.ndarray,
        atol: float,
        bar: Any,
        blas: contextlib.ExitStack,
    ) -> None:
        self.table, self.costs, self.targets, self.best, self.atol, self.bar = table, costs, targets, best, atol, bar
        self.blas, self.pinned = blas, False  # one_blas_thread: entered before the first scan of several chunks
        self.tried = np.zeros(len(best), dtype=np.int64)  # prefixes tried per target (the progress bar)

    def done(self, finished: np.ndarray) -> None:
        """The progress bar: targets ``finished`` count as ``len(table)`` prefixes each."""
        self.bar.advance(int(np.maximum(len(self.table) - self.tried[finished], 0).sum()))
        self.tried[finished] = len(self.table)

    def level(self, ids: slice, active: np.ndarray, enough: np.ndarray | None = None) -> None:
        """Try the prefixes ``ids`` (a level) for the targets ``active``, lowering ``best``; a
        target stops once its best length is at most ``enough[t]`` (no later prefix of the level
        can then beat it: later prefixes have larger ids). Chunks run on :func:`._table.scan`'s
        threads; a chunk computed before a target stopped may still offer it candidates, which
        never win, so the answer does not depend on the threads' timing."""
        table, best = self.table, self.best
        spans = table.spans(ids.start, ids.stop)
        if not len(active) or not spans:
            return
        if len(spans) > 1 and not self.pinned:
            # one BLAS thread: the scan's threads are the parallelism (an idle BLAS team spins a
            # core), and the key products' bits then do not depend on the thread count
            self.blas.enter_context(one_blas_thread())
            self.pinned = True
        state = [active]  # the targets still looking, read by each chunk when it starts

        def work(start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return _candidates_of(table, self.costs, self.targets, state[0], start, stop, self.atol)

        with contextlib.closing(scan(work, spans)) as results:
            for (lo, hi), (t, i, b) in zip(spans, results, strict=False):
                settle(table, self.costs, t, i, b, best)
                self.bar.advance(len(state[0]) * (hi - lo))
                self.tried[state[0]] += hi - lo
                if enough is not None:
                    state[0] = state[0][best[state[0], 1] > enough[state[0]]]
                    if not len(state[0]):
                        break


def _by_length(run: _Run, levels: list[slice]) -> None:
    """Every gate weighs 1: the least ``(length, id of A, id of B)`` hit of each target, or none.

    In order, prefixes of length ``a = 0, 1, ..., j`` (the standard search of the module
    docstring: a target with a hit at level ``a`` has its answer there, and at ``a >= 1`` every
    hit there has length ``L + a``, so the first one, by prefix id, is it). The targets left have
    length ``l > L + j`` or none; then level ``L`` alone: every circuit of length ``L <= l <= 2L``
    splits as a prefix of length ``L`` (a record) and a suffix of length ``l - L`` (a record), so
    the least length found there is ``l`` exactly, or there is no circuit of ``<= 2L`` moves
    (a target with no circuit needs no more prefixes than level ``L``'s). The answer of the
    standard search is the first hit at level ``l - L`` (its first level with any hit): level
    ``L``'s for ``l = 2L``, else found by scanning level ``l - L`` until the first hit. ``j``:
    see :data:`JUMP_SHARE`."""
    table, best = run.table, run.best
    top, n = table.max_length, len(best)
    active = np.arange(n)
    jump = _jump_after([s.stop - s.start for s in levels], JUMP_SHARE)
    enough = np.zeros(n, dtype=np.int64)
    for a in range(jump + 1):
        enough[active] = 0 if a == 0 else top + a  # the least length a hit at level a can have
        run.level(levels[a], active, enough)
        run.done(active[best[active, 0] != _NONE])
        active = active[best[active, 0] == _NONE]
    if not len(active) or jump >= top:
        return
    enough[active] = top + jump + 1
    run.level(levels[top], active, enough)
    found = active[best[active, 0] != _NONE]
    run.done(active[best[active, 1] >= 2 * top])  # none, or 2L moves: answered at level L
    split = best[found, 1] - top
    for a in range(jump + 1, top):
        group = found[split == a]
        if len(group):
            kept = best[group].copy()
            best[group] = _NONE
            enough[group] = top + a
            run.level(levels[a], group, enough)
            lost = best[group, 0] == _NONE  # (only if rounding makes a hit at level L alone)
            best[group[lost]] = kept[lost]
            run.done(group)


def _jump_after(sizes: list[int], share: float) -> int:
    """The last level scanned in order before level ``L`` (the last of ``sizes``): the longest
    run of levels ``1 .. j`` holding at most ``share`` of level ``L``'s records (``L`` when that
    is every level below it: no jump)."""
    top = len(sizes) - 1
    budget, used, j = share * sizes[top], 0, 0
    while j + 1 < top and used + sizes[j + 1] <= budget:
        j += 1
        used += sizes[j]
    return top if j >= top - 1 else j


def _by_cost(run: _Run, levels: list[slice], top: int, heaviest: int) -> None:
    """Under a cost model: cost levels ``a = 0, 1, ...`` in order, each target settled once its
    best cost is final (the module docstring)."""
    active = np.arange(len(run.best))
    for a in range(top + 1):
        if not len(active):
            break
        run.level(levels[a], active)
        settled = run.best[active, 0] <= top + a - heaviest + 1
        run.done(active[settled])
        active = active[~settled]


def cost_reach(spec: Spec) -> int:
    """The highest cost for which synthesis on a table of ``spec`` is exact: ``2C - w_max + 1``."""
    src = spec.source
    weights = move_weights(spec.gateset, spec.cost)
    heaviest = int(weights.max())
    top = src.max_cost if src.max_cost is not None else heaviest * src.max_length  # type: ignore[union-attr]
    return int(2 * top - heaviest + 1)


def _cost_levels(table: SearchTable, spec: Spec | None) -> tuple[np.ndarray, list[slice], int, int]:
    """``(cost of each record, the id range of each cost level, the max cost C, w_max)``; with
    every gate 1, the lengths and the length levels."""
    if spec is None or spec.cost is None:
        levels = [table.level(a) for a in range(table.max_length + 1)]
        return table.lengths, levels, table.max_length, 1  # (not copied: converted where summed)
    src = spec.source
    weights = move_weights(table.gateset, spec.cost)
    heaviest = int(weights.max())
    top = src.max_cost if src.max_cost is not None else heaviest * src.max_length  # type: ignore[union-attr]
    if src.max_length < MAX_LENGTH and len(table) and int(table.lengths.max()) >= src.max_length:  # type: ignore[union-attr]
        raise DatasetError(
            f"synthesis by cost needs a table complete up to its max cost, and this one was cut at "
            f"--max-length {src.max_length}: generate it with --max-cost alone"  # type: ignore[union-attr]
        )
    padded = np.concatenate([weights, [0]])
    costs = padded[table.codes.astype(np.intp)].sum(axis=1, dtype=np.int64)
    starts = np.searchsorted(costs, np.arange(top + 2), side="left")
    return costs, [slice(int(starts[a]), int(starts[a + 1])) for a in range(top + 1)], top, heaviest


def _candidates_of(
    table: SearchTable, costs: np.ndarray, targets: np.ndarray, active: np.ndarray, start: int, stop: int, atol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_candidates` of the prefixes ``start .. stop - 1`` (a span of :meth:`SearchTable.spans`)."""
    with table.coarse(start, stop) as block:
        return _candidates(table, costs, targets, active, start, block, atol)


def _candidates(
    table: SearchTable,
    costs: np.ndarray,
    targets: np.ndarray,
    active: np.ndarray,
    first: int,
    block: np.ndarray,
    atol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(target, id of A, id of B)`` for records ``A`` of ids ``first .. first + len(block) - 1``
    (``block``: their unitaries in complex64) and ``B`` whose key matches that of ``U A^dag``
    (``U`` an active target) and with ``B A = U`` (:func:`._verify.least_verified`): per batch of targets, the
    least of each target, for :func:`._verify.settle`. Runs on any thread; its memory is bounded by the batch (a
    Clifford target matches nearly every prefix of a level)."""
    m, d = len(block), table.dim
    empty = np.zeros(0, dtype=np.int64)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [(empty, empty, empty)]
    if m == 0:
        return found[0]
    linear = _linear_keys(d)
    prefixes = None
    if linear is None:
        prefixes = np.conj(np.swapaxes(table.block(first, first + m), 1, 2))  # A^dag, complex128
    step = max(1, _PAIRS // (m * d * d))
    for lo in range(0, len(active), step):
        chunk = active[lo : lo + step]
        if linear is not None:
            keys = linear(block, targets[chunk])
        else:
            assert prefixes is not None
            keys = primary_keys((targets[chunk][:, None] @ prefixes[None]).reshape(-1, d, d))  # U A^dag
        query, rows = find(table, keys)
        found.append(least_verified(table, costs, targets, chunk[query // m], first + query % m, rows, atol))
    return tuple(np.concatenate(x) for x in zip(*found, strict=True))  # type: ignore[return-value]


def directory(packed: np.ndarray, row_bits: int) -> tuple[np.ndarray, int]:
    """``(starts, bits)``: the entries of the sorted ``packed`` keys whose top ``bits`` bits are
    ``h`` are ``starts[h] .. starts[h + 1] - 1`` (about one entry a bucket): a key is found in
    two reads instead of a binary search."""
    bits = int(min(max(1, (max(len(packed), 1) - 1).bit_length() - 1), 64 - row_bits, 30))
    edges = np.arange(1 << bits, dtype=np.uint64) << np.uint64(64 - bits)
    starts = np.concatenate([np.searchsorted(packed, edges, side="left"), [len(packed)]])
    return starts.astype(np.uint32 if len(packed) < 1 << 32 else np.int64), bits


def find(table: SearchTable, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What ``table.index.find(keys)`` returns (``(query, row)`` pairs, rows ascending per
    query): the keys that pass the table's Bloom filter (:attr:`SearchTable.bloom`: about one
    absent key in nine) looked up through the bucket :func:`directory` of the index (kept on
    the table, or mapped from its search index)."""
    sel = np.flatnonzero(_keys.passes(*table.bloom, keys))
    q, rows = _find(table, keys[sel])
    return sel[q], rows


def _find(table: SearchTable, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index = table.index
    got = table.__dict__.get("_directory")
    if got is None:
        got = table.__dict__["_directory"] = directory(index.packed, index.row_bits)
    starts, bits = got
    shift = np.uint64(index.row_bits)
    want = keys.view(np.uint64) >> shift
    bucket = (want << shift) >> np.uint64(64 - bits)
    lo = starts[bucket].astype(np.int64)
    count = starts[bucket + np.uint64(1)].astype(np.int64) - lo
    total = int(count.sum())
    q = np.repeat(np.arange(len(keys)), count)
    at = np.repeat(lo - (np.cumsum(count) - count), count) + np.arange(total)
    cand = index.packed[at]
    hit = (cand >> shift) == want[q]
    return q[hit], (cand[hit] & np.uint64((1 << index.row_bits) - 1)).astype(np.int64)


@functools.cache
def _linear_keys(d: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """The keys of the products ``U A^dag`` of targets ``U`` ``(t, d, d)`` and prefixes ``A``
    ``(m, d, d)`` complex64, in the order ``t * m + i``, without forming the products: a key's
    coordinates (:mod:`._keys`: phase-fixed, then projected) are linear in ``U A^dag`` but for
    the phase, so per target they are one ``(m, 2 d^2) @ (2 d^2, 2 (DIMS + 1))`` float32 product
    of the prefixes with a matrix made of ``U``, the projections and the phase weights.

    Equal to :func:`._keys.primary_keys` of the products but within about ``1e-4`` of a cell
    of a boundary (float32 and complex64 rounding: the scheme's margin ``ETA`` is ``1/16`` of a
    cell, and an entry's alternate keys cover it, so the same entries are found): the
    coordinates are checked here against :mod:`._keys` on random unitaries, and None (form the
    products) if :mod:`._keys` has changed in a way this does not follow."""
    try:
        weights, proj, _ = _keys._scheme(d)
        mix, coordinates, delta, dims = _keys._mix, _keys._coordinates, _keys.DELTA, _keys.DIMS
    except (AttributeError, TypeError, ValueError):
        return None
    p = proj.reshape(d, 2, d, dims)  # row i*2d + j: Re v_ij; i*2d + d + j: Im v_ij
    form = np.concatenate([(p[:, 0] - 1j * p[:, 1]), weights[:, :, None]], axis=2) / delta  # (d, d, dims + 1)
    width = dims + 1

    def coords(prefixes: np.ndarray, targets: np.ndarray, *, cells: bool = True) -> np.ndarray:
        t, m = len(targets), len(prefixes)
        # z[t, i, k] = sum_ij (U A_i^dag)_ij form_ijk = sum_jm conj(A_i)_jm g[t, k, jm]
        g = np.einsum("tim,ijk->tkjm", targets, form).reshape(t, width, d * d)
        # as reals, one row per (t, k, re/im): A's entries interleaved (re, im) against (re g, im g)
        # for the real part and (im g, -re g) for the imaginary part
        real = np.empty((t, width, 2, d * d, 2), dtype=np.float32)
        real[:, :, 0, :, 0], real[:, :, 0, :, 1] = g.real, g.imag
        real[:, :, 1, :, 0], real[:, :, 1, :, 1] = g.imag, -g.real
        a = np.ascontiguousarray(prefixes, dtype=np.complex64).view(np.float32).reshape(m, 2 * d * d)
        z = (real.reshape(t * width * 2, 2 * d * d) @ a.T).reshape(t, width, 2, m)  # rows contiguous
        s = z[:, dims]  # (t, 2, m): s = sum(W * V) / delta, the phase is conj(s) / |s|
        mag = np.hypot(s[:, 0], s[:, 1])
        zero = mag == 0
        if zero.any():
            s[:, 0][zero], s[:, 1][zero], mag[zero] = 1.0, 0.0, 1.0
        out = z[:, :dims, 0] * s[:, None, 0]
        out += z[:, :dims, 1] * s[:, None, 1]
        out /= mag[:, None]
        if cells:
            out += 0.5
            np.floor(out, out=out)
        return out.transpose(0, 2, 1)  # (t, m, dims)

    def keys(prefixes: np.ndarray, targets: np.ndarray) -> np.ndarray:
        cells = coords(prefixes, targets).astype(np.int8)  # |cell| <= 32 sqrt(d) + 1, checked below
        return mix(cells.reshape(-1, dims), d)  # type: ignore[no-any-return]

    rng = np.random.default_rng(7)
    z = rng.normal(size=(24, d, d)) + 1j * rng.normal(size=(24, d, d))
    u = np.linalg.qr(z)[0]
    a, b = u[:8], u[8:]
    prefixes = a.astype(np.complex64)
    adjoint = np.conj(np.swapaxes(prefixes.astype(np.complex128), 1, 2))
    want = coordinates((b[:, None] @ adjoint[None]).reshape(-1, d, d))
    got = coords(prefixes, b, cells=False).reshape(-1, dims)
    return keys if _keys._bytes_fit(d) and np.abs(got - want).max() < 1e-3 else None


class CostView:
    """A cost table seen by cost level, for :func:`unitarium.search.nearest.approximate_many`:
    :meth:`level`, :meth:`upto` and :attr:`max_length` count cost (``max_length`` is the max
    cost ``C``); everything else is the table's. Approximation by cost: every unitary with a
    circuit of cost ``k`` is ``B A`` with ``A`` a record of cost ``ceil(k/2)`` and ``B`` one of
    cost ``floor(k/2)`` when every weight is 0 or 1 (the prefix costs of a least-cost circuit go
    up by one at a time, so one of them is ``ceil(k/2)``; halves of a least-cost circuit are
    least-cost), which is the length argument with cost levels for length levels."""

    def __init__(self, table: SearchTable, levels: list[slice], top: int) -> None:
        self.table, self.levels, self.max_length = table, levels, top

    def level(self, cost: int) -> slice:
        return self.levels[cost]

    def upto(self, cost: int) -> int:
        return self.levels[min(max(cost, -1), self.max_length)].stop if cost >= 0 else 0

    def __len__(self) -> int:
        return len(self.table)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.table, name)


def by_cost(table: SearchTable, spec: Spec) -> SearchTable | CostView:
    """The table as :func:`~unitarium.search.nearest.approximate_many` should see it: itself with
    every gate 1, else by cost level (weights 0 and 1 only: heavier ones break the halving)."""
    if spec.cost is None:
        return table
    _, levels, top, heaviest = _cost_levels(table, spec)
    if heaviest > 1:
        raise SpecError(
            f"approximate by cost takes weights 0 and 1 (this table's cost is {spec.describe().split('cost=')[1]}): "
            "use synthesize for exact targets"
        )
    return CostView(table, levels, top)
