"""Kernels: ProductTable, extend and embed against the gate-by-gate reference and Qiskit's Operator."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import library as lib
from qiskit.quantum_info import Operator, random_unitary

import unitarium
from unitarium import Circuit
from unitarium._core import kernels as _kernels
from unitarium._core.gates import split_gate_list
from unitarium._core.kernels import ProductTable, embed, extend, table_depth

from conftest import ALL_GATES


def gateset(qubits: int, gates: str = ALL_GATES) -> unitarium.GateSet:
    gates = ",".join(g for g in split_gate_list(gates) if unitarium.parse_gate(g).num_qubits <= qubits)
    return unitarium.make_spec(gates=gates, qubits=qubits, count=1, length=1).gateset


def random_padded(
    rng: np.random.Generator, num_moves: int, batch: int, max_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Padded move sequences ``(batch, max_length)`` with lengths 0..max_length (pad = num_moves)."""
    lengths = rng.integers(0, max_length, endpoint=True, size=batch)
    lengths[:2] = [0, max_length]
    seqs = rng.integers(0, num_moves, size=(batch, max_length))
    seqs[np.arange(max_length)[None, :] >= lengths[:, None]] = num_moves
    return seqs, lengths


@pytest.mark.parametrize("qubits", [1, 2, 3, 4])
@pytest.mark.parametrize(("dtype", "atol"), [(np.complex64, 1e-5), (np.complex128, 1e-10)])
def test_product_table_matches_reference_and_qiskit(qubits: int, dtype: type, atol: float) -> None:
    gs = gateset(qubits)
    m = len(gs.moves)
    rng = np.random.default_rng(qubits)
    seqs, lengths = random_padded(rng, m, 40, 13)
    table = ProductTable(gs.move_matrices, dtype)
    got = table.unitaries(seqs)
    assert got.dtype == dtype and got.shape == (40, gs.dim, gs.dim)
    for row, n in zip(seqs, lengths, strict=True):
        assert np.all(row[n:] == m)
    for u, row, n in zip(got, seqs, lengths, strict=True):
        circuit = Circuit(row[:n], gs)
        reference = circuit.unitary()
        np.testing.assert_allclose(u, reference, rtol=0, atol=atol)
        np.testing.assert_allclose(u, Operator(circuit.to_qiskit()).data, rtol=0, atol=atol)
    np.testing.assert_array_equal(
        got[lengths == 0], np.broadcast_to(np.eye(gs.dim), (int((lengths == 0).sum()),) + (gs.dim,) * 2)
    )


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 5, 9])
def test_every_table_depth_gives_the_same_products(depth: int, length: int) -> None:
    gs = gateset(2, "h,t,sx,cx,iswap")
    m = len(gs.moves)
    rng = np.random.default_rng(depth * 100 + length)
    seqs = rng.integers(0, m, size=(25, length))
    got = ProductTable(gs.move_matrices, np.complex128, depth=depth).unitaries(seqs)
    assert got.shape == (25, 4, 4)
    for u, row in zip(got, seqs, strict=True):
        np.testing.assert_allclose(u, Circuit(row, gs).unitary(), rtol=0, atol=1e-12)


def test_product_table_with_an_empty_batch_or_zero_length() -> None:
    gs = gateset(2, "h,cx")
    table = ProductTable(gs.move_matrices, np.complex64)
    assert table.unitaries(np.zeros((0, 5), dtype=np.int64)).shape == (0, 4, 4)
    eye = table.unitaries(np.zeros((3, 0), dtype=np.int64))
    assert eye.shape == (3, 4, 4) and eye.dtype == np.complex64
    np.testing.assert_array_equal(eye, np.broadcast_to(np.eye(4), (3, 4, 4)))
    eye[0, 0, 0] = 5  # a writable copy, not a broadcast view
    assert eye[1, 0, 0] == 1


