"""Kernel 6's products compiled with numba (``pip install 'unitarium[fast]'``): the same bits, faster.

:func:`.portable.matmul_planes` forms each product from one numpy ufunc call per float operation, a
pass over memory each: 3-10x slower than BLAS from ``d = 8`` (three qubits) up, 2-3x at ``d = 4``.
:func:`chain` forms a product table's unitaries (a random circuit's, an enumeration's parents') and
:func:`apply_moves` enumeration's one-move extensions in loops that do the same operations in the same
order on each element (``re = ar*br - ai*bi`` for ``j = 0``, then ``re += ar*br - ai*bi`` for each ``j``
ascending; likewise ``im``), compiled by LLVM without fast-math flags: LLVM then neither reassociates
nor fuses a multiply and an add (no ``contract`` flag), and vectorises only across the batch, which does
not change any element's arithmetic. So the bits are those of the numpy path on every CPU
(tests/test_portable.py compares both bit for bit, signed zeros included, and the pinned digests hold
either way). The chain carries a few hundred records through all their product-table chunks at once
(the entries gathered from the table inside the loop): a random circuit's whole product in one call,
3-8x the numpy path, 1.4-2.3x kernel 5's BLAS products at 2 and 3 qubits (0.44x at 4: BENCHMARKS.md).
Other products (building a table, a single record's) stay on the numpy path: they are few. Grid keys' exact
part (:func:`grid_words`: cells, near rows, 128-bit words) is compiled too, where numba is loaded already.

When: for ``d >= 4`` (two qubits up) once numba imports. Importing numba and loading the compiled loops
cost ~0.6 s of CPU per process: a run whose products are known to pay for it loads them at its start in
a background thread (:func:`preload`; its first products wait for them), any other
process once it has formed :data:`WARM_AFTER` multiply-adds the numpy way (a short job never pays
it), unless its run's share is known to end soon after (:func:`expect`); either way the same bits.
A run's share is per process: a run of ``N`` records in ``W`` workers preloads where ``N / W`` records' products
pass :data:`PRELOAD_AFTER` (16 workers of a 4M-record run would load numba 16 times for 0.25M records each).
``UNITARIUM_JIT=always`` compiles from the first product (tests), ``UNITARIUM_JIT=never`` keeps the
numpy path. Compiled code is cached on disk by numba (``cache=True``: beside this module, or in
numba's user cache directory where that is read-only).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any

import numpy as np

from .._errors import SpecError

__all__ = [
    "JIT_ENV",
    "MIN_DIM",
    "PRELOAD_AFTER",
    "WARM_AFTER",
    "apply_moves",
    "chain",
    "expect",
    "grid_words",
    "jit_mode",
    "preload",
]

MIN_DIM = 4
"""The smallest matrix dimension whose products go through the compiled loop (at ``d = 4``, measured 2026-12-04:
products 78 -> 24 ns, one-move extensions 145 -> 63 ns per child, complex64)."""
WARM_AFTER = 200_000_000
"""Complex multiply-adds (``n * d**3`` per ``n`` products) this process forms the numpy way before it
loads the compiled loops: about what loading them costs (~0.6 s: importing numba 0.3 s, loading the cached
loop 0.3 s), ~0.8 s of numpy products at ``d = 4`` and ~0.4 s at ``d = 8`` (measured 2026-12-04); a process
that forms more then runs 3-8x faster (the rent-or-buy rule: at most twice the better of the two)."""
PRELOAD_AFTER = WARM_AFTER
"""Complex multiply-adds a run's process must be known to form (its share of the run's products) for it to load
the compiled loops at its start (:func:`preload`), where the loops are 5-7x faster than the numpy way (0.35
against 2.3 ns a multiply-add, 2-qubit complex64, measured 2026-12-04) and the load overlaps the process's own
start. Measured 2026-12-04 night, 4M-record 2-qubit file runs in 2 workers (2.56e8 each), 5 alternating rounds:
preloading 1.48M records/s (median; 1.12-1.57M), the numpy way 1.40M/s (1.35-1.47M): about even there, so the bound
is that of the switch; below it, a process switches once its own products have passed :data:`WARM_AFTER`, unless
its share ends soon after (:func:`expect`). Since the CLI's processes load without numba's SciPy probe
(:func:`own_process`: ~0.35 CPU-s a load), preloading wins at 2.56e8 (4M-record directory runs, 2 workers: 2.0-2.1
user-s against 2.35-2.6 the numpy way) and is even at 1.28e8 (2M: 1.10-1.13 s against 1.00-1.05 s): unchanged."""
_CHAIN_BATCH = 256
"""Records a :func:`chain` call carries through all its chunks at once (six ``(d, d, 256)`` planes: 1.5 MiB
at ``d = 16`` in float32, within the L2 cache)."""
_FIXED_DIMS = (4, 8)
"""Dimensions whose :func:`chain` loop is compiled for that ``d``, carrying 64 records at once (the planes
within the L1 cache at ``d = 4``; 64 measured best at both, against 16, 32, 128 and 256, 2026-12-04)."""

_done = [0]  # multiply-adds formed the numpy way in this process (under "auto")
_expected: list[int | None] = [None]
"""Where :data:`_done` is expected to end: a run's process that knows its share of the run's products (:func:`expect`);
None where not known (a reader, a job on an executor's shared process)."""


JIT_ENV = "UNITARIUM_JIT"
JIT_MODES = ("auto", "always", "never")


def jit_mode() -> str:
    """``UNITARIUM_JIT``: ``auto`` (the default, see above), ``always`` (compiled from the first product) or
    ``never`` (the numpy path); anything else is refused in one line (a run checks it before it opens anything)."""
    raw = os.environ.get(JIT_ENV, "").strip()
    if not raw:
        return "auto"
    if raw not in JIT_MODES:
        raise SpecError(f"{JIT_ENV}={raw!r} is not one of {', '.join(JIT_MODES)} (the bits are the same either way)")
    return raw


_loaded = threading.Event()  # set once a :func:`preload` has loaded the compiled loops
_moves_loaded = threading.Event()  # (and that of :func:`apply_moves`)
_settled = threading.Event()  # set once a :func:`preload`'s load has ended, loaded or not
_LOAD_WAIT = 60.0  # seconds a product waits for a load under way (past it, the numpy way: a stuck import)


def _forked() -> None:
    """In a child forked while a load was under way: the loading thread is not there, so nothing waits for it
    (what it had loaded stays usable; otherwise the numpy way, then the switch after :data:`WARM_AFTER`)."""
    _settled.set()


os.register_at_fork(after_in_child=_forked)


def _warm(work: int, loaded: threading.Event | None = None) -> bool:
    """Whether to use the compiled loops for a job of ``work`` multiply-adds (else it counts towards
    :data:`WARM_AFTER`: the caller forms it the numpy way); ``loaded``: the event :func:`preload` sets once it
    has loaded this loop (a load under way is waited for: the loops form products 3-8x faster than the numpy
    way, so a large run's first products are made sooner after the load than during it)."""
    mode = jit_mode()
    if loaded is not None and _preloading.locked():
        _settled.wait(_LOAD_WAIT)
    ready = loaded is not None and loaded.is_set()
    if mode == "never" or (mode != "always" and not ready and (_done[0] < WARM_AFTER or _ending())):
        _done[0] += work
        return False
    return True


def _ending() -> bool:
    """Whether this process's share of its run is expected to end within :data:`WARM_AFTER` more multiply-adds (a
    load then would cost more than it saves); an estimate passed is dropped (the share was larger: rent or buy)."""
    expected = _expected[0]
    if expected is not None and _done[0] >= expected:
        _expected[0] = expected = None
    return expected is not None and expected - _done[0] < WARM_AFTER


def expect(work: int) -> None:
    """A run's process that expects to form about ``work`` multiply-adds (its share of the run's products, too few
    for a :func:`preload`): past :data:`WARM_AFTER`, the compiled loops are loaded only while at least
    ``WARM_AFTER`` of them are left (a load for fewer costs more than it saves)."""
    _expected[0] = _done[0] + work


def preload(real: np.dtype | type, d: int, *, moves: bool = False) -> bool:
    """Load the compiled loops for products of ``d x d`` matrices of the float type ``real`` in a background
    thread: for a job known to be large (its products pay for the load many times over), which goes on with
    what precedes its products (opening its dataset, its first gates drawn) while they load; its first
    products wait for them (the same bits either way).
    ``moves``: also :func:`apply_moves`'s loop (enumeration). Returns whether a load was started (not
    under ``UNITARIUM_JIT=never``, nor where numba is not installed or a load was started already)."""
    _expected[0] = None  # (a run this large: no estimate holds the switch back)
    if jit_mode() == "never" or _preloading.locked() or _loaded.is_set():
        return False
    if importlib.util.find_spec("numba") is None:
        return False
    _preloading.acquire()
    threading.Thread(target=_load, args=(np.dtype(real), d, moves), name="unitarium-jit", daemon=True).start()
    return True


_preloading = threading.Lock()


def _load(real: np.dtype, d: int, moves: bool) -> None:
    """:func:`preload`'s thread: each loop called once on a tiny input of ``real`` (numba loads the
    compiled code of a signature at its first call; compiles it where no cache has it)."""
    try:
        chained = _chain_kernel(d)
        if chained is None:
            return
        table = np.zeros((1, d, d), real)
        out = _complex_out(real, d)  # (the outputs are the planes of a complex array, as in :func:`chain`)
        chained(table, table, np.zeros((1, 2), np.intp), out.real, out.imag)
        if moves:
            _load_moves(real)
            _moves_loaded.set()
        _loaded.set()
    except Exception:  # pragma: no cover - (a broken numba install: the numpy path goes on, same bits)
        return
    finally:
        _settled.set()


def _load_moves(real: np.dtype) -> None:
    kernel = _moves_kernel()
    assert kernel is not None
    d = MIN_DIM
    one, out = np.zeros((1, d, d), real), _complex_out(real, d)
    bounds, cols, kinds = np.zeros((1, d), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8)
    none = np.zeros(0, real)
    kernel(one, one, np.zeros((1, 1), np.bool_), bounds, bounds, cols, none, none, kinds, out.real, out.imag)


def _complex_out(real: np.dtype, d: int) -> np.ndarray:
    return np.zeros((1, d, d), np.result_type(real, np.complex64))


def _numba() -> Any:
    """The numba module, or None where it is not installed."""
    try:
        import numba
    except ImportError:
        return None
    if _own[0] and "numba.np.arraymath" not in sys.modules:
        _arraymath_without_scipy()
    return numba


_own = [False]


def own_process() -> None:
    """Say that this process runs only unitarium (its CLI, the workers it starts): numba's load here then skips
    its probe for SciPy's BLAS. ``numba.np.arraymath``, imported at numba's first compile or cached load, imports
    ``scipy.linalg`` where SciPy is installed (0.2 of the ~0.55 CPU-s a worker spends loading the compiled loops,
    measured 2026-12-04) only to serve BLAS calls in compiled code, which these loops never make (numba's
    ``np.dot`` still imports it when compiled; the probe's one other use is an inner product of
    ``np.convolve``/``np.correlate``, which then loops). Not done in a user's process, whose own numba code is
    left as numba makes it."""
    _own[0] = True


def _arraymath_without_scipy() -> None:
    """Import ``numba.np.arraymath`` with SciPy's BLAS unimportable (unless SciPy's linalg is imported already:
    then the probe costs nothing), as if SciPy were not installed; SciPy imports as before afterwards."""
    blocked = next((name for name in ("scipy", "scipy.linalg") if name not in sys.modules), None)
    if blocked is not None:
        sys.modules[blocked] = None  # type: ignore[assignment]  # (None in sys.modules: the import fails at once)
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if blocked is not None and sys.modules.get(blocked, 0) is None:
            del sys.modules[blocked]


@cache
def _chain_kernel(d: int) -> Callable[..., None] | None:
    """The compiled loop of :func:`chain` for ``d x d`` matrices, or None (numba not installed)."""
    numba = _numba()
    if numba is None:
        return None
    # d = 4 and 8: compiled for that d (a constant: each element's sum over j unrolled and kept in registers,
    # vectorised across the records; 1.5-2.6x the other loop, measured 2026-12-04); others: for any d, in
    # passes over the planes (at d = 16 the unrolled sums would not fit the registers: 0.35x)
    fixed, step = (d, 64) if d in _FIXED_DIMS else (0, _CHAIN_BATCH)

    @numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=False)  # type: ignore[misc]
    def products(tr: Any, ti: Any, index: Any, ore: Any, oim: Any) -> None:  # pragma: no cover - compiled
        batch, chunks = index.shape
        d = fixed if fixed else tr.shape[1]
        xr, xi = np.empty((d, d, step), tr.dtype), np.empty((d, d, step), tr.dtype)  # the product so far (right)
        ar, ai = np.empty((d, d, step), tr.dtype), np.empty((d, d, step), tr.dtype)  # the next chunk's entry (left)
        nr, ni = np.empty((d, d, step), tr.dtype), np.empty((d, d, step), tr.dtype)
        for s in range(0, batch, step):
            n = min(step, batch - s)
            for b in range(n):
                e = index[s + b, 0]
                for i in range(d):
                    for k in range(d):
                        xr[i, k, b], xi[i, k, b] = tr[e, i, k], ti[e, i, k]
            for c in range(1, chunks):
                for b in range(n):
                    e = index[s + b, c]
                    for i in range(d):
                        for k in range(d):
                            ar[i, k, b], ai[i, k, b] = tr[e, i, k], ti[e, i, k]
                # portable.matmul_planes's operations, in its order: re = ar*br - ai*bi at j = 0, then
                # re += ar*br - ai*bi for each j ascending (likewise im), whichever loop runs them
                if fixed:
                    for i in range(d):
                        for k in range(d):
                            for b in range(n):
                                rr = ar[i, 0, b] * xr[0, k, b] - ai[i, 0, b] * xi[0, k, b]
                                ri = ar[i, 0, b] * xi[0, k, b] + ai[i, 0, b] * xr[0, k, b]
                                for j in range(1, d):
                                    rr += ar[i, j, b] * xr[j, k, b] - ai[i, j, b] * xi[j, k, b]
                                    ri += ar[i, j, b] * xi[j, k, b] + ai[i, j, b] * xr[j, k, b]
                                nr[i, k, b], ni[i, k, b] = rr, ri
                else:
                    for i in range(d):
                        for k in range(d):
                            for b in range(n):
                                nr[i, k, b] = ar[i, 0, b] * xr[0, k, b] - ai[i, 0, b] * xi[0, k, b]
                                ni[i, k, b] = ar[i, 0, b] * xi[0, k, b] + ai[i, 0, b] * xr[0, k, b]
                            for j in range(1, d):
                                for b in range(n):
                                    nr[i, k, b] += ar[i, j, b] * xr[j, k, b] - ai[i, j, b] * xi[j, k, b]
                                    ni[i, k, b] += ar[i, j, b] * xi[j, k, b] + ai[i, j, b] * xr[j, k, b]
                xr, nr = nr, xr
                xi, ni = ni, xi
            for b in range(n):
                for i in range(d):
                    for k in range(d):
                        ore[s + b, i, k], oim[s + b, i, k] = xr[i, k, b], xi[i, k, b]

    return products  # type: ignore[no-any-return]


