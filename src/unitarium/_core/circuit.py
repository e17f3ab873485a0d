"""Circuits: a sequence of moves of a gate set, with text, OpenQASM 2/3, Qiskit and Cirq forms.

Stored circuits are arrays of move codes (indices into ``GateSet.moves``). The text
form is ``"h 0; cx 0 1; t 1"``: gates separated by ``;``, each a gate name followed by
its qubits (first qubit = the gate's least significant, as in Qiskit). The conversions
to and from other libraries live in :mod:`unitarium.interop` (imported lazily).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import SpecError
from .gateset import GateSet
from .kernels import embed

__all__ = ["Circuit", "Record"]


@dataclass(frozen=True, eq=False)
class Circuit:
    """A circuit over a gate set: ``codes`` is a 1-D integer array of move indices,
    applied in order (``codes[0]`` first)."""

    codes: np.ndarray
    gateset: GateSet

    def __len__(self) -> int:
        return len(self.codes)

    def __iter__(self) -> Iterator[str]:
        moves = self.gateset.moves
        return (moves[int(c)].text for c in self.codes)

    def __str__(self) -> str:
        return "; ".join(self)

    def __repr__(self) -> str:
        return f"Circuit({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Circuit):
            return NotImplemented
        return str(self) == str(other) and self.gateset.num_qubits == other.gateset.num_qubits

    def __hash__(self) -> int:
        return hash((str(self), self.gateset.num_qubits))

    @classmethod
    def from_text(cls, text: str, gateset: GateSet) -> Circuit:
        """Parse ``"h 0; cx 0 1"`` into moves of ``gateset``. A move equal to a listed one
        (``cz 1 0`` for ``cz 0 1``) maps to it. Raises :class:`SpecError` otherwise."""
        index = gateset.move_index()
        codes = []
        for item in (t.strip() for t in text.replace("\n", ";").split(";")):
            if item:
                codes.append(index[item] if item in index else _find_move(item, gateset))
        return cls(np.array(codes, dtype=np.int64), gateset)

    def unitary(self) -> np.ndarray:
        """The ``(d, d)`` complex128 unitary, computed gate by gate (a reference, not fast)."""
        u = np.eye(self.gateset.dim, dtype=np.complex128)
        for c in self.codes:
            u = self.gateset.move_matrices[int(c)] @ u
        return u

    def to_qasm(self, version: int = 2) -> str:
        """OpenQASM ``version`` (2 or 3) text that Qiskit's, Cirq's and pytket's readers parse
        with their default settings: gates outside the standard include file, custom gates
        too, are defined in the file (up to global phase). See :mod:`unitarium._core.qasm`."""
        from .qasm import to_qasm

        return to_qasm(self.codes, self.gateset, version=version)

    @classmethod
    def from_qasm(cls, text: str, gateset: GateSet) -> Circuit:
        """Parse OpenQASM 2 or 3 into moves of ``gateset``, each gate matched by matrix (exact,
        else up to global phase). Raises :class:`SpecError` on malformed text or a gate not in the set."""
        from .qasm import moves_from_qasm

        return cls(moves_from_qasm(text, gateset), gateset)

    def to_qiskit(self) -> Any:
        """A ``qiskit.QuantumCircuit``; ``Operator`` of it equals :meth:`unitary` exactly."""
        from .qiskit import to_qiskit

        return to_qiskit(self.codes, self.gateset)

    @classmethod
    def from_qiskit(cls, qc: Any, gateset: GateSet) -> Circuit:
        """The moves of ``gateset`` that a ``qiskit.QuantumCircuit`` on ``gateset.num_qubits``
        qubits is (matched by matrix). Raises :class:`SpecError` for a gate not in the set."""
        from .qiskit import moves_from_qiskit

        return cls(moves_from_qiskit(qc, gateset), gateset)

    def to_cirq(self) -> Any:
        """A ``cirq.Circuit`` on ``LineQubit(0..n-1)`` (qubit ``j`` is ``LineQubit(j)``; Cirq's
        matrices are big-endian: see :mod:`unitarium._core.cirq`)."""
        from .cirq import to_cirq

        return to_cirq(self.codes, self.gateset)

    @classmethod
    def from_cirq(cls, circuit: Any, gateset: GateSet, *, qubits: Sequence[Any] | None = None) -> Circuit:
        """The moves of ``gateset`` that a ``cirq.Circuit`` is (matched by matrix); ``qubits``
        lists the Cirq qubit of each unitarium qubit (default: ``LineQubit(j)`` is ``j``)."""
        from .cirq import moves_from_cirq

        return cls(moves_from_cirq(circuit, gateset, qubits=qubits), gateset)


def _find_move(item: str, gateset: GateSet) -> int:
    from .gates import parse_gate

    name, *qubit_text = item.split()
    custom = {g.name: g for g in gateset.gates if g.custom}
    gate = parse_gate(name, custom)
    try:
        qubits = tuple(int(q) for q in qubit_text)
    except ValueError:
        raise SpecError(f"bad gate {item!r}: qubits must be whole numbers") from None
    n = gateset.num_qubits
    if len(qubits) != gate.num_qubits or len(set(qubits)) != len(qubits) or not all(0 <= q < n for q in qubits):
        raise SpecError(f"bad gate {item!r}: {gate.name} needs {gate.num_qubits} distinct qubits below {n}")
    full = embed(gate.matrix, qubits, n)
    for i, other in enumerate(gateset.move_matrices):
        if np.allclose(full, other, atol=1e-12):
            return i
    raise SpecError(f"move {item!r} is not in this dataset's gate set (or not allowed by its coupling)")


@dataclass(frozen=True, eq=False)
class Record:
    """One stored record: its ``id``, its ``circuit`` and its ``unitary`` ``(d, d)``; :attr:`cost`
    is computed from the circuit under its dataset's cost model (``cost_model``, None: every gate 1).
    :attr:`label`: the record's least cost under a labelling table (``unitarium label``; negative
    ``-(R + 1)``: beyond the table's reach ``R``), None when the dataset carries no labels."""

    id: int
    circuit: Circuit
    unitary: np.ndarray
    cost_model: dict[str, int] | None = field(default=None, repr=False)
    label: int | None = None

    @property
    def cost(self) -> int:
        """The circuit's cost: the sum of its gates' weights (its length under the default model)."""
        from .cost import circuit_cost

        return circuit_cost(self.circuit, self.cost_model)

    def __repr__(self) -> str:
        return (
            f"Record(id={self.id}, circuit={str(self.circuit)!r}, unitary=<{self.unitary.shape} {self.unitary.dtype}>"
            + ("" if self.label is None else f", label={self.label}")
            + ")"
        )
