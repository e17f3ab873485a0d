"""Matrix products whose bits are the same on every machine (kernel version 6). Pure numpy, no I/O.

A record's unitary is part of a dataset's content, and the content may depend only on the spec and
the seed: not on which machine generated a task, resumed a run or recomputes a ``--unitaries computed``
record on read. Neither BLAS nor numpy's complex multiply gives that: OpenBLAS picks its kernels by
the CPU (``zgemm`` rounds differently on AVX-512 and AVX2 machines), and numpy's complex multiply
uses fused multiply-adds where the CPU has them (AVX2 and later) and not elsewhere. Every operation
here is one float ``multiply``, ``add``, ``subtract`` or ``negative`` of numpy, elementwise over whole
arrays: IEEE 754 rounds each exactly, with nothing fused, on every CPU numpy runs on.

The arithmetic (``A @ B``, complex, as real and imaginary planes): entry ``(i, k)`` is the sum over
``j`` ascending, left to right, of the terms ``(ar*br - ai*bi, ar*bi + ai*br)`` (each product rounded,
then the difference or sum) of ``a[i, j]`` and ``b[j, k]``. :func:`apply_moves`, whose left factors are
the gate set's fixed moves, omits the terms of a move's zero entries (parts: a zero real part drops its
products; an entry without terms is ``+0``); that is its own definition, used wherever its products are
(generation and recomputation alike). A product table's unitaries and :func:`apply_moves` run
compiled where numba is installed (:mod:`.compiled`, same bits). Measurements: BENCHMARKS.md, "Kernels".
"""

from __future__ import annotations

import numpy as np

from . import compiled

__all__ = ["apply_moves", "matmul_planes", "matmul_stack", "planes", "product_one", "sub_batch"]

_BLOCK_BYTES = 256 << 10
"""Bytes of one ``(d, d, sub)`` plane of a sub-batch (measured: 128-512 KiB best for d = 4 to 16)."""