def chain(real: np.ndarray, imag: np.ndarray, index: np.ndarray) -> np.ndarray | None:
    """A product table's unitaries compiled: for each row of ``index`` ``(batch, chunks)``, the product
    ``T[i_{c-1}] @ ... @ T[i_1] @ T[i_0]`` of the table's entries (``real`` and ``imag``: its ``(E, d, d)``
    planes, contiguous; the result is complex of their float type), formed right
    to left by :func:`.portable.matmul_planes`'s operations (the same bits), a few hundred records at a time
    through every chunk (no pass over memory between two products; measured 2026-12-04: 68 ns a record of two
    ``d = 4`` complex64 products, 2 us of sixteen ``d = 8``). None where it does
    not apply (numba missing or not yet worth loading, ``d`` below :data:`MIN_DIM`, no chunks)."""
    batch, chunks = index.shape
    d = real.shape[1]
    if d < MIN_DIM or chunks == 0 or real.dtype != imag.dtype or real.dtype.kind != "f":
        return None
    kernel = _chain_kernel(d) if _warm(batch * (chunks - 1) * d**3, _loaded) else None
    if kernel is None:
        return None
    index = np.ascontiguousarray(index, dtype=np.intp)
    if index.size and not 0 <= int(index.min()) <= int(index.max()) < len(real):  # (the loop checks no bounds)
        raise IndexError(f"product table index out of range 0..{len(real) - 1}")
    out = np.empty((batch, d, d), dtype=np.result_type(real.dtype, np.complex64))
    kernel(real, imag, index, out.real, out.imag)
    return out


