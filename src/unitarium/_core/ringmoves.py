"""The exact moves of a Clifford+T gate set and the ``ring`` key scheme's keys from circuits (see
:mod:`unitarium._core.exact`, "Ring"): each gate read once as an exact matrix over ``Z[w] / sqrt2^e``
(:func:`ring_gate`), circuits' products formed in integers (:mod:`unitarium._core.ring`), their exact
channel forms keyed as the float reading keys them (:func:`ring_keys_of_form`). Pure numpy."""

from __future__ import annotations

import functools

import numpy as np

from . import ring
from .exact import _BLAKE, CHANNEL_TOL, GATE_K, NotExact, _read_ring, channel_keys_of_form

__all__ = ["RingMoves", "is_ring_gate", "ring_gate", "ring_keys_of_form"]


def ring_gate(matrix: np.ndarray, *, k: int = GATE_K) -> tuple[complex, np.ndarray, int] | None:
    """A ``(d, d)`` matrix in the Clifford+T ring up to phase, read exactly: ``(phase, numerators, e)`` with
    ``matrix = phase * numerators / sqrt2^e`` (numerators ``(d, d, 4)`` int64 over ``Z[w]``, ``e`` reduced),
    or None when no phase makes every entry ``(a + b sqrt2) / 2^k`` (real and imaginary parts) within
    :data:`CHANNEL_TOL`. A ring unitary's determinant is a power of ``w``, so the phase is one of the
    ``8 d`` roots of ``det / w^j``."""
    matrix = np.asarray(matrix, dtype=np.complex128)
    d = len(matrix)
    det = complex(np.linalg.det(matrix))
    for j in range(8 * d):
        phase = complex(np.exp(1j * (np.angle(det) - j * np.pi / 4) / d))
        form = _read_matrix(matrix / phase, k)
        if form is not None:
            return (phase, *form)
    return None


def _read_matrix(x: np.ndarray, k: int) -> tuple[np.ndarray, int] | None:
    """``(numerators, e)`` of a ring matrix ``x`` read off floats at exponent ``k``, or None."""
    d = len(x)
    a, b, ok = _read_ring(np.concatenate([x.real.ravel(), x.imag.ravel()]), k, CHANNEL_TOL)
    if not ok.all():
        return None
    ar, ai, br, bi = a[: d * d], a[d * d :], b[: d * d], b[d * d :]
    # x 2^k = (ar + br sqrt2) + i (ai + bi sqrt2), sqrt2 = w - w^3, i sqrt2 = w + w^3
    c = np.stack([ar, br + bi, ai, bi - br], axis=-1).reshape(d, d, 4)
    stacked = c.transpose(0, 2, 1).reshape(1, 4 * d, d).copy()
    m = np.array([2 * k])
    ring.reduce_exponent(stacked, m)
    return stacked.reshape(d, 4, d).transpose(0, 2, 1).copy(), int(m[0])


def is_ring_gate(matrices: np.ndarray) -> bool:
    """Whether every ``(m, d, d)`` matrix is in the Clifford+T ring up to phase (read at :data:`GATE_K`)."""
    return all(ring_gate(x) is not None for x in matrices)


