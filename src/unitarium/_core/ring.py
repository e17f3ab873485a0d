"""Exact arithmetic over the Clifford+T ring: products of circuits and their channel forms, in integers.

An element is ``(c0 + c1 w + c2 w^2 + c3 w^3) / sqrt2^m`` with ``w = e^{i pi/4}`` (``w^4 = -1``): its four
integer coefficients on the last axis (size 4), one exponent ``m`` per matrix. A move's exact matrix (up to
a global phase) times a unitary ``C / sqrt2^m`` is ``(G C) / sqrt2^(m + e)``, with ``G`` the move's numerator
and ``e`` its exponent; after each move the exponent is reduced while every entry is divisible by
``sqrt2 = w - w^3`` (``c0 = c2`` and ``c1 = c3`` mod 2), so ``m`` stays the smallest one.

**Overflow bound.** Every Galois conjugate of a ring unitary is unitary (``w -> w^l``, ``l`` odd, commutes
with complex conjugation), so a numerator coefficient ``c_t = (1/4) sum_l sigma_l(y) w^(-lt)`` of an
entry ``y / sqrt2^m`` is at most ``sqrt2^m`` in absolute value. A move's product sums ``4 d`` terms each
at most ``sqrt2^(m + e)``, and a channel row's entry (a product of two entries) 4 terms of at most
``2^m``. So products are formed as Gaussian integers in complex128 (:func:`evaluate_complex`: one small
complex product per move, exact while ``m + e <= 2 (52 - log2(4 d))``), the channel row in int64 (exact
while ``m <=`` :data:`INT64_M`); rows beyond either bound are evaluated again with Python integers
(:func:`evaluate` on numpy object arrays): exact at any depth, slower (gridsynth-deep circuits only).

**Channel form.** ``w = U conj(u_r)`` (``r`` the first non-zero entry, row-major) has numerators over
``2^m``; its real and imaginary parts are ``(a + b sqrt2) / 2^(m + 1)`` (``re = 2 p0 + (p1 - p3) sqrt2``,
``im = 2 p2 + (p1 + p3) sqrt2``), reduced by the common power of 2: :func:`unitarium._core.exact.channel_form`'s
``(ref, k, a, b)``, without floats. Pure numpy; no I/O."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "INT64_M",
    "channel_forms",
    "coefficients",
    "complex_maps",
    "evaluate",
    "evaluate_complex",
    "multiplication_maps",
    "reduce_exponent",
    "unstack",
]

INT64_M = 58
"""The largest exponent whose channel row int64 holds exactly (see the module docstring)."""


def zmul(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The product of elements of ``Z[w]`` (last axis: 4 coefficients), broadcast; any integer dtype."""
    out = [x[..., 0] * y[..., t] for t in range(4)]
    for i in range(1, 4):
        for j in range(4):
            term = x[..., i] * y[..., j]
            if i + j >= 4:
                out[i + j - 4] = out[i + j - 4] - term
            else:
                out[i + j] = out[i + j] + term
    return np.stack(out, axis=-1)


def zconj(x: np.ndarray) -> np.ndarray:
    """Complex conjugates (``conj(w) = -w^3``, ``conj(w^2) = -w^2``, ``conj(w^3) = -w``)."""
    return np.stack([x[..., 0], -x[..., 3], -x[..., 2], -x[..., 1]], axis=-1)


def multiplication_maps(coeffs: np.ndarray) -> np.ndarray:
    """``(moves, 4 d, 4 d)`` integer matrices of left multiplication by ``(moves, d, d, 4)`` numerators, on
    a matrix stacked as ``(4 d, d)`` (row ``4 i + t``: coefficient ``t`` of row ``i``):
    ``[(i, t), (k, b)] = G[i, k][(t - b) mod 4]``, negated where ``b > t`` (the product wrapped past ``w^4``)."""
    moves, d = coeffs.shape[:2]
    t = np.arange(4)[:, None]
    b = np.arange(4)[None, :]
    picked = coeffs[..., (t - b) % 4] * np.where(b > t, -1, 1)  # (moves, d, d, 4 [t], 4 [b])
    return picked.transpose(0, 1, 3, 2, 4).reshape(moves, 4 * d, 4 * d)