def test_identity_padding_is_exact() -> None:
    """A sequence and the same sequence with padding in the middle of a chunk give identical bits."""
    gs = gateset(3, "h,t,cx,ccx")
    m = len(gs.moves)
    rng = np.random.default_rng(5)
    seqs = rng.integers(0, m, size=(50, 7))
    table = ProductTable(gs.move_matrices, np.complex64)
    padded = np.concatenate([seqs, np.full((50, 6), m)], axis=1)
    np.testing.assert_array_equal(table.unitaries(seqs), table.unitaries(padded))


def test_table_depth_fits_the_budget() -> None:
    assert table_depth(1000, 64, 8) == 1
    assert table_depth(10, 4, 8) == 4
    for moves, d, itemsize in [(10, 4, 8), (18, 8, 8), (85, 8, 16), (40, 16, 8), (300, 1024, 8)]:
        k = table_depth(moves, d, itemsize)
        assert 1 <= k <= 4
        assert k == 1 or (moves + 1) ** k * d * d * itemsize <= 16 << 20
        assert k == 4 or (moves + 1) ** (k + 1) * d * d * itemsize > 16 << 20


def test_extend_gives_the_allowed_children_in_parent_major_move_minor_order() -> None:
    gs = gateset(3)
    m = len(gs.moves)
    rng = np.random.default_rng(11)
    base = np.array([random_unitary(8, seed=s).data for s in range(20)])
    allowed = rng.random((20, m)) < 0.6
    allowed[3] = False  # a parent without children
    out = extend(base, gs.move_matrices, allowed)
    expected = [gs.move_matrices[k] @ base[p] for p in range(20) for k in range(m) if allowed[p, k]]
    assert out.shape == (allowed.sum(), 8, 8)
    np.testing.assert_allclose(out, np.array(expected), rtol=0, atol=1e-12)
    assert extend(base, gs.move_matrices, np.zeros_like(allowed)).shape == (0, 8, 8)


def test_extend_sub_batches_give_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    gs = gateset(2)
    rng = np.random.default_rng(5)
    parents = ProductTable(gs.move_matrices, np.complex64).unitaries(rng.integers(0, len(gs.moves) + 1, (999, 12)))
    allowed = rng.random((999, len(gs.moves))) < 0.6
    whole = extend(parents, gs.move_matrices.astype(np.complex64), allowed)
    one_product = len(gs.moves) * 4 * 4 * 8
    monkeypatch.setattr(_kernels, "_EXTEND_BYTES", 7 * one_product)  # sub-batches of 7 parents
    assert extend(parents, gs.move_matrices.astype(np.complex64), allowed).tobytes() == whole.tobytes()


# -- embed ----------------------------------------------------------------------------------

EMBED_CASES = [
    (lib.CXGate(), (2, 0), 3),
    (lib.CXGate(), (0, 2), 3),
    (lib.CYGate(), (3, 1), 4),
    (lib.ECRGate(), (2, 1), 3),
    (lib.iSwapGate(), (0, 3), 4),
    (lib.CHGate(), (1, 0), 2),
    (lib.CCXGate(), (2, 0, 1), 3),
    (lib.CCXGate(), (3, 1, 0), 4),
    (lib.CSwapGate(), (1, 3, 0), 4),
    (lib.UGate(0.3, -1.2, 2.5), (3,), 4),
    (lib.SXGate(), (1,), 3),
]


@pytest.mark.parametrize(("gate", "qubits", "n"), EMBED_CASES, ids=lambda v: str(getattr(v, "name", v)))
def test_embed_matches_qiskit(gate, qubits: tuple[int, ...], n: int) -> None:
    qc = QuantumCircuit(n)
    qc.append(gate, list(qubits))
    got = embed(gate.to_matrix(), qubits, n)
    assert got.dtype == np.complex128 and got.shape == (2**n, 2**n)
    np.testing.assert_allclose(got, Operator(qc).data, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_embed_random_unitary_on_random_qubits(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5))
    k = int(rng.integers(1, n + 1))
    qubits = tuple(int(q) for q in rng.permutation(n)[:k])
    u = random_unitary(2**k, seed=seed).data
    qc = QuantumCircuit(n)
    qc.unitary(u, list(qubits))
    np.testing.assert_allclose(embed(u, qubits, n), Operator(qc).data, rtol=0, atol=1e-12)
