"""Exact keys of unitaries up to global phase, where the gate set's algebra gives them. Pure numpy.

Two kinds, both read off the float unitaries a run computes (complex128 in unique mode), by rounding to
a lattice with a checked tolerance: a value that is not within the tolerance of its lattice point means the
unitary is not in the group (or ring), and is refused (:class:`NotExact`), never rounded silently. Where
floats cannot decide, the ``ring`` scheme computes the channel key exactly from the circuit instead.

**Tableau** (every gate Clifford). A Clifford ``U`` up to phase *is* its stabilizer tableau: for each
generator ``G`` in ``X_0..X_{n-1}, Z_0..Z_{n-1}``, the Pauli ``U G U^dagger = s i^{x.z} X^x Z^z``
(``x, z`` n-bit masks, qubit ``q`` is bit ``q`` as everywhere in unitarium, ``s = +-1``). It is read by a
batched product per generator: ``x`` is the column of row 0's unit entry, ``z`` the signs along the
Pauli's support, ``s`` its phase; every entry on the support is checked to be a unit of the expected
sign within :data:`TABLEAU_EPS`, so a non-Clifford cannot pass. The key is the ``2n (2n + 1)`` tableau
bits (42 for 3 qubits, 110 for 5), through a two-round Feistel mix of the two 64-bit words, which is a
bijection: **exact, no collisions, up to 5 qubits**; from 6 qubits (156 bits and more) the bits are
hashed to 128 bits with BLAKE2b (two distinct tableaux collide with probability ``2**-128``: below
``N**2 / 2**129`` for ``N`` unitaries, ~1e-16 at 3e11). Where no matrix is needed at all (unique runs with
``--unitaries computed``), tasks compute the same keys from tableaux tracked by update rules, without
matrices (:mod:`unitarium._core.tableau`).

**Channel** (every gate in the Clifford+T ring: matrices in ``Z[1/sqrt2, i]`` up to phase). The
channel representation ``S = U (x) conj(U)`` is phase-free and its entries are ``(a + b sqrt2) / 2^k``
(real and imaginary parts) with integers ``a, b, k``. It is determined by one of its rows: with ``r``
the first entry of ``U`` (row-major) that is not zero, ``w = U conj(u_r)`` is the row of ``S`` at
``(r, r)``, and ``S = w (x) conj(w) / w_r``. The key is ``(r, k, a, b)`` of ``w`` in reduced form (``k``
the smallest common exponent), hashed to 128 bits with BLAKE2b (collision bound as above).

Reading ``a + b sqrt2`` off a float ``x`` needs its Galois conjugate bound: ``sqrt2 -> -sqrt2`` maps a
ring unitary to a unitary, so ``|a - b sqrt2| <= 2^k``; with that bound the pair is the closest point of
a 2-d lattice, found by rounding in a reduced basis (exact while ``2^(2k)`` times the float error stays
far below 1). That holds to ``k =`` :data:`CHANNEL_K` (about 18 T or H gates' worth): the ``channel``
scheme gives a ring unitary whose channel needs a larger ``k`` a grid key instead (:func:`channel_keys`
says which rows).

**Ring** (the scheme ``--keys exact`` and ``auto`` choose for Clifford+T gate sets): the same key for
*every* ring unitary, at any depth. Where the floats cannot decide, the form is computed exactly from the
circuit (``ringmoves.RingMoves``, :mod:`unitarium._core.ring`): each move's matrix, divided by its gate's
phase, is read once as an exact matrix over ``Z[w] / sqrt2^e`` (``ringmoves.ring_gate``, at :data:`GATE_K`),
and a circuit's product is formed in integers (Gaussian integers in complex128, the channel row in int64,
within proven bounds; Python integers beyond), reduced, and its channel row taken: the same
``(r, k, a, b)``, so the same key wherever the floats read one (hashed as int32 up to ``k = 30``; deeper
forms, which only exact evaluation reaches, as wider integers: ``ringmoves.ring_keys_of_form``). Which rows are
evaluated exactly: those whose circuit does not bound the exponent within ``CHANNEL_K`` (the sum of its
moves' ``e``, plus 1) or is longer than :data:`TRUSTED_LENGTH`, or whose floats do not read. The other
rows are read off the floats, which is then exact: two distinct channel values with exponents at most
``k`` differ by at least ``2^-(2k + 1)`` (their difference's conjugate is at
most 2), ``7e-12`` at ``k = 18``, far above the reading's tolerance plus the float error; past the bound
a deep unitary could lie within the tolerance of a shallow form, and the ``channel`` scheme would read
that form: rarely (measured on deep 1-qubit rows: each value falls within ``1e-12`` of a lattice point at
``k = 18`` one time in ten, and all 7 free values of the row must, so about ``1e-7`` per deep 1-qubit
unitary; from 2 qubits, 31 values and more, never in practice); ``ring`` never does. Datasets made with
``channel`` (their spec says so) keep it when resumed, bit for bit.

**What floats can and cannot separate.** Two distinct ring unitaries with entries in ``Z[omega] / sqrt2^m``
differ somewhere by at least ``2^-(m+1)``: the difference times ``sqrt2^m`` is a non-zero element of
``Z[omega]``, of norm at least 1, whose conjugates are at most ``2 sqrt2^m``. ``m`` is about the channel's
``k`` (measured: ``(h t)^n`` has ``m = k`` for n up to 30), so within ``CHANNEL_K`` distinct ring unitaries
(with such representatives) lie at least ~2e-6 apart, about the grid's own resolution: pairs closer than the
grid's tolerance need ``k`` of 20 and more, where floats no longer fix the form entry by entry. Grid keys
(and ``channel`` keys, which fall back to them there) merge such pairs; ``ring`` keys keep them apart
(``test_exact_keys``: the identity and a gridsynth approximation of a tiny rotation, 1.7e-8 apart).

Both words of every key are well spread (Feistel mix, BLAKE2b, splitmix for grid keys), so a key authority
may partition keys by range.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import TYPE_CHECKING

import numpy as np

from .kernels import one_blas_thread
from .keyset import Alternates

if TYPE_CHECKING:
    from .ringmoves import RingMoves

__all__ = [
    "CHANNEL_K",
    "CHANNEL_TOL",
    "GATE_K",
    "SCHEMES",
    "TABLEAU_EPS",
    "TABLEAU_LOOKUP_EPS",
    "TRUSTED_LENGTH",
    "NotExact",
    "channel_form",
    "channel_keys",
    "channel_keys_of_form",
    "dedup_keys",
    "is_clifford",
    "is_clifford_t",
    "lookup_probes",
    "tableau",
    "tableau_keys",
]

TABLEAU_EPS = 1e-6
"""Tolerance on the unit entries of a conjugated Pauli (complex128 products are exact to ~1e-14)."""
CHANNEL_TOL = 1e-12
"""Tolerance on a channel entry: it must lie this close to ``(a + b sqrt2) / 2^CHANNEL_K``."""
CHANNEL_K = 18
"""The largest denominator exponent read off floats (see the module docstring)."""
TRUSTED_LENGTH = 1000
"""Ring keys read off floats only for circuits of at most this many moves: their products' error (about
``1e-16`` per move, ``1e-13`` at worst here) stays far within ``CHANNEL_TOL``, itself far within the
``7e-12`` that separates distinct channel values of exponent 18; longer circuits are evaluated exactly."""
GATE_K = 16
"""The largest exponent at which a gate's matrix (up to phase) is read as an exact ring matrix: far within
what floats fix (a matrix off the ring passes the ``CHANNEL_TOL`` check on all its entries with a chance
below ``1e-13``)."""

_MASK64 = (1 << 64) - 1


class NotExact(ValueError):
    """A unitary is not within tolerance of the group (ring) the scheme keys exactly."""


# -- tableaux -------------------------------------------------------------------------------


@functools.cache
def _generators(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Column permutations and signs ``(2n, d)`` with ``U @ G_k == U[:, perm[k]] * sign[k]``."""
    d = 1 << n
    idx = np.arange(d)
    perms = np.stack([idx ^ (1 << j) for j in range(n)] + [idx] * n)
    signs = np.stack([np.ones(d)] * n + [1.0 - 2.0 * ((idx >> j) & 1) for j in range(n)])
    return perms, signs


