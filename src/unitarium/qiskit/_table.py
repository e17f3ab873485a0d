"""A unique enumerated dataset as a source of optimal Qiskit circuits: the part the synthesis
plugin and :class:`~unitarium.qiskit.OptimalBlocks` share.

:class:`OptimalTable` answers "the cheapest circuit of the table's gates for this 1- or
2-qubit unitary, as a ``QuantumCircuit`` equal to it *exactly* (global phase included)",
through :meth:`unitarium.Dataset.synthesize_many` (meet in the middle, optimal for every
unitary with a circuit of at most ``2 L`` moves: docs/search.md). Qubit conventions are
Qiskit's (qubit 0 the least significant), as everywhere in unitarium.

A ``k``-qubit unitary on an ``n``-qubit table is tried in every placement of its ``k``
qubits on the table's: both orders of a 2-qubit unitary (a table with a coupling map may
reach only one), and a 1-qubit unitary ``U`` on a 2-qubit table as ``U`` on table qubit 0
and on table qubit 1, where a circuit counts only if all its moves stay on that qubit (a
shortest circuit of ``U (x) I`` among all 2-qubit circuits that is on one qubit is a
shortest 1-qubit circuit of ``U``). The cheapest placement wins, by :func:`cost_key`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Gate as QiskitGate
from qiskit.quantum_info import Operator

from .._core._match import apply_gate
from .._core.circuit import Circuit
from .._core.qiskit import to_qiskit
from .._dataset import Dataset
from .._dataset import open as open_dataset
from .._errors import SpecError

__all__ = ["Found", "OptimalTable", "cost_key", "gate_weights", "table_from"]

_PARAM_ATOL = 1e-10
"""Angles of a Qiskit gate and a table gate of the same name closer than this are the same gate
(its matrix is then compared too)."""


def gate_weights(ds: Dataset) -> tuple[int, ...]:
    """The cost of each gate of ``ds``'s gate set, in gate-set order: the dataset's cost model
    when its spec carries one (a mapping gate name -> integer weight, gates it leaves out
    free, as ``--cost t=1,tdg=1``), else 1 per gate (the table minimises length)."""
    model = getattr(ds.spec, "cost", None)
    gates = ds.gateset.gates
    if isinstance(model, Mapping):
        return tuple(int(model.get(g.name, 0)) for g in gates)
    return (1,) * len(gates)


def cost_key(gates: Iterable[int], weights: Sequence[int]) -> tuple[int, int]:
    """``(cost, length)`` of a circuit given by the gate-set indices of its gates: what every
    comparison of two circuits here goes through (lower is better; ties in cost go to the
    shorter). The one place a cost model enters."""
    gates = list(gates)
    return sum(weights[g] for g in gates), len(gates)


@dataclass(frozen=True, eq=False)
class Found:
    """A table circuit for a target: ``table_circuit`` (moves of the table), ``where`` (the table
    qubit of each of the target's qubits), ``placed`` (the target on the table's qubits) and its
    :func:`cost_key` ``key``. :meth:`circuit` is it on the target's own qubits."""

    table_circuit: Circuit
    where: tuple[int, ...]
    placed: np.ndarray
    key: tuple[int, int]

    def circuit(self) -> Any:
        """A ``QuantumCircuit`` on the target's qubits (table qubit ``where[i]`` is its qubit ``i``)
        whose ``Operator`` equals the target exactly: the global phase is set from the table
        circuit's exact unitary against the target."""
        c = self.table_circuit
        full = to_qiskit(c.codes, c.gateset)
        local = {j: i for i, j in enumerate(self.where)}
        qc = QuantumCircuit(len(self.where))
        for inst in full.data:
            qc.append(inst.operation, [local[full.find_bit(q).index] for q in inst.qubits])
        overlap = np.vdot(c.unitary(), self.placed)  # tr(V^dag U)
        qc.global_phase = float(np.angle(overlap)) if abs(overlap) > 0 else 0.0
        return qc


