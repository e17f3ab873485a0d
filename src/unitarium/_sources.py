"""Sources: what each task computes. A task's result depends only on (spec, task).

- **Random**: task ``t`` draws candidates ``t*T .. (t+1)*T - 1`` (``T`` = task size)
  with ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(t,)))``: lengths
  uniform in ``[min, max]``, then each move uniform over the gate set's moves.
- **Enumeration**: level ``L`` holds sequences of length ``L``; a task of level ``L``
  takes a range of level ``L-1`` records (its *parents*) and extends each by every move,
  in parent-major, move-minor order (breadth-first order overall). Each child is
  ``M[move] @ U_parent`` (prefix sharing). With ``prune``, a child is skipped when

  1. its last move undoes the parent's last move (``h h``, ``t tdg``, ``cx 0 1; cx 0 1``), or
  2. its last two moves act on disjoint qubits and are out of index order
     (``h 1; h 0`` is kept only as ``h 0; h 1``).

  Every unitary reachable with at most ``L`` moves stays reachable with at most ``L``
  moves: rule 2 keeps the lexicographically least ordering of commuting neighbours,
  and a sequence broken by rule 1 equals a shorter one. In unique mode the same
  argument holds for breadth-first representatives (tested against the unpruned run).

In unique mode the products are formed in complex128 (the dedup keys need it); the
stored unitaries are then cast to the dataset's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from ._canonical import DEDUP, LOOKUP
from ._kernels import ProductTable, extend
from ._spec import Enumeration, RandomSource, Spec
from ._store import TaskResult, code_dtype

if TYPE_CHECKING:
    from ._dataset import Dataset

__all__ = ["Task", "TaskContext", "run_task"]


@dataclass(frozen=True)
class Task:
    """Task ``task_id``: random candidates ``[start, stop)``, or the children of level
    ``level - 1`` records ``[start, stop)``."""

    task_id: int
    level: int
    start: int
    stop: int


class TaskContext:
    """What workers derive once per spec: move matrices, product table, dataset path."""

    def __init__(self, spec: Spec, path: str) -> None:
        self.spec = spec
        self.path = path
        self.num_moves = len(spec.gateset.moves)
        self.compute_dtype = np.dtype(np.complex128) if spec.unique else spec.np_dtype
        self.code_dtype = code_dtype(self.num_moves)

    @cached_property
    def table(self) -> ProductTable:
        return ProductTable(self.spec.gateset.move_matrices, self.compute_dtype)

    @cached_property
    def moves(self) -> np.ndarray:
        return self.spec.gateset.move_matrices.astype(self.compute_dtype)

    @cached_property
    def dataset(self) -> Dataset:
        """The dataset being written, opened once per worker (enumeration reads its parents;
        a handle per task cost a connection and a gate-set expansion each: 20% of the time)."""
        from ._dataset import Dataset

        return Dataset(self.path)

    def close(self) -> None:
        """Close the dataset handle, if one was opened (its connection maps the file)."""
        if "dataset" in self.__dict__:
            self.dataset.close()

    def finish(self, task: Task, candidates: int, seqs: np.ndarray, lengths: np.ndarray, u: np.ndarray) -> TaskResult:
        """Pack padded sequences and unitaries into a result (with keys in unique mode)."""
        valid = np.arange(seqs.shape[1])[None, :] < lengths[:, None]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.uint32)
        return self.pack(task, candidates, seqs[valid].astype(self.code_dtype), offsets, u)

    def pack(self, task: Task, candidates: int, codes: np.ndarray, offsets: np.ndarray, u: np.ndarray) -> TaskResult:
        """A result from stored-form circuits (with keys in unique mode)."""
        result = TaskResult(task.task_id, task.level, candidates, codes, offsets, u)
        if self.spec.unique:
            result.dedup, result.alternates = DEDUP.keys(u)
            result.lookup = LOOKUP.primary(u)
        return result


def run_task(ctx: TaskContext, task: Task) -> TaskResult:
    """Compute one task (pure given the spec; enumeration reads its parents)."""
    if isinstance(ctx.spec.source, RandomSource):
        return _random(ctx, ctx.spec.source, task)
    return _enumerate(ctx, ctx.spec.source, task)


def _random(ctx: TaskContext, src: RandomSource, task: Task) -> TaskResult:
    n = task.stop - task.start
    rng = np.random.default_rng(np.random.SeedSequence(ctx.spec.seed, spawn_key=(task.task_id,)))
    lengths = rng.integers(src.min_length, src.max_length, endpoint=True, size=n)
    seqs = rng.integers(0, ctx.num_moves, size=(n, src.max_length))
    seqs[np.arange(src.max_length)[None, :] >= lengths[:, None]] = ctx.num_moves
    return ctx.finish(task, n, seqs, lengths, ctx.table.unitaries(seqs))


def _enumerate(ctx: TaskContext, src: Enumeration, task: Task) -> TaskResult:
    if task.level == 0:
        identity = np.eye(ctx.spec.gateset.dim, dtype=ctx.compute_dtype)[None]
        return ctx.pack(task, 1, np.zeros(0, ctx.code_dtype), np.zeros(2, np.uint32), identity)
    parents = ctx.dataset.circuit_array(task.start, task.stop, task.level - 1)
    if ctx.compute_dtype == ctx.spec.np_dtype:
        pu = ctx.dataset.unitaries(task.start, task.stop)
    else:  # complex128 keys from complex64 storage: recompute the parents exactly
        pu = ctx.table.unitaries(parents)
    if src.prune and task.level > 1:
        allowed = _pruning_mask(ctx, parents[:, -1])
    else:
        allowed = np.ones((len(parents), ctx.num_moves), dtype=bool)
    parent_idx, move_idx = np.nonzero(allowed)
    codes = np.empty((len(parent_idx), task.level), dtype=ctx.code_dtype)
    codes[:, :-1] = parents.astype(ctx.code_dtype)[parent_idx]
    codes[:, -1] = move_idx
    u = extend(pu.astype(ctx.compute_dtype, copy=False), ctx.moves, allowed)
    offsets = np.arange(0, codes.size + 1, task.level, dtype=np.uint32)
    return ctx.pack(task, len(codes), codes.reshape(-1), offsets, u)


def _pruning_mask(ctx: TaskContext, last: np.ndarray) -> np.ndarray:
    """``(parents, moves)`` True where appending the move is not trivially redundant."""
    gs = ctx.spec.gateset
    moves = np.arange(ctx.num_moves)
    undoes = gs.inverse_moves[last][:, None] == moves[None, :]
    reordered = gs.disjoint_moves[last] & (moves[None, :] < last[:, None])
    return ~(undoes | reordered)
