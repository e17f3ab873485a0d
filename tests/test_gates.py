"""Gates: every standard gate against Qiskit (matrix and qubit order), angles, presets, custom gate files."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import library as lib
from qiskit.quantum_info import Operator

import unitarium
from unitarium import GateFileError, SpecError, load_gate_file, parse_gate, parse_gates
from unitarium._core.gates import parse_angle, split_gate_list

from conftest import ALL_GATES

PI = math.pi

# name as written -> the Qiskit gate it must equal
QISKIT_GATES = {
    "i": lib.IGate(),
    "x": lib.XGate(),
    "y": lib.YGate(),
    "z": lib.ZGate(),
    "h": lib.HGate(),
    "s": lib.SGate(),
    "sdg": lib.SdgGate(),
    "t": lib.TGate(),
    "tdg": lib.TdgGate(),
    "sx": lib.SXGate(),
    "sxdg": lib.SXdgGate(),
    "rx(pi/4)": lib.RXGate(PI / 4),
    "ry(pi/3)": lib.RYGate(PI / 3),
    "rz(pi/4)": lib.RZGate(PI / 4),
    "rz(-3*pi/8)": lib.RZGate(-3 * PI / 8),
    "p(0.3)": lib.PhaseGate(0.3),
    "u(pi/2,0.1,-2pi/3)": lib.UGate(PI / 2, 0.1, -2 * PI / 3),
    "cx": lib.CXGate(),
    "cy": lib.CYGate(),
    "cz": lib.CZGate(),
    "ch": lib.CHGate(),
    "swap": lib.SwapGate(),
    "iswap": lib.iSwapGate(),
    "ecr": lib.ECRGate(),
    "ccx": lib.CCXGate(),
    "cswap": lib.CSwapGate(),
}


def test_the_oracle_table_covers_every_standard_gate() -> None:
    fixed = {name for name in QISKIT_GATES if "(" not in name}
    assert fixed == set(unitarium.STANDARD_GATES)
    assert {name.split("(")[0] for name in QISKIT_GATES} - fixed == {"rx", "ry", "rz", "p", "u"}
    assert {parse_gate(name).name for name in QISKIT_GATES} - {"rz(-3*pi/8)"} == {
        g.name for g in parse_gates(split_gate_list(ALL_GATES))
    }


@pytest.mark.parametrize("name", list(QISKIT_GATES))
def test_gate_matrix_equals_qiskit(name: str) -> None:
    gate = parse_gate(name)
    expected = QISKIT_GATES[name]
    assert gate.num_qubits == expected.num_qubits
    assert gate.matrix.dtype == np.complex128
    assert gate.matrix.shape == (2**gate.num_qubits,) * 2
    np.testing.assert_allclose(gate.matrix, expected.to_matrix(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(gate.matrix, Operator(expected).data, rtol=0, atol=1e-12)
    assert not gate.custom


@pytest.mark.parametrize("name", list(QISKIT_GATES))
def test_gate_on_every_qubit_tuple_matches_qiskit_operator(name: str) -> None:
    """Qubit order: the first qubit argument is Qiskit's first qubit argument, on a 3-qubit register."""
    spec = unitarium.make_spec(gates=name, qubits=3, count=1, length=1)
    gs = spec.gateset
    k = gs.gates[0].num_qubits
    assert {m.qubits for m in gs.moves} <= set(itertools.permutations(range(3), k))
    for code, move in enumerate(gs.moves):
        circuit = unitarium.Circuit(np.array([code]), gs)
        qc = QuantumCircuit(3)
        qc.append(QISKIT_GATES[name], list(move.qubits))
        np.testing.assert_allclose(circuit.unitary(), Operator(qc).data, rtol=0, atol=1e-12)
        np.testing.assert_allclose(Operator(circuit.to_qiskit()).data, Operator(qc).data, rtol=0, atol=1e-12)
        np.testing.assert_allclose(gs.move_matrices[code], Operator(qc).data, rtol=0, atol=1e-12)


def test_cx_convention_is_control_first_little_endian() -> None:
    cx = parse_gate("cx").matrix
    expected = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0]])
    np.testing.assert_array_equal(cx, expected)


@pytest.mark.parametrize("name", list(QISKIT_GATES))
def test_every_gate_is_unitary(name: str) -> None:
    m = parse_gate(name).matrix
    np.testing.assert_allclose(m.conj().T @ m, np.eye(len(m)), atol=1e-12)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("pi/4", PI / 4),
        ("-3*pi/8", -3 * PI / 8),
        ("0.25", 0.25),
        ("2pi", 2 * PI),
        ("-2pi/3", -2 * PI / 3),
        ("(pi+1)/2", (PI + 1) / 2),
        ("+pi", PI),
        ("1e-3", 1e-3),
        ("3", 3.0),
    ],
)
def test_parse_angle(text: str, value: float) -> None:
    assert parse_angle(text) == pytest.approx(value, abs=1e-15)


@pytest.mark.parametrize(
    "text", ["", "pi**2", "__import__('os')", "abs(1)", "1/0", "nan", "x", "1e400", "pi pi", "'1'"]
)
def test_parse_angle_refuses(text: str) -> None:
    with pytest.raises(SpecError):
        parse_angle(text)


