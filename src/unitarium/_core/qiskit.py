"""Qiskit: ``QuantumCircuit`` to and from :class:`~unitarium.Circuit` (``pip install 'unitarium[qiskit]'``).

Qiskit's qubit order is unitarium's: qubit 0 is the least significant bit, and a gate's
first qubit argument its least significant qubit, so ``Operator(circuit.to_qiskit())``
equals ``circuit.unitary()`` exactly, and a Qiskit circuit's qubit ``j`` is unitarium's
qubit ``j``. Qiskit is imported only inside these functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .._errors import MissingOptionalLibraryError, SpecError
from ._match import MoveMatcher, apply_gate
from .gateset import GateSet

__all__ = ["is_qiskit_circuit", "moves_from_qiskit", "qiskit_unitary", "to_qiskit"]

_QISKIT_NAMES = {"i": "id"}
_NO_OPS = frozenset({"barrier", "delay"})  # no effect on the unitary (Operator skips them too)


def _import(feature: str) -> Any:
    try:
        import qiskit
        from qiskit.quantum_info import Operator  # noqa: F401  (loads the submodule)
    except ImportError as exc:
        raise MissingOptionalLibraryError("qiskit", feature, "qiskit") from exc
    return qiskit


def is_qiskit_circuit(x: object) -> bool:
    """Whether ``x`` is a ``qiskit.QuantumCircuit`` (without importing Qiskit)."""
    return any(c.__module__.startswith("qiskit") and c.__name__ == "QuantumCircuit" for c in type(x).__mro__)


def to_qiskit(codes: np.ndarray, gateset: GateSet) -> Any:
    """A ``qiskit.QuantumCircuit`` on ``num_qubits`` qubits of the moves ``codes`` of ``gateset``
    (:meth:`Circuit.to_qiskit`); ``Operator`` of it equals the circuit's unitary exactly (custom
    gates become ``UnitaryGate`` with their name as label)."""
    qiskit = _import("Circuit.to_qiskit")
    qc = qiskit.QuantumCircuit(gateset.num_qubits)
    for c in codes:
        move = gateset.moves[int(c)]
        gate = gateset.gates[move.gate]
        if gate.custom:
            qc.unitary(gate.matrix, list(move.qubits), label=gate.name)
        else:
            getattr(qc, _QISKIT_NAMES.get(gate.base, gate.base))(*gate.params, *move.qubits)
    return qc


def gates_of(qc: Any, num_qubits: int) -> Iterator[tuple[str, np.ndarray, tuple[int, ...]]]:
    """``(name, local matrix, qubit indices)`` of each gate of ``qc``, in order; barriers and
    delays skipped. Raises :class:`SpecError` on a register of another size, measurements,
    resets, classical control, opaque gates and unbound parameters."""
    from qiskit.quantum_info import Operator

    if qc.num_qubits != num_qubits:
        raise SpecError(
            f"the circuit has {qc.num_qubits} qubit(s) but the gate set has {num_qubits}: "
            "use a circuit on exactly the gate set's register"
        )
    if qc.parameters:
        names = ", ".join(sorted(str(p) for p in qc.parameters))
        raise SpecError(f"the circuit has unbound parameters ({names}): bind them with assign_parameters first")
    for instruction in qc.data:
        op = instruction.operation
        if op.name in _NO_OPS:
            continue
        qubits = tuple(qc.find_bit(q).index for q in instruction.qubits)
        if instruction.clbits or not _is_gate(op):
            raise SpecError(
                f"instruction {op.name!r} on qubits {list(qubits)} is not a unitary gate: "
                "remove measurements, resets and classical control"
            )
        try:
            matrix = Operator(op).data
        except Exception as exc:  # QiskitError, TypeError...: Qiskit has no matrix for it
            raise SpecError(f"gate {op.name!r} has no matrix (an opaque gate?): {_one_line(exc)}") from exc
        yield op.name, np.asarray(matrix, dtype=np.complex128), qubits


def _is_gate(op: Any) -> bool:
    from qiskit.circuit import Gate

    return isinstance(op, Gate)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def moves_from_qiskit(qc: Any, gateset: GateSet) -> np.ndarray:
    """The move codes (int64) of ``gateset`` that ``qc`` is, gate by gate (matched by matrix;
    see :mod:`unitarium._core._match`): :meth:`Circuit.from_qiskit` wraps them. Their unitary
    equals ``Operator(qc)`` up to global phase. Raises :class:`SpecError` for a gate not in the
    gate set or a non-unitary instruction."""
    _import("Circuit.from_qiskit")
    if not is_qiskit_circuit(qc):
        raise SpecError(f"Circuit.from_qiskit needs a qiskit.QuantumCircuit, got {type(qc).__name__}")
    matcher = MoveMatcher(gateset)
    codes = [matcher.find(matrix, qubits, name) for name, matrix, qubits in gates_of(qc, gateset.num_qubits)]
    return np.array(codes, dtype=np.int64)


def qiskit_unitary(qc: Any, num_qubits: int) -> np.ndarray:
    """The ``(d, d)`` complex128 unitary of ``qc`` (any gates, not only a gate set's), after
    the checks of :func:`gates_of`; equals ``Operator(qc).data``, global phase included."""
    _import("unitary of a Qiskit circuit")
    u = np.eye(1 << num_qubits, dtype=np.complex128)
    for _, matrix, qubits in gates_of(qc, num_qubits):
        u = apply_gate(u, matrix, qubits, num_qubits)
    return u * np.exp(1j * float(qc.global_phase))