@cache
def _moves_kernel() -> Callable[..., None] | None:
    """The compiled loop of :func:`apply_moves`, or None (numba not installed)."""
    numba = _numba()
    if numba is None:
        return None

    @numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=False)  # type: ignore[misc]
    def children(
        pr: Any, pi: Any, allowed: Any, first: Any, last: Any, col: Any, cr: Any, ci: Any, kind: Any, ore: Any, oim: Any
    ) -> None:  # pragma: no cover - compiled
        batch, d = pr.shape[0], pr.shape[1]
        m = allowed.shape[1]
        at = 0
        for p in range(batch):
            for k in range(m):
                if not allowed[p, k]:
                    continue
                for i in range(d):
                    a, z = first[k, i], last[k, i]
                    if a == z:  # a row without terms: +0
                        for c in range(d):
                            ore[at, i, c] = 0.0
                            oim[at, i, c] = 0.0
                        continue
                    for t in range(a, z):
                        j, r, q, how = col[t], cr[t], ci[t], kind[t]
                        for c in range(d):
                            xr, xi = pr[p, j, c], pi[p, j, c]
                            if how == 0:  # ci == 0: one product each
                                tr, ti = xr * r, xi * r
                            elif how == 1:  # cr == 0
                                tr, ti = -(xi * q), xr * q
                            else:
                                tr, ti = xr * r - xi * q, xi * r + xr * q
                            if t == a:
                                ore[at, i, c], oim[at, i, c] = tr, ti
                            else:
                                ore[at, i, c] += tr
                                oim[at, i, c] += ti
                at += 1

    return children  # type: ignore[no-any-return]