def planes(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary planes of a ``(n, d, d)`` stack in the batch-last layout ``(d, d, n)``."""
    return np.ascontiguousarray(u.real.transpose(1, 2, 0)), np.ascontiguousarray(u.imag.transpose(1, 2, 0))


def matmul_planes(ar: np.ndarray, ai: np.ndarray, br: np.ndarray, bi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A @ B`` in the batch-last layout: ``(d, d, n)`` planes (either side may be ``(d, d, 1)``)."""
    d = ar.shape[0]
    shape = np.broadcast_shapes(ar.shape, br.shape)
    re, im = np.empty(shape, ar.dtype), np.empty(shape, ar.dtype)
    t1, t2 = np.empty(shape, ar.dtype), np.empty(shape, ar.dtype)
    for j in range(d):
        a_r, a_i, b_r, b_i = ar[:, j, None, :], ai[:, j, None, :], br[None, j], bi[None, j]
        _add_term(re, np.subtract, a_r, b_r, a_i, b_i, t1, t2, first=not j)  # ar*br - ai*bi
        _add_term(im, np.add, a_r, b_i, a_i, b_r, t1, t2, first=not j)  # ar*bi + ai*br
    return re, im


def _add_term(
    acc: np.ndarray,
    combine: np.ufunc,
    x1: np.ndarray,
    y1: np.ndarray,
    x2: np.ndarray,
    y2: np.ndarray,
    t1: np.ndarray,
    t2: np.ndarray,
    *,
    first: bool,
) -> None:
    """``acc (+)= combine(x1 * y1, x2 * y2)``, each product rounded, then their combination (the
    first term is written, later ones added)."""
    np.multiply(x1, y1, out=t1)
    np.multiply(x2, y2, out=t2)
    if first:
        combine(t1, t2, out=acc)
    else:
        combine(t1, t2, out=t1)
        acc += t1


def sub_batch(d: int, dtype: np.dtype | type) -> int:
    """Matrices per sub-batch of ``d x d`` planes of the float ``dtype``."""
    return max(1, _BLOCK_BYTES // (d * d * np.dtype(dtype).itemsize))


def matmul_stack(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of two ``(n, d, d)`` complex stacks (or one side ``(1, d, d)``), in the arithmetic above."""
    n = max(len(a), len(b))
    d = a.shape[-1]
    out = np.empty((n, d, d), dtype=np.result_type(a, b))
    real = out.real.dtype
    step = sub_batch(d, real)
    for s in range(0, n, step):
        ar, ai = planes(a[s : s + step] if len(a) > 1 else a)
        br, bi = planes(b[s : s + step] if len(b) > 1 else b)
        re, im = matmul_planes(ar, ai, br, bi)
        out.real[s : s + step] = re.transpose(2, 0, 1)
        out.imag[s : s + step] = im.transpose(2, 0, 1)
    return out


def product_one(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of two ``(d, d)`` complex matrices, bit for bit :func:`matmul_planes`'s entry (each
    term whole, then summed over ``j`` ascending by one reduction along a non-contiguous axis, which
    numpy adds in index order)."""
    ar, ai, br, bi = a.real[:, :, None], a.imag[:, :, None], b.real[None], b.imag[None]
    re = np.add.reduce(ar * br - ai * bi, axis=1)
    im = np.add.reduce(ar * bi + ai * br, axis=1)
    out = np.empty(re.shape, dtype=a.dtype)
    out.real, out.imag = re, im
    return out


def apply_moves(parents: np.ndarray, moves: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """:func:`~.kernels.extend` in this arithmetic: ``moves[k] @ parents[p]`` for each allowed
    ``(p, k)``, parent-major, as an ``(allowed.sum(), d, d)`` array. A move is a fixed, mostly sparse
    matrix: row ``i`` of a child is the sum over ``j`` ascending of ``moves[k][i, j] * parents[p][j]``
    over the move's nonzero entries only (a part that is zero drops its two products). Compiled where
    numba is installed and ``d >= 4`` (:mod:`.compiled`, the same bits)."""
    fast = compiled.apply_moves(parents, moves, allowed)
    if fast is not None:
        return fast
    batch, d, _ = parents.shape
    m = len(moves)
    real = parents.real.dtype
    terms = [[[(j, float(c.real), float(c.imag)) for j, c in enumerate(row) if c != 0] for row in mv] for mv in moves]
    out = np.empty((int(np.count_nonzero(allowed)), d, d), dtype=parents.dtype)
    step = max(1, sub_batch(d, real) // 2)
    done = 0
    for s in range(0, batch, step):
        pr, pi = planes(parents[s : s + step])
        sub = pr.shape[2]
        kids = np.empty((sub, m, d, d), dtype=parents.dtype)
        for k in range(m):
            for i, row in enumerate(terms[k]):
                re, im = _row(row, pr, pi, real)
                kids.real[:, k, i] = re.T
                kids.imag[:, k, i] = im.T
        keep = allowed[s : s + step].reshape(-1)
        n = int(np.count_nonzero(keep))
        np.compress(keep, kids.reshape(-1, d, d), axis=0, out=out[done : done + n])
        done += n
    return out


def _row(
    row: list[tuple[int, float, float]], pr: np.ndarray, pi: np.ndarray, real: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """``sum_j c_j * P[j]`` (planes ``(d, n)`` each) over the nonzero coefficients ``(j, re, im)``."""
    re: np.ndarray | None = None
    im: np.ndarray | None = None
    for j, cr, ci in row:
        xr, xi = pr[j], pi[j]
        cr_, ci_ = real.type(cr), real.type(ci)
        if ci == 0:  # (cr * x: one product each, the other part's is omitted)
            tr, ti = np.multiply(xr, cr_), np.multiply(xi, cr_)
        elif cr == 0:
            tr, ti = np.negative(np.multiply(xi, ci_)), np.multiply(xr, ci_)
        else:
            tr = np.subtract(np.multiply(xr, cr_), np.multiply(xi, ci_))
            ti = np.add(np.multiply(xi, cr_), np.multiply(xr, ci_))
        if re is None or im is None:
            re, im = tr, ti
        else:
            re += tr
            im += ti
    if re is None or im is None:
        return np.zeros(pr.shape[1:], real), np.zeros(pr.shape[1:], real)
    return re, im
