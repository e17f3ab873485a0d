"""Sources: what each task computes. A task's result depends only on (spec, task).

- **Random**: task ``t`` draws candidates ``t*T .. (t+1)*T - 1`` (``T`` = task size)
  with ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(t,)))``: lengths
  uniform in ``[min, max]``, then each move uniform over the gate set's moves.
- **Enumeration**: level ``L`` holds sequences of length ``L``; a task of level ``L``
  takes a range of level ``L-1`` records (its *parents*) and extends each by every move,
  in parent-major, move-minor order (breadth-first order overall). Each child is
  ``M[move] @ U_parent`` (prefix sharing). With ``prune``, a child is skipped when

  1. its last move undoes the parent's last move (``h h``, ``t tdg``, ``cx 0 1; cx 0 1``; judged on the
     matrices within 1e-9, exactly under ring keys: a deep gate's near-inverse is no inverse there), or
  2. its last two moves act on disjoint qubits and are out of index order
     (``h 1; h 0`` is kept only as ``h 0; h 1``).

  Every unitary reachable with at most ``L`` moves stays reachable with at most ``L``
  moves: rule 2 keeps the lexicographically least ordering of commuting neighbours,
  and a sequence broken by rule 1 equals a shorter one. In unique mode the same
  argument holds for breadth-first representatives (tested against the unpruned run).

**Cost levels.** Under a cost model (:attr:`Spec.cost`, weights per gate), unique enumeration goes
by increasing cost, then length: level ``(c, l)`` (stored as :func:`~unitarium._core.cost.level_of`)
holds the new unitaries among the children of every level ``(c - w, l - 1)`` by the moves of weight
``w`` (one task group per weight, heaviest first, so parents come in record order). Free moves
(``w = 0``) thus extend level ``(c, l - 1)`` within cost ``c``: a bucket queue whose buckets are
processed in ``(cost, length)`` order. Each unitary keeps a circuit of least cost, ties to the
shorter, then to the first in task order: the prefix of such a circuit is such a circuit of its own
unitary (a better prefix would give a better circuit), so by induction it is a record of level
``(c - w, l - 1)``, extended by the last move in level ``(c, l)``, and no earlier level holds the
unitary. Pruning loses nothing: an undone move gives a cheaper-or-equal, shorter circuit; swapping
commuting neighbours keeps cost and length.

In unique mode the products are formed in complex128 (the dedup keys need it); the
stored unitaries are then cast to the dataset's dtype. The keys are the spec's scheme
(:func:`unitarium._core.exact.dedup_keys`: grid, tableau, channel or ring: ring keys of deep circuits are
evaluated exactly from their move codes, :class:`unitarium._core.ringmoves.RingMoves`). With tableau keys and
``--unitaries computed`` no matrix is formed at all: tasks track the circuits' stabilizer tableaux by
update rules (:mod:`unitarium._core.tableau`, the same keys bit for bit), and an enumeration task
drops a child equal to an earlier child of its own (never kept: the first in task order wins).

**A record's unitary is a function of its circuit alone** (:func:`recompute`): a random
circuit's is the product table's over the circuit padded to the spec's maximum length; an
enumerated circuit's is its parent's (the product table's over all moves but the last), times
the last move by :func:`extend`. Generation computes exactly that, so ``--unitaries computed``
datasets recompute on read the bits a ``stored`` one holds. Tasks carry their input
(enumeration: the parents' circuits) and never read the dataset being written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .._core import compiled
from .._core.codec import code_dtype
from .._core.cost import LEVEL_STRIDE, move_weights
from .._core.exact import dedup_keys
from .._core.kernels import KERNELS, ProductTable, extend, table_depth
from .._core.ringmoves import RingMoves
from .._core.tableau import TableauRules
from .._errors import SpecError
from .spec import Enumeration, RandomSource, Spec

__all__ = ["TABLEAU_RULES_ENV", "Task", "TaskContext", "TaskResult", "recompute", "run_task"]

TABLEAU_RULES_ENV = "UNITARIUM_TABLEAU_RULES"
"""Set to ``0`` to compute tableau keys from the unitaries even where the update rules apply (the
keys, and so the datasets, are the same bits either way: a diagnostic switch, inherited by workers)."""


@dataclass(frozen=True)
class Task:
    """Task ``task_id``: random candidates ``[start, stop)``, or the children of level
    ``level - 1`` records ``[start, stop)``, whose circuits are ``parents`` ``(n, level - 1)``.
    Under a cost model, ``level`` is the children's encoded level and ``weight`` the weight of
    the moves appended (only those); the parents have one move fewer (:attr:`length`)."""

    task_id: int
    level: int
    start: int
    stop: int
    parents: np.ndarray | None = field(default=None, compare=False)
    weight: int | None = None

    @property
    def length(self) -> int:
        """The length of the circuits this task makes (the level, without a cost model)."""
        return self.level % LEVEL_STRIDE


@dataclass
class TaskResult:
    """What a task produces. ``codes``/``offsets`` describe the circuits as stored;
    ``unitaries`` are in the stored dtype (None with ``--unitaries computed``); ``dedup``
    ``(n, 2)`` and its ``alternates``, and ``lookup`` ``(n,)``, are the keys of unique mode."""

    task_id: int
    level: int
    candidates: int
    codes: np.ndarray
    offsets: np.ndarray
    unitaries: np.ndarray | None
    dedup: np.ndarray | None = None
    alternates: dict[int, np.ndarray] | None = None
    lookup: np.ndarray | None = None

    @property
    def count(self) -> int:
        return len(self.offsets) - 1

    def select(self, keep: np.ndarray) -> TaskResult:
        """The same task with only the rows where ``keep`` is true."""
        lengths: np.ndarray = np.diff(self.offsets).astype(np.int64)
        codes = self.codes[np.repeat(keep, lengths)]
        offsets = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.uint32)
        return TaskResult(
            self.task_id,
            self.level,
            self.candidates,
            codes,
            offsets,
            None if self.unitaries is None else self.unitaries[keep],
            None if self.dedup is None else self.dedup[keep],
            None,
            None if self.lookup is None else self.lookup[keep],
        )

    def decision_keys(self) -> tuple[np.ndarray, dict[int, np.ndarray], np.ndarray]:
        """What the key authority decides this task's keep-mask from (unique mode): its keys, their alternates, and
        the order of its keys by their first word (a stable argsort, int32: computed here, where the keys were
        just made and are still in cache, not by the driver: 60 against ~180 us per 4,096 keys in a run)."""
        assert self.dedup is not None, "decision keys of a task without keys"
        order = np.argsort(self.dedup[:, 0], kind="stable").astype(np.int32, copy=False)
        return self.dedup, self.alternates or {}, order

    def length_counts(self) -> dict[int, int]:
        """``{circuit length: records}`` of this task."""
        values, counts = np.unique(np.diff(self.offsets.astype(np.int64)), return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


class TaskContext:
    """What a process derives once per spec: move matrices and the product table."""

    def __init__(self, spec: Spec, *, run: bool = False, processes: int = 1) -> None:
        """``run``: the context of a process that computes a run's tasks, one of ``processes`` that share them."""
        self.spec = spec
        self.num_moves = len(spec.gateset.moves)
        self.compute_dtype = spec.compute_dtype
        self.code_dtype = code_dtype(self.num_moves)
        self.weights = move_weights(spec.gateset, spec.cost)
        if run:
            self._preload(processes)

    def _preload(self, processes: int) -> None:
        """A run's process (not a reader's): where its share of the run's products is known to pay for the
        compiled loops, start loading them now, in the background (:func:`.compiled.preload`: the process builds
        its table and receives its first task meanwhile); else say how much it expects (:func:`.compiled.expect`)."""
        spec, d = self.spec, self.spec.gateset.dim
        if spec.kernel == 5 or spec.kernel not in KERNELS or d < compiled.MIN_DIM or not self.need_unitaries:
            return
        depth = table_depth(self.num_moves, d, self.compute_dtype.itemsize)  # (the table's)
        share = self.product_work(depth) // max(1, processes)  # (tasks go to whichever process is free: about even)
        if share >= compiled.PRELOAD_AFTER:
            real = self.compute_dtype.type(0).real.dtype
            compiled.preload(real, d, moves=isinstance(spec.source, Enumeration))
        else:
            compiled.expect(share)

    @cached_property
    def rules(self) -> TableauRules | None:
        """Tableau update rules where a run needs tableau keys and no matrix (unique mode, tableau keys,
        ``--unitaries computed``): tasks then track tableaux, never unitaries (:mod:`unitarium._core.tableau`)."""
        spec = self.spec
        if not (spec.unique and spec.keys == "tableau" and not spec.stored_unitaries):
            return None
        if os.environ.get(TABLEAU_RULES_ENV, "1") == "0":
            return None
        return TableauRules(spec.gateset.move_matrices)

    @cached_property
    def ring(self) -> RingMoves | None:
        """The exact moves where the keys are ``ring`` (deep rows are keyed from their circuits)."""
        return RingMoves(self.spec.gateset) if self.spec.unique and self.spec.keys == "ring" else None

    @property
    def need_unitaries(self) -> bool:
        return self.spec.stored_unitaries or (self.spec.unique and self.rules is None)

    @cached_property
    def table(self) -> ProductTable:
        if self.spec.kernel not in KERNELS:  # (a dataset of another unitarium's kernel: read from its JSON)
            raise SpecError(
                f"unitaries of kernel version {self.spec.kernel!r} cannot be computed by this unitarium (it computes "
                f"versions {', '.join(map(str, KERNELS))}): read the dataset with the unitarium that made it"
            )
        return ProductTable(self.spec.gateset.move_matrices, self.compute_dtype, kernel=self.spec.kernel)

    def product_work(self, depth: int) -> int:
        """Complex multiply-adds the whole run's products take, roughly (a random circuit's chunks of ``depth``
        moves; an enumeration's candidates, up to ``moves ** max_length``): a run this large loads the
        compiled products at its start (:meth:`_preload`, from :data:`.compiled.PRELOAD_AFTER`)."""
        src, d = self.spec.source, self.spec.gateset.dim
        if isinstance(src, RandomSource):
            return src.count * max(0, -(-src.max_length // depth) - 1) * d**3
        return min(self.num_moves**src.max_length, 1 << 50) * d**3

    @cached_property
    def moves(self) -> np.ndarray:
        return self.spec.gateset.move_matrices.astype(self.compute_dtype)

    def pack(
        self,
        task: Task,
        candidates: int,
        codes: np.ndarray,
        offsets: np.ndarray,
        u: np.ndarray | None,
        tableaux: np.ndarray | None = None,
    ) -> TaskResult:
        """A result from stored-form circuits and their unitaries in the compute dtype (keys
        in unique mode; unitaries cast to the stored dtype, or dropped when computed on read), or
        their packed tableaux (:attr:`rules`: the same keys, bit for bit)."""
        result = TaskResult(task.task_id, task.level, candidates, codes, offsets, None)
        if tableaux is not None:
            assert self.rules is not None
            keys = self.rules.keys(tableaux)
            result.dedup, result.alternates, result.lookup = keys, {}, keys[:, 0].copy()
        elif self.spec.unique:
            assert u is not None
            circuits = None if self.ring is None else (self.ring, codes, offsets)
            result.dedup, result.alternates, result.lookup = dedup_keys(self.spec.keys, u, circuits)
        if self.spec.stored_unitaries and u is not None:
            result.unitaries = u.astype(self.spec.np_dtype, copy=False)
        return result


def run_task(ctx: TaskContext, task: Task) -> TaskResult:
    """Compute one task: pure, given the spec and the task (which carries its input)."""
    if isinstance(ctx.spec.source, RandomSource):
        return _random(ctx, ctx.spec.source, task)
    return _enumerate(ctx, ctx.spec.source, task)


def _random(ctx: TaskContext, src: RandomSource, task: Task) -> TaskResult:
    n = task.stop - task.start
    rng = np.random.default_rng(np.random.SeedSequence(ctx.spec.seed, spawn_key=(task.task_id,)))
    lengths = rng.integers(src.min_length, src.max_length, endpoint=True, size=n)
    seqs = rng.integers(0, ctx.num_moves, size=(n, src.max_length))
    valid = np.arange(src.max_length)[None, :] < lengths[:, None]
    seqs[~valid] = ctx.num_moves
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.uint32)
    codes = seqs[valid].astype(ctx.code_dtype)
    if ctx.rules is not None:
        return ctx.pack(task, n, codes, offsets, None, ctx.rules.circuits(seqs))
    u = ctx.table.unitaries(seqs) if ctx.need_unitaries else None
    return ctx.pack(task, n, codes, offsets, u)


def _enumerate(ctx: TaskContext, src: Enumeration, task: Task) -> TaskResult:
    if task.level == 0:
        if ctx.rules is not None:
            return ctx.pack(task, 1, np.zeros(0, ctx.code_dtype), np.zeros(2, np.uint32), None, ctx.rules.identity(1))
        identity = np.eye(ctx.spec.gateset.dim, dtype=ctx.compute_dtype)[None]
        return ctx.pack(task, 1, np.zeros(0, ctx.code_dtype), np.zeros(2, np.uint32), identity)
    length = task.length
    if task.parents is None or task.parents.shape != (task.stop - task.start, length - 1):
        raise ValueError(f"task {task.task_id} carries no parents of length {length - 1}")
    parents = task.parents.astype(np.int64)  # (they travel in the stored code dtype)
    if src.prune and length > 1:
        allowed = _pruning_mask(ctx, parents[:, -1])
    else:
        allowed = np.ones((len(parents), ctx.num_moves), dtype=bool)
    if task.weight is not None:
        allowed &= (ctx.weights == task.weight)[None, :]
    parent_idx, move_idx = np.nonzero(allowed)
    codes = np.empty((len(parent_idx), length), dtype=ctx.code_dtype)
    codes[:, :-1] = parents.astype(ctx.code_dtype)[parent_idx]
    codes[:, -1] = move_idx
    offsets = np.arange(0, codes.size + 1, length, dtype=np.uint32)
    if ctx.rules is not None:
        children = ctx.rules.extend(ctx.rules.circuits(parents), allowed)
        if children.shape[1] == 1:
            # A child equal to an earlier one of this task is never kept (the first in task order wins):
            # dropped here, on the worker's core, it costs the key authority nothing (a quarter of the
            # candidates of a 3-qubit Clifford level). The task's candidate count stays that of every child.
            first = np.unique(children[:, 0], return_index=True)[1]
            first.sort()
            children, codes = children[first], codes[first]
            offsets = offsets[: len(first) + 1]
        return ctx.pack(task, int(allowed.sum()), codes.reshape(-1), offsets, None, children)
    u = extend(ctx.table.unitaries(parents), ctx.moves, allowed, ctx.spec.kernel) if ctx.need_unitaries else None
    return ctx.pack(task, len(codes), codes.reshape(-1), offsets, u)


def _pruning_mask(ctx: TaskContext, last: np.ndarray) -> np.ndarray:
    """``(parents, moves)`` True where appending the move is not trivially redundant."""
    gs = ctx.spec.gateset
    moves = np.arange(ctx.num_moves)
    inverse = gs.inverse_moves if ctx.ring is None else ctx.ring.inverse_moves  # ring keys: exact inverses only
    undoes = inverse[last][:, None] == moves[None, :]
    reordered = gs.disjoint_moves[last] & (moves[None, :] < last[:, None])
    return ~(undoes | reordered)


def recompute(ctx: TaskContext, codes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The unitaries ``(n, d, d)`` (stored dtype) of circuits ``codes``/``offsets`` (``n + 1``,
    starting at 0), bit for bit what generation computes for them (see the module docstring)."""
    spec = ctx.spec
    lengths = np.diff(offsets.astype(np.int64))
    n, width = len(lengths), int(lengths.max(initial=0))
    if isinstance(spec.source, RandomSource):
        width = spec.source.max_length
    seqs = np.full((n, width), ctx.num_moves, dtype=np.int64)
    seqs[np.arange(width)[None, :] < lengths[:, None]] = codes
    if isinstance(spec.source, RandomSource):
        return ctx.table.unitaries(seqs).astype(spec.np_dtype, copy=False)
    d = spec.gateset.dim
    out = np.empty((n, d, d), dtype=spec.np_dtype)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        if length == 0:
            out[rows] = np.eye(d)
            continue
        last = seqs[rows, length - 1]
        allowed = np.zeros((len(rows), ctx.num_moves), dtype=bool)
        allowed[np.arange(len(rows)), last] = True
        out[rows] = extend(ctx.table.unitaries(seqs[rows, : length - 1]), ctx.moves, allowed, spec.kernel)
    return out