class OptimalTable:
    """A complete unique enumerated dataset (``--enumerate --max-length L --unique``) used to
    synthesise 1- and 2-qubit unitaries optimally. ``table`` is a path or an open
    :class:`~unitarium.Dataset`; ``atol`` is the entrywise tolerance of a match (as
    :meth:`~unitarium.Dataset.synthesize`)."""

    def __init__(self, table: str | os.PathLike[str] | Dataset, *, atol: float = 1e-5) -> None:
        self.dataset = table if isinstance(table, Dataset) else open_dataset(table)
        self.atol = atol
        gs = self.dataset.gateset
        if gs.num_qubits > 2:
            raise SpecError(
                f"a table for Qiskit synthesis must be on 1 or 2 qubits, and {self.name} is on {gs.num_qubits}"
            )
        self.gateset = gs
        self.num_qubits = gs.num_qubits
        self.weights = gate_weights(self.dataset)
        self.dataset.synthesize_many(np.eye(gs.dim)[None], atol=atol)  # loads it: refuses a non-table now
        # L, the longest circuit of the table (OptimalBlocks sizes its windows by it); a table
        # bounded by cost rather than length has no max_length: its longest record then
        bound = getattr(self.dataset.spec.source, "max_length", None)
        self.max_length = int(bound) if bound is not None else int(self.dataset.lengths().max(initial=0))
        self._gate_cache: dict[Any, int | None] = {}

    @property
    def name(self) -> str:
        return repr(str(self.dataset.path))

    @cached_property
    def qiskit_gates(self) -> tuple[Any, ...]:
        """The Qiskit operation of each gate of the gate set (None for custom gates)."""
        first_move: dict[int, int] = {}
        for code, move in enumerate(self.gateset.moves):
            first_move.setdefault(move.gate, code)
        out: list[Any] = []
        for g, gate in enumerate(self.gateset.gates):
            if gate.custom or g not in first_move:
                out.append(None)
                continue
            qc = to_qiskit(np.array([first_move[g]]), self.gateset)
            out.append(qc.data[0].operation)
        return tuple(out)

    @cached_property
    def gate_names(self) -> frozenset[str]:
        """The Qiskit names of the gates (what a basis must contain for the circuits to fit it)."""
        return frozenset(op.name for op in self.qiskit_gates if op is not None)

    def gate_of(self, op: Any) -> int | None:
        """The index of the table gate that the Qiskit operation ``op`` is (same name, same angles,
        same matrix), or None."""
        if not isinstance(op, QiskitGate) or op.name not in self.gate_names:
            return None
        try:
            params = tuple(float(p) for p in op.params)
        except (TypeError, ValueError):  # unbound parameters
            return None
        key = (type(op), op.name, params)
        if key not in self._gate_cache:
            self._gate_cache[key] = self._match(op, params)
        return self._gate_cache[key]

    def _match(self, op: Any, params: tuple[float, ...]) -> int | None:
        for g, mine in enumerate(self.qiskit_gates):
            if mine is None or mine.name != op.name or mine.num_qubits != op.num_qubits:
                continue
            if len(mine.params) != len(params) or not np.allclose(
                [float(p) for p in mine.params], params, atol=_PARAM_ATOL
            ):
                continue
            if np.allclose(Operator(op).data, self.gateset.gates[g].matrix, atol=1e-12):
                return g
        return None

    def cost(self, gates: Iterable[int]) -> tuple[int, int]:
        """:func:`cost_key` under this table's weights."""
        return cost_key(gates, self.weights)

    def synthesize(self, unitaries: Sequence[np.ndarray]) -> list[Found | None]:
        """For each ``(2^k, 2^k)`` unitary (``k <= n``, Qiskit's qubit order), the cheapest table
        circuit over every placement of its qubits on the table's, or None when no circuit of
        at most ``2 L`` moves implements it (up to global phase, within ``atol``). A gate set
        that a swap of the table's two qubits maps onto itself costs the same in every
        placement, so only the first is tried."""
        jobs: list[tuple[int, tuple[int, ...], np.ndarray]] = []  # (target, table qubit of each local one, placed)
        n = self.num_qubits
        for t, u in enumerate(unitaries):
            places = list(itertools.permutations(range(n), _qubits_of(u)))
            for where in places[:1] if self.symmetric else places:
                jobs.append((t, where, apply_gate(np.eye(1 << n, dtype=np.complex128), np.asarray(u), where, n)))
        targets = np.stack([placed for _, _, placed in jobs]) if jobs else np.zeros((0, 1 << n, 1 << n))
        circuits = self.dataset.synthesize_many(targets, atol=self.atol) if jobs else []
        best: list[Found | None] = [None] * len(unitaries)
        for (t, where, placed), c in zip(jobs, circuits, strict=True):
            if c is None or not self._stays_on(c, where):
                continue
            key = self.cost(self.gateset.moves[int(m)].gate for m in c.codes)
            current = best[t]
            if current is None or key < current.key:
                best[t] = Found(c, where, placed, key)
        return best

    @cached_property
    def symmetric(self) -> bool:
        """Whether swapping the table's two qubits maps its moves onto its moves (always, for 1 qubit)."""
        if self.num_qubits == 1:
            return True
        swap = np.eye(4)[[0, 2, 1, 3]]
        moves = self.gateset.move_matrices
        return all(any(np.allclose(swap @ m @ swap, other, atol=1e-12) for other in moves) for m in moves)

    def _stays_on(self, c: Circuit, where: tuple[int, ...]) -> bool:
        moves = self.gateset.moves
        return all(q in where for m in c.codes for q in moves[int(m)].qubits)


def _qubits_of(u: np.ndarray) -> int:
    d = np.shape(u)[0]
    k = d.bit_length() - 1
    if np.shape(u) != (d, d) or 1 << k != d or k < 1:
        raise SpecError(f"a unitary on 1 or 2 qubits is needed, got shape {np.shape(u)}")
    return k


def table_from(spec: Any, *, atol: float = 1e-5) -> OptimalTable:
    """An :class:`OptimalTable` from a path, a :class:`~unitarium.Dataset` or an
    :class:`OptimalTable`, shared across calls for the same unchanged file."""
    if isinstance(spec, OptimalTable):
        return spec
    if isinstance(spec, Dataset):
        return OptimalTable(spec, atol=atol)
    if not isinstance(spec, str | os.PathLike):
        raise SpecError(
            f"a unitarium table is a path or a unitarium.Dataset, got {type(spec).__name__}: "
            "generate one with unitarium generate --enumerate --max-length L --unique"
        )
    path = Path(spec).resolve()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = None  # open() says what is wrong
    key = (str(path), stamp, atol)
    cached = _CACHE.get(key)
    if cached is None:
        cached = OptimalTable(path, atol=atol)
        _CACHE.clear()  # one table at a time: a search table holds its unitaries in memory
        _CACHE[key] = cached
    return cached


_CACHE: dict[tuple[str, int | None, float], OptimalTable] = {}
