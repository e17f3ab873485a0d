"""Properties (Hypothesis): the kernels against a per-circuit reference and Qiskit, canonical phases and keys
under global phase, noise and signed zeros, and the angle and gate-list parsers on generated and arbitrary text.

Example counts are modest (the module runs in seconds); Hypothesis draws new examples each run (no
``derandomize``): the properties hold for every input, so a failure is a bug whatever seed found it, and
Hypothesis prints the example to reproduce it."""

from __future__ import annotations

import math
import operator
import string
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from qiskit.quantum_info import Operator

import unitarium
from unitarium._core.canonical import DEDUP, LOOKUP, KeyScheme, canonical_phase, equal_up_to_phase
from unitarium._core.gates import parse_angle
from unitarium._core.kernels import ProductTable, embed, extend

SOME = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(max_examples=400, deadline=None)
UNSHRUNK = settings(SOME, phases=[Phase.explicit, Phase.reuse, Phase.generate])
"""For big inputs: shrinking them costs minutes, and the failing example is printed as drawn (a few scalars)."""
SEEDS = st.integers(0, 2**32 - 1)
PHASES = st.floats(0, 2 * math.pi, allow_nan=False)
DTYPES = st.sampled_from([np.complex64, np.complex128])
ATOL = {np.complex64: 1e-5, np.complex128: 1e-12}


