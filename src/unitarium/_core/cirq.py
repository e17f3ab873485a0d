"""Cirq: ``cirq.Circuit`` to and from :class:`~unitarium.Circuit` (``pip install 'unitarium[cirq]'``).

Qubits: unitarium's qubit ``j`` is ``cirq.LineQubit(j)``. Gates keep their meaning
(``cx 0 1`` is ``cirq.CNOT(q0, q1)``: control 0, target 1). Matrices do not look the same:
Cirq orders the basis big-endian (the first qubit of ``qubit_order`` is the most
significant bit), unitarium little-endian, so for an n-qubit circuit

    ``cirq.unitary(c)`` with ``qubit_order=LineQubit.range(n)`` = ``P @ circuit.unitary() @ P``

where ``P`` reverses the bits of the basis index; with ``qubit_order`` reversed
(``LineQubit.range(n)[::-1]``) Cirq gives unitarium's matrix itself (:func:`cirq_unitary`).
Cirq is imported only inside these functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .._errors import MissingOptionalLibraryError, SpecError
from ._match import MoveMatcher
from .gates import Gate
from .gateset import GateSet

__all__ = ["cirq_unitary", "is_cirq_circuit", "moves_from_cirq", "to_cirq"]


def _import(feature: str) -> Any:
    try:
        import cirq
    except ImportError as exc:
        raise MissingOptionalLibraryError("cirq-core", feature, "cirq") from exc
    return cirq


def is_cirq_circuit(x: object) -> bool:
    """Whether ``x`` is a ``cirq.AbstractCircuit`` (``Circuit``, ``FrozenCircuit``), without importing Cirq."""
    return any(c.__module__.startswith("cirq") and c.__name__ == "AbstractCircuit" for c in type(x).__mro__)


def _cirq_gate(cirq: Any, gate: Gate) -> Any:
    """The Cirq gate with exactly ``gate``'s matrix (semantics: first argument = first qubit)."""
    fixed = {
        "i": cirq.I,
        "x": cirq.X,
        "y": cirq.Y,
        "z": cirq.Z,
        "h": cirq.H,
        "s": cirq.S,
        "sdg": cirq.S**-1,
        "t": cirq.T,
        "tdg": cirq.T**-1,
        "sx": cirq.XPowGate(exponent=0.5),
        "sxdg": cirq.XPowGate(exponent=-0.5),
        "cx": cirq.CNOT,
        "cy": cirq.ControlledGate(cirq.Y),
        "cz": cirq.CZ,
        "ch": cirq.ControlledGate(cirq.H),
        "swap": cirq.SWAP,
        "iswap": cirq.ISWAP,
        "ccx": cirq.CCX,
        "cswap": cirq.CSWAP,
    }
    if not gate.custom and gate.base in fixed:
        return fixed[gate.base]
    if not gate.custom and gate.base in ("rx", "ry", "rz"):
        return getattr(cirq, gate.base)(gate.params[0])
    if not gate.custom and gate.base == "p":
        return cirq.ZPowGate(exponent=gate.params[0] / math.pi)
    # u, ecr, custom gates: the matrix itself, on the qubits in big-endian order (reversed)
    return cirq.MatrixGate(gate.matrix, name=gate.name)


def to_cirq(codes: np.ndarray, gateset: GateSet) -> Any:
    """A ``cirq.Circuit`` on ``LineQubit(0..n-1)`` of the moves ``codes`` of ``gateset``
    (:meth:`Circuit.to_cirq`), one operation per move, in order. Its unitary with
    ``qubit_order=LineQubit.range(n)[::-1]`` equals the circuit's unitary exactly."""
    cirq = _import("Circuit.to_cirq")
    qubits = cirq.LineQubit.range(gateset.num_qubits)
    gates = [_cirq_gate(cirq, g) for g in gateset.gates]
    ops = []
    for c in codes:
        move = gateset.moves[int(c)]
        targets = [qubits[q] for q in move.qubits]
        if isinstance(gates[move.gate], cirq.MatrixGate):
            targets.reverse()
        ops.append(gates[move.gate].on(*targets))
    return cirq.Circuit(ops)


