"""A gate set on a register: gates, qubit count, coupling, and the moves they expand to.

A *move* is a gate on a specific tuple of qubits (``cx 1 0``). Moves are listed gate
by gate (in gate-list order), each over its allowed qubit tuples in lexicographic
order. A k-qubit tuple is allowed when its qubits are distinct and, for k >= 2, form
a connected subgraph of the (undirected) coupling graph. Moves whose full matrices
are identical (``cz 0 1`` and ``cz 1 0``) are kept once, the first.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .._errors import SpecError
from .gates import Gate
from .kernels import embed

__all__ = ["GateSet", "Move", "parse_coupling"]

MAX_QUBITS = 12


@dataclass(frozen=True)
class Move:
    """Gate ``gate`` (an index into the gate set) on ``qubits``; ``text`` like ``"cx 0 1"``."""

    gate: int
    qubits: tuple[int, ...]
    text: str


def parse_coupling(text: str, num_qubits: int) -> tuple[tuple[int, int], ...] | str:
    """``"full"``, ``"linear"``, ``"ring"``, or an edge list ``"0-1,1-2"``."""
    key = text.strip().lower()
    if key in ("full", "linear", "ring"):
        return key
    edges = []
    for item in (t for t in re.split(r"[,\s]+", key) if t):
        match = re.fullmatch(r"(\d+)-(\d+)", item)
        if not match:
            raise SpecError(f"bad coupling {text!r}: use full, linear, ring or edges like 0-1,1-2")
        a, b = int(match.group(1)), int(match.group(2))
        if a == b or max(a, b) >= num_qubits:
            raise SpecError(f"coupling edge {item!r} is not a pair of distinct qubits below {num_qubits}")
        edges.append((min(a, b), max(a, b)))
    if not edges:
        raise SpecError(f"bad coupling {text!r}: the edge list is empty")
    return tuple(sorted(set(edges)))


@dataclass(frozen=True, eq=False)
class GateSet:
    """Gates on ``num_qubits`` qubits with a coupling (``"full"``, ``"linear"``,
    ``"ring"`` or a tuple of undirected edges)."""

    gates: tuple[Gate, ...]
    num_qubits: int
    coupling: str | tuple[tuple[int, int], ...] = "full"

    def __post_init__(self) -> None:
        if not 1 <= self.num_qubits <= MAX_QUBITS:
            raise SpecError(f"--qubits {self.num_qubits} is out of range: use 1 to {MAX_QUBITS}")
        for gate in self.gates:
            if gate.num_qubits > self.num_qubits:
                raise SpecError(
                    f"gate {gate.name!r} acts on {gate.num_qubits} qubits but the register has "
                    f"{self.num_qubits}: raise --qubits or drop the gate"
                )
        edges = self.edges()  # check the qubit tuples, not self.moves: 12-qubit move matrices take GiBs
        tuples = (q for g in self.gates for q in itertools.permutations(range(self.num_qubits), g.num_qubits))
        if not any(self._allowed(q, edges) for q in tuples):
            raise SpecError("the gate set has no move allowed by the coupling")

    @property
    def dim(self) -> int:
        """The matrix size ``d = 2**num_qubits``."""
        return 1 << self.num_qubits

    def edges(self) -> set[tuple[int, int]]:
        """The undirected coupling edges as ``(low, high)`` pairs."""
        n = self.num_qubits
        if self.coupling == "full":
            return {(a, b) for a in range(n) for b in range(a + 1, n)}
        if self.coupling == "linear":
            return {(a, a + 1) for a in range(n - 1)}
        if self.coupling == "ring":
            return {(a, a + 1) for a in range(n - 1)} | ({(0, n - 1)} if n > 2 else set())
        assert not isinstance(self.coupling, str), f"unknown coupling {self.coupling!r}"
        return set(self.coupling)

    def _allowed(self, qubits: Sequence[int], edges: set[tuple[int, int]]) -> bool:
        reached, frontier = {qubits[0]}, [qubits[0]]
        while frontier:
            a = frontier.pop()
            for b in qubits:
                if b not in reached and (min(a, b), max(a, b)) in edges:
                    reached.add(b)
                    frontier.append(b)
        return len(reached) == len(qubits)

    @cached_property
    def _expansion(self) -> tuple[tuple[Move, ...], np.ndarray]:
        edges = self.edges()
        moves: list[Move] = []
        matrices: list[np.ndarray] = []
        for g, gate in enumerate(self.gates):
            for qubits in itertools.permutations(range(self.num_qubits), gate.num_qubits):
                if not self._allowed(qubits, edges):
                    continue
                full = embed(gate.matrix, qubits, self.num_qubits)
                if any(np.array_equal(full, other) for other in matrices):
                    continue
                moves.append(Move(g, qubits, " ".join([gate.name, *map(str, qubits)])))
                matrices.append(full)
        d = self.dim
        stack = np.array(matrices, dtype=np.complex128).reshape(len(matrices), d, d)
        return tuple(moves), stack

    @property
    def moves(self) -> tuple[Move, ...]:
        """The moves, in their fixed order (a move's index is its code in stored circuits)."""
        return self._expansion[0]

    @property
    def move_matrices(self) -> np.ndarray:
        """The ``(num_moves, d, d)`` complex128 stack of full move matrices."""
        return self._expansion[1]

    @cached_property
    def inverse_moves(self) -> np.ndarray:
        """For each move, the index of the move that undoes it (up to global phase), or -1."""
        mats = self.move_matrices
        out = np.full(len(mats), -1, dtype=np.int64)
        d = self.dim
        for a, ma in enumerate(mats):
            for b, mb in enumerate(mats):
                overlap = np.trace(mb @ ma)
                if abs(abs(overlap) - d) < 1e-9:
                    out[a] = b
                    break
        return out

    @cached_property
    def disjoint_moves(self) -> np.ndarray:
        """``(m, m)`` bool: moves ``a`` and ``b`` act on disjoint qubits (so they commute)."""
        qs = [set(m.qubits) for m in self.moves]
        return np.array([[not (a & b) for b in qs] for a in qs], dtype=bool)

    def move_index(self) -> dict[str, int]:
        """Map from a move's text (``"cx 0 1"``) to its index."""
        return {m.text: i for i, m in enumerate(self.moves)}
