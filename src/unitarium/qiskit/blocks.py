"""``OptimalBlocks``: a peephole optimiser whose every replacement is the table's optimal circuit.

The pass collects maximal blocks of the table's gates on at most ``n`` qubits (``n`` the
table's qubit count: 1 or 2) with Qiskit's :class:`~qiskit.dagcircuit.BlockCollector` (the
machinery of ``CollectLinearFunctions``/``CollectCliffords``), computes each block's unitary,
and replaces the block by the table's cheapest circuit for it when that costs less
(:func:`~unitarium.qiskit._table.cost_key`: the table's cost model, then length). A
replacement is optimal for its block: it is the cheapest circuit of the table's gates with
the block's unitary (meet in the middle over the table, docs/search.md), with the global
phase that makes it equal to the block exactly, so the whole circuit's ``Operator`` never
changes.

A block longer than ``2 L`` (the table's reach) is tried whole and, when the table has no
circuit for it, cut into windows of ``2 L`` consecutive gates (a contiguous piece of a
block's gates in collection order is itself a block: nothing outside it lies between two of
its gates), each replaced when cheaper. Rounds repeat, alternating the windows' offset
between 0 and ``L``, until a round changes nothing: every replacement lowers the circuit's
``(cost, length)``, so this ends.
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


class OptimalBlocks(TransformationPass):  # type: ignore[misc]
    """Replace each maximal 1- or 2-qubit block of the table's gates by the table's optimal
    circuit for it, when that costs less (``PassManager([OptimalBlocks("table.db")])``).

    ``table``: the path of a complete unique enumerated dataset (or an open
    :class:`~unitarium.Dataset`) on 1 or 2 qubits; ``atol``: the entrywise tolerance of a
    match (as :meth:`~unitarium.Dataset.synthesize`); ``max_rounds``: a bound on the rounds
    of collection and replacement (each round lowers the cost; the default runs to a fixed
    point). Gates outside the table's gate set (other gates, measurements, barriers, control
    flow) are left in place and end blocks. The property set's ``optimal_blocks`` records,
    after a run, ``{"replaced": blocks replaced, "rounds": rounds run}``."""

    def __init__(
        self, table: str | os.PathLike[str] | Dataset | OptimalTable, *, atol: float = 1e-5, max_rounds: int = 1000
    ) -> None:
        super().__init__()
        self.table = table_from(table, atol=atol)
        self.max_rounds = max_rounds

    def run(self, dag: DAGCircuit) -> DAGCircuit:
        window = max(1, 2 * self.table.max_length)
        offsets = [0, window // 2] if window > 1 else [0]
        replaced = rounds = idle = 0
        while rounds < self.max_rounds:
            count, windowed = self._round(dag, window, offsets[rounds % len(offsets)])
            rounds += 1
            replaced += count
            idle = 0 if count else idle + 1
            if idle >= (len(offsets) if windowed else 1):
                break
        self.property_set["optimal_blocks"] = {"replaced": replaced, "rounds": rounds}
        return dag

    def _round(self, dag: DAGCircuit, window: int, offset: int) -> tuple[int, bool]:
        """Collect the blocks and replace the ones the table improves; returns how many were
        replaced and whether any block was longer than ``window``."""
        blocks = BlockCollector(dag).collect_all_matching_blocks(
            self._matches, split_blocks=True, min_block_size=1, max_block_width=self.table.num_qubits
        )
        pieces: list[list[Any]] = []  # each block whole, then the windows of the long ones
        owner: list[int] = []
        for b, block in enumerate(blocks):
            pieces.append(block)
            owner.append(b)
            if len(block) > window:
                cuts = [0, *range(offset or window, len(block), window), len(block)]
                for lo, hi in itertools.pairwise(cuts):
                    pieces.append(block[lo:hi])
                    owner.append(b)
        found = self.table.synthesize([self._unitary(dag, piece) for piece in pieces])
        done: set[int] = set()
        count = 0
        for piece, b, hit in zip(pieces, owner, found, strict=True):
            whole = piece is blocks[b]
            if b in done or not self._better(hit, piece):
                continue
            self._replace(dag, piece, hit)  # type: ignore[arg-type]
            count += 1
            if whole:
                done.add(b)  # its windows are gone with it
        return count, any(len(block) > window for block in blocks)

    def _matches(self, node: Any) -> bool:
        return not node.cargs and self.table.gate_of(node.op) is not None

    def _better(self, hit: Found | None, piece: list[Any]) -> bool:
        gates = [self.table.gate_of(node.op) for node in piece]
        return hit is not None and hit.key < self.table.cost(g for g in gates if g is not None)

    def _unitary(self, dag: DAGCircuit, piece: list[Any]) -> np.ndarray:
        """The block's unitary on its qubits in the DAG's order (the first one least significant)."""
        qubits = _qubits(dag, piece)
        k = len(qubits)
        u = np.eye(1 << k, dtype=np.complex128)
        matrices = self.table.gateset.gates
        for node in piece:
            g = self.table.gate_of(node.op)
            assert g is not None
            u = apply_gate(u, matrices[g].matrix, [qubits.index(q) for q in node.qargs], k)
        return u

    def _replace(self, dag: DAGCircuit, piece: list[Any], hit: Found) -> None:
        from qiskit.circuit import Gate

        qubits = _qubits(dag, piece)
        node = dag.replace_block_with_op(
            piece, Gate(_PLACEHOLDER, len(qubits), []), {q: i for i, q in enumerate(qubits)}, cycle_check=False
        )
        dag.substitute_node_with_dag(node, circuit_to_dag(hit.circuit))


def _qubits(dag: DAGCircuit, piece: list[Any]) -> list[Any]:
    """The qubits a block acts on, in the DAG's order."""
    return sorted({q for node in piece for q in node.qargs}, key=lambda q: dag.find_bit(q).index)