def reduce_exponent(c: np.ndarray, m: np.ndarray, rows: np.ndarray | None = None) -> None:
    """Divide ``(n, 4 d, d)`` stacked numerators by ``sqrt2`` in place (``m`` decremented) while every entry
    of the row is divisible and ``m > 0``; only ``rows`` (default: all) are looked at."""
    rows = np.arange(len(c)) if rows is None else rows
    while len(rows):
        q = c[rows].reshape(len(rows), -1, 4, c.shape[-1])
        odd = ((q[:, :, 0] ^ q[:, :, 2]) | (q[:, :, 1] ^ q[:, :, 3])) & 1
        rows = rows[(m[rows] > 0) & ~odd.reshape(len(rows), -1).any(axis=1)]
        if not len(rows):
            return
        q = c[rows].reshape(len(rows), -1, 4, c.shape[-1])
        c0, c1, c2, c3 = q[:, :, 0], q[:, :, 1], q[:, :, 2], q[:, :, 3]
        # x / sqrt2 = x (w - w^3) / 2
        c[rows] = (np.stack([c1 - c3, c0 + c2, c1 + c3, c2 - c0], axis=2) >> 1).reshape(len(rows), *c.shape[1:])
        m[rows] -= 1


def evaluate(
    maps: np.ndarray,
    exps: np.ndarray,
    seqs: np.ndarray,
    *,
    dtype: type = np.int64,
    start: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact unitaries of ``(n, L)`` move sequences over the moves' ``maps`` (:func:`multiplication_maps`)
    and exponents ``exps``, the first move applied first (an identity map, e.g. a padding code, is
    skipped), after ``start`` (an earlier output: the sequences' prefixes) or the identity: stacked
    ``(n, 4 d, d)`` numerators (:func:`unstack`), ``(n,)`` reduced exponents, and ``(n,)`` bool: False where
    int64 could overflow (the row's outputs are then meaningless; ``dtype=object`` is exact for every row)."""
    n = seqs.shape[0]
    d = maps.shape[-1] // 4
    if start is None:
        c = np.zeros((n, 4 * d, d), dtype=dtype)
        c[:, np.arange(d) * 4, np.arange(d)] = 1
        m = np.zeros(n, dtype=np.int64)
        safe = np.ones(n, dtype=bool)
    else:
        c, m, safe = (x.copy() for x in start)
    limit = 2 * (62 - int(np.ceil(np.log2(4 * d))))
    _apply_moves(c, m, safe, seqs, maps.astype(dtype), exps, limit, reduce_exponent)
    if dtype is np.int64:
        safe &= m <= INT64_M
    else:
        safe[:] = True
    return c, m, safe


def _apply_moves(
    c: np.ndarray,
    m: np.ndarray,
    safe: np.ndarray,
    seqs: np.ndarray,
    maps: np.ndarray,
    exps: np.ndarray,
    limit: int,
    reduce: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
) -> None:
    """The loop of :func:`evaluate` and :func:`evaluate_complex`, in place: column by column of ``seqs``, the
    rows of each move multiplied by its map (an identity map of exponent 0, e.g. a padding code, skipped),
    its exponent added to ``m`` (rows past ``limit`` no longer ``safe``), then the rows whose exponent grew
    reduced by ``reduce`` (a move of exponent 0 is a unitary over Z[w], its inverse too: it keeps
    divisibility by sqrt2)."""
    eye = np.eye(maps.shape[-1])
    trivial = [bool(exps[g] == 0 and np.array_equal(maps[g], eye)) for g in range(len(maps))]
    for step in range(seqs.shape[1]):
        col = seqs[:, step]
        grew = []
        for code in np.unique(col):
            if trivial[code]:
                continue
            rows = np.flatnonzero(col == code)
            with np.errstate(over="ignore", invalid="ignore"):  # rows past the bound (unsafe) may overflow
                c[rows] = maps[code] @ c[rows]
            if exps[code]:
                m[rows] += exps[code]
                safe[rows] &= m[rows] <= limit
                grew.append(rows)
        if grew:
            reduce(c, m, np.concatenate(grew))


def complex_maps(coeffs: np.ndarray) -> np.ndarray:
    """``(moves, 2 d, 2 d)`` complex128 maps of left multiplication by ``(moves, d, d, 4)`` numerators, on a
    matrix ``A + B w`` (``A = c0 + c2 i``, ``B = c1 + c3 i``: Gaussian integers, as ``w^2 = i``) stacked as
    ``(2 d, d)``: ``(Ga + Gb w)(A + B w) = (Ga A + i Gb B) + (Gb A + Ga B) w``."""
    ga = coeffs[..., 0] + 1j * coeffs[..., 2]
    gb = coeffs[..., 1] + 1j * coeffs[..., 3]
    return np.concatenate([np.concatenate([ga, 1j * gb], axis=2), np.concatenate([gb, ga], axis=2)], axis=1)


def evaluate_complex(
    maps: np.ndarray,
    exps: np.ndarray,
    seqs: np.ndarray,
    *,
    start: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`evaluate` with the numerators as Gaussian integers in complex128 (:func:`complex_maps`: one
    complex product per move, BLAS-fast, 2.5x to 6x int64's): exact while every partial sum stays below
    ``2^53``, i.e. ``m + e <= 2 (52 - log2(4 d))`` (the bound of the module docstring); ``safe`` is False
    past it, or where the exponent exceeds :data:`INT64_M` (whose channel row int64 would not hold).
    Returns stacked ``(n, 2 d, d)`` complex numerators (:func:`coefficients`), exponents and ``safe``."""
    n = seqs.shape[0]
    d = maps.shape[-1] // 2
    if start is None:
        c = np.zeros((n, 2 * d, d), dtype=np.complex128)
        c[:, np.arange(d), np.arange(d)] = 1
        m = np.zeros(n, dtype=np.int64)
        safe = np.ones(n, dtype=bool)
    else:
        c, m, safe = (x.copy() for x in start)
    limit = 2 * (52 - int(np.ceil(np.log2(4 * d))))
    _apply_moves(c, m, safe, seqs, maps, exps, limit, _reduce_complex)
    safe &= m <= INT64_M
    return c, m, safe


def _reduce_complex(c: np.ndarray, m: np.ndarray, rows: np.ndarray) -> None:
    """:func:`reduce_exponent` for Gaussian-integer numerators: ``A + B w`` is divisible by ``sqrt2`` when
    ``Re = Im`` mod 2 in both; ``(A + B w) / sqrt2 = ((1 + i) B + (1 - i) A w) / 2``."""
    d = c.shape[-1]
    while len(rows):
        q = c[rows]
        with np.errstate(invalid="ignore"):  # inf or nan in an unsafe row: never divisible
            odd = ~(np.fmod(q.real - q.imag, 2) == 0)
        rows = rows[(m[rows] > 0) & ~odd.reshape(len(rows), -1).any(axis=1)]
        if not len(rows):
            return
        q = c[rows]
        c[rows] = np.concatenate([(1 + 1j) * q[:, d:], (1 - 1j) * q[:, :d]], axis=1) * 0.5
        m[rows] -= 1


def coefficients(c: np.ndarray) -> np.ndarray:
    """``(n, d, d, 4)`` int64 numerators from :func:`evaluate_complex`'s stacked ``(n, 2 d, d)``."""
    d = c.shape[-1]
    a, b = c[:, :d], c[:, d:]
    return np.stack([a.real, b.real, a.imag, b.imag], axis=-1).astype(np.int64)


def unstack(c: np.ndarray) -> np.ndarray:
    """``(n, d, d, 4)`` numerators from :func:`evaluate`'s stacked ``(n, 4 d, d)``."""
    n, d = len(c), c.shape[-1]
    return c.reshape(n, d, 4, d).transpose(0, 1, 3, 2)


def channel_forms(c: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The reduced channel forms ``(ref, k, a, b)`` of exact unitaries ``(n, d, d, 4)`` over ``sqrt2^m``:
    ``ref`` and ``k`` ``(n,)`` int64, ``a`` and ``b`` ``(n, 2 d^2)`` of ``c``'s dtype (real parts, then
    imaginary parts)."""
    n, d = c.shape[:2]
    flat = c.reshape(n, d * d, 4)
    ref = (flat != 0).any(axis=2).argmax(axis=1)
    p = zmul(flat, zconj(flat[np.arange(n), ref])[:, None, :])  # numerators over 2^m
    a = np.concatenate([2 * p[..., 0], 2 * p[..., 2]], axis=1)
    b = np.concatenate([p[..., 1] - p[..., 3], p[..., 1] + p[..., 3]], axis=1)
    k = m + 1
    common = np.bitwise_or.reduce(np.concatenate([np.abs(a), np.abs(b)], axis=1), axis=1)
    if a.dtype == object:
        shift = np.array([min(_trailing_zeros(int(v)), int(kk)) for v, kk in zip(common, k, strict=True)], np.int64)
    else:
        shift = np.zeros(n, dtype=np.int64)
        for s in range(int(k.max(initial=0))):
            shift += ((common >> s) & 1 == 0) & (shift == s) & (common != 0)
        shift = np.minimum(shift, k)
    return ref.astype(np.int64), k - shift, _shift_rows(a, shift), _shift_rows(b, shift)


def _shift_rows(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    if x.dtype != object:
        return x >> shift[:, None]
    out = x.copy()
    for r, s in enumerate(shift.tolist()):
        out[r] = out[r] >> s
    return out


def _trailing_zeros(v: int) -> int:
    return (v & -v).bit_length() - 1 if v else 1 << 30