def _qubit_index(cirq: Any, circuit: Any, qubits: Sequence[Any] | None, num_qubits: int) -> dict[Any, int]:
    """Cirq qubit -> unitarium qubit: ``qubits[j]`` is ``j`` if given; else ``LineQubit(j)``
    is ``j`` when every qubit is a ``LineQubit``; else the sorted order (Cirq's default)."""
    used = sorted(circuit.all_qubits())
    if qubits is not None:
        index = {q: j for j, q in enumerate(qubits)}
        if len(index) != len(qubits):
            raise SpecError("qubits lists a Cirq qubit twice: give each unitarium qubit its own")
        missing = [str(q) for q in used if q not in index]
        if missing:
            raise SpecError(f"the circuit acts on qubits {missing} that are not in qubits: list every qubit it uses")
    elif all(isinstance(q, cirq.LineQubit) for q in used):
        index = {q: q.x for q in used}
    else:
        index = {q: j for j, q in enumerate(used)}
    outside = sorted(str(q) for q, j in index.items() if not 0 <= j < num_qubits)
    if outside or (qubits is not None and len(qubits) != num_qubits):
        raise SpecError(
            f"the circuit's qubits do not fit the gate set's register of {num_qubits} qubit(s)"
            + (f" ({', '.join(outside)} fall outside)" if outside else f" ({len(qubits or ())} listed)")
            + ": use LineQubit(0) to LineQubit(n-1), or pass qubits="
        )
    return index


def _gates(cirq: Any, circuit: Any, index: dict[Any, int]) -> Iterator[tuple[str, np.ndarray, tuple[int, ...]]]:
    """``(name, little-endian local matrix, qubits)`` of each operation, in moment order."""
    for op in circuit.all_operations():
        if not op.qubits:  # a global phase
            continue
        if not cirq.has_unitary(op):
            raise SpecError(f"operation {str(op)!r} is not a unitary gate: remove measurements, resets and noise")
        # Cirq's matrix is big-endian over op.qubits: little-endian over the reversed tuple
        yield (
            str(op.gate or op),
            np.asarray(cirq.unitary(op), dtype=np.complex128),
            tuple(index[q] for q in op.qubits[::-1]),
        )


def moves_from_cirq(circuit: Any, gateset: GateSet, *, qubits: Sequence[Any] | None = None) -> np.ndarray:
    """The move codes (int64) of ``gateset`` that a Cirq circuit is (:meth:`Circuit.from_cirq`
    wraps them; matched by matrix, see
    :mod:`unitarium._core._match`); its unitary equals Cirq's up to global phase and the
    qubit order above. ``qubits``: the Cirq qubit of each unitarium qubit (default: see
    :func:`_qubit_index`). Raises :class:`SpecError` for a gate not in the set, a
    measurement, or qubits outside the register."""
    cirq = _import("Circuit.from_cirq")
    if not is_cirq_circuit(circuit):
        raise SpecError(f"Circuit.from_cirq needs a cirq.Circuit, got {type(circuit).__name__}")
    index = _qubit_index(cirq, circuit, qubits, gateset.num_qubits)
    matcher = MoveMatcher(gateset)
    codes = [matcher.find(m, q, name) for name, m, q in _gates(cirq, circuit, index)]
    return np.array(codes, dtype=np.int64)


def cirq_unitary(circuit: Any, num_qubits: int, *, qubits: Sequence[Any] | None = None) -> np.ndarray:
    """The ``(d, d)`` complex128 unitary of a Cirq circuit (any gates) in unitarium's
    little-endian order, qubits mapped as in :func:`moves_from_cirq`."""
    cirq = _import("unitary of a Cirq circuit")
    if not is_cirq_circuit(circuit):
        raise SpecError(f"needs a cirq.Circuit, got {type(circuit).__name__}")
    index = _qubit_index(cirq, circuit, qubits, num_qubits)
    for op in circuit.all_operations():
        if op.qubits and not cirq.has_unitary(op):
            raise SpecError(f"operation {str(op)!r} is not a unitary gate: remove measurements, resets and noise")
    by_index = {j: q for q, j in index.items()}
    order = [by_index.get(j, cirq.NamedQubit(f"_unitarium_idle_{j}")) for j in reversed(range(num_qubits))]
    return np.asarray(circuit.unitary(qubit_order=order), dtype=np.complex128)