def apply_moves(parents: np.ndarray, moves: np.ndarray, allowed: np.ndarray) -> np.ndarray | None:
    """:func:`.portable.apply_moves` compiled (each child row the sum over ``j`` ascending of the move's
    nonzero entries times the parent's row ``j``, parts as there), or None where it does not apply."""
    d = parents.shape[1]
    count = int(np.count_nonzero(allowed))
    if d < MIN_DIM or parents.dtype.kind != "c":
        return None
    kernel = _moves_kernel() if _warm(count * d**3, _moves_loaded) else None
    if kernel is None:
        return None
    first, last, col, cr, ci, kind = _terms(moves.tobytes(), moves.shape, moves.dtype.str, parents.real.dtype.str)
    out = np.empty((count, d, d), dtype=parents.dtype)
    kernel(
        np.ascontiguousarray(parents.real),
        np.ascontiguousarray(parents.imag),
        np.ascontiguousarray(allowed, dtype=np.bool_),
        first,
        last,
        col,
        cr,
        ci,
        kind,
        out.real,
        out.imag,
    )
    return out


@lru_cache(maxsize=8)
def _terms(data: bytes, shape: tuple[int, ...], dtype: str, real: str) -> tuple[np.ndarray, ...]:
    """The nonzero entries of a move stack, row by row: ``(first, last)`` ``(m, d)`` bounds into the
    term arrays ``col`` (``j``), ``cr``, ``ci`` (rounded to the parents' float type ``real``, as the
    numpy path's scalars are) and ``kind`` (0: real entry, 1: imaginary, 2: both parts; decided before
    rounding, as there), computed once per gate set and dtype."""
    moves = np.frombuffer(data, dtype=dtype).reshape(shape)
    m, d, _ = shape
    first, last = np.zeros((m, d), np.int64), np.zeros((m, d), np.int64)
    col: list[int] = []
    cr: list[float] = []
    ci: list[float] = []
    kind: list[int] = []
    for k in range(m):
        for i in range(d):
            first[k, i] = len(col)
            for j, c in enumerate(moves[k, i]):
                if c != 0:
                    col.append(j)
                    cr.append(c.real)
                    ci.append(c.imag)
                    kind.append(0 if c.imag == 0 else 1 if c.real == 0 else 2)
            last[k, i] = len(col)
    return first, last, np.array(col, np.int64), np.array(cr, real), np.array(ci, real), np.array(kind, np.int8)