def haar(d: int, seed: int, n: int = 1) -> np.ndarray:
    """``(n, d, d)`` Haar-random unitaries (QR of a complex Gaussian, phases fixed as in Mezzadri 2007)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d, d)) + 1j * rng.normal(size=(n, d, d))
    q, r = np.linalg.qr(z)
    diag = np.diagonal(r, axis1=1, axis2=2)
    return q * (diag / np.abs(diag))[:, None, :]


def unitarity_error(u: np.ndarray) -> float:
    u = u.astype(np.complex128)
    return float(np.abs(np.conj(np.swapaxes(u, -1, -2)) @ u - np.eye(u.shape[-1])).max())


# -- kernels ----------------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """Move matrices ``(m, d, d)`` and padded sequences ``(batch, width)`` (pad = ``m``, anywhere)."""

    moves: np.ndarray
    seqs: np.ndarray
    depth: int | None

    @property
    def pad(self) -> int:
        return len(self.moves)


@st.composite
def batches(draw: st.DrawFn, max_batch: int = 10, max_width: int = 10) -> Batch:
    qubits = draw(st.integers(1, 3))
    m = draw(st.integers(1, 6))
    moves = haar(1 << qubits, draw(SEEDS), m)
    shape = (draw(st.integers(1, max_batch)), draw(st.integers(0, max_width)))
    seqs = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, m)))
    return Batch(moves, seqs, draw(st.sampled_from([None, 1, 2, 3])))


def reference(moves: np.ndarray, seqs: np.ndarray) -> np.ndarray:
    """Gate by gate in complex128: ``M[s_{L-1}] @ ... @ M[s_0]``, pads skipped."""
    d = moves.shape[1]
    out = np.empty((len(seqs), d, d), dtype=np.complex128)
    for r, row in enumerate(seqs):
        u = np.eye(d, dtype=np.complex128)
        for code in row:
            if code != len(moves):
                u = moves[code] @ u
        out[r] = u
    return out


@SOME
@given(batches(), DTYPES)
def test_products_equal_the_reference_and_are_unitary(batch: Batch, dtype: type) -> None:
    table = ProductTable(batch.moves, dtype, batch.depth)
    got = table.unitaries(batch.seqs)
    d = batch.moves.shape[1]
    assert got.dtype == dtype and got.shape == (len(batch.seqs), d, d)
    np.testing.assert_allclose(got, reference(batch.moves, batch.seqs), rtol=0, atol=ATOL[dtype])
    assert unitarity_error(got) <= 4 * ATOL[dtype]


@SOME
@given(batches(), DTYPES, st.integers(1, 9))
def test_the_identity_pad_is_exact(batch: Batch, dtype: type, extra: int) -> None:
    """Trailing pads (whole chunks of identity) change no value; all-pad rows are exactly the identity."""
    table = ProductTable(batch.moves, dtype, batch.depth)
    got = table.unitaries(batch.seqs)
    longer = np.concatenate([batch.seqs, np.full((len(batch.seqs), extra), batch.pad)], axis=1)
    np.testing.assert_array_equal(table.unitaries(longer), got)
    d = batch.moves.shape[1]
    blank = np.full((3, batch.seqs.shape[1] + extra), batch.pad)
    np.testing.assert_array_equal(table.unitaries(blank), np.broadcast_to(np.eye(d), (3, d, d)))
    np.testing.assert_array_equal(table.unitaries(blank[:, :0]), np.broadcast_to(np.eye(d), (3, d, d)))


@UNSHRUNK
@given(
    qubits=st.integers(1, 3),
    m=st.integers(1, 6),
    dtype=DTYPES,
    batch=st.one_of(st.integers(1, 64), st.integers(2040, 2056), st.integers(4090, 4100), st.integers(8185, 8200)),
    width=st.integers(0, 9),
    seed=SEEDS,
    data=st.data(),
)
def test_a_records_bits_do_not_depend_on_its_batch(
    qubits: int, m: int, dtype: type, batch: int, width: int, seed: int, data: st.DataObject
) -> None:
    """Splitting or reordering a batch gives bit-identical unitaries. The batch sizes straddle the batch-last
    sub-batches (2048, 4096 and 8192 rows for 4x4 complex64, 2x2 complex128 and 2x2 complex64)."""
    rng = np.random.default_rng(seed)
    table = ProductTable(haar(1 << qubits, seed, m), dtype)
    seqs = rng.integers(0, m + 1, size=(batch, width))
    whole = table.unitaries(seqs)
    cut = data.draw(st.integers(0, batch), label="cut")
    parts = np.concatenate([table.unitaries(seqs[:cut]), table.unitaries(seqs[cut:])])
    assert parts.tobytes() == whole.tobytes()
    perm = rng.permutation(batch)
    assert table.unitaries(seqs[perm]).tobytes() == whole[perm].tobytes()


@SOME
@given(batches(max_width=6), st.data())
def test_extend_adds_one_move_and_its_bits_do_not_depend_on_the_batch(batch: Batch, data: st.DataObject) -> None:
    m = batch.pad
    allowed = data.draw(hnp.arrays(np.bool_, (len(batch.seqs), m)), label="allowed")
    table = ProductTable(batch.moves, np.complex128, batch.depth)
    parents = table.unitaries(batch.seqs)
    children = extend(parents, batch.moves, allowed)
    parent_idx, move_idx = np.nonzero(allowed)
    for u, p, k in zip(children, parents[parent_idx], move_idx, strict=True):
        np.testing.assert_allclose(u, batch.moves[k] @ p, rtol=0, atol=1e-14)
    longer = table.unitaries(np.concatenate([batch.seqs[parent_idx], move_idx[:, None]], axis=1))
    np.testing.assert_allclose(children, longer, rtol=0, atol=1e-12)
    cut = data.draw(st.integers(0, len(parents)), label="cut")
    parts = [extend(parents[:cut], batch.moves, allowed[:cut]), extend(parents[cut:], batch.moves, allowed[cut:])]
    assert np.concatenate(parts).tobytes() == children.tobytes()


@st.composite
def placements(draw: st.DrawFn) -> tuple[tuple[int, ...], int]:
    n = draw(st.integers(1, 4))
    k = draw(st.integers(1, min(3, n)))
    return tuple(draw(st.permutations(range(n)))[:k]), n


@SOME
@given(placements(), SEEDS)
def test_embed_agrees_with_qiskit(placement: tuple[tuple[int, ...], int], seed: int) -> None:
    """``embed(M, qubits, n)`` is Qiskit's operator of M on ``qubits`` (``qubits[0]`` M's least significant)."""
    qubits, n = placement
    matrix = haar(1 << len(qubits), seed)[0]
    expected = Operator(np.eye(1 << n)).compose(Operator(matrix), qargs=list(qubits)).data
    got = embed(matrix, qubits, n)
    assert got.dtype == np.complex128
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


# -- canonical forms and keys -----------------------------------------------------------------------------------

DIMS = st.sampled_from([2, 4, 8])


@SOME
@given(DIMS, SEEDS, PHASES)
def test_canonical_phase_forgets_the_global_phase(d: int, seed: int, phase: float) -> None:
    u = haar(d, seed, 3)
    v = canonical_phase(u)
    np.testing.assert_allclose(canonical_phase(u * np.exp(1j * phase)), v, rtol=0, atol=1e-12)
    np.testing.assert_allclose(canonical_phase(v), v, rtol=0, atol=1e-13)
    assert all(equal_up_to_phase(a, b, atol=1e-12) for a, b in zip(u, v, strict=True))


def _noisy(u: np.ndarray, scale: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return u + scale * (rng.normal(size=u.shape) + 1j * rng.normal(size=u.shape))


def _know_each_other(scheme: KeyScheme, a: np.ndarray, b: np.ndarray) -> bool:
    """Each one's primary key is among the other's probes (what dedup and lookup rely on)."""
    return int(scheme.primary(a[None])[0]) in scheme.probes(b) and int(scheme.primary(b[None])[0]) in scheme.probes(a)


@SOME
@given(DIMS, SEEDS, PHASES, st.sampled_from([0.0, 1e-15, 1e-14, 1e-13]))
def test_dedup_keys_survive_phase_and_complex128_noise(d: int, seed: int, phase: float, noise: float) -> None:
    u = haar(d, seed)[0]
    assert _know_each_other(DEDUP, u, _noisy(u * np.exp(1j * phase), noise, seed + 1))


@SOME
@given(DIMS, SEEDS, PHASES, st.sampled_from([0.0, 1e-8, 1e-7]))
def test_lookup_keys_survive_phase_and_complex64_noise(d: int, seed: int, phase: float, noise: float) -> None:
    """A complex64 copy of a unitary (as stored), with a phase and noise (as typed in), finds the original."""
    u = haar(d, seed)[0]
    query = _noisy((u * np.exp(1j * phase)).astype(np.complex64).astype(np.complex128), noise, seed + 1)
    assert _know_each_other(LOOKUP, u, query)


@st.composite
def straddles(draw: st.DrawFn) -> tuple[KeyScheme, np.ndarray, np.ndarray, int]:
    """Coordinates (in grid units) with some placed within ``2 eta`` of a cell boundary, and a copy moved by
    less than ``eta`` in each coordinate: the worst that rounding noise may do."""
    scheme = draw(st.sampled_from([DEDUP, LOOKUP]))
    eta = scheme.eta / scheme.delta
    rng = np.random.default_rng(draw(SEEDS))
    y = rng.integers(-(4 * 10**6), 4 * 10**6, size=(1, scheme.dims)) + rng.uniform(-0.4, 0.4, size=(1, scheme.dims))
    # at most 12 near coordinates: the alternates cover every subset of 12 (4096 keys), far more than noise
    # ever puts near a boundary at once
    for j in draw(st.sets(st.integers(0, scheme.dims - 1), max_size=12)):
        y[0, j] = np.floor(y[0, j]) + 0.5 + draw(st.floats(-2 * eta, 2 * eta))
    noise = [draw(st.floats(-0.999 * eta, 0.999 * eta)) for _ in range(scheme.dims)]
    return scheme, y, y + np.array([noise]), draw(DIMS)


@SOME
@given(straddles())
def test_coordinates_within_eta_know_each_others_keys(case: tuple[KeyScheme, np.ndarray, np.ndarray, int]) -> None:
    scheme, y1, y2, d = case
    p1, alt1 = scheme.keys_of_cells(*scheme.grid(y1), d)
    p2, alt2 = scheme.keys_of_cells(*scheme.grid(y2), d)
    assert p1[0] == p2[0] or (p1[0] in alt2.get(0, []) and p2[0] in alt1.get(0, []))


@st.composite
def sparse_unitaries(draw: st.DrawFn) -> np.ndarray:
    """Monomial unitaries (a permutation times exact phases 1, -1, i, -i, (1+i)/sqrt 2): mostly zeros."""
    d = draw(DIMS)
    perm = draw(st.permutations(range(d)))
    units = [1, -1, 1j, -1j, (1 + 1j) / math.sqrt(2)]
    phases = np.array([draw(st.sampled_from(units)) for _ in range(d)], dtype=np.complex128)
    return np.eye(d, dtype=np.complex128)[list(perm)] * phases[None, :]


@SOME
@given(sparse_unitaries(), st.data())
def test_negative_zeros_change_no_key(u: np.ndarray, data: st.DataObject) -> None:
    flipped = u.copy()
    for part in (flipped.real, flipped.imag):
        zeros = np.argwhere(part == 0)
        signs = data.draw(st.lists(st.booleans(), min_size=len(zeros), max_size=len(zeros)), label="signs")
        for (i, j), negative in zip(zeros, signs, strict=True):
            part[i, j] = -0.0 if negative else 0.0
    np.testing.assert_array_equal(canonical_phase(flipped[None]), canonical_phase(u[None]))
    for scheme in (DEDUP, LOOKUP):
        assert scheme.primary(flipped[None])[0] == scheme.primary(u[None])[0]
        assert scheme.probes(flipped) == scheme.probes(u)


NOISE = st.sampled_from([0.0, 1e-9, 1e-7, 3e-6, 1e-4, 1e-2, 1.0])


@SOME
@given(DIMS, SEEDS, PHASES, NOISE, st.sampled_from([1e-8, 1e-5, 1e-3]))
def test_equal_up_to_phase_is_symmetric_and_phase_blind(
    d: int, seed: int, phase: float, noise: float, atol: float
) -> None:
    u = haar(d, seed)[0]
    v = _noisy(u * np.exp(1j * phase), noise, seed + 1)
    assert equal_up_to_phase(u, v, atol=atol) == equal_up_to_phase(v, u, atol=atol)
    assert equal_up_to_phase(u, u * np.exp(1j * phase), atol=1e-12)
    assert equal_up_to_phase(u * np.exp(1j * phase), u)
    other = haar(d, seed + 2)[0]
    assert not equal_up_to_phase(u, other) and not equal_up_to_phase(other, u)
    assert not equal_up_to_phase(u, u[: d // 2, : d // 2])


# -- the angle and gate-list parsers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    """An arithmetic expression: its text, its value computed alongside (None: it divides by zero) and the
    precedence of its outermost operation (0: + -, 1: * / and ``2pi``, 2: unary, 3: atoms)."""

    text: str
    value: float | None
    prec: int


def _wrap(e: Expr, at_least: int) -> str:
    return e.text if e.prec >= at_least else f"({e.text})"


LEAVES = st.one_of(
    st.integers(0, 10**6).map(lambda n: Expr(str(n), float(n), 3)),
    st.floats(0, 1e6, allow_nan=False).map(lambda x: Expr(repr(x), x, 3)),
    st.just(Expr("pi", math.pi, 3)),
    st.integers(0, 99).map(lambda k: Expr(f"{k}pi", float(k) * math.pi, 1)),  # implicit multiplication
)
BINARY: dict[str, tuple[int, Callable[[float, float], float]]] = {
    "+": (0, operator.add),
    "-": (0, operator.sub),
    "*": (1, operator.mul),
    "/": (1, operator.truediv),
}


def _binary(op: str, a: Expr, b: Expr, space: str) -> Expr:
    prec, fn = BINARY[op]
    try:
        value = None if a.value is None or b.value is None else fn(a.value, b.value)
    except ZeroDivisionError:
        value = None
    return Expr(f"{_wrap(a, prec)}{space}{op}{space}{_wrap(b, prec + 1)}", value, prec)


def _unary(op: str, a: Expr) -> Expr:
    value = None if a.value is None else (-a.value if op == "-" else a.value)
    return Expr(f"{op}{_wrap(a, 2)}", value, 2)


EXPRESSIONS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(_binary, st.sampled_from(sorted(BINARY)), inner, inner, st.sampled_from(["", " "])),
        st.builds(_unary, st.sampled_from(["-", "+"]), inner),
        inner.map(lambda e: Expr(f"({e.text})", e.value, 3)),
    ),
    max_leaves=12,
)


@MANY
@given(EXPRESSIONS)
def test_angles_evaluate_like_arithmetic(expr: Expr) -> None:
    if expr.value is None or not math.isfinite(expr.value):
        with pytest.raises(unitarium.SpecError):
            parse_angle(expr.text)
        return
    got = parse_angle(expr.text)
    assert got == expr.value and math.copysign(1, got) == math.copysign(1, expr.value), (expr.text, got)
    assert unitarium.parse_gate(f"rz({expr.text})").params == (got,)


ANGLE_GRAMMAR = set(string.digits + string.ascii_letters + "._+-*/()" + string.whitespace)
"""What an angle may be written with: numbers (Python's literals: 1e-3, 0x1f, 1_000), pi, + - * /, ( ),
whitespace."""
PYTHONISH = " 0123456789.+-*/()pie_xjEJ#'\"\\\t[],:=<>!%@~&|^"


@MANY
@given(st.one_of(st.text(), st.text(alphabet=PYTHONISH, max_size=16)))
def test_any_text_is_an_angle_or_a_spec_error(text: str) -> None:
    """Arbitrary text parses to a finite float written in the angle grammar, or raises SpecError: no other
    exception, and nothing outside the grammar (a comment, a string, a subscript) is accepted."""
    try:
        value = parse_angle(text)
    except unitarium.SpecError:
        return
    assert isinstance(value, float) and math.isfinite(value)
    assert set(text.strip()) <= ANGLE_GRAMMAR, f"{text!r} was accepted as the angle {value}"


GATE_WORDS = [
    *("h", "cx", "ccx", "rz(", "u(", "pi/4", "0.5", "-2pi", ")", "(", ",", ", ", " ", "clifford", "clifford+t"),
    *("swap", "foo", "RZ(pi)", "u(1,2,3)", "p(1e999)", "rx(1/0)", "iswap", "'", ";", "__import__", "#"),
]


@MANY
@given(
    st.one_of(st.text(max_size=40), st.lists(st.sampled_from(GATE_WORDS), max_size=12).map("".join)),
    st.integers(1, 3),
)
def test_any_gate_list_is_a_spec_or_a_spec_error(gates: str, qubits: int) -> None:
    try:
        spec = unitarium.make_spec(gates=gates, qubits=qubits, count=1, length=1)
    except unitarium.SpecError as exc:
        assert isinstance(exc, ValueError) and str(exc)
        return
    assert spec.gateset.gates and spec.gateset.num_qubits == qubits
    assert unitarium.Spec.from_json(spec.to_json()).canonical_json() == spec.canonical_json()