class RingMoves:
    """The exact moves of a Clifford+T gate set (every gate passes :func:`is_ring_gate`): each move's matrix
    divided by its gate's phase, read exactly, as a multiplication map, with its exponent; code
    ``len(moves)`` (the padding of random circuits) is the identity."""

    def __init__(self, gateset: object) -> None:
        gates, moves = gateset.gates, gateset.moves  # type: ignore[attr-defined]
        matrices = gateset.move_matrices  # type: ignore[attr-defined]
        phases = []
        for g in gates:
            form = ring_gate(g.matrix)
            if form is None:
                raise NotExact(f"gate {g.name} is not in the Clifford+T ring: it has no exact key")
            phases.append(form[0])
        d = matrices.shape[-1]
        numerators, exps = [], []
        for move, x in zip(moves, matrices, strict=True):
            read = _read_matrix(x / phases[move.gate], GATE_K)
            assert read is not None  # a ring gate's entries, and zeros
            numerators.append(read[0])
            exps.append(read[1])
        identity = np.zeros((d, d, 4), dtype=np.int64)
        identity[np.arange(d), np.arange(d), 0] = 1
        self.numerators = np.stack([*numerators, identity])
        self.exps = np.array([*exps, 0], dtype=np.int64)

    @functools.cached_property
    def complex_maps(self) -> np.ndarray:
        """:func:`ring.complex_maps` of the moves (4 times the move matrices' size)."""
        return ring.complex_maps(self.numerators)

    @functools.cached_property
    def maps(self) -> np.ndarray:
        """:func:`ring.multiplication_maps` of the moves (Python-integer rows only: 8 times their size)."""
        return ring.multiplication_maps(self.numerators)

    @functools.cached_property
    def inverse_moves(self) -> np.ndarray:
        """For each move, the first move that undoes it exactly (their product is a unit times the identity:
        exponent 0, scalar), or -1: :attr:`unitarium._core.gateset.GateSet.inverse_moves` judged on floats
        (within 1e-9) would also take a deep gate's approximate inverse for one."""
        count = len(self.exps) - 1
        first, second = np.meshgrid(np.arange(count), np.arange(count), indexing="ij")
        seqs = np.stack([first.ravel(), second.ravel()], axis=1)
        d = self.numerators.shape[1]
        if 2 * int(self.exps.max()) > 2 * (52 - int(np.ceil(np.log2(4 * d)))):  # past complex128's exactness
            c, m, _ = ring.evaluate(self.maps, self.exps, seqs, dtype=object)
            coeffs = ring.unstack(c)
        else:  # complex128 holds every pair's product exactly (see ring.evaluate_complex)
            c, m, _ = ring.evaluate_complex(self.complex_maps, self.exps, seqs)
            coeffs = ring.coefficients(c)
        diagonal = coeffs[:, np.arange(d), np.arange(d)]
        off = coeffs.copy()
        off[:, np.arange(d), np.arange(d)] = 0
        scalar = (
            (m == 0) & ~(off != 0).reshape(len(seqs), -1).any(axis=1) & (diagonal == diagonal[:, :1]).all(axis=(1, 2))
        )
        hit = scalar.reshape(count, count)
        return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)

    def bound(self, codes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """``(n,)``: each circuit's bound on its channel exponent (the sum of its moves' exponents, plus 1)."""
        total = np.concatenate([[0], np.cumsum(self.exps[codes.astype(np.int64)])])
        offsets = offsets.astype(np.int64)
        return total[offsets[1:]] - total[offsets[:-1]] + 1

    def forms(self, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The exact channel forms ``(ref, k, a, b)`` of ``(n, L)`` move sequences (``a``, ``b`` object
        arrays of Python ints): int64 where it is exact, Python integers beyond."""
        c, m, safe = self._evaluate(seqs)
        ref, k, a, b = ring.channel_forms(ring.coefficients(c[safe]), m[safe])
        n, width = len(seqs), a.shape[1]
        out = (np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros((n, width), object), np.zeros((n, width), object))
        rows = np.flatnonzero(safe)
        out[0][rows], out[1][rows], out[2][rows], out[3][rows] = ref, k, a, b
        if not safe.all():
            rows = np.flatnonzero(~safe)
            c, m, _ = ring.evaluate(self.maps, self.exps, seqs[rows], dtype=object)
            out[0][rows], out[1][rows], out[2][rows], out[3][rows] = ring.channel_forms(ring.unstack(c), m)
        return out

    def _evaluate(self, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`ring.evaluate_complex`, each run of rows with one prefix (all but the last move) once: an
        enumeration task's children follow their parent's, and the parents their own parents'."""
        n, length = seqs.shape
        if n >= 2 and length >= 2 and (seqs[:, -1] < len(self.exps) - 1).all():
            new = np.concatenate([[True], (seqs[1:, :-1] != seqs[:-1, :-1]).any(axis=1)])
            if new.sum() <= n // 2:
                c, m, safe = self._evaluate(seqs[new, :-1])
                inverse = np.cumsum(new) - 1
                start = (c[inverse], m[inverse], safe[inverse])
                return ring.evaluate_complex(self.complex_maps, self.exps, seqs[:, -1:], start=start)
        return ring.evaluate_complex(self.complex_maps, self.exps, seqs)

    def keys(self, codes: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``(len(rows), 2)`` int64 exact channel keys of circuits ``rows`` of ``codes``/``offsets``."""
        offsets = offsets.astype(np.int64)
        start, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
        span = np.arange(int(lengths.max(initial=0)))
        seqs = np.full((len(rows), len(span)), len(self.exps) - 1, dtype=np.int64)
        inside = span[None, :] < lengths[:, None]
        seqs[inside] = codes[(start[:, None] + span[None, :])[inside]]
        return ring_keys_of_form(*self.forms(seqs))


def ring_keys_of_form(ref: np.ndarray, k: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(batch, 2)`` int64 keys of exact channel forms at any exponent: :func:`channel_keys_of_form` (int32
    integers) up to ``k = 30``, the same bits; beyond, BLAKE2b-128 of ``(ref, k)`` as int32 and each ``a``,
    ``b`` signed little-endian in ``k // 8 + 2`` bytes (``|a|, |b| <= 2^k``; never the length of an int32 row)."""
    keys = np.zeros((len(ref), 2), dtype=np.int64)
    narrow = k <= 30
    if narrow.any():
        keys[narrow] = channel_keys_of_form(
            ref[narrow], k[narrow], a[narrow].astype(np.int64), b[narrow].astype(np.int64)
        )
    for r in np.flatnonzero(~narrow).tolist():
        width = int(k[r]) // 8 + 2
        body = b"".join(int(v).to_bytes(width, "little", signed=True) for v in (*a[r], *b[r]))
        h = _BLAKE.copy()
        h.update(np.array([ref[r], k[r]], dtype="<i4").tobytes() + body)
        keys[r] = np.frombuffer(h.digest(), dtype="<i8")
    return keys
