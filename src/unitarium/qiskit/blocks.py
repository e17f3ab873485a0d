"""``OptimalBlocks``: a peephole optimiser whose every replacement is the table's optimal circuit.

The pass collects maximal blocks of the table's gates on at most ``n`` qubits (``n`` the
table's qubit count: 1 or 2) with Qiskit's :class:`~qiskit.dagcircuit.BlockCollector` (the
machinery of ``CollectLinearFunctions``/``CollectCliffords``), and for each block the table's
cheapest circuit for its unitary (:meth:`OptimalTable.synthesize`: meet in the middle over
the table, docs/search.md; cost by :func:`~unitarium.qiskit._table.cost_key`, the table's
cost model, then length). A block of at most ``2 L`` gates (the table's reach) whose circuit
costs less is replaced by it, which is optimal for the block.

A longer block is improved as a sequence of gates, in windows of consecutive gates (a
contiguous piece of a block's gates in collection order is itself a block: nothing outside it
lies between two of its gates), each replaced when cheaper. Windows of ``L + 1`` gates come
first: the table answers them with one lookup each (a circuit of at most ``L + 1`` moves is
found from the empty prefix); passes repeat, the windows' offset alternating between 0 and half
a window, until neither offset changes anything; then windows of ``2 L`` gates (a search each),
back to the small ones after any change, until the sequence is within ``2 L`` or nothing
changes; then the whole sequence once more (a circuit found for it is optimal). Every
replacement lowers the ``(cost, length)`` of the sequence, so this ends. The block is then
replaced once by the final sequence. The table's answers are remembered by the gates of the
piece, so what did not change costs nothing the next time.

Each replacement carries the global phase that makes it equal to its block exactly (from the
exact unitaries of both), so the circuit's ``Operator`` never changes. Rounds of collection and
replacement repeat until no block changes (a shrunk block may merge with its neighbours).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np
from qiskit.converters import circuit_to_dag
from qiskit.dagcircuit import BlockCollector, DAGCircuit
from qiskit.transpiler.basepasses import TransformationPass

from .._core._match import apply_gate
from .._dataset import Dataset
from ._table import Found, OptimalTable, table_from

__all__ = ["OptimalBlocks"]

_PLACEHOLDER = "unitarium_block"

Sequence_ = tuple[tuple[int, ...], ...]
"""A block's gates in order, each ``(gate index, *local qubits)``, local qubits in the DAG's order."""


class OptimalBlocks(TransformationPass):  # type: ignore[misc]
    """Replace each maximal 1- or 2-qubit block of the table's gates by the table's optimal
    circuit for it, when that costs less (``PassManager([OptimalBlocks("table.db")])``).

    ``table``: the path of a complete unique enumerated dataset (or an open
    :class:`~unitarium.Dataset`) on 1 or 2 qubits; ``atol``: the entrywise tolerance of a
    match (as :meth:`~unitarium.Dataset.synthesize`); ``deep``: in blocks longer than ``2 L``,
    also search windows of ``2 L`` gates after those of ``L + 1`` (slower: a meet-in-the-middle
    search per window instead of one lookup); ``max_rounds``: a bound on the rounds
    of collection and replacement (each round lowers the cost; the default runs to a fixed
    point). Gates outside the table's gate set (other gates, measurements, barriers, control
    flow) are left in place and end blocks. The property set's ``optimal_blocks`` records,
    after a run, ``{"replaced": blocks replaced, "rounds": rounds run}``."""

    def __init__(
        self,
        table: str | os.PathLike[str] | Dataset | OptimalTable,
        *,
        deep: bool = True,
        atol: float = 1e-5,
        max_rounds: int = 1000,
    ) -> None:
        super().__init__()
        self.table = table_from(table, atol=atol)
        self.deep = deep
        self.max_rounds = max_rounds

    def run(self, dag: DAGCircuit) -> DAGCircuit:
        self._memo: dict[Sequence_, Found | None] = {}
        rounds = replaced = 0
        while rounds < self.max_rounds:
            count = self._round(dag)
            rounds, replaced = rounds + 1, replaced + count
            if not count:
                break
        self.property_set["optimal_blocks"] = {"replaced": replaced, "rounds": rounds}
        return dag

    def _round(self, dag: DAGCircuit) -> int:
        """Collect the blocks and replace each one the table improves; returns how many."""
        blocks = BlockCollector(dag).collect_all_matching_blocks(
            self._matches, split_blocks=True, min_block_size=1, max_block_width=self.table.num_qubits
        )
        count = 0
        for block in blocks:
            qubits = _qubits(dag, block)
            seq = tuple(self._move(node, qubits) for node in block)
            better = self._improve(seq)
            if better is not None:
                self._replace(dag, block, qubits, seq, better)
                count += 1
        return count

    def _improve(self, seq: Sequence_) -> Sequence_ | None:
        """A cheaper sequence with the same unitary (up to phase), or None: the whole sequence
        through the table when it is within ``2 L``, else windows until none improves, then the
        whole (its unitary may still be within reach: a found circuit is optimal for the block)."""
        length = self.table.max_length
        sizes = sorted({length + 1, max(length + 1, 2 * length) if self.deep else length + 1})  # one lookup, a search
        best = seq
        level = 0
        while len(best) > 2 * length:
            changed = False
            window = sizes[level]
            for offset in (0, window // 2):
                shorter = self._windows(best, window, offset)
                if shorter is not None:
                    best, changed = shorter, True
            if changed:
                level = 0
            elif level + 1 < len(sizes):
                level += 1
            else:
                break
        whole = self._lookup([best])[0]
        if whole is not None and self._key(whole) < self._key(best):
            best = whole
        return best if self._key(best) < self._key(seq) else None

    def _windows(self, seq: Sequence_, window: int, offset: int) -> Sequence_ | None:
        """``seq`` with every window of ``window`` gates (cuts at ``offset + j window``) replaced by
        the table's circuit where cheaper; None when none is."""
        cuts = [0, *range(offset or window, len(seq), window), len(seq)]
        parts = [seq[lo:hi] for lo, hi in itertools.pairwise(cuts)]
        found = self._lookup(parts)
        out = [
            f if f is not None and self._key(f) < self._key(part) else part
            for part, f in zip(parts, found, strict=True)
        ]
        if all(a is b for a, b in zip(out, parts, strict=True)):
            return None
        return tuple(itertools.chain.from_iterable(out))

    def _lookup(self, parts: list[Sequence_]) -> list[Sequence_ | None]:
        """The table's cheapest sequence for each part's unitary (None: beyond its reach),
        remembered by the part's gates."""
        todo = list(dict.fromkeys(p for p in parts if p not in self._memo))
        answers = self.table.synthesize([self._unitary(p) for p in todo])
        self._memo.update(zip(todo, answers, strict=True))
        return [self._as_sequence(self._memo[p]) for p in parts]

    def _as_sequence(self, found: Found | None) -> Sequence_ | None:
        if found is None:
            return None
        moves = self.table.gateset.moves
        local = {j: i for i, j in enumerate(found.where)}
        return tuple((moves[int(m)].gate, *(local[q] for q in moves[int(m)].qubits)) for m in found.table_circuit.codes)

    def _key(self, seq: Sequence_) -> tuple[int, int]:
        return self.table.cost(g for g, *_ in seq)

    def _matches(self, node: Any) -> bool:
        return not node.cargs and self.table.gate_of(node.op) is not None

    def _move(self, node: Any, qubits: list[Any]) -> tuple[int, ...]:
        g = self.table.gate_of(node.op)
        assert g is not None
        return (g, *(qubits.index(q) for q in node.qargs))

    def _unitary(self, seq: Sequence_, k: int | None = None) -> np.ndarray:
        """The unitary of a sequence on ``k`` qubits (default: the highest it uses, plus one;
        the first qubit least significant)."""
        k = k if k is not None else 1 + max((q for _, *qs in seq for q in qs), default=0)
        u = np.eye(1 << k, dtype=np.complex128)
        gates = self.table.gateset.gates
        for g, *qs in seq:
            u = apply_gate(u, gates[g].matrix, qs, k)
        return u

    def _replace(self, dag: DAGCircuit, block: list[Any], qubits: list[Any], old: Sequence_, new: Sequence_) -> None:
        """Replace ``block`` (the sequence ``old`` on ``qubits``) by ``new``, with the global phase
        that keeps the block's unitary exactly."""
        from qiskit import QuantumCircuit
        from qiskit.circuit import Gate

        k = len(qubits)
        qc = QuantumCircuit(k)
        ops = self.table.qiskit_gates
        for g, *qs in new:
            qc.append(ops[g], qs)
        overlap = np.vdot(self._unitary(new, k), self._unitary(old, k))  # tr(V^dag U)
        qc.global_phase = float(np.angle(overlap)) if abs(overlap) > 0 else 0.0
        node = dag.replace_block_with_op(
            block, Gate(_PLACEHOLDER, k, []), {q: i for i, q in enumerate(qubits)}, cycle_check=False
        )
        dag.substitute_node_with_dag(node, circuit_to_dag(qc))


def _qubits(dag: DAGCircuit, piece: list[Any]) -> list[Any]:
    """The qubits a block acts on, in the DAG's order."""
    return sorted({q for node in piece for q in node.qargs}, key=lambda q: dag.find_bit(q).index)
