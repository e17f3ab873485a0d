"""Exact keys (issue 19, items 1 and 5): tableaux for Clifford gate sets against ``stim``'s, exact channel
forms for Clifford+T gate sets against exact arithmetic over Z[omega] written here (Python integers and
fractions), and unique runs, resumes, lookups, synthesis and the CLI with them.

Ring keys (exact channel keys at every depth, :class:`unitarium._core.ringmoves.RingMoves`): the exact evaluation
from circuits against the same exact arithmetic on deep random circuits of 1 to 3 qubits (int64 and Python
integer rows), the identical keys where floats read them (``channel``), and the acceptance test: two distinct
Clifford+T unitaries closer than the grid's tolerance (the identity and a gridsynth approximation of a tiny
rotation, 1.7e-8 apart; Qiskit's ``Operator`` says close, the exact arithmetic here says distinct) are merged
by grid keys and kept apart by exact keys, in a real unique run (an enumeration over two custom gates, the
approximation's halves, through the CLI), where ``--keys grid`` keeps one of them."""

from __future__ import annotations

import functools
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import unitarium
from unitarium._core.canonical import DEDUP
from unitarium._core.exact import (
    CHANNEL_K,
    TRUSTED_LENGTH,
    NotExact,
    channel_form,
    channel_keys,
    dedup_keys,
    is_clifford,
    is_clifford_t,
    lookup_probes,
    tableau,
    tableau_keys,
)
from unitarium._core.kernels import ProductTable
from unitarium._core.ring import INT64_M
from unitarium._core.ringmoves import RingMoves, is_ring_gate, ring_keys_of_form

from conftest import cli, content, one_error_line, stopped_after

stim = pytest.importorskip("stim", reason="the test extra installs stim (the independent tableau oracle)")