_CELL_LIMIT = 2.0**62  # |cell| below which a cell's int64 is exact on every path (a key's cells are < 2**30)


@cache
def _words_kernel() -> Callable[..., bool] | None:
    """The compiled loop of :func:`grid_words`, or None (numba not installed)."""
    numba = _numba()
    if numba is None:
        return None

    @numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=False)  # type: ignore[misc]
    def words(y: Any, limit: float, salts: Any, m1: Any, m2: Any, out: Any, near: Any) -> bool:  # pragma: no cover
        n, dims = y.shape
        for r in range(n):
            a0, a1 = np.uint64(0), np.uint64(0)
            close = False
            for c in range(dims):
                shifted = y[r, c] + 0.5
                cell = np.floor(shifted)
                frac = shifted - cell
                other = 1 - frac
                if (frac if frac < other else other) < limit:  # (np.minimum: the same for numbers)
                    close = True
                if not -_CELL_LIMIT < cell < _CELL_LIMIT:  # (NaN included: the numpy path decides)
                    return False
                k = np.uint64(np.int64(cell))
                a0 += k * salts[c, 0]
                a1 += k * salts[c, 1]
            for w, x in ((0, a0), (1, a1)):
                x = x ^ (x >> np.uint64(30))
                x = x * m1
                x = x ^ (x >> np.uint64(27))
                x = x * m2
                out[r, w] = x ^ (x >> np.uint64(31))
            near[r] = close
        return True

    return words  # type: ignore[no-any-return]