def tableau(
    u: np.ndarray, *, eps: float = TABLEAU_EPS, full: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stabilizer tableaux of ``(batch, d, d)`` Clifford unitaries: ``x``, ``z`` ``(batch, 2n)`` int64
    bit masks and ``s`` ``(batch, 2n)`` bool (True: sign -1), generator ``k`` being ``X_k`` for ``k < n``
    and ``Z_{k-n}`` after. Raises :class:`NotExact` if a unitary is not a Clifford within ``eps``.

    Each ``C_k = U G_k U^dagger`` is read on rows ``0`` and ``2^j`` (which fix ``x``, ``z`` and the
    sign), every entry read being checked; ``full`` checks every row, which certifies a unitary ``U``
    is Clifford (the gate check). Products of certified gates need only the read rows."""
    x, z, s, bad = _tableau(u, eps, full)
    if bad.any():
        raise NotExact(f"{int(bad.sum())} of {len(u)} unitaries are not Clifford (within {eps:g})")
    return x, z, s


def _tableau(u: np.ndarray, eps: float, full: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`tableau`, with the mask of rows that are not Clifford (their outputs are meaningless)."""
    u = np.asarray(u, dtype=np.complex128)
    batch, d = len(u), u.shape[-1]
    n = d.bit_length() - 1
    if d != 1 << n or u.shape[-2:] != (d, d):
        raise ValueError(f"unitaries must be (batch, 2^n, 2^n), got {u.shape}")
    perms, signs = _generators(n)
    rows = np.arange(d) if full else np.array([0] + [1 << j for j in range(n)])
    ug = np.take(u[:, rows], perms, axis=2)  # (batch, rows, 2n, d): rows of U G_k
    ug[:, :, n:] *= signs[n:]
    uc = np.conj(u)
    with one_blas_thread():
        row0 = ug[:, 0] @ uc.transpose(0, 2, 1)  # (batch, 2n, d): C_k[0, :]
    x = np.abs(row0).argmax(axis=-1)  # (batch, 2n): row 0's unit entry sits at column x
    # C_k[r, r ^ x] = <row r of U G_k, row r ^ x of U>: U G_k's row r is a unit times U's row r ^ x
    at = (np.arange(batch) * d)[:, None, None] + (rows[None, None, :] ^ x[:, :, None])  # (batch, 2n, rows)
    diag = np.einsum("brkm,bkrm->bkr", ug, uc.reshape(-1, d)[at])  # C_k[r, r ^ x]
    ratio = diag * np.conj(diag[..., :1])
    z = np.zeros_like(x)
    for j in range(n):
        z |= (ratio[..., int(np.flatnonzero(rows == 1 << j)[0])].real < 0).astype(np.int64) << j
    expect = 1.0 - 2.0 * (_popcounts(z[..., None] & rows) & 1)  # (-1)^{z.r} along the support
    phase = diag[..., 0] * (1j ** (_popcounts(x & z) % 4))  # c[0, x] = s (-i)^{|x & z|}
    bad = (
        (np.abs(np.abs(diag) - 1) > eps).any(axis=-1)
        | (np.abs(ratio - expect) > eps).any(axis=-1)
        | (np.abs(phase.imag) > eps)
        | (np.abs(np.abs(phase.real) - 1) > eps)
    ).any(axis=-1)
    return x, z, phase.real < 0, bad


def _popcounts(v: np.ndarray) -> np.ndarray:
    out = np.zeros_like(v)
    v = v.copy()
    while v.any():
        out += v & 1
        v >>= 1
    return out


def tableau_bits(u: np.ndarray, *, eps: float = TABLEAU_EPS, full: bool = False) -> np.ndarray:
    """``(batch, 2n (2n + 1))`` uint8: per generator, its ``x`` bits, ``z`` bits and sign bit."""
    return _bits(*tableau(u, eps=eps, full=full))


def _bits(x: np.ndarray, z: np.ndarray, s: np.ndarray) -> np.ndarray:
    n = x.shape[1] // 2
    shifts = np.arange(n)
    xb = (x[..., None] >> shifts) & 1
    zb = (z[..., None] >> shifts) & 1
    bits = np.concatenate([xb, zb, s[..., None].astype(np.int64)], axis=-1)
    return bits.reshape(len(x), 2 * n * (2 * n + 1)).astype(np.uint8)


def tableau_keys(u: np.ndarray, *, eps: float = TABLEAU_EPS, full: bool = False) -> np.ndarray:
    """``(batch, 2)`` int64 keys of Clifford unitaries: their tableaux (see the module docstring)."""
    return _keys_of_bits(tableau_bits(u, eps=eps, full=full))


def _keys_of_bits(bits: np.ndarray) -> np.ndarray:
    width = bits.shape[1]
    if width > 128:
        return _blake(np.packbits(bits, axis=1, bitorder="little"))
    packed = np.packbits(bits, axis=1, bitorder="little")
    words = np.zeros((len(bits), 16), dtype=np.uint8)
    words[:, : packed.shape[1]] = packed
    w = words.view("<u8")
    return _feistel(w[:, 0].astype(np.uint64), w[:, 1].astype(np.uint64))


# -- mixing ---------------------------------------------------------------------------------


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _feistel(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """A bijection of 128-bit values ``(left, right)`` to ``(batch, 2)`` int64 with well-spread words."""
    left = left ^ _splitmix(right)
    right = right ^ _splitmix(left ^ np.uint64(0x5851F42D4C957F2D))
    left = left ^ _splitmix(right)
    return np.stack([left, right], axis=-1).view(np.int64)


_BLAKE = hashlib.blake2b(digest_size=16, person=b"unitarium-key")


def _blake(rows: np.ndarray) -> np.ndarray:
    """``(batch, 2)`` int64: BLAKE2b-128 of each row's bytes (a copy of a keyed-up hasher per row: the
    constructor's parameter handling costs more than hashing a few hundred bytes)."""
    rows = np.ascontiguousarray(rows)
    width = rows.shape[1] * rows.itemsize
    flat = rows.tobytes()
    digests = []
    for i in range(0, len(flat), width):
        h = _BLAKE.copy()
        h.update(flat[i : i + width])
        digests.append(h.digest())
    return np.frombuffer(b"".join(digests), dtype="<i8").reshape(len(rows), 2).astype(np.int64)


# -- channel representation ---------------------------------------------------------------


@functools.cache
def _lattice(k: int, tol: float) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The lattice ``{((a + b sqrt2) / delta, (a - b sqrt2) / 2^k)}``, ``delta = 2^k tol``, reduced
    (Lagrange-Gauss): the integer transform ``T`` from reduced coordinates to ``(a, b)`` (as
    ``t00, t01, t10, t11``) and its exact inverse ``(2, 2)``. Raises ValueError where the reduced vectors
    are too short for rounding to be unambiguous (floats cannot fix ``k`` at ``tol``)."""
    scale, delta, root2 = float(1 << k), float(1 << k) * tol, math.sqrt(2)

    def vector(a: int, b: int) -> np.ndarray:
        # a + b sqrt2 and a - b sqrt2 without cancellation: the one of equal-sign terms directly, the
        # other as the exact integer (a^2 - 2 b^2) over it
        norm = a * a - 2 * b * b
        if a * b >= 0:
            plus = a + b * root2
            minus = norm / plus if plus else 0.0
        else:
            minus = a - b * root2
            plus = norm / minus
        return np.array([plus / delta, minus / scale])

    cols = [(1, 0), (0, 1)]
    for _ in range(500):
        u, v = (vector(*c) for c in cols)
        if u @ u > v @ v:
            cols, u, v = cols[::-1], v, u
        mu = round(float(u @ v / (u @ u)))
        if mu == 0:
            break
        cols[1] = (cols[1][0] - mu * cols[0][0], cols[1][1] - mu * cols[0][1])
    # A true point lies within sqrt2 of the target (scaled units): rounding in a reduced basis whose
    # vectors are all longer than 4 finds it, and no other point lies that close.
    if min(float(np.linalg.norm(vector(*c))) for c in cols) < 4:
        raise ValueError(f"exponent {k} with tolerance {tol:g} is beyond what floats determine")
    (t00, t10), (t01, t11) = cols
    det = t00 * t11 - t01 * t10  # +-1
    inverse = np.array([[t11 * det, -t01 * det], [-t10 * det, t00 * det]], dtype=np.float64)
    return (t00, t01, t10, t11), inverse


def _read_ring(values: np.ndarray, k: int, tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integers ``a, b`` with ``values ~ (a + b sqrt2) / 2^k`` and ``|a - b sqrt2| <= 2^k`` (the closest
    lattice point), and a mask of values within ``tol`` of it.

    Rounding in the reduced basis: the target ``(y / delta, 0)``, ``y = 2^k x``, is the image of the real
    point ``a* = y / 2, b* = y / (2 sqrt2)``, so its reduced coordinates are ``T^-1 (a*, b*)`` (no scaled
    basis enters: its large entries would cancel); rounded, and mapped back by ``T`` in int64 (exact)."""
    (t00, t01, t10, t11), inverse = _lattice(k, tol)
    scale = float(1 << k)
    root2 = math.sqrt(2)
    y = values * scale
    a_star, b_star = y / 2, y / (2 * root2)
    c0 = np.rint(inverse[0, 0] * a_star + inverse[0, 1] * b_star).astype(np.int64)
    c1 = np.rint(inverse[1, 0] * a_star + inverse[1, 1] * b_star).astype(np.int64)
    a = t00 * c0 + t01 * c1
    b = t10 * c0 + t11 * c1
    ok = (np.abs((a + b * root2) / scale - values) <= tol) & (np.abs(a - b * root2) <= scale * 1.000001)
    return a, b, ok


def channel_form(
    u: np.ndarray, *, k: int = CHANNEL_K, tol: float = CHANNEL_TOL
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The reduced exact channel row of ``(batch, d, d)`` unitaries: ``ref`` ``(batch,)`` (the first
    non-zero entry, row-major), ``k`` ``(batch,)``, ``a`` and ``b`` ``(batch, 2 d^2)`` (real parts then
    imaginary parts of ``w = U conj(u_ref)``, each ``(a + b sqrt2) / 2^k``), and ``ok`` ``(batch,)``: False
    where a unitary has no such form with exponent ``<= k`` (the other outputs are then meaningless)."""
    u = np.asarray(u, dtype=np.complex128)
    flat = u.reshape(len(u), u.shape[-1] * u.shape[-2])
    ref = (np.abs(flat) > 2.0 ** -(k + 1)).argmax(axis=1)  # a non-zero entry has |u| >= 2^-k
    w = flat * np.conj(flat[np.arange(len(u)), ref])[:, None]
    values = np.concatenate([w.real, w.imag], axis=1)
    a, b, ok = _read_ring(values, k, tol)
    good: np.ndarray = np.asarray(ok.all(axis=1))
    a[~good] = 0
    b[~good] = 0
    # reduce: the common factor 2^j of every a and b
    common = np.bitwise_or.reduce(np.abs(a) | np.abs(b), axis=1)
    j = np.zeros(len(u), dtype=np.int64)
    for shift in range(k):
        j += ((common >> shift) & 1 == 0) & (j == shift) & (common != 0)
    j[common == 0] = k
    return ref, k - j, a >> j[:, None], b >> j[:, None], good


def channel_keys_of_form(ref: np.ndarray, k: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(batch, 2)`` int64: BLAKE2b-128 of the canonical integer form ``(ref, k, a, b)`` (as little-endian
    int32: ``|a|, |b| <= 2^(k + 1)``)."""
    rows = np.concatenate([ref[:, None], k[:, None], a, b], axis=1).astype("<i4")
    return _blake(rows)


def channel_keys(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(batch, 2)`` int64 exact keys of ring unitaries and the mask of rows that have one (False: the
    channel needs a larger exponent than :data:`CHANNEL_K`, and the caller keys the row on the grid)."""
    ref, k, a, b, good = channel_form(u)
    keys = np.zeros((len(ref), 2), dtype=np.int64)
    if good.any():
        keys[good] = channel_keys_of_form(ref[good], k[good], a[good], b[good])
    return keys, good


# -- exact evaluation from circuits (the ring scheme) ------------------------------------------


# -- gate checks ----------------------------------------------------------------------------


def is_clifford(matrices: np.ndarray) -> bool:
    """Whether every ``(m, d, d)`` matrix is a Clifford up to phase (checked on its matrix)."""
    try:
        tableau(matrices, eps=1e-9, full=True)
    except NotExact:
        return False
    return True


def is_clifford_t(matrices: np.ndarray) -> bool:
    """Whether every ``(m, d, d)`` matrix is in the Clifford+T ring up to phase (entries of its channel
    representation in ``Z[1/sqrt2, i]``, with a small exponent)."""
    return bool(channel_form(matrices, k=4)[4].all())


# -- schemes --------------------------------------------------------------------------------

SCHEMES = ("grid", "tableau", "channel", "ring")
"""Key schemes of unique mode: ``grid`` (float grid keys with neighbour-cell alternates, any gate set),
``tableau`` (Clifford gate sets), ``ring`` (Clifford+T ring gate sets: exact channel keys at every depth),
``channel`` (the same keys up to :data:`CHANNEL_K`, grid keys beyond: Clifford+T datasets made before
``ring``, which resume with it)."""

TABLEAU_LOOKUP_EPS = 1e-3
"""Reading a lookup query's tableau: Cliffords are far apart (a non-Clifford read as one is then
rejected by the lookup's own tolerance check), and complex64 queries must read."""


def dedup_keys(
    scheme: str, u: np.ndarray, circuits: tuple[RingMoves, np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, dict[int, np.ndarray], np.ndarray]:
    """Unique mode's keys of ``(batch, d, d)`` complex128 products under ``scheme``: 128-bit dedup keys
    ``(batch, 2)``, alternates of rows near a grid boundary, and lookup keys ``(batch,)``.

    ``tableau``: the tableau key, no alternates, its first word as lookup key. ``channel``: the exact
    channel key where the unitary has one (its channel's exponent is at most :data:`CHANNEL_K`), the grid
    keys otherwise (a property of the unitary alone, so one unitary never gets both kinds); lookup keys
    stay on the coarse grid (a complex64 copy of a deep ring element cannot be read back exactly).
    ``ring`` (needs ``circuits``: the gate set's :class:`RingMoves` and the rows' ``codes``, ``offsets``):
    the channel key of every unitary, read off the floats where the circuit bounds its exponent within
    :data:`CHANNEL_K` and has at most :data:`TRUSTED_LENGTH` moves (exact there), evaluated exactly from
    the circuit otherwise; no alternates."""
    from .canonical import DEDUP, LOOKUP, grid_keys

    if scheme == "tableau":
        keys = tableau_keys(u)
        return keys, {}, keys[:, 0].copy()
    if scheme == "ring":
        if circuits is None:
            raise ValueError("ring keys are computed from the circuits: pass them")
        moves, codes, offsets = circuits
        keys, good = channel_keys(u)
        lengths = np.diff(offsets.astype(np.int64))
        deep = np.flatnonzero(~good | (moves.bound(codes, offsets) > CHANNEL_K) | (lengths > TRUSTED_LENGTH))
        if len(deep):
            keys[deep] = moves.keys(codes, offsets, deep)
        return keys, {}, LOOKUP.primary(u)
    if scheme == "channel":
        keys, good = channel_keys(u)
        alternates: dict[int, np.ndarray] = {}
        if not good.all():
            deep = np.flatnonzero(~good)
            grid, alts = DEDUP.wide_keys(u[deep])
            keys[deep] = grid
            alternates = Alternates((int(deep[r]), a) for r, a in alts.items())
        return keys, alternates, LOOKUP.primary(u)
    if scheme != "grid":
        raise ValueError(f"unknown key scheme {scheme!r}")
    return grid_keys(u)


def lookup_probes(scheme: str, u: np.ndarray) -> list[int]:
    """The lookup keys a record equal to the ``(d, d)`` query ``u`` (up to phase, within noise) may be
    stored under. ``tableau``: the query's tableau key, or none when it is not a Clifford (nothing in
    the dataset can equal it); otherwise the coarse grid's probes."""
    from .canonical import LOOKUP

    if scheme == "tableau":
        try:
            return [int(tableau_keys(np.asarray(u)[None], eps=TABLEAU_LOOKUP_EPS, full=True)[0, 0])]
        except NotExact:
            return []
    return LOOKUP.probes(u)
