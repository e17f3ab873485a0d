"""Kernel 6's products compiled with numba (``pip install 'unitarium[fast]'``): the same bits, faster.

:func:`.portable.matmul_planes` forms each product from one numpy ufunc call per float operation, a
pass over memory each: 3-10x slower than BLAS from ``d = 8`` (three qubits) up, 2-3x at ``d = 4``. The
loop here does the same operations in the same order on each element (``re = ar*br - ai*bi`` for ``j = 0``, then
``re += ar*br - ai*bi`` for each ``j`` ascending; likewise ``im``), compiled by LLVM without fast-math
flags: LLVM then neither reassociates nor fuses a multiply and an add (no ``contract`` flag), and
vectorises only across the batch, which does not change any element's arithmetic. So the bits are
those of the numpy path on every CPU (tests/test_portable.py compares both bit for bit, signed zeros
included, and the pinned digests hold either way).

When: for ``d >= 4`` (two qubits up) once numba imports, from the moment this process has formed products worth
:data:`WARM_AFTER` multiply-adds the numpy way (importing numba and loading the compiled loop cost
~1 s per process: a short job never pays it, a long one switches early; either way the same bits).
``UNITARIUM_JIT=always`` compiles from the first product (tests), ``UNITARIUM_JIT=never`` keeps the
numpy path. Compiled code is cached on disk by numba (``cache=True``: beside this module, or in
numba's user cache directory where that is read-only).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any

import numpy as np

__all__ = ["MIN_DIM", "WARM_AFTER", "apply_moves", "matmul_planes"]

MIN_DIM = 4
"""The smallest matrix dimension whose products go through the compiled loop (at ``d = 4``, measured 2026-12-04:
products 78 -> 24 ns, one-move extensions 145 -> 63 ns per child, complex64)."""
WARM_AFTER = 500_000_000
"""Complex multiply-adds (``n * d**3`` per ``n`` products) this process forms the numpy way before it
loads the compiled loop (~1-2 s of numpy products at ``d = 8``, ~0.6 s at ``d = 4``)."""

_done = [0]  # multiply-adds formed the numpy way in this process (under "auto")


def _warm(work: int) -> bool:
    """Whether to use the compiled loops for a job of ``work`` multiply-adds (else it counts towards
    :data:`WARM_AFTER`)."""
    mode = os.environ.get("UNITARIUM_JIT", "auto")
    if mode == "never" or (mode != "always" and _done[0] < WARM_AFTER):
        _done[0] += work
        return False
    return True


def _numba() -> Any:
    """The numba module, or None where it is not installed."""
    try:
        import numba
    except ImportError:
        return None
    return numba


@cache
def _kernel() -> Callable[..., None] | None:
    """The compiled loop, or None (numba not installed)."""
    numba = _numba()
    if numba is None:
        return None

    @numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=False)  # type: ignore[misc]
    def planes_product(ar: Any, ai: Any, br: Any, bi: Any, re: Any, im: Any) -> None:  # pragma: no cover - compiled
        d, n = ar.shape[0], re.shape[2]
        for i in range(d):
            for k in range(d):
                for b in range(n):
                    re[i, k, b] = ar[i, 0, b] * br[0, k, b] - ai[i, 0, b] * bi[0, k, b]
                    im[i, k, b] = ar[i, 0, b] * bi[0, k, b] + ai[i, 0, b] * br[0, k, b]
                for j in range(1, d):
                    for b in range(n):
                        re[i, k, b] += ar[i, j, b] * br[j, k, b] - ai[i, j, b] * bi[j, k, b]
                        im[i, k, b] += ar[i, j, b] * bi[j, k, b] + ai[i, j, b] * br[j, k, b]

    return planes_product  # type: ignore[no-any-return]


def matmul_planes(
    ar: np.ndarray, ai: np.ndarray, br: np.ndarray, bi: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`.portable.matmul_planes` compiled, or None where it does not apply (numba missing or
    disabled, ``d`` below :data:`MIN_DIM`, mixed dtypes): the caller then takes the numpy path."""
    d = ar.shape[0]
    if d < MIN_DIM or not (ar.dtype == ai.dtype == br.dtype == bi.dtype) or ar.dtype.kind != "f":
        return None
    kernel = _kernel() if _warm(d**3 * max(ar.shape[2], br.shape[2])) else None
    if kernel is None:
        return None
    shape = np.broadcast_shapes(ar.shape, br.shape)
    full = [np.ascontiguousarray(np.broadcast_to(x, shape)) for x in (ar, ai, br, bi)]  # (a (d, d, 1) side spread)
    re, im = np.empty(shape, ar.dtype), np.empty(shape, ar.dtype)
    kernel(*full, re, im)
    return re, im


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
    kernel = _moves_kernel() if _warm(count * d**3) else None
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
