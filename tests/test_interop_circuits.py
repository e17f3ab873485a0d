"""Circuits in and out: OpenQASM 2/3, Qiskit and Cirq, each checked against the library's own unitary.

Oracles: Qiskit's ``Operator`` (unitarium's qubit order), Cirq's ``unitary`` and pytket's ``get_unitary`` (both
big-endian: ``P @ U @ P`` with ``P`` the bit reversal of the basis index). The OpenQASM 2 we write is read with
each reader's default settings.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cirq
import numpy as np
import pytest
import qiskit.qasm2
import qiskit.qasm3
from cirq.contrib.qasm_import import circuit_from_qasm
from pytket.qasm import circuit_from_qasm_str
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import Operator

import unitarium
from unitarium import Circuit, MissingOptionalLibraryError, SpecError
from unitarium._core.convert import as_unitary, unitary_from_qasm_file
from unitarium._core.gates import Gate

from conftest import ALL_GATES

N = 3
GS3 = unitarium.make_spec(gates=ALL_GATES, qubits=N, count=1, length=1).gateset
CLIFFORD2 = unitarium.make_spec(gates="h,s,cx", qubits=2, count=1, length=1).gateset


def bit_reversal(n: int) -> np.ndarray:
    """The permutation ``P`` of basis indices: little-endian (unitarium, Qiskit) <-> big-endian (Cirq, pytket)."""
    return np.array([int(format(i, f"0{n}b")[::-1], 2) for i in range(1 << n)])


def big_endian(u: np.ndarray) -> np.ndarray:
    p = bit_reversal(int(u.shape[0]).bit_length() - 1)
    return u[np.ix_(p, p)]


def equal_up_to_phase(a: np.ndarray, b: np.ndarray, *, atol: float = 1e-9) -> bool:
    overlap = np.vdot(a, b)
    return abs(abs(overlap) - a.shape[0]) < atol * a.shape[0] and np.allclose(a * overlap / abs(overlap), b, atol=atol)


def random_circuit(seed: int, gs: unitarium.GateSet = GS3, length: int = 30) -> Circuit:
    rng = np.random.default_rng(seed)
    return Circuit(rng.integers(0, len(gs.moves), size=length), gs)


# -- readers: our OpenQASM -> the library's parser (defaults) -> the library's own unitary -------------------------


def qiskit_reads(text: str, n: int) -> np.ndarray:
    return Operator(qiskit.qasm2.loads(text)).data  # little-endian, as ours


def cirq_reads(text: str, n: int) -> np.ndarray:
    parsed = circuit_from_qasm(text)  # qubits q_0.. ; Cirq keeps only the qubits gates act on
    order = [cirq.NamedQubit(f"q_{j}") for j in range(n)]  # q_0 first = most significant (big-endian)
    return big_endian(parsed.unitary(qubit_order=order))


def pytket_reads(text: str, n: int) -> np.ndarray:
    return big_endian(circuit_from_qasm_str(text).get_unitary())  # ILO-BE: q[0] most significant


def qiskit3_reads(text: str, n: int) -> np.ndarray:
    return Operator(qiskit.qasm3.loads(text)).data


READERS: dict[str, tuple[int, Callable[[str, int], np.ndarray]]] = {
    "qiskit.qasm2.loads": (2, qiskit_reads),
    "cirq circuit_from_qasm": (2, cirq_reads),
    "pytket circuit_from_qasm_str": (2, pytket_reads),
    "qiskit.qasm3.loads": (3, qiskit3_reads),
}


@pytest.mark.parametrize("reader", READERS)
def test_every_standard_move_parses_with_the_reader_defaults(reader: str) -> None:
    version, read = READERS[reader]
    wrong = []
    for code, move in enumerate(GS3.moves):
        circuit = Circuit(np.array([code]), GS3)
        if not equal_up_to_phase(read(circuit.to_qasm(version), N), circuit.unitary()):
            wrong.append(move.text)
    assert not wrong, f"{reader} reads another unitary for {wrong}"
    assert len(GS3.gates) == 25  # every standard gate, rx/ry/rz/p/u with fixed angles


@pytest.mark.parametrize("reader", READERS)
def test_random_circuits_parse_with_the_reader_defaults(reader: str) -> None:
    version, read = READERS[reader]
    for seed in range(3):
        circuit = random_circuit(seed)
        assert equal_up_to_phase(read(circuit.to_qasm(version), N), circuit.unitary()), seed


def test_qasm_2_defines_only_what_the_original_qelib1_lacks() -> None:
    text = Circuit.from_text("swap 0 1; sx 2; h 0; swap 1 0; cswap 0 1 2; ecr 1 0", GS3).to_qasm()
    lines = text.splitlines()
    assert lines[:2] == ["OPENQASM 2.0;", 'include "qelib1.inc";']
    defined = [line.split()[1] for line in lines if line.startswith("gate ")]
    assert defined == ["sx", "swap", "ecr", "cswap"]  # each once, in gate-set order; h is in qelib1.inc
    assert "qreg q[3];" in lines and "swap q[1],q[0];" not in lines and lines.count("swap q[0],q[1];") == 2


def test_qasm_3_uses_stdgates_and_the_builtin_u() -> None:
    text = Circuit.from_text("u(pi/2,0.1,-2*pi/3) 0; p(0.3) 1; sx 0; sxdg 1; i 0; swap 0 2", GS3).to_qasm(3)
    lines = text.splitlines()
    assert lines[:2] == ["OPENQASM 3.0;", 'include "stdgates.inc";']
    assert [line.split()[1] for line in lines if line.startswith("gate ")] == ["sxdg"]
    assert lines[-6:] == [
        "U(pi/2,0.1,-2*pi/3) q[0];",
        "p(0.3) q[1];",
        "sx q[0];",
        "sxdg q[1];",
        "id q[0];",
        "swap q[0],q[2];",
    ]
    assert "qubit[3] q;" in lines
    assert equal_up_to_phase(Operator(qiskit.qasm3.loads(text)).data, Circuit.from_qasm(text, GS3).unitary())


def test_angles_qasm_cannot_spell_are_written_as_values() -> None:
    gs = unitarium.make_spec(gates="rz(1e-3),rx(0.5*pi)", qubits=1, count=1, length=1).gateset
    text = Circuit.from_text("rz(1e-3) 0; rx(0.5*pi) 0", gs).to_qasm()
    assert text.splitlines()[-2:] == ["rz(0.001) q[0];", "rx(0.5*pi) q[0];"]
    gs = unitarium.make_spec(gates="rz(1e-7)", qubits=1, count=1, length=1).gateset
    text = Circuit.from_text("rz(1e-7) 0", gs).to_qasm()
    assert text.splitlines()[-1] == "rz(1.0e-07) q[0];"
    for read in (qiskit_reads, cirq_reads, pytket_reads):
        assert equal_up_to_phase(read(text, 1), gs.move_matrices[0], atol=1e-12)


# -- conventions, each against the library's own unitary ---------------------------------------------------------


def test_cirq_order_is_big_endian_and_qubit_j_is_line_qubit_j() -> None:
    circuit = Circuit.from_text("cx 0 1", CLIFFORD2)  # control 0, target 1
    ours = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0]])
    np.testing.assert_array_equal(circuit.unitary(), ours)
    cq = circuit.to_cirq()
    q0, q1 = cirq.LineQubit.range(2)
    assert list(cq.all_operations()) == [cirq.CNOT(q0, q1)]
    theirs = cirq.unitary(cq)  # Cirq's default order: q0 first = most significant
    np.testing.assert_array_equal(theirs, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])
    np.testing.assert_array_equal(theirs, big_endian(ours))
    np.testing.assert_array_equal(cq.unitary(qubit_order=[q1, q0]), ours)


@pytest.mark.parametrize("seed", range(3))
def test_to_cirq_is_exact_and_round_trips(seed: int) -> None:
    circuit = random_circuit(seed)
    cq = circuit.to_cirq()
    u = cq.unitary(qubit_order=cirq.LineQubit.range(N))
    np.testing.assert_allclose(u, big_endian(circuit.unitary()), rtol=0, atol=1e-10)  # exact, phase included
    back = Circuit.from_cirq(cq, GS3)  # Cirq packs moves into moments: moves on disjoint qubits may swap places
    assert len(back) == len(circuit) and sorted(back) == sorted(circuit)
    np.testing.assert_allclose(back.unitary(), circuit.unitary(), rtol=0, atol=1e-10)
    ops = [op for code in circuit.codes for op in Circuit(np.array([code]), GS3).to_cirq().all_operations()]
    in_order = cirq.Circuit([cirq.Moment([op]) for op in ops])  # one moment per move: the order is kept
    assert Circuit.from_cirq(in_order, GS3) == circuit


def test_every_standard_move_to_cirq_is_exact() -> None:
    for code in range(len(GS3.moves)):
        circuit = Circuit(np.array([code]), GS3)
        u = circuit.to_cirq().unitary(qubit_order=cirq.LineQubit.range(N))
        np.testing.assert_allclose(u, big_endian(circuit.unitary()), rtol=0, atol=1e-12, err_msg=str(circuit))
        assert Circuit.from_cirq(circuit.to_cirq(), GS3) == circuit


def test_pytket_reads_qubit_0_as_the_most_significant() -> None:
    gs = unitarium.make_spec(gates="x", qubits=2, count=1, length=1).gateset
    circuit = Circuit.from_text("x 0", gs)
    theirs = circuit_from_qasm_str(circuit.to_qasm()).get_unitary()
    assert abs(theirs[2, 0]) == pytest.approx(1)  # |00> -> |10>: q[0] is the leading (most significant) bit
    assert circuit.unitary()[1, 0] == 1  # ours: |00> -> |01>, q[0] is the least significant bit
    np.testing.assert_allclose(theirs, big_endian(circuit.unitary()), atol=1e-12)


# -- reading into moves of a gate set -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("seed", range(3))
def test_from_qasm_round_trips(version: int, seed: int) -> None:
    circuit = random_circuit(seed)
    assert Circuit.from_qasm(circuit.to_qasm(version), GS3) == circuit


def test_from_qasm_reads_what_qiskit_writes() -> None:
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.swap(0, 2)  # Qiskit writes swap, sx, cswap without definitions (its extended qelib1.inc)
    qc.sx(1)
    qc.cswap(2, 0, 1)
    qc.cz(1, 0)  # cz 1 0 is the listed move cz 0 1
    qc.barrier()
    qc.u(math.pi / 2, 0, math.pi, 2)  # u3(pi/2,0,pi) is h exactly
    expected = "h 0; swap 0 2; sx 1; cswap 2 0 1; cz 0 1; h 2"
    assert str(Circuit.from_qasm(qiskit.qasm2.dumps(qc), GS3)) == expected
    assert str(Circuit.from_qasm(qiskit.qasm3.dumps(qc), GS3)) == expected
    assert str(Circuit.from_qiskit(qc, GS3)) == expected


def test_from_qiskit_matches_by_matrix_up_to_global_phase() -> None:
    gs = unitarium.make_spec(gates="rz(pi/2),h,cx", qubits=2, count=1, length=1).gateset
    qc = QuantumCircuit(2, global_phase=0.7)
    qc.s(1)  # s = e^{i pi/4} rz(pi/2)
    qc.cx(1, 0)
    circuit = Circuit.from_qiskit(qc, gs)
    assert str(circuit) == "rz(pi/2) 1; cx 1 0"
    assert Operator(qc).equiv(Operator(circuit.unitary()), atol=1e-12)
    assert Circuit.from_qiskit(circuit.to_qiskit(), gs) == circuit


def test_from_cirq_maps_qubits() -> None:
    a, b = cirq.GridQubit(0, 0), cirq.GridQubit(0, 1)
    cc = cirq.Circuit([cirq.H(b), cirq.CNOT(b, a), cirq.S(a)])
    assert str(Circuit.from_cirq(cc, CLIFFORD2)) == "h 1; cx 1 0; s 0"  # not LineQubits: Cirq's sorted order
    assert str(Circuit.from_cirq(cc, CLIFFORD2, qubits=[b, a])) == "h 0; cx 0 1; s 1"
    q = cirq.LineQubit.range(2)
    gs = unitarium.make_spec(gates="h,cz", qubits=2, count=1, length=1).gateset
    assert str(Circuit.from_cirq(cirq.Circuit([cirq.H(q[1]), cirq.CZ(q[1], q[0])]), gs)) == "h 1; cz 0 1"


def test_custom_gates_are_defined_for_every_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4))
    q, _ = np.linalg.qr(z)
    gate_file = tmp_path / "g.json"
    entries = [[[float(v.real), float(v.imag)] for v in row] for row in q]
    one = [[[0.6, 0.0], [0.0, 0.8]], [[0.0, 0.8], [0.6, 0.0]]]
    gate_file.write_text(f'{{"gates": {{"Foo": {{"matrix": {one}}}, "u2": {{"matrix": {entries}}}}}}}')
    gs = unitarium.make_spec(gates="Foo,u2,h,cx", gate_file=gate_file, qubits=2, count=1, length=1).gateset
    circuit = Circuit.from_text("Foo 1; u2 0 1; h 0; u2 1 0; Foo 0", gs)
    text = circuit.to_qasm()
    assert "gate g_Foo q0 { u3(" in text and "gate u2_ q0,q1 { " in text and "opaque" not in text
    for read in (qiskit_reads, cirq_reads, pytket_reads):
        assert equal_up_to_phase(read(text, 2), circuit.unitary()), read.__name__
    assert equal_up_to_phase(qiskit3_reads(circuit.to_qasm(3), 2), circuit.unitary())
    for version in (2, 3):
        assert Circuit.from_qasm(circuit.to_qasm(version), gs) == circuit
    cq = circuit.to_cirq()
    np.testing.assert_allclose(cq.unitary(qubit_order=cirq.LineQubit.range(2)[::-1]), circuit.unitary(), atol=1e-12)
    assert Circuit.from_cirq(cq, gs) == circuit


# -- as_unitary: anything that names a unitary -> (d, d) in unitarium's order ----------------------------------------


def test_as_unitary_accepts_every_form(tmp_path: Path) -> None:
    circuit = random_circuit(7, length=20)
    u = circuit.unitary()
    qc = circuit.to_qiskit()
    np.testing.assert_array_equal(as_unitary(circuit, GS3), u)
    np.testing.assert_allclose(as_unitary(qc, GS3), Operator(qc).data, rtol=0, atol=1e-12)
    np.testing.assert_allclose(as_unitary(circuit.to_cirq(), GS3), u, rtol=0, atol=1e-10)
    assert as_unitary(u.tolist(), GS3).dtype == np.complex128
    np.testing.assert_allclose(as_unitary(u.astype(np.complex64), GS3), u, atol=1e-6)  # stored data passes the check
    for version in (2, 3):
        assert equal_up_to_phase(as_unitary(circuit.to_qasm(version), GS3), u)
    path = tmp_path / "c.qasm"
    path.write_text(circuit.to_qasm())
    assert equal_up_to_phase(unitary_from_qasm_file(path, GS3), u)
    # gates outside the gate set are fine here: only the register size counts
    assert equal_up_to_phase(as_unitary(circuit.to_qasm(), N), u)
    idle = cirq.Circuit([cirq.H(cirq.LineQubit(2))])  # qubits 0 and 1 idle
    np.testing.assert_allclose(as_unitary(idle, 3), Circuit.from_text("h 2", GS3).unitary(), atol=1e-12)


def test_as_unitary_feeds_lookup(tmp_path: Path) -> None:
    path = tmp_path / "cliff.db"
    unitarium.generate(path, unitarium.make_spec(gates="h,s,cx", qubits=2, max_length=4, unique=True), workers=1)
    ds = unitarium.open(path)
    qc = QuantumCircuit(2)
    qc.cz(0, 1)  # not a gate of the set, but h 1; cx 0 1; h 1 is
    found = ds.lookup(as_unitary(qc, ds.gateset))
    assert len(found) == 1 and Operator(found[0].circuit.to_qiskit()).equiv(Operator(qc))
    text = qiskit.qasm2.dumps(qc)
    assert [r.id for r in ds.lookup(as_unitary(text, ds.gateset))] == [found[0].id]


# -- bad input: one clear line ---------------------------------------------------------------------------------------

QASM2 = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\n'
QASM3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\n'
LINEAR3 = unitarium.make_spec(gates="h,cx", qubits=3, coupling="linear", count=1, length=1).gateset


def _unbound() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.rz(Parameter("theta"), 0)
    return qc


def _measured() -> QuantumCircuit:
    qc = QuantumCircuit(2, 1)
    qc.h(0)
    qc.measure(0, 0)
    return qc


BAD: list[tuple[str, Callable[[], Any], str]] = [
    ("malformed QASM 2", lambda: Circuit.from_qasm(QASM2 + "h q[0]\ncx q[0],q[1];", CLIFFORD2), "malformed OpenQASM 2"),
    (
        "malformed QASM 3",
        lambda: Circuit.from_qasm(QASM3 + "h q[0] q[1];", CLIFFORD2),
        "malformed OpenQASM 3: 4,7: syntax error at 'q'",
    ),
    ("unknown gate", lambda: Circuit.from_qasm(QASM2 + "foo q[0];", CLIFFORD2), "'foo'"),
    ("no header", lambda: Circuit.from_qasm("h q[0];", CLIFFORD2), "not OpenQASM"),
    ("version 4", lambda: Circuit.from_qasm("OPENQASM 4.0;\nqubit q;", CLIFFORD2), "OpenQASM 4 is not supported"),
    ("not text", lambda: Circuit.from_qasm(b"OPENQASM 2.0;", CLIFFORD2), "must be text"),  # type: ignore[arg-type]
    ("gate not in set", lambda: Circuit.from_qasm(QASM2 + "t q[1];", CLIFFORD2), "is not a move of the gate set"),
    ("gate not in set, QASM 3", lambda: Circuit.from_qasm(QASM3 + "t q[1];", CLIFFORD2), "is not a move"),
    ("coupling forbids", lambda: Circuit.from_qasm(QASM2.replace("[2]", "[3]") + "cx q[0],q[2];", LINEAR3), "coupling"),
    ("wrong qubit count", lambda: Circuit.from_qasm(QASM2.replace("[2]", "[3]"), CLIFFORD2), "has 3 qubit(s) but"),
    ("measurement", lambda: Circuit.from_qasm(QASM2 + "creg c[1];\nmeasure q[0] -> c[0];", CLIFFORD2), "not a unitary"),
    (
        "opaque gate",
        lambda: Circuit.from_qasm(QASM2.replace("qreg", "opaque g a;\nqreg") + "g q[0];", CLIFFORD2),
        "has no matrix",
    ),
    ("qiskit: unbound parameter", lambda: Circuit.from_qiskit(_unbound(), CLIFFORD2), "unbound parameters (theta)"),
    ("qiskit: measurement", lambda: Circuit.from_qiskit(_measured(), CLIFFORD2), "'measure' on qubits [0] is not"),
    ("qiskit: not a circuit", lambda: Circuit.from_qiskit("h 0", CLIFFORD2), "needs a qiskit.QuantumCircuit"),
    ("qiskit: gate not in set", lambda: Circuit.from_qiskit(QuantumCircuit(2).compose(_t()), CLIFFORD2), "'t' on"),
    (
        "cirq: measurement",
        lambda: Circuit.from_cirq(cirq.Circuit(cirq.measure(cirq.LineQubit(0))), CLIFFORD2),
        "is not a unitary gate",
    ),
    (
        "cirq: qubit outside",
        lambda: Circuit.from_cirq(cirq.Circuit(cirq.H(cirq.LineQubit(5))), CLIFFORD2),
        "do not fit the gate set's register of 2",
    ),
    (
        "cirq: gate not in set",
        lambda: Circuit.from_cirq(cirq.Circuit(cirq.T(cirq.LineQubit(0))), CLIFFORD2),
        "is not a move",
    ),
    ("cirq: not a circuit", lambda: Circuit.from_cirq([cirq.H(cirq.LineQubit(0))], CLIFFORD2), "needs a cirq.Circuit"),
    ("to_qasm version", lambda: Circuit.from_text("h 0", CLIFFORD2).to_qasm(version=4), "use 2 or 3"),
    ("matrix shape", lambda: as_unitary(np.eye(2), CLIFFORD2), "2 qubit(s) need a 4x4 matrix, got shape (2, 2)"),
    ("matrix not unitary", lambda: as_unitary(np.ones((4, 4)), CLIFFORD2), "is not unitary"),
    ("matrix NaN", lambda: as_unitary(np.full((4, 4), np.nan), CLIFFORD2), "NaN"),
    ("not a unitary at all", lambda: as_unitary({"h": 0}, CLIFFORD2), "cannot use a dict as a unitary"),
    ("QASM text, wrong size", lambda: as_unitary(QASM2.replace("[2]", "[3]"), CLIFFORD2), "has 3 qubit(s)"),
    (
        "circuit, wrong size",
        lambda: as_unitary(Circuit.from_text("h 0", GS3), CLIFFORD2),
        "on 3 qubit(s) but the gate set has 2",
    ),
    ("hostile custom gate name", lambda: _hostile_name(), "is not an identifier: it cannot be written as OpenQASM"),
    ("qasm file missing", lambda: unitary_from_qasm_file("/nonexistent/c.qasm", CLIFFORD2), "cannot read OpenQASM"),
]


def _hostile_name() -> str:
    """A stored custom gate name that would write its own OpenQASM line (gate files refuse it; a tampered file)."""
    gate = Gate("v q[0];\nmeasure q[0] -> c[0];\nv", 1, np.eye(2, dtype=complex), custom=True)
    return Circuit(np.array([0]), unitarium.GateSet((gate,), 1)).to_qasm()


def _t() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.t(1)
    return qc


@pytest.mark.parametrize("make", [b[1] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_clear_line(make: Callable[[], Any]) -> None:
    expected = dict((id(b[1]), b[2]) for b in BAD)[id(make)]
    with pytest.raises(SpecError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message and expected in message, message


def test_bad_qasm_files_name_the_file(tmp_path: Path) -> None:
    binary = tmp_path / "b.qasm"
    binary.write_bytes(b"\xff\xfe\x00OPENQASM")
    with pytest.raises(SpecError, match=r"b\.qasm' is not UTF-8 text"):
        unitary_from_qasm_file(binary, CLIFFORD2)
    broken = tmp_path / "broken.qasm"
    broken.write_text(QASM2 + "cx q[0];\n")
    with pytest.raises(SpecError, match=r"broken\.qasm': malformed OpenQASM 2") as info:
        unitary_from_qasm_file(broken, CLIFFORD2)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("module", "call", "extra"),
    [
        ("cirq", lambda: Circuit.from_text("h 0", CLIFFORD2).to_cirq(), "cirq"),
        ("cirq", lambda: Circuit.from_cirq(None, CLIFFORD2), "cirq"),
        ("qiskit", lambda: Circuit.from_text("h 0", CLIFFORD2).to_qiskit(), "qiskit"),
        ("qiskit", lambda: Circuit.from_qasm(QASM2, CLIFFORD2), "qiskit"),
        ("qiskit_qasm3_import", lambda: Circuit.from_qasm(QASM3, CLIFFORD2), "qasm3"),
    ],
)
def test_a_missing_library_names_the_extra(
    module: str, call: Callable[[], Any], extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # what `import module` sees when it is not installed
    with pytest.raises(MissingOptionalLibraryError, match=rf"pip install 'unitarium\[{extra}\]'"):
        call()


def test_to_qasm_needs_no_qiskit_but_for_custom_multi_qubit_definitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate_file = tmp_path / "g.json"
    gate_file.write_text(
        '{"gates": {"sw": {"matrix": [[1,0,0,0],[0,0,1,0],[0,1,0,0],[0,0,0,1]]}, "xx": {"matrix": [[0,1],[1,0]]}}}'
    )
    gs = unitarium.make_spec(gates="sw,xx,h", gate_file=gate_file, qubits=2, count=1, length=1).gateset
    circuit = Circuit.from_text("sw 0 1; xx 1; h 0", gs)
    standard = random_circuit(3)
    for name in [m for m in sys.modules if m == "qiskit" or m.startswith("qiskit.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "qiskit", None)
    assert standard.to_qasm() and standard.to_qasm(3)  # `unitarium show` works without qiskit
    text = circuit.to_qasm()
    assert "opaque sw q0,q1;" in text and "pip install 'unitarium[qiskit]' to define it" in text
    assert "gate xx q0 { u3(" in text  # one-qubit gates are defined with numpy alone
    with pytest.raises(MissingOptionalLibraryError, match="custom gate 'sw'"):
        circuit.to_qasm(3)  # OpenQASM 3 has no opaque
    monkeypatch.undo()
    assert [i.operation.name for i in qiskit.qasm2.loads(text).data] == ["sw", "xx", "h"]
    assert "opaque" not in circuit.to_qasm()  # with qiskit: defined (the fallback is not cached)