def _phase(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.exp(2j * np.pi * rng.random(n))[:, None, None]


def _stim_tableau(u: np.ndarray) -> tuple[list[int], list[int], list[bool]]:
    """x, z masks and signs per generator (X_0..X_{n-1}, Z_0..Z_{n-1}) from stim, qubit q = bit q."""
    t = stim.Tableau.from_unitary_matrix(u, endian="little")
    n = len(t)
    xs, zs, ss = [], [], []
    for p in [t.x_output(q) for q in range(n)] + [t.z_output(q) for q in range(n)]:
        x, z = p.to_numpy()
        xs.append(sum(int(b) << j for j, b in enumerate(x)))
        zs.append(sum(int(b) << j for j, b in enumerate(z)))
        ss.append(p.sign == -1)
    return xs, zs, ss


# -- tableaux ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_tableau_agrees_with_stim_on_random_cliffords_with_random_phases(n: int) -> None:
    rng = np.random.default_rng(n)
    u = np.array([stim.Tableau.random(n).to_unitary_matrix(endian="little") for _ in range(60)])
    u = u * _phase(rng, len(u))
    for full in (False, True):
        x, z, s = tableau(u, full=full)
        for k in range(len(u)):
            assert (x[k].tolist(), z[k].tolist(), s[k].tolist()) == _stim_tableau(u[k])


def test_tableau_of_generated_products_agrees_with_stim() -> None:
    """Products as unique mode forms them (the product table, complex128) over every h,s,cx move."""
    gs = unitarium.make_spec(gates="h,s,sdg,cx,cz,swap", qubits=3, count=1, length=1).gateset
    rng = np.random.default_rng(7)
    u = ProductTable(gs.move_matrices, np.complex128).unitaries(rng.integers(0, len(gs.moves), size=(300, 40)))
    x, z, s = tableau(u)
    for k in range(len(u)):
        assert (x[k].tolist(), z[k].tolist(), s[k].tolist()) == _stim_tableau(u[k])


@pytest.mark.parametrize("n", [2, 3, 5, 6])
def test_tableau_keys_are_phase_free_and_equal_exactly_when_tableaux_are(n: int) -> None:
    """Up to 5 qubits the key is a bijection of the tableau bits; from 6 it is a 128-bit hash."""
    rng = np.random.default_rng(n)
    tabs = [stim.Tableau.random(n) for _ in range(40)]
    tabs += tabs[:10]  # repeats
    u = np.array([t.to_unitary_matrix(endian="little") for t in tabs])
    keys = tableau_keys(u)
    assert np.array_equal(keys, tableau_keys(u * _phase(rng, len(u))))
    by_key = {tuple(k) for k in keys.tolist()}
    assert len(by_key) == len({str(t) for t in tabs}) > 30
    assert keys.dtype == np.int64 and keys.shape == (50, 2)


def test_non_cliffords_are_refused_not_rounded() -> None:
    t = np.diag([1, np.exp(1j * np.pi / 4)])
    with pytest.raises(NotExact):
        tableau(t[None])
    near = np.array(stim.Tableau.random(2).to_unitary_matrix(endian="little"))
    herm = np.random.default_rng(5).normal(size=(4, 4))
    w, v = np.linalg.eigh(herm + herm.T)
    with pytest.raises(NotExact):  # a Clifford times a rotation of angle ~1e-4: off the lattice
        tableau((near @ v @ np.diag(np.exp(1e-4j * w)) @ v.T)[None])
    ccz = np.diag([1, 1, 1, 1, 1, 1, 1, -1]).astype(complex)
    assert not is_clifford(ccz[None])  # the full check sees every row
    assert not is_clifford(t[None]) and is_clifford_t(t[None])
    gates = {g: unitarium.parse_gate(g).matrix[None] for g in ("h", "s", "sdg", "sx", "cx", "cz", "swap", "x", "y")}
    assert all(is_clifford(m) for m in gates.values())
    assert not is_clifford_t(unitarium.parse_gate("rz(0.3)").matrix[None])
    assert is_clifford_t(unitarium.parse_gate("ccx").matrix[None]) and not is_clifford(
        unitarium.parse_gate("ccx").matrix[None]
    )


# -- exact arithmetic over Z[omega], omega = e^{i pi/4}: the oracle for channel forms ----------------

# An element is (c0, c1, c2, c3, m): (c0 + c1 w + c2 w^2 + c3 w^3) / sqrt2^m, with w^4 = -1.

ZERO = (0, 0, 0, 0, 0)


def _mul(a: tuple, b: tuple) -> tuple:
    out = [0, 0, 0, 0]
    for i in range(4):
        for j in range(4):
            sign = -1 if i + j >= 4 else 1
            out[(i + j) % 4] += sign * a[i] * b[j]
    return (*out, a[4] + b[4])


def _add(a: tuple, b: tuple) -> tuple:
    m = max(a[4], b[4])
    a, b = _lift(a, m), _lift(b, m)
    return (*(x + y for x, y in zip(a[:4], b[:4], strict=True)), m)


def _lift(a: tuple, m: int) -> tuple:
    """The same element over sqrt2^m (m >= a's): multiply the numerator by sqrt2 = w - w^3."""
    while a[4] < m:
        c0, c1, c2, c3, k = a
        # (c0 + c1 w + c2 w^2 + c3 w^3)(w - w^3) with w^4 = -1, w^5 = -w, w^6 = -w^2
        a = (c1 - c3, c0 + c2, c1 + c3, c2 - c0, k + 1)
    return a


def _conj(a: tuple) -> tuple:
    c0, c1, c2, c3, m = a  # conj(w) = w^7 = -w^3, conj(w^2) = -w^2, conj(w^3) = -w
    return (c0, -c3, -c2, -c1, m)


def _re_im(a: tuple) -> tuple[tuple[Fraction, Fraction], tuple[Fraction, Fraction]]:
    """Real and imaginary parts as (p, q): p + q sqrt2 with rational p, q."""
    c0, c1, c2, c3, m = a
    # w = (1 + i)/sqrt2: re = c0 + (c1 - c3)/sqrt2, im = c2 + (c1 + c3)/sqrt2; 1/sqrt2 = sqrt2/2
    re = (Fraction(c0), Fraction(c1 - c3, 2))
    im = (Fraction(c2), Fraction(c1 + c3, 2))
    out = []
    for p, q in (re, im):
        for _ in range(m):  # divide by sqrt2: (p + q sqrt2)/sqrt2 = q + (p/2) sqrt2
            p, q = q, p / 2
        out.append((p, q))
    return out[0], out[1]


def _exact_gate(matrix: np.ndarray) -> list[list[tuple]]:
    """A standard gate's matrix read exactly: each entry one of 0, w^j, w^j/sqrt2 (checked)."""
    table = {}
    for j in range(8):
        sign = -1 if j >= 4 else 1
        e = [0, 0, 0, 0]
        e[j % 4] = sign
        table[(j, 0)] = (*e, 0)
        table[(j, 1)] = (*e, 1)
    out = []
    for row in matrix:
        cells = []
        for v in row:
            if abs(v) < 1e-12:
                cells.append(ZERO)
                continue
            j = round(np.angle(v) / (np.pi / 4)) % 8
            m = 0 if abs(abs(v) - 1) < 1e-12 else 1
            assert abs(v - np.exp(1j * np.pi / 4 * j) / np.sqrt(2) ** m) < 1e-12
            cells.append(table[(j, m)])
        out.append(cells)
    return out


def _exact_product(mats: list[list[list[tuple]]]) -> list[list[tuple]]:
    d = len(mats[0])
    acc = [[(1, 0, 0, 0, 0) if i == j else ZERO for j in range(d)] for i in range(d)]
    for m in mats:  # the circuit's first move is applied first: U = M_L ... M_1
        new = []
        for i in range(d):
            row = []
            for j in range(d):
                s = ZERO
                for k in range(d):
                    s = _add(s, _mul(m[i][k], acc[k][j]))
                row.append(s)
            new.append(row)
        acc = new
    return acc


def _exact_channel_form(u: list[list[tuple]]) -> tuple[int, int, list[int], list[int]]:
    """(ref, k, a, b) of w = U conj(u_ref) by exact arithmetic, k the smallest common exponent."""
    flat = [e for row in u for e in row]
    ref = next(i for i, e in enumerate(flat) if any(e[:4]))
    w = [_mul(e, _conj(flat[ref])) for e in flat]
    parts = [_re_im(e) for e in w]
    values = [p[0] for p in parts] + [p[1] for p in parts]  # real parts, then imaginary parts
    k = 0
    while any((p * 2**k).denominator != 1 or (q * 2**k).denominator != 1 for p, q in values):
        k += 1
    a = [int(p * 2**k) for p, _ in values]
    b = [int(q * 2**k) for _, q in values]
    return ref, k, a, b


def _to_complex(u: list[list[tuple]]) -> np.ndarray:
    w = np.exp(1j * np.pi / 4)
    return np.array([[(e[0] + e[1] * w + e[2] * w**2 + e[3] * w**3) / np.sqrt(2) ** e[4] for e in row] for row in u])


def test_the_oracle_agrees_with_floats() -> None:
    h = _exact_gate(unitarium.parse_gate("h").matrix)
    t = _exact_gate(unitarium.parse_gate("t").matrix)
    u = _exact_product([h, t, h, t, t, h])
    assert np.allclose(
        _to_complex(u),
        (H := unitarium.parse_gate("h").matrix) @ np.diag([1, 1j]) @ H @ np.diag([1, np.exp(1j * np.pi / 4)]) @ H,
    )


@pytest.mark.parametrize("gates", ["h,t,tdg,cx", "h,s,t,cx,cz"])
def test_channel_form_agrees_with_exact_arithmetic(gates: str) -> None:
    gs = unitarium.make_spec(gates=gates, qubits=2, count=1, length=1).gateset
    exact_moves = [_exact_gate(m) for m in gs.move_matrices]
    rng = np.random.default_rng(len(gates))
    seqs = rng.integers(0, len(gs.moves), size=(120, 24))
    seqs[:40, 8:] = len(gs.moves)  # shorter circuits too (padding)
    u = ProductTable(gs.move_matrices, np.complex128).unitaries(seqs) * _phase(rng, len(seqs))
    ref, k, a, b, good = channel_form(u)
    assert good.all()
    for r in range(len(seqs)):
        want = _exact_channel_form(_exact_product([exact_moves[c] for c in seqs[r] if c < len(gs.moves)]))
        assert (int(ref[r]), int(k[r]), a[r].tolist(), b[r].tolist()) == want


def test_channel_form_agrees_with_exact_arithmetic_up_to_the_deepest_exponent() -> None:
    """h followed by t or tdg, 20 to 40 times: exponents up to CHANNEL_K read exactly, deeper ones refused."""
    gs = unitarium.make_spec(gates="h,t,tdg", qubits=1, count=1, length=1).gateset
    exact_moves = [_exact_gate(m) for m in gs.move_matrices]
    rng = np.random.default_rng(12)
    for m in range(20, 41, 2):
        seq = np.stack([np.zeros(m, int), rng.integers(1, 3, size=m)], axis=1).reshape(-1)
        u = ProductTable(gs.move_matrices, np.complex128).unitaries(seq[None])
        ref, k, a, b, good = channel_form(u)
        want = _exact_channel_form(_exact_product([exact_moves[c] for c in seq]))
        assert bool(good[0]) == (want[1] <= CHANNEL_K)
        if good[0]:
            assert (int(ref[0]), int(k[0]), a[0].tolist(), b[0].tolist()) == want


def test_channel_keys_are_phase_free_and_equal_exactly_when_forms_are() -> None:
    gs = unitarium.make_spec(gates="h,t,cx", qubits=2, count=1, length=1).gateset
    rng = np.random.default_rng(3)
    seqs = rng.integers(0, len(gs.moves), size=(3000, 7))
    u = ProductTable(gs.move_matrices, np.complex128).unitaries(seqs)
    keys, good = channel_keys(u)
    assert good.all()
    assert np.array_equal(keys, channel_keys(u * _phase(rng, len(u)))[0])
    ref, k, a, b, _ = channel_form(u)
    forms = [(int(ref[r]), int(k[r]), tuple(a[r]), tuple(b[r])) for r in range(len(u))]
    pairs = {(f, tuple(key)) for f, key in zip(forms, keys.tolist(), strict=True)}
    assert len(pairs) == len(set(forms)) == len({tuple(key) for key in keys.tolist()})
    assert 100 < len(set(forms)) < len(forms)  # distinct unitaries, and repeats


def test_non_ring_unitaries_have_no_exact_channel_form() -> None:
    rz = unitarium.parse_gate("rz(0.3)").matrix
    q, _ = np.linalg.qr(
        np.random.default_rng(1).normal(size=(2, 2)) + 1j * np.random.default_rng(2).normal(size=(2, 2))
    )
    _, _, _, _, good = channel_form(np.array([rz, q]))
    assert not good.any()


def test_deep_ring_unitaries_fall_back_to_grid_keys_consistently() -> None:
    """A ring unitary whose channel needs an exponent above CHANNEL_K gets grid keys (with alternates),
    every time it is computed: whether a unitary has an exact key depends on it alone."""
    gs = unitarium.make_spec(gates="h,t,tdg", qubits=1, count=1, length=1).gateset
    rng = np.random.default_rng(11)
    seqs = np.full((400, 90), 3)  # h, then t or tdg, 20 to 45 times: the exponent grows about half as fast
    for r, m in enumerate(rng.integers(20, 46, size=400)):
        seqs[r, : 2 * m] = np.stack([np.zeros(m, int), rng.integers(1, 3, size=m)], axis=1).reshape(-1)
    u = ProductTable(gs.move_matrices, np.complex128).unitaries(seqs)
    _, k, _, _, good = channel_form(u)
    assert (~good).any() and good.any() and k[good].max() <= CHANNEL_K
    keys, alternates, _ = dedup_keys("channel", u)
    grid, _ = DEDUP.wide_keys(u[~good])
    assert np.array_equal(keys[~good], grid)
    assert set(alternates) <= set(np.flatnonzero(~good).tolist())
    keys2, _, _ = dedup_keys("channel", u * _phase(rng, len(u)))
    assert np.array_equal(keys[good], keys2[good])


# -- ring keys: exact evaluation from circuits ---------------------------------------------------


def _deep_circuits(gs: unitarium.GateSet, rng: np.random.Generator, rows: int, length: int) -> np.ndarray:
    """``(rows, length)`` move sequences that grow the exponent: h on a qubit then t on it (the qubit changes
    at random one pair in five), one pair in five another move instead of t (a random circuit's exponent
    grows much slower), padded to lengths spread from 4 to ``length`` (code ``len(moves)``)."""
    index = gs.move_index()
    change = rng.random((rows, (length + 1) // 2)) < 0.2  # the qubit of the next pair: mostly the same one
    qubits = np.cumsum(change * rng.integers(1, max(2, gs.num_qubits), size=change.shape), axis=1) % gs.num_qubits
    seqs = np.empty((rows, 2 * qubits.shape[1]), dtype=np.int64)
    seqs[:, ::2] = np.vectorize(lambda q: index[f"h {q}"])(qubits)
    seqs[:, 1::2] = np.vectorize(lambda q: index[f"t {q}"])(qubits)
    other = rng.random(qubits.shape) < 0.2
    seqs[:, 1::2][other] = rng.integers(0, len(gs.moves), size=int(other.sum()))
    seqs = seqs[:, :length]
    for r, n in enumerate(rng.permutation(np.linspace(4, length, rows).astype(int))):
        seqs[r, n:] = len(gs.moves)
    return seqs


@pytest.mark.parametrize(
    ("gates", "qubits", "rows", "length"), [("h,t,tdg", 1, 24, 400), ("h,t,s,cx", 2, 24, 160), ("h,t,ccx", 3, 5, 120)]
)
def test_ring_evaluation_agrees_with_exact_arithmetic_on_deep_circuits(
    gates: str, qubits: int, rows: int, length: int
) -> None:
    """The exact channel forms of deep random circuits, evaluated from their move codes (int64 rows and, past
    its bound, Python-integer rows), are the exact arithmetic's; their keys are channel keys where floats
    read those (k <= CHANNEL_K: the same bits), distinct exactly where the forms are, and phase-free."""
    gs = unitarium.make_spec(gates=gates, qubits=qubits, count=1, length=1, unique=True, keys="exact").gateset
    moves = RingMoves(gs)
    exact_moves = [_exact_gate(m) for m in gs.move_matrices]
    rng = np.random.default_rng(qubits)
    seqs = _deep_circuits(gs, rng, rows, length)
    seqs = np.concatenate([seqs, seqs[:4]])  # repeats
    ref, k, a, b = moves.forms(seqs)
    forms = []
    oracle: dict[tuple[int, ...], tuple] = {}  # the repeats are computed once
    for r in range(len(seqs)):
        seq = tuple(int(c) for c in seqs[r] if c < len(gs.moves))
        if seq not in oracle:
            oracle[seq] = _exact_channel_form(_exact_product([exact_moves[c] for c in seq]))
        want = oracle[seq]
        assert (int(ref[r]), int(k[r]), [int(v) for v in a[r]], [int(v) for v in b[r]]) == want
        forms.append(repr(want))
    assert k.min() <= CHANNEL_K < k.max()  # float-readable rows and deeper ones
    if qubits < 3:
        assert k.max() > 30  # wide keys (beyond int32)
    if qubits == 1:
        assert k.max() > INT64_M + 1  # the Python-integer rows
    codes, offsets = _stored_form(seqs, len(gs.moves))
    keys = ring_keys_of_form(ref, k, a, b)
    assert np.array_equal(moves.keys(codes, offsets, np.arange(len(seqs))), keys)
    u = ProductTable(gs.move_matrices, np.complex128).unitaries(seqs)
    floats, good = channel_keys(u)
    assert good.any() and np.array_equal(floats[good], keys[good])
    ring, alternates, _ = dedup_keys("ring", u * _phase(rng, len(u)), (moves, codes, offsets))
    assert np.array_equal(ring, keys) and alternates == {}
    assert len({tuple(key) for key in keys.tolist()}) == len(set(forms)) == rows
    # an enumeration task's rows: every move after each of three deep parents (prefixes evaluated once)
    parents = _deep_circuits(gs, rng, 3, length)[:, : length // 2]
    parents = parents[:, : (parents < len(gs.moves)).sum(axis=1).min()]
    children = np.concatenate(
        [np.repeat(parents, len(gs.moves), axis=0), np.tile(np.arange(len(gs.moves)), 3)[:, None]], 1
    )
    shared = moves.forms(children)
    for r in range(len(children)):
        one = moves.forms(children[r : r + 1])
        assert all(np.array_equal(x[r], y[0]) for x, y in zip(shared, one, strict=True))


def _stored_form(seqs: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = (seqs < pad).sum(axis=1)
    return seqs[seqs < pad], np.concatenate([[0], np.cumsum(lengths)]).astype(np.uint32)


def test_ring_keys_are_channel_keys_where_those_are_exact() -> None:
    """Every unitary that has an exact channel key gets the identical ring key (datasets made with either
    scheme keep the same records up to CHANNEL_K); deep rows get exact keys instead of grid keys."""
    gs = unitarium.make_spec(gates="h,t,tdg,cx", qubits=2, count=1, length=1).gateset
    rng = np.random.default_rng(21)
    seqs = rng.integers(0, len(gs.moves), size=(2000, 80))
    seqs[:1000] = _deep_circuits(gs, rng, 1000, 80)
    u = ProductTable(gs.move_matrices, np.complex128).unitaries(seqs)
    channel, _, lookup = dedup_keys("channel", u)
    _, good = channel_keys(u)
    moves = RingMoves(gs)
    ring, alternates, ring_lookup = dedup_keys("ring", u, (moves, *_stored_form(seqs, len(gs.moves))))
    assert 0 < good.sum() < len(u) and alternates == {}
    assert np.array_equal(ring[good], channel[good]) and np.array_equal(lookup, ring_lookup)
    ref, k, a, b = moves.forms(seqs[~good])
    assert np.array_equal(ring[~good], ring_keys_of_form(ref, k, a, b)) and k.min() > CHANNEL_K
    # circuits longer than TRUSTED_LENGTH are evaluated exactly even when shallow: the same keys
    is_h = np.array([m.text.startswith("h ") for m in gs.moves])
    long = rng.choice(np.flatnonzero(~is_h), size=(12, TRUSTED_LENGTH + 200))
    long[:, ::400] = rng.choice(np.flatnonzero(is_h), size=(12, long[:, ::400].shape[1]))
    u = ProductTable(gs.move_matrices, np.complex128).unitaries(long)
    channel, good = channel_keys(u)
    assert good.all() and (moves.bound(*_stored_form(long, len(gs.moves))) <= CHANNEL_K).all()
    assert np.array_equal(dedup_keys("ring", u, (moves, *_stored_form(long, len(gs.moves))))[0], channel)


@pytest.mark.parametrize(
    ("gates", "qubits"), [("h,t,tdg,cx", 2), ("clifford+t", 3), ("h,s,sdg,sx,sxdg,x,y,z,ch,ccx", 3)]
)
def test_exact_inverse_moves_are_the_gate_sets_for_standard_gates(gates: str, qubits: int) -> None:
    """Pruning under ring keys takes exact inverses (so a deep gate's approximate inverse is not one); for
    standard gates they are the float-judged ones, so enumerations prune the same sequences."""
    gs = unitarium.make_spec(gates=gates, qubits=qubits, count=1, length=1).gateset
    assert np.array_equal(RingMoves(gs).inverse_moves, gs.inverse_moves)


def _circuit_exactly(qc: object) -> list[list[tuple]]:
    gates = [unitarium.parse_gate(i.operation.name).matrix for i in qc.data]  # type: ignore[attr-defined]
    return _exact_product([_exact_gate(m) for m in [np.eye(2), *gates]])


def test_unitaries_closer_than_the_grid_tolerance_are_kept_apart_by_exact_keys(tmp_path: Path) -> None:
    """The acceptance test of issue 19: two distinct Clifford+T unitaries 1.7e-8 apart, the identity and
    gridsynth's approximation ``W`` of rz(3e-8) within 1e-8 (100 h gates), and two approximations of
    rz(0.3). Distinct by exact arithmetic, close by Qiskit's Operator; grid keys merge each pair and ring
    keys keep them apart. Then a real unique run through the CLI: an enumeration over two custom gates,
    ``W``'s two parts (each read exactly off its matrix), reaches the identity (length 0) and ``W`` (length
    2): ``--keys exact`` keeps both, ``--keys grid`` the identity only."""
    synthesis = pytest.importorskip("qiskit.synthesis")
    from qiskit.quantum_info import Operator

    w_circuit = synthesis.gridsynth_rz(3e-8, 1e-8)
    pairs = [
        (w_circuit.copy_empty_like(), w_circuit),
        (synthesis.gridsynth_rz(0.3, 1e-8), synthesis.gridsynth_rz(0.3, 1e-9)),
    ]
    for first, second in pairs:
        one, two = _circuit_exactly(first), _circuit_exactly(second)
        assert _exact_channel_form(one) != _exact_channel_form(two)  # distinct up to phase
        one_op, two_op = Operator(first), Operator(second)
        assert one_op.equiv(two_op, rtol=0, atol=1e-7) and not one_op.equiv(two_op, rtol=0, atol=1e-10)
    # key level: the circuits as moves of h, s, t, x on one qubit
    gs = unitarium.make_spec(gates="h,s,t,x", qubits=1, count=1, length=1, unique=True, keys="exact").gateset
    index = gs.move_index()
    seqs = np.full((4, 300), len(gs.moves))
    for r, qc in enumerate(c for pair in pairs for c in pair):
        seqs[r, : len(qc.data)] = [index[f"{i.operation.name} 0"] for i in qc.data]
    u = ProductTable(gs.move_matrices, np.complex128).unitaries(seqs)
    grid, alternates, _ = dedup_keys("grid", u)
    ring, _, _ = dedup_keys("ring", u, (RingMoves(gs), *_stored_form(seqs, len(gs.moves))))
    for a, b in ((0, 1), (2, 3)):
        assert tuple(grid[a]) in {tuple(grid[b]), *map(tuple, alternates.get(b, np.zeros((0, 2))).tolist())}
        assert tuple(ring[a]) != tuple(ring[b])

    # a real run: custom gates g1, g2 with W = g2 g1, each the longest part of W's circuit read exactly
    def part(names: list[str]) -> np.ndarray:
        return functools.reduce(lambda u, name: unitarium.parse_gate(name).matrix @ u, names, np.eye(2))

    names = [i.operation.name for i in w_circuit.data]
    cut = next(n for n in range(len(names) - 1, 0, -1) if is_ring_gate(part(names[:n])[None]))
    g1, g2 = part(names[:cut]), part(names[cut:])
    assert is_ring_gate(g2[None]) and not is_clifford_t(g1[None])  # deeper than the gates channel keys allow
    body = {
        "gates": {n: {"matrix": [[[v.real, v.imag] for v in row] for row in m]} for n, m in (("g1", g1), ("g2", g2))}
    }
    gate_file = tmp_path / "halves.json"
    gate_file.write_text(json.dumps(body))
    records = {}
    for keys in ("exact", "grid"):
        path = tmp_path / f"{keys}.db"
        args = ("--qubits", "1", "--enumerate", "--max-length", "2", "--unique", "--keys", keys)
        cli("generate", path, "--gate-file", gate_file, *args, "--quiet")
        with unitarium.open(path) as ds:
            assert ds.spec.keys == {"exact": "ring"}.get(keys, keys)
            records[keys] = {str(r.circuit): r.unitary for r in ds}
            gs_exact = ds.gateset
    # the 7 circuits of length <= 2 are 7 distinct unitaries; g1 g2 = W and g2 g1 = g1^-1 W g1 lie 1.7e-8
    # from the identity: grid keys drop them as the empty circuit's duplicates (or pruning does: g2 is g1's
    # inverse within 1e-9; under ring keys pruning takes exact inverses only)
    assert gs_exact.inverse_moves.tolist() == [1, 0] and RingMoves(gs_exact).inverse_moves.tolist() == [-1, -1]
    assert sorted(records["exact"]) == ["", "g1 0", "g1 0; g1 0", "g1 0; g2 0", "g2 0", "g2 0; g1 0", "g2 0; g2 0"]
    assert set(records["exact"]) - set(records["grid"]) == {"g1 0; g2 0", "g2 0; g1 0"}
    w = records["exact"]["g1 0; g2 0"]
    assert Operator(w).equiv(Operator(w_circuit), rtol=0, atol=1e-6)  # complex64, as stored


# -- unique runs --------------------------------------------------------------------------------


def _lengths(path: Path) -> dict[str, int]:
    with unitarium.open(path) as ds:
        return dict(ds.summary["lengths"])


@pytest.mark.parametrize(
    ("gates", "qubits", "max_length", "scheme"),
    [
        ("h,s,cx", 2, 7, "tableau"),
        ("h,s,cx", 3, 4, "tableau"),
        ("h,t,tdg,cx", 2, 5, "ring"),
        ("h,t", 1, 14, "ring"),
    ],
)
def test_exact_keys_keep_and_drop_what_grid_keys_do(
    tmp_path: Path, gates: str, qubits: int, max_length: int, scheme: str
) -> None:
    runs = {}
    for keys in ("exact", "grid", *(("channel",) if scheme == "ring" else ())):  # channel: the keys before ring
        spec = unitarium.make_spec(gates=gates, qubits=qubits, max_length=max_length, unique=True, keys=keys)
        assert spec.keys == {"exact": scheme}.get(keys, keys)
        runs[keys] = tmp_path / f"{keys}.db"
        unitarium.generate(runs[keys], spec, workers=1)
    for keys in runs:
        assert content(runs[keys]) == content(runs["grid"])
        assert _lengths(runs[keys]) == _lengths(runs["grid"])


def test_the_two_qubit_clifford_group_has_11520_elements_up_to_phase(tmp_path: Path) -> None:
    path = tmp_path / "cliff2/"
    spec = unitarium.make_spec(gates="h,s,cx", qubits=2, max_length=13, unique=True, keys="auto")
    assert spec.keys == "tableau"
    unitarium.generate(path, spec, workers=2)
    with unitarium.open(path) as ds:
        assert len(ds) == 11_520
        assert max(int(k) for k in ds.summary["lengths"]) == 11  # nothing new at lengths 12 and 13
        u = ds.unitaries(0, len(ds)).astype(np.complex128)
    assert len({tuple(k) for k in tableau_keys(u, eps=1e-4).tolist()}) == 11_520


def test_a_grid_key_dataset_resumes_with_grid_keys(tmp_path: Path) -> None:
    """A dataset whose stored spec has no "keys" (every dataset made before exact keys) resumes with grid keys
    when the same command runs again with the default --keys auto, to the same content."""
    args = dict(gates="h,s,cx", qubits=2, count=6000, length="1:9", seed=5, unique=True)
    reference, partial = tmp_path / "reference.db", tmp_path / "partial.db"
    unitarium.generate(reference, unitarium.make_spec(**args, keys="grid"), workers=1)
    stopped_after(partial, unitarium.make_spec(**args, keys="grid"), workers=1)
    with unitarium.open(partial) as ds:
        assert "keys" not in ds.meta["spec"] and ds.spec.keys == "grid" and not ds.complete
    auto = unitarium.make_spec(**args, keys="auto")
    assert auto.keys == "tableau"
    unitarium.generate(partial, auto, workers=2)
    with unitarium.open(partial) as ds:
        assert ds.complete and "keys" not in ds.meta["spec"]
        stored = ds.dedup_keys()
    assert content(partial) == content(reference)
    assert np.array_equal(stored, unitarium.open(reference).dedup_keys())  # grid keys, as made
    with pytest.raises(unitarium.SpecMismatchError, match="keys"):  # asked for explicitly: refused
        unitarium.generate(partial, unitarium.make_spec(**args, keys="exact"), workers=1)


def test_an_exact_key_dataset_resumes_with_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    spec = unitarium.make_spec(gates="h,t,cx", qubits=2, count=3000, length="1:8", unique=True, keys="auto")
    unitarium.generate(path, spec, workers=1)
    with unitarium.open(path) as ds:
        assert ds.meta["spec"]["keys"] == "ring" and ds.spec.keys == "ring"
    summary = unitarium.generate(
        path, unitarium.make_spec(gates="h,t,cx", qubits=2, count=3000, length="1:8", unique=True, keys="auto")
    )
    assert summary.new_records == 0
    with pytest.raises(unitarium.SpecMismatchError, match="keys"):
        unitarium.generate(
            path, unitarium.make_spec(gates="h,t,cx", qubits=2, count=3000, length="1:8", unique=True, keys="grid")
        )


def test_a_channel_key_dataset_resumes_with_channel_keys(tmp_path: Path) -> None:
    """A Clifford+T dataset made before ring keys (its spec JSON says "channel", as --keys exact and auto made
    it) resumes, interrupted, with channel keys under --keys exact and auto: to the same content and stored
    keys as a run made with channel keys throughout; --keys grid is refused."""
    h, t = unitarium.parse_gate("h").matrix, unitarium.parse_gate("t").matrix
    gates = {"ht": t @ h, "htdg": t.conj() @ h}  # no two h or t in a row: the exponent grows with the length
    body = {"gates": {k: {"matrix": [[[v.real, v.imag] for v in row] for row in m]} for k, m in gates.items()}}
    (tmp_path / "gates.json").write_text(json.dumps(body))
    args = dict(
        gates="ht,htdg", qubits=1, count=20_000, length="1:50", seed=2, unique=True, gate_file=tmp_path / "gates.json"
    )
    reference, partial = tmp_path / "reference.db", tmp_path / "partial.db"
    unitarium.generate(reference, unitarium.make_spec(**args, keys="channel"), workers=1)
    stopped_after(partial, unitarium.make_spec(**args, keys="channel"), workers=1)
    for keys in ("exact", "auto"):
        spec = unitarium.make_spec(**args, keys=keys)
        assert spec.keys == "ring"
        unitarium.generate(partial, spec, workers=1)
        with unitarium.open(partial) as ds:
            assert ds.complete and ds.meta["spec"]["keys"] == "channel"
    assert content(partial) == content(reference)
    with unitarium.open(partial) as ds, unitarium.open(reference) as ref:
        assert np.array_equal(ds.dedup_keys(), ref.dedup_keys())
    with pytest.raises(unitarium.SpecMismatchError, match="keys"):
        unitarium.generate(partial, unitarium.make_spec(**args, keys="grid"), workers=1)
    ring = tmp_path / "ring.db"  # a new dataset gets ring keys: the same records here, other keys for deep rows
    unitarium.generate(ring, unitarium.make_spec(**args, keys="exact"), workers=1)
    with unitarium.open(ring) as ds, unitarium.open(reference) as ref:
        assert ds.meta["spec"]["keys"] == "ring" and content(ring) == content(reference)
        assert not np.array_equal(ds.dedup_keys(), ref.dedup_keys())


def test_keys_enter_the_spec_only_when_exact() -> None:
    """(``grid`` is the default while exact keys cost more per candidate; ``auto`` chooses them.)"""
    plain = unitarium.make_spec(gates="h,s,cx", qubits=2, count=10, length=3)
    assert plain.keys == "grid" and "keys" not in plain.to_json()
    assert (
        unitarium.make_spec(gates="h,rz(0.1),cx", qubits=2, count=10, length=3, unique=True, keys="auto").keys == "grid"
    )
    assert unitarium.make_spec(gates="h,s,ccx", qubits=3, count=10, length=3, unique=True, keys="auto").keys == "ring"
    spec = unitarium.make_spec(gates="sx,cz", qubits=2, count=10, length=3, unique=True, keys="auto")
    assert spec.to_json()["keys"] == "tableau"
    assert unitarium.Spec.from_json(json.loads(spec.canonical_json())).keys == "tableau"
    with pytest.raises(unitarium.SpecError, match="no exact key"):
        unitarium.make_spec(gates="h,rz(0.1)", qubits=1, count=10, length=3, unique=True, keys="exact")
    with pytest.raises(unitarium.SpecError, match="goes with --unique"):
        unitarium.make_spec(gates="h,s", qubits=1, count=10, length=3, keys="exact")


# -- lookup -------------------------------------------------------------------------------------


def test_lookup_on_a_tableau_dataset_finds_members_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    unitarium.generate(
        path, unitarium.make_spec(gates="h,s,cx", qubits=2, max_length=6, unique=True, keys="auto"), workers=1
    )
    with unitarium.open(path) as ds:
        assert ds.spec.keys == "tableau"
        for i in (0, 5, 100, len(ds) - 1):
            rec = ds[i]
            assert [r.id for r in ds.lookup(rec.unitary * np.exp(0.7j))] == [i]
            assert [r.id for r in ds.lookup(rec.circuit.to_qiskit())] == [i]
        t_gate = unitarium.parse_gate("t").matrix
        query = np.kron(np.eye(2), t_gate) @ ds[5].unitary
        assert lookup_probes("tableau", query) == [] and ds.lookup(query, atol=0.5) == []
        assert ds.verify(sample=200).ok


def test_lookup_on_a_channel_dataset(tmp_path: Path) -> None:
    path = tmp_path / "ct.db"
    unitarium.generate(
        path, unitarium.make_spec(gates="h,t,cx", qubits=2, max_length=4, unique=True, keys="auto"), workers=1
    )
    with unitarium.open(path) as ds:
        assert ds.spec.keys == "ring"
        for i in (0, 7, len(ds) - 1):
            assert [r.id for r in ds.lookup(ds[i].unitary)] == [i]
        assert ds.lookup(np.kron(np.eye(2), unitarium.parse_gate("rz(0.3)").matrix)) == []
        assert ds.verify(sample=100).ok


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_keys_option(tmp_path: Path) -> None:
    base = ["--qubits", "2", "--count", "500", "--length", "1:6", "--unique", "--quiet"]
    cli("generate", tmp_path / "a.db", "--gates", "h,s,cx", *base, "--keys", "exact")
    cli("generate", tmp_path / "b.db", "--gates", "h,s,cx", *base, "--keys", "grid")
    assert unitarium.open(tmp_path / "a.db").spec.keys == "tableau"
    assert unitarium.open(tmp_path / "b.db").spec.keys == "grid"
    assert content(tmp_path / "a.db") == content(tmp_path / "b.db")
    bad = cli("generate", tmp_path / "c.db", "--gates", "h,rz(0.2),cx", *base, "--keys", "exact", check=False)
    assert bad.returncode == 2
    assert one_error_line(bad.stderr).startswith("unitarium: error: --keys exact: the gates h,rz(0.2),cx are not")
    assert not (tmp_path / "c.db").exists()
    bad = cli(
        "generate",
        tmp_path / "d.db",
        "--gates",
        "h,s",
        "--qubits",
        "1",
        "--count",
        "5",
        "--length",
        "2",
        "--keys",
        "exact",
        check=False,
    )
    assert bad.returncode == 2 and "goes with --unique" in one_error_line(bad.stderr)


# -- synthesis ----------------------------------------------------------------------------------


def test_synthesis_on_a_tableau_dataset_matches_the_grid_dataset_and_stim(tmp_path: Path) -> None:
    """Meet in the middle over a tableau-key dataset: every 2-qubit Clifford (length <= 11 <= 2 * 6) gets a
    shortest circuit, the same one as over the grid-key dataset; a non-Clifford gets none."""
    paths = {}
    for keys in ("exact", "grid"):
        paths[keys] = tmp_path / f"{keys}.db"
        spec = unitarium.make_spec(gates="h,s,cx", qubits=2, max_length=6, unique=True, keys=keys)
        unitarium.generate(paths[keys], spec, workers=1)
    rng = np.random.default_rng(4)
    targets = np.array([stim.Tableau.random(2).to_unitary_matrix(endian="little") for _ in range(25)])
    targets = targets * _phase(rng, len(targets))
    t_gate = unitarium.parse_gate("t").matrix
    targets = np.concatenate([targets, (np.kron(np.eye(2), t_gate) @ targets[0])[None]])
    found = {}
    for keys, path in paths.items():
        with unitarium.open(path) as ds:
            found[keys] = ds.synthesize_many(targets)
    assert [c is None for c in found["exact"]] == [False] * 25 + [True]
    for c, u in zip(found["exact"][:25], targets[:25], strict=True):
        assert c is not None
        assert _stim_tableau(c.unitary()) == _stim_tableau(u)
    assert [None if c is None else c.codes.tolist() for c in found["exact"]] == [
        None if c is None else c.codes.tolist() for c in found["grid"]
    ]


def test_custom_gates_are_judged_by_their_matrices(tmp_path: Path) -> None:
    """A custom gate named anything is Clifford, Clifford+T or neither by its matrix (with a phase)."""
    h, s_, t = (unitarium.parse_gate(g).matrix for g in ("h", "s", "t"))
    phase = np.exp(0.3j)
    gates = {"hs": phase * h @ s_, "ht": phase * h @ t, "odd": unitarium.parse_gate("ry(0.2)").matrix}
    body = {"gates": {k: {"matrix": [[[v.real, v.imag] for v in row] for row in m]} for k, m in gates.items()}}
    path = tmp_path / "gates.json"
    path.write_text(json.dumps(body))

    def scheme(names: str) -> str:
        spec = unitarium.make_spec(gates=names, qubits=2, count=10, length=3, unique=True, gate_file=path, keys="auto")
        return spec.keys

    assert (scheme("hs,cx"), scheme("hs,ht,cx"), scheme("hs,odd")) == ("tableau", "ring", "grid")
    runs = {}
    for keys in ("exact", "grid"):
        runs[keys] = tmp_path / f"{keys}.db"
        spec = unitarium.make_spec(gates="hs,ht,cx", qubits=2, max_length=4, unique=True, gate_file=path, keys=keys)
        unitarium.generate(runs[keys], spec, workers=1)
    assert content(runs["exact"]) == content(runs["grid"])