def test_parametric_gate_names_are_canonical() -> None:
    assert parse_gate("RZ( pi / 4 )").name == "rz(pi/4)"
    assert parse_gate("u(pi/2, 0.1, -2pi/3)").name == "u(pi/2,0.1,-2*pi/3)"
    assert parse_gate("u(pi/2,0.1,-2pi/3)").params == pytest.approx((PI / 2, 0.1, -2 * PI / 3))
    assert parse_gate("rz(pi/4)").base == "rz"
    assert parse_gate("H").name == "h"
    assert parse_gate("h").params == ()


@pytest.mark.parametrize("text", ["rz", "rz()", "u(1,2)", "rx(1,2)", "nope", "cx(1)", "rz(pi/0)"])
def test_parse_gate_refuses(text: str) -> None:
    with pytest.raises(SpecError):
        parse_gate(text)


def test_presets_expand_and_duplicates_drop() -> None:
    names = [g.name for g in parse_gates(["clifford+t", "h", "cx", "t"])]
    assert names == ["h", "s", "t", "tdg", "cx"]
    assert [g.name for g in parse_gates(["clifford"])] == list(unitarium.PRESETS["clifford"])
    with pytest.raises(SpecError):
        parse_gates([])


def test_split_gate_list_keeps_commas_inside_parentheses() -> None:
    assert split_gate_list("h, u(pi/2,0,pi) ,cx,,rz(pi/4)") == ["h", "u(pi/2,0,pi)", "cx", "rz(pi/4)"]


# -- custom gate files ---------------------------------------------------------------------

SQRT_X = 0.5 * np.array([[1 + 1j, 1 - 1j], [1 - 1j, 1 + 1j]])
SQRT_ISWAP = np.array(
    [
        [1, 0, 0, 0],
        [0, 1 / math.sqrt(2), 1j / math.sqrt(2), 0],
        [0, 1j / math.sqrt(2), 1 / math.sqrt(2), 0],
        [0, 0, 0, 1],
    ]
)


def write_toml(path: Path) -> Path:
    s = 1 / math.sqrt(2)
    path.write_text(
        "# custom gates\n"
        "[gates.v]\n"
        'matrix = [["0.5+0.5j", "0.5-0.5j"], [[0.5, -0.5], [0.5, 0.5]]]\n'
        "[gates.siswap]\n"
        f"matrix = [[1, 0, 0, 0], [0, {s!r}, [0, {s!r}], 0], [0, [0, {s!r}], {s!r}, 0], [0, 0, 0, 1]]\n",
        encoding="utf-8",
    )
    return path


def write_json(path: Path) -> Path:
    def enc(m: np.ndarray) -> list[list[list[float]]]:
        return [[[float(v.real), float(v.imag)] for v in row] for row in m]

    path.write_text(json.dumps({"gates": {"v": {"matrix": enc(SQRT_X)}, "siswap": {"matrix": enc(SQRT_ISWAP)}}}))
    return path


@pytest.mark.parametrize("writer", [write_toml, write_json], ids=["toml", "json"])
def test_load_gate_file(tmp_path: Path, writer) -> None:
    path = writer(tmp_path / ("gates.toml" if writer is write_toml else "gates.json"))
    gates = load_gate_file(path)
    assert list(gates) == ["v", "siswap"]
    assert gates["v"].custom and gates["v"].num_qubits == 1
    assert gates["siswap"].num_qubits == 2
    np.testing.assert_allclose(gates["v"].matrix, SQRT_X, atol=1e-12)
    np.testing.assert_allclose(gates["siswap"].matrix, SQRT_ISWAP, atol=1e-12)
    np.testing.assert_allclose(gates["v"].matrix @ gates["v"].matrix, parse_gate("x").matrix, atol=1e-12)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"gates": {"bad": {"matrix": [[1, 1], [0, 1]]}}}, "not unitary"),
        ({"gates": {"bad": {"matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}}}, "square"),
        ({"gates": {"h": {"matrix": [[1, 0], [0, 1]]}}}, "shadows"),
        ({"gates": {"clifford": {"matrix": [[1, 0], [0, 1]]}}}, "shadows"),
        ({"gates": {"1bad": {"matrix": [[1, 0], [0, 1]]}}}, "identifier"),
        ({"gates": {"nomatrix": {}}}, "matrix"),
        ({"gates": {"bad": {"matrix": [[True, 0], [0, 1]]}}}, "entries"),
        ({"gates": {"bad": {"matrix": [["nan", 0], [0, 1]]}}}, "NaN"),
        ({"gates": {}}, "non-empty"),
        ({"other": 1}, "non-empty"),
        ([1, 2], "non-empty"),
    ],
)
def test_bad_gate_files_are_refused_with_a_reason(tmp_path: Path, body: object, message: str) -> None:
    path = tmp_path / "gates.json"
    path.write_text(json.dumps(body))
    with pytest.raises(GateFileError, match=message):
        load_gate_file(path)


def test_unreadable_gate_files(tmp_path: Path) -> None:
    with pytest.raises(GateFileError, match="cannot read"):
        load_gate_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[gates\n")
    with pytest.raises(GateFileError, match="not valid toml"):
        load_gate_file(bad)
    assert issubclass(GateFileError, SpecError) and issubclass(GateFileError, ValueError)
