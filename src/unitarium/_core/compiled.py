"""Kernel 6's products compiled with numba (``pip install 'unitarium[fast]'``): the same bits, faster.

:func:`.portable.matmul_planes` forms each product from one numpy ufunc call per float operation, a
pass over memory each: 3-10x slower than BLAS from ``d = 8`` (three qubits) up. The loop here does the
same operations in the same order on each element (``re = ar*br - ai*bi`` for ``j = 0``, then
``re += ar*br - ai*bi`` for each ``j`` ascending; likewise ``im``), compiled by LLVM without fast-math
flags: LLVM then neither reassociates nor fuses a multiply and an add (no ``contract`` flag), and
vectorises only across the batch, which does not change any element's arithmetic. So the bits are
those of the numpy path on every CPU (tests/test_portable.py compares both bit for bit, signed zeros
included, and the pinned digests hold either way).

When: for ``d >= 8`` once numba imports, from the moment this process has formed products worth
:data:`WARM_AFTER` multiply-adds the numpy way (importing numba and loading the compiled loop cost
~1 s per process: a short job never pays it, a long one switches early; either way the same bits).
``UNITARIUM_JIT=always`` compiles from the first product (tests), ``UNITARIUM_JIT=never`` keeps the
numpy path. Compiled code is cached on disk by numba (``cache=True``: beside this module, or in
numba's user cache directory where that is read-only).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

__all__ = ["MIN_DIM", "WARM_AFTER", "matmul_planes"]

MIN_DIM = 8
"""The smallest matrix dimension whose products go through the compiled loop."""
WARM_AFTER = 500_000_000
"""Complex multiply-adds (``n * d**3`` per ``n`` products) this process forms the numpy way before it
loads the compiled loop (~1-2 s of numpy products at ``d = 8``)."""

_done = [0]  # multiply-adds formed the numpy way in this process (under "auto")


@cache
def _kernel() -> Callable[..., None] | None:
    """The compiled loop, or None (numba not installed)."""
    try:
        import numba
    except ImportError:
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
    mode = os.environ.get("UNITARIUM_JIT", "auto")
    if mode == "never" or (mode != "always" and _done[0] < WARM_AFTER):
        _done[0] += ar.shape[0] ** 3 * max(ar.shape[2], br.shape[2])
        return None
    kernel = _kernel()
    if kernel is None:
        return None
    shape = np.broadcast_shapes(ar.shape, br.shape)
    full = [np.ascontiguousarray(np.broadcast_to(x, shape)) for x in (ar, ai, br, bi)]  # (a (d, d, 1) side spread)
    re, im = np.empty(shape, ar.dtype), np.empty(shape, ar.dtype)
    kernel(*full, re, im)
    return re, im