def grid_words(
    y: np.ndarray, limit: float, salts: np.ndarray, mix: tuple[np.uint64, np.uint64]
) -> tuple[np.ndarray, np.ndarray] | None:
    """:meth:`.canonical.KeyScheme.wide_keys_of`'s exact part compiled: for coordinates ``y`` ``(n, dims)`` (grid
    units), each row's 128-bit key ``(n, 2)`` int64 (cells ``floor(y + 0.5)``, salted sums modulo 2**64 with
    ``salts`` ``(dims, 2)`` uint64, splitmix64 with the multipliers ``mix``) and whether any of its
    coordinates lies within ``limit`` of a cell boundary; the numpy path's float operations on each element,
    in its order, and integer sums (the same bits in any order). Only where this process loaded numba already
    (never a load of its own: the keys alone would not pay for it), and None elsewhere or for cells beyond
    int64's exact range."""
    mode = jit_mode()
    if mode == "never" or (mode == "auto" and not (_loaded.is_set() or _chain_kernel.cache_info().currsize)):
        return None
    kernel = _words_kernel()
    if kernel is None:
        return None
    y = np.ascontiguousarray(y, dtype=np.float64)
    out = np.empty((len(y), 2), np.uint64)
    near = np.empty(len(y), np.bool_)
    if not kernel(y, float(limit), np.ascontiguousarray(salts, dtype=np.uint64), *mix, out, near):
        return None
    return out.view(np.int64), near
