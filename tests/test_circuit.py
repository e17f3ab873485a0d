"""Circuits: text round trips, OpenQASM 2 and Qiskit forms against Qiskit's Operator."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import qiskit.qasm2
from hypothesis import given, settings
from hypothesis import strategies as st
from qiskit.quantum_info import Operator

import unitarium
from unitarium import Circuit, SpecError

from conftest import ALL_GATES

GS3 = unitarium.make_spec(gates=ALL_GATES, qubits=3, count=1, length=1).gateset


def load_qasm(text: str) -> Operator:
    return Operator(qiskit.qasm2.loads(text, custom_instructions=qiskit.qasm2.LEGACY_CUSTOM_INSTRUCTIONS))


def random_circuit(rng: np.random.Generator, gs: unitarium.GateSet, length: int) -> Circuit:
    return Circuit(rng.integers(0, len(gs.moves), size=length), gs)


@pytest.mark.parametrize("code", range(len(GS3.moves)), ids=[m.text for m in GS3.moves])
def test_each_move_through_qasm_and_qiskit(code: int) -> None:
    circuit = Circuit(np.array([code]), GS3)
    expected = circuit.unitary()
    np.testing.assert_allclose(Operator(circuit.to_qiskit()).data, expected, rtol=0, atol=1e-12)
    via_qasm = load_qasm(circuit.to_qasm())
    base = GS3.gates[GS3.moves[code].gate].base
    if base in ("iswap", "ecr"):  # emitted as gate definitions: equal up to global phase
        assert via_qasm.equiv(Operator(expected), atol=1e-10)
    else:
        np.testing.assert_allclose(via_qasm.data, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_random_circuits_through_qasm_and_qiskit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    circuit = random_circuit(rng, GS3, 30)
    expected = circuit.unitary()
    np.testing.assert_allclose(Operator(circuit.to_qiskit()).data, expected, rtol=0, atol=1e-10)
    assert load_qasm(circuit.to_qasm()).equiv(Operator(expected), atol=1e-10)
    text = circuit.to_qasm()
    assert text.startswith('OPENQASM 2.0;\ninclude "qelib1.inc";\n') and "qreg q[3];" in text
    assert text.count("gate iswap") <= 1 and text.count("gate ecr") <= 1


def test_qasm_names() -> None:
    gs = unitarium.make_spec(gates="i,p(0.3),u(pi/2,0.1,-2pi/3),cx,rz(pi/4)", qubits=2, count=1, length=1).gateset
    circuit = Circuit.from_text("i 0; p(0.3) 1; u(pi/2,0.1,-2*pi/3) 0; cx 1 0; rz(pi/4) 1", gs)
    body = circuit.to_qasm().splitlines()[3:]
    assert body == ["id q[0];", "u1(0.3) q[1];", "u3(pi/2,0.1,-2*pi/3) q[0];", "cx q[1],q[0];", "rz(pi/4) q[1];"]
    np.testing.assert_allclose(load_qasm(circuit.to_qasm()).data, circuit.unitary(), atol=1e-12)


def test_empty_circuit() -> None:
    circuit = Circuit(np.zeros(0, dtype=np.int64), GS3)
    assert len(circuit) == 0 and str(circuit) == "" and list(circuit) == []
    np.testing.assert_array_equal(circuit.unitary(), np.eye(8))
    np.testing.assert_array_equal(Operator(circuit.to_qiskit()).data, np.eye(8))
    assert Circuit.from_text("", GS3) == circuit
    np.testing.assert_array_equal(load_qasm(circuit.to_qasm()).data, np.eye(8))


def test_text_form_and_equality() -> None:
    gs = unitarium.make_spec(gates="h,t,cx", qubits=2, count=1, length=1).gateset
    circuit = Circuit.from_text("h 0; cx 0 1; t 1", gs)
    assert str(circuit) == "h 0; cx 0 1; t 1"
    assert list(circuit) == ["h 0", "cx 0 1", "t 1"]
    assert repr(circuit) == "Circuit('h 0; cx 0 1; t 1')"
    assert len(circuit) == 3
    assert circuit == Circuit.from_text("h 0\ncx 0 1 ;; t 1 ;", gs)
    assert hash(circuit) == hash(Circuit.from_text("h 0; cx 0 1; t 1", gs))
    assert circuit != Circuit.from_text("h 0; cx 1 0; t 1", gs)
    assert circuit != "h 0; cx 0 1; t 1"
    other = unitarium.make_spec(gates="h,t,cx", qubits=3, count=1, length=1).gateset
    assert circuit != Circuit.from_text("h 0; cx 0 1; t 1", other)


def test_from_text_maps_equal_moves_and_refuses_others() -> None:
    gs = unitarium.make_spec(gates="h,cz,swap,ccx", qubits=3, count=1, length=1, coupling="linear").gateset
    assert str(Circuit.from_text("cz 1 0; swap 2 1; ccx 1 0 2", gs)) == "cz 0 1; swap 1 2; ccx 0 1 2"
    for bad, message in [
        ("cz 0 2", "not in this dataset"),
        ("cx 0 1", "not in this dataset"),
        ("h 3", "distinct qubits below 3"),
        ("cz 1 1", "distinct qubits"),
        ("cz 0", "distinct qubits"),
        ("h a", "whole numbers"),
        ("frob 0", "unknown gate"),
    ]:
        with pytest.raises(SpecError, match=message):
            Circuit.from_text(bad, gs)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, len(GS3.moves) - 1), max_size=20))
def test_text_round_trip(codes: list[int]) -> None:
    circuit = Circuit(np.array(codes, dtype=np.int64), GS3)
    again = Circuit.from_text(str(circuit), GS3)
    np.testing.assert_array_equal(again.codes, circuit.codes)
    assert again == circuit


def test_custom_gates_in_qiskit_and_qasm(tmp_path: Path) -> None:
    s = 1 / math.sqrt(2)
    gate_file = tmp_path / "g.toml"
    gate_file.write_text(
        '[gates.v]\nmatrix = [["0.5+0.5j", "0.5-0.5j"], ["0.5-0.5j", "0.5+0.5j"]]\n'
        f"[gates.siswap]\nmatrix = [[1,0,0,0],[0,{s!r},[0,{s!r}],0],[0,[0,{s!r}],{s!r},0],[0,0,0,1]]\n"
    )
    spec = unitarium.make_spec(gates="v,siswap,h", gate_file=gate_file, qubits=2, count=1, length=1)
    assert [m.text for m in spec.gateset.moves] == ["v 0", "v 1", "siswap 0 1", "h 0", "h 1"]  # siswap is symmetric
    circuit = Circuit.from_text("v 1; siswap 1 0; h 0; siswap 0 1", spec.gateset)
    np.testing.assert_allclose(Operator(circuit.to_qiskit()).data, circuit.unitary(), atol=1e-12)
    qasm = circuit.to_qasm()
    # custom gates are defined (u3/cx, up to global phase), not opaque: readers can simulate them
    assert "gate v q0 { u3(" in qasm and "gate siswap q0,q1 { " in qasm and "siswap q[0],q[1];" in qasm
    assert "opaque" not in qasm
    parsed = qiskit.qasm2.loads(qasm)
    assert [i.operation.name for i in parsed.data] == ["v", "siswap", "h", "siswap"]
    assert Operator(parsed).equiv(Operator(circuit.unitary()), atol=1e-10)


def test_record_repr() -> None:
    rec = unitarium.Record(3, Circuit.from_text("h 0", GS3), np.eye(8, dtype=np.complex64))
    assert repr(rec) == "Record(id=3, circuit='h 0', unitary=<(8, 8) complex64>)"
