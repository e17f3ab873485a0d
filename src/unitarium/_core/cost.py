"""Cost models: an integer weight per gate, and the cost of a circuit (the sum of its gates' weights).

A cost model is stored as ``{gate name: weight}`` over every gate of the gate set (gates a user did
not name weigh 0: ``--cost t=1,tdg=1`` is the T-count), or ``None`` for the default, every gate 1
(a circuit's cost is then its length). A model that weighs every gate 1 *is* the default and is
stored as ``None``, so a default-cost spec reads exactly as one made before cost models existed.

Gates of weight 0 are *free*. Unique enumeration by cost (``unitarium._spec.sources``) expands free
moves within a cost level, so the free gates must generate a finite set of unitaries (up to phase),
small enough to enumerate: :func:`check_free_closure` refuses the others.

Cost levels are stored in the ``level`` column of the task list as ``cost * LEVEL_STRIDE + length``
(:func:`level_of`): a cost level's length sub-levels are consecutive, and with the default model a
level is the length, as always.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import SpecError

if TYPE_CHECKING:
    from .gateset import GateSet

__all__ = [
    "FREE_CLOSURE_LIMIT",
    "LEVEL_STRIDE",
    "MAX_WEIGHT",
    "CostModel",
    "check_free_closure",
    "circuit_cost",
    "circuit_costs",
    "describe_cost",
    "level_of",
    "move_weights",
    "parse_cost",
    "split_level",
]

CostModel = dict[str, int] | None
"""``{gate name: weight}`` over every gate of the gate set, or None (every gate 1)."""

MAX_WEIGHT = 1000
LEVEL_STRIDE = 10_001
"""Encoded levels: ``cost * LEVEL_STRIDE + length`` (lengths are at most 10,000)."""
FREE_CLOSURE_LIMIT = 200_000
"""The most unitaries (up to phase) the free gates may generate: the 2-qubit Clifford group (11,520)
fits; the 3-qubit one (92,897,280) does not."""
_ORDER_LIMIT = 1024


def level_of(cost: int, length: int) -> int:
    """The stored level of the records of cost ``cost`` and length ``length``."""
    return cost * LEVEL_STRIDE + length


def split_level(level: int) -> tuple[int, int]:
    """``(cost, length)`` of a stored level (with the default model: ``(length, length)``)."""
    return divmod(level, LEVEL_STRIDE)


def parse_cost(cost: str | Mapping[str, int] | None, gate_names: list[str]) -> CostModel:
    """The canonical model of ``cost`` (``"t=1,tdg=1"`` or ``{"t": 1, "tdg": 1}``) over the gates
    ``gate_names``: unnamed gates weigh 0; None (and any model weighing every gate 1) is the default."""
    if cost is None:
        return None
    items: list[tuple[str, Any]]
    if isinstance(cost, str):
        items = []
        for part in (p.strip() for p in cost.split(",")):
            if not part:
                continue
            name, eq, value = part.partition("=")
            if not eq:
                raise SpecError(f"--cost {cost!r}: write GATE=WEIGHT pairs, comma-separated (e.g. t=1,tdg=1)")
            try:
                items.append((name.strip(), int(value)))
            except ValueError:
                raise SpecError(f"--cost {cost!r}: the weight of {name.strip()!r} must be a whole number") from None
    elif isinstance(cost, Mapping):
        items = list(cost.items())
    else:
        raise SpecError(f"cost must be a text like 't=1,tdg=1' or a dict of gate weights, got {type(cost).__name__}")
    if not items:
        raise SpecError("--cost is empty: name at least one gate and its weight (e.g. t=1,tdg=1)")
    model = dict.fromkeys(gate_names, 0)
    seen: set[str] = set()
    for name, weight in items:
        if name not in model:
            raise SpecError(f"--cost names {name!r}, which is not a gate of this gate set ({','.join(gate_names)})")
        if name in seen:
            raise SpecError(f"--cost names {name!r} twice")
        if isinstance(weight, bool) or not isinstance(weight, int | np.integer) or not 0 <= weight <= MAX_WEIGHT:
            raise SpecError(f"--cost {name}={weight!r}: a weight is a whole number from 0 to {MAX_WEIGHT}")
        seen.add(name)
        model[name] = int(weight)
    if all(w == 1 for w in model.values()):
        return None
    if not any(model.values()):
        raise SpecError("--cost weighs every gate 0: give at least one gate a positive weight")
    return model


def describe_cost(model: CostModel) -> str:
    """``"t=1,tdg=1"`` (the gates of positive weight), or ``"length"`` for the default."""
    if model is None:
        return "length"
    return ",".join(f"{g}={w}" for g, w in model.items() if w)


def move_weights(gateset: GateSet, model: CostModel) -> np.ndarray:
    """``(num_moves,)`` int64: the weight of each move (its gate's)."""
    names = [g.name for g in gateset.gates]
    if model is None:
        return np.ones(len(gateset.moves), dtype=np.int64)
    return np.array([model[names[m.gate]] for m in gateset.moves], dtype=np.int64)


def circuit_costs(codes: np.ndarray, offsets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(n,)`` int64: the cost of each circuit of the flat ``codes`` split at ``offsets`` (``n + 1``,
    from 0), given the per-move ``weights`` (:func:`move_weights`)."""
    per_move = np.asarray(weights, dtype=np.int64)[np.asarray(codes, dtype=np.intp)]
    total = np.concatenate([[0], np.cumsum(per_move)])
    offsets = np.asarray(offsets, dtype=np.int64)
    return total[offsets[1:]] - total[offsets[:-1]]


def circuit_cost(circuit: Any, cost_model: str | Mapping[str, int] | None, gateset: GateSet | None = None) -> int:
    """The cost of one circuit under ``cost_model`` (a dataset's ``ds.spec.cost``, a text like
    ``"t=1,tdg=1"``, a dict, or None: every gate 1). ``circuit``: a unitarium ``Circuit`` or
    ``Record``, move codes with their ``gateset``, or a Qiskit ``QuantumCircuit`` (its gates by name;
    a gate the model does not name weighs 0 under a model, 1 under the default; barriers are free)."""
    circuit = getattr(circuit, "circuit", circuit)  # a Record
    if hasattr(circuit, "count_ops"):  # a Qiskit circuit
        ops = {str(k): int(v) for k, v in circuit.count_ops().items() if k != "barrier"}
        if cost_model is None:
            return sum(ops.values())
        names = sorted(set(ops) | (set(cost_model) if isinstance(cost_model, Mapping) else set()))
        if isinstance(cost_model, str):
            names = sorted(set(ops) | {p.partition("=")[0].strip() for p in cost_model.split(",") if p.strip()})
        weight = parse_cost(cost_model, names) or dict.fromkeys(names, 1)
        return sum(weight[name] * n for name, n in ops.items())
    if hasattr(circuit, "gateset") and hasattr(circuit, "codes"):
        gateset, codes = circuit.gateset, circuit.codes
    else:
        if gateset is None:
            raise SpecError("circuit_cost of move codes needs their gateset")
        codes = circuit
    codes = np.asarray(codes, dtype=np.int64).reshape(-1)
    weights = move_weights(gateset, parse_cost(cost_model, [g.name for g in gateset.gates]))
    return int(circuit_costs(codes, np.array([0, len(codes)]), weights)[0])


def check_free_closure(gateset: GateSet, model: CostModel, *, limit: int = FREE_CLOSURE_LIMIT) -> int:
    """How many unitaries (up to phase) the free moves generate; raises :class:`SpecError` (one line)
    when that set is infinite (a product of at most two free moves has no power up to 1,024 equal to
    the identity up to phase: e.g. ``h`` and ``t``), or larger than ``limit``."""
    weights = move_weights(gateset, model)
    free = np.flatnonzero(weights == 0)
    if not len(free):
        return 1
    names = ",".join(sorted({gateset.gates[gateset.moves[i].gate].name for i in free}))
    what = f"--cost: the free gates (weight 0) {names} on {gateset.num_qubits} qubit{'s' * (gateset.num_qubits > 1)}"
    mats = gateset.move_matrices[free]
    pairs = (mats[:, None] @ mats[None]).reshape(-1, gateset.dim, gateset.dim)
    for u, text in _with_text(np.concatenate([mats, pairs]), [gateset.moves[i].text for i in free]):
        if not _finite_order(u):
            raise SpecError(
                f"{what} generate an infinite set of unitaries ({text!r} has no power up to {_ORDER_LIMIT:,} "
                "equal to the identity up to phase): give some of them a weight"
            )
    size = _closure_size(mats, limit)
    if size > limit:
        raise SpecError(
            f"{what} generate more than {limit:,} unitaries up to phase, too many to enumerate at each cost "
            "(the 2-qubit Clifford group has 11,520, the 3-qubit one 92,897,280): give some of them a weight"
        )
    return size


def _with_text(us: np.ndarray, texts: list[str]) -> list[tuple[np.ndarray, str]]:
    m = len(texts)
    labels = texts + [f"{texts[b]}; {texts[a]}" for a in range(m) for b in range(m)]  # pairs[a, b] = M_a M_b
    return list(zip(us, labels, strict=True))


def _finite_order(u: np.ndarray) -> bool:
    """Whether some power ``k <= 1024`` of ``u`` is a phase times the identity (by its eigenvalues)."""
    eig = np.linalg.eigvals(u)
    turns = np.angle(eig / eig[0]) / (2 * np.pi)
    k = np.arange(1, _ORDER_LIMIT + 1)[:, None]
    scaled = k * turns[None, :]
    return bool(np.any(np.all(np.abs(scaled - np.round(scaled)) < 1e-6, axis=1)))


def _closure_size(mats: np.ndarray, limit: int) -> int:
    """Breadth-first closure of the identity under left multiplication by ``mats``, deduplicated up
    to phase by the dedup keys; stops once it exceeds ``limit`` (and returns a count above it)."""
    from .canonical import DEDUP
    from .keyset import KeySet

    d = mats.shape[-1]
    frontier = np.eye(d, dtype=np.complex128)[None]
    keys = KeySet(DEDUP.wide_keys(frontier)[0])
    size = 1
    while len(frontier):
        products = (mats[None] @ frontier[:, None]).reshape(-1, d, d)
        primary, alternates = DEDUP.wide_keys(products)
        keep = keys.select_new(primary, alternates)
        keys.add(primary[keep])
        frontier = products[keep]
        size += len(frontier)
        if size > limit:
            return size
    return size
