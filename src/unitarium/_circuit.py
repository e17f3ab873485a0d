"""Circuits: a sequence of moves of a gate set, with text, OpenQASM 2 and Qiskit forms.

Stored circuits are arrays of move codes (indices into ``GateSet.moves``). The text
form is ``"h 0; cx 0 1; t 1"``: gates separated by ``;``, each a gate name followed by
its qubits (first qubit = the gate's least significant, as in Qiskit).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import MissingOptionalLibraryError, SpecError
from ._gateset import GateSet
from ._kernels import embed

__all__ = ["Circuit", "Record"]

# Gates OpenQASM 2's qelib1.inc lacks, defined the way Qiskit's exporter defines them.
_QASM_DEFS = {
    "iswap": "gate iswap q0,q1 { s q0; s q1; h q0; cx q0,q1; cx q1,q0; h q1; }",
    "ecr": (
        "gate rzx(param0) q0,q1 { h q1; cx q0,q1; rz(param0) q1; cx q0,q1; h q1; }\n"
        "gate ecr q0,q1 { rzx(pi/4) q0,q1; x q0; rzx(-pi/4) q0,q1; }"
    ),
}
_QASM_NAMES = {"i": "id", "p": "u1", "u": "u3"}
_QISKIT_NAMES = {"i": "id"}


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

    def to_qasm(self) -> str:
        """OpenQASM 2.0 text; custom gates appear as ``opaque`` declarations."""
        gates = self.gateset.gates
        used = sorted({self.gateset.moves[int(c)].gate for c in self.codes})
        header = ["OPENQASM 2.0;", 'include "qelib1.inc";']
        for g in used:
            gate = gates[g]
            if gate.base in _QASM_DEFS:
                header.append(_QASM_DEFS[gate.base])
            elif gate.custom:
                header.append(f"opaque {gate.name} {','.join(f'q{j}' for j in range(gate.num_qubits))};")
        lines = [*header, f"qreg q[{self.gateset.num_qubits}];"]
        for c in self.codes:
            move = self.gateset.moves[int(c)]
            gate = gates[move.gate]
            name = _QASM_NAMES.get(gate.base, gate.base) + gate.name[len(gate.base) :]
            lines.append(f"{name} {','.join(f'q[{q}]' for q in move.qubits)};")
        return "\n".join(lines) + "\n"

    def to_qiskit(self) -> Any:
        """A ``qiskit.QuantumCircuit``; ``Operator`` of it equals :meth:`unitary`."""
        try:
            from qiskit import QuantumCircuit
        except ImportError as exc:
            raise MissingOptionalLibraryError("qiskit", "Circuit.to_qiskit", "qiskit") from exc
        qc = QuantumCircuit(self.gateset.num_qubits)
        for c in self.codes:
            move = self.gateset.moves[int(c)]
            gate = self.gateset.gates[move.gate]
            if gate.custom:
                qc.unitary(gate.matrix, list(move.qubits), label=gate.name)
            else:
                getattr(qc, _QISKIT_NAMES.get(gate.base, gate.base))(*gate.params, *move.qubits)
        return qc


def _find_move(item: str, gateset: GateSet) -> int:
    from ._gates import parse_gate

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
    """One stored record: its ``id``, its ``circuit`` and its ``unitary`` ``(d, d)``."""

    id: int
    circuit: Circuit
    unitary: np.ndarray

    def __repr__(self) -> str:
        return (
            f"Record(id={self.id}, circuit={str(self.circuit)!r}, unitary=<{self.unitary.shape} {self.unitary.dtype}>)"
        )
