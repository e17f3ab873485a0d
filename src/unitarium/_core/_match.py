"""Matching gates of other libraries to the moves of a gate set, by matrix.

Every importer (Qiskit, Cirq, OpenQASM) reduces a foreign gate to its local matrix in
unitarium's convention (little-endian over the gate's qubit tuple: the first qubit is the
least significant bit) and asks :class:`MoveMatcher` for the move it is. Names do not
matter: ``u3(pi/2,0,pi) q[0]`` is the move ``h 0`` of a gate set with ``h``, and
``cz 1 0`` is the listed ``cz 0 1``. A move whose matrix is exactly equal wins; otherwise
a move equal up to global phase is taken (OpenQASM 2 and Cirq's importer do not keep the
global phase of the gates they define), so the imported circuit's unitary equals the
foreign one up to global phase.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._errors import SpecError
from .gates import unitarity_error
from .gateset import GateSet

__all__ = ["MoveMatcher", "apply_gate", "check_unitary", "reorder"]

_ATOL = 1e-9


def reorder(matrix: np.ndarray, src: Sequence[int], dst: Sequence[int]) -> np.ndarray:
    """The ``(2**k, 2**k)`` matrix of a gate given on qubits ``src`` (little-endian), written
    for the same qubits listed in the order ``dst`` (a permutation of ``src``)."""
    k = len(src)
    if list(src) == list(dst):
        return matrix
    where = {q: j for j, q in enumerate(src)}
    # axis a of the (2,)*k row tensor holds the bit of position k-1-a (big-endian axes)
    rows = [k - 1 - where[dst[k - 1 - a]] for a in range(k)]
    tensor = matrix.reshape((2,) * (2 * k)).transpose([*rows, *(k + r for r in rows)])
    return tensor.reshape(1 << k, 1 << k)


def apply_gate(u: np.ndarray, matrix: np.ndarray, qubits: Sequence[int], num_qubits: int) -> np.ndarray:
    """``G @ u`` for a ``(d, d)`` ``u`` on ``num_qubits`` qubits and a k-qubit gate ``matrix``
    (little-endian over ``qubits``), without building the ``(d, d)`` matrix of the gate."""
    k, d = len(qubits), 1 << num_qubits
    axes = [num_qubits - 1 - q for q in reversed(qubits)]  # row-tensor axes of the gate's qubits, big-endian
    gate = matrix.reshape((2,) * (2 * k))
    out = np.tensordot(gate, u.reshape((2,) * num_qubits + (d,)), axes=(list(range(k, 2 * k)), axes))
    return np.moveaxis(out, list(range(k)), axes).reshape(d, d)


def check_unitary(matrix: np.ndarray, what: str, *, atol: float) -> None:
    """Raise :class:`SpecError` unless ``matrix`` is finite and unitary within ``atol``."""
    if not np.all(np.isfinite(matrix)):
        raise SpecError(f"{what} has NaN or infinite entries")
    error = unitarity_error(matrix)
    if not error <= atol:  # NaN (an overflow) is never <= anything
        raise SpecError(f"{what} is not unitary (max |U^dag U - I| = {error:.3g} > atol {atol:g})")


class MoveMatcher:
    """Finds the move of ``gateset`` that a gate (local matrix + qubits) is."""

    def __init__(self, gateset: GateSet) -> None:
        self.gateset = gateset
        grouped: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
        for code, move in enumerate(gateset.moves):
            ordered = tuple(sorted(move.qubits))  # every matrix of one qubit set in the same (sorted) order
            matrix = reorder(gateset.gates[move.gate].matrix, move.qubits, ordered)
            grouped.setdefault(ordered, []).append((code, matrix))
        self._by_qubits = {
            q: (np.array([c for c, _ in items]), np.stack([m for _, m in items])) for q, items in grouped.items()
        }
        self._seen: dict[tuple[tuple[int, ...], bytes], int] = {}

    def check_qubits(self, qubits: Sequence[int], label: str) -> None:
        """Raise :class:`SpecError` unless ``qubits`` are distinct and inside the register."""
        n = self.gateset.num_qubits
        if len(set(qubits)) != len(qubits) or not all(0 <= q < n for q in qubits):
            raise SpecError(
                f"gate {label!r} on qubits {list(qubits)} does not fit the gate set's register of {n} qubit(s)"
            )

    def find(self, matrix: np.ndarray, qubits: Sequence[int], label: str) -> int:
        """The code of the move equal to ``matrix`` (``(2**k, 2**k)``, little-endian over
        ``qubits``): exactly equal if one is (within 1e-9), else equal up to global phase (the
        first in move order). Raises :class:`SpecError` naming the gate when no move is."""
        self.check_qubits(qubits, label)
        qubits = tuple(qubits)
        seen = self._seen.get((qubits, matrix.tobytes()))
        if seen is not None:
            return seen
        code = self._match(reorder(matrix, qubits, tuple(sorted(qubits))), tuple(sorted(qubits)))
        if code < 0:
            names = ", ".join(g.name for g in self.gateset.gates)
            raise SpecError(
                f"gate {label!r} on qubits {list(qubits)} is not a move of the gate set [{names}] on "
                f"{self.gateset.num_qubits} qubit(s) (or its coupling forbids those qubits): "
                "rewrite the circuit in these gates or use a dataset whose gate set has it"
            )
        self._seen[(qubits, matrix.tobytes())] = code
        return code

    def _match(self, matrix: np.ndarray, ordered: tuple[int, ...]) -> int:
        entry = self._by_qubits.get(ordered)
        dim = matrix.shape[0]
        if entry is None or entry[1].shape[1] != dim:
            return -1
        codes, stack = entry
        exact = np.flatnonzero(np.abs(stack - matrix).reshape(len(codes), -1).max(axis=1) <= _ATOL)
        if exact.size:
            return int(codes[exact[0]])
        overlap = np.abs(np.einsum("kij,ij->k", stack.conj(), matrix))
        phase = np.flatnonzero(np.abs(overlap - dim) < _ATOL * dim)
        return int(codes[phase[0]]) if phase.size else -1
