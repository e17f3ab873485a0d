"""The dataset specification: everything that determines a dataset's content.

A spec is stored in the dataset file as canonical JSON. Re-running the same spec on
the same file resumes it; any other spec is refused. Worker count, progress display
and such are *not* part of the spec: they never change the content.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._core.cost import CostModel, check_free_closure, describe_cost, parse_cost
from .._core.exact import SCHEMES, is_clifford, is_clifford_t
from .._core.gates import custom_gate, parse_gate
from .._core.gateset import GateSet
from .._core.kernels import KERNEL_VERSION, KERNELS
from .._core.ringmoves import is_ring_gate
from .._errors import SpecError

__all__ = ["DTYPES", "KEYS", "UNITARIES", "Enumeration", "RandomSource", "Spec", "make_spec"]

DTYPES = ("complex64", "complex128")
UNITARIES = ("stored", "computed")
"""``stored``: each record's unitary is written to disk. ``computed``: only circuits are stored; a
unitary is recomputed when read, by the same kernel, to the same bits."""
MAX_LENGTH = 10_000
KEYS = ("auto", "grid", "exact")
"""Key schemes a user asks for (``--keys``): ``grid`` (float grid keys, any gate set; the default, and
every dataset made before exact keys), ``auto`` (exact where the gate set allows), ``exact`` (refused
where the gate set allows none). A spec holds the resolved scheme, one of
:data:`unitarium._core.exact.SCHEMES`; its JSON names it only when it is not ``grid``."""


def _check_length(value: int, what: str, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= MAX_LENGTH:
        raise SpecError(f"{what} {value!r} is out of range: use {minimum} to {MAX_LENGTH}")


@dataclass(frozen=True)
class RandomSource:
    """``count`` random circuits with lengths uniform in ``[min_length, max_length]``,
    each move uniform over the gate set's moves."""

    count: int
    min_length: int
    max_length: int

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 1:
            raise SpecError(f"--count {self.count!r} must be a positive integer")
        _check_length(self.min_length, "length", 0)
        _check_length(self.max_length, "length", 0)
        if self.min_length > self.max_length:
            raise SpecError(
                f"length range {self.min_length}:{self.max_length} is inverted: write MIN:MAX with MIN <= MAX"
            )

    def to_json(self) -> dict[str, Any]:
        return {"kind": "random", "count": self.count, "min_length": self.min_length, "max_length": self.max_length}


@dataclass(frozen=True)
class Enumeration:
    """Every move sequence of length 0 to ``max_length`` in breadth-first order; with
    ``prune``, sequences that are trivially redundant are skipped (see ``_enumerate``).
    Under a cost model (:attr:`Spec.cost`), by increasing cost then length, up to ``max_cost``."""

    max_length: int
    prune: bool = True
    max_cost: int | None = None

    def __post_init__(self) -> None:
        _check_length(self.max_length, "--max-length", 0)
        if self.max_cost is not None and (
            isinstance(self.max_cost, bool) or not isinstance(self.max_cost, int) or not 0 <= self.max_cost <= 1 << 20
        ):
            raise SpecError(f"--max-cost {self.max_cost!r} must be a whole number from 0 to {1 << 20}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "enumerate", "max_length": self.max_length, "prune": self.prune}
        if self.max_cost is not None:
            out["max_cost"] = self.max_cost
        return out


Source = RandomSource | Enumeration


def parse_length(text: str) -> tuple[int, int]:
    """``"12"`` -> (12, 12); ``"1:30"`` -> (1, 30)."""
    parts = text.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise SpecError(f"--length {text!r} must be N or MIN:MAX with whole numbers") from None
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise SpecError(f"--length {text!r} must be N or MIN:MAX")


def default_task_size(dim: int) -> int:
    """Records per task: about 512 KiB of complex64 unitaries, between 1 and 4096."""
    return max(1, min(4096, (1 << 19) // (dim * dim * 8)))


@dataclass(frozen=True, eq=False)
class Spec:
    """What a dataset holds: gate set, source, dedup mode, storage dtype and seed.

    ``task_size`` (records or candidates per task) is part of the content's definition;
    it defaults to a value derived from the qubit count only.
    """

    gateset: GateSet
    source: Source
    unique: bool = False
    dtype: str = "complex64"
    seed: int = 0
    task_size: int = 0
    unitaries: str = "stored"
    extra: dict[str, Any] = field(default_factory=dict)
    cost: CostModel = None
    """``{gate name: weight}`` over every gate (:mod:`unitarium._core.cost`), or None: every gate 1."""
    keys: str = "grid"
    kernel: int = KERNEL_VERSION
    """The kernels' arithmetic (stored as ``kernel_version``): the current one for a new dataset, the
    stored one for a dataset that resumes (:meth:`adopt`; :data:`~.._core.kernels.KERNELS`)."""
    keys_auto: bool = field(default=False, init=False, repr=False)
    """Whether :attr:`keys` was chosen by ``auto`` (then a resumed dataset's stored scheme wins)."""
    keys_exact: bool = field(default=False, init=False, repr=False)
    """Whether :attr:`keys` was chosen by ``exact`` (then a resumed dataset's stored exact scheme wins)."""

    def __post_init__(self) -> None:
        self._check_cost()
        if self.dtype not in DTYPES:
            raise SpecError(f"--dtype {self.dtype!r} is not supported: use {' or '.join(DTYPES)}")
        if self.unitaries not in UNITARIES:
            raise SpecError(f"--unitaries {self.unitaries!r} is not supported: use {' or '.join(UNITARIES)}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise SpecError(f"--seed {self.seed!r} must be a non-negative integer")
        if self.task_size == 0:
            object.__setattr__(self, "task_size", default_task_size(self.gateset.dim))
        if not 1 <= self.task_size <= 1 << 20:
            raise SpecError(f"--task-size {self.task_size} is out of range 1..{1 << 20}")
        self.check_memory()
        object.__setattr__(self, "keys_auto", self.keys == "auto")
        object.__setattr__(self, "keys_exact", self.keys == "exact")
        object.__setattr__(self, "keys", self._resolve_keys(self.keys))

    def _resolve_keys(self, keys: str) -> str:
        if keys not in KEYS + SCHEMES:
            raise SpecError(f"--keys {keys!r} is not supported: use {', '.join(KEYS)}")
        if keys in ("auto", "grid"):
            return self.exact_scheme() if keys == "auto" and self.unique else "grid"
        if not self.unique:
            raise SpecError(f"--keys {keys} goes with --unique (keys decide which unitaries are the same)")
        allowed = self.exact_scheme()
        if keys == "channel" and allowed == "ring":  # a Clifford+T dataset made before ring keys
            allowed = "channel" if all(is_clifford_t(g.matrix[None]) for g in self.gateset.gates) else "grid"
        if allowed == "grid" or (keys == "tableau" and allowed != "tableau"):
            gates = ",".join(g.name for g in self.gateset.gates)
            what = "all Clifford" if keys == "tableau" else "all Clifford, nor all Clifford+T"
            raise SpecError(
                f"--keys {keys}: the gates {gates} are not {what}, so their unitaries have no exact key "
                "of that kind: use --keys auto or grid"
            )
        return allowed if keys == "exact" else keys

    def exact_scheme(self) -> str:
        """The exact key scheme the gate set allows, judged on each gate's matrix: ``tableau`` (all
        Clifford), ``ring`` (all in the Clifford+T ring), else ``grid``. (``channel``, the ring's keys
        read off floats only, is what datasets made before ``ring`` resume with.)"""
        gates = [g.matrix[None] for g in self.gateset.gates]
        if all(is_clifford(m) for m in gates):
            return "tableau"
        if all(is_ring_gate(m) for m in gates):
            return "ring"
        return "grid"

    def adopt(self, stored: object) -> Spec:
        """This spec as the dataset it resumes was made (``stored``: that dataset's spec JSON): its
        kernel version where this code still computes it (:data:`~.._core.kernels.KERNELS`: a dataset
        keeps its arithmetic), and its key scheme as :meth:`adopt_keys` says."""
        spec = self.adopt_keys(stored)
        theirs = stored.get("kernel_version") if isinstance(stored, dict) else None
        if theirs != spec.kernel and theirs in KERNELS:
            return dataclasses.replace(spec, kernel=theirs)
        return spec

    def adopt_keys(self, stored: object) -> Spec:
        """This spec with the key scheme of the dataset it resumes (``stored``: that dataset's spec JSON),
        when this one's scheme was chosen by ``auto``, or by ``exact`` and the stored one is exact: a
        dataset keeps the keys it was made with (one made before exact keys has none in its JSON: grid;
        a Clifford+T one made before ring keys: channel)."""
        if not ((self.keys_auto or self.keys_exact) and self.unique and isinstance(stored, dict)):
            return self
        theirs = stored.get("keys", "grid")
        if theirs == self.keys or theirs not in SCHEMES or (self.keys_exact and theirs == "grid"):
            return self
        try:
            return dataclasses.replace(self, keys=theirs)
        except SpecError:  # a scheme this gate set does not allow: the mismatch is reported on open
            return self

    def _check_cost(self) -> None:
        src = self.source
        if self.cost is None:
            if isinstance(src, Enumeration) and src.max_cost is not None:
                raise SpecError("--max-cost needs --cost (with every gate 1, use --max-length)")
            return
        names = [g.name for g in self.gateset.gates]
        if (
            not isinstance(self.cost, dict)
            or sorted(self.cost) != sorted(names)
            or any(isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in self.cost.values())
        ):
            raise SpecError(f"cost {self.cost!r} is not a weight for each gate of {','.join(names)}")
        object.__setattr__(self, "cost", {name: self.cost[name] for name in names})  # in gate order
        if not isinstance(src, Enumeration) or not self.unique:
            raise SpecError("--cost orders a unique enumeration: use it with --enumerate --unique")
        if src.max_cost is None and src.max_length == MAX_LENGTH:
            raise SpecError("--cost needs a bound: --max-cost C (and/or --max-length L)")

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def compute_dtype(self) -> np.dtype:
        """The dtype products are formed in: complex128 in unique mode (the dedup keys need it),
        else the stored dtype. Stored unitaries are cast from it to :attr:`np_dtype`."""
        return np.dtype(np.complex128) if self.unique else self.np_dtype

    @property
    def stored_unitaries(self) -> bool:
        return self.unitaries == "stored"

    def memory_estimate(self) -> int:
        """Bytes a worker needs at peak: move matrices, product table and a task's batch."""
        d = self.gateset.dim
        moves = len(self.gateset.moves) if self.gateset.num_qubits <= 8 else 3 * self.gateset.num_qubits**2
        per_unitary = d * d * 16
        batch = self.task_size * max(1, moves if isinstance(self.source, Enumeration) else 1)
        return per_unitary * (moves + 4 * batch) + (16 << 20)

    def check_memory(self) -> None:
        need = self.memory_estimate()
        total = memory_limit()
        if total is not None and need > total // 2:
            raise SpecError(
                f"{self.gateset.num_qubits} qubits need about {need / 2**30:.1f} GiB per worker, more than half "
                f"of the {total / 2**30:.1f} GiB this machine allows (RAM, cgroup or ulimit -v): use fewer qubits"
            )

    def to_json(self) -> dict[str, Any]:
        out = self._json()
        if self.cost is not None:  # absent for the default: default-cost specs read as before
            out["cost"] = dict(self.cost)
        return out

    def _json(self) -> dict[str, Any]:
        custom = {
            g.name: [[[float(v.real), float(v.imag)] for v in row] for row in g.matrix]
            for g in self.gateset.gates
            if g.custom
        }
        coupling = self.gateset.coupling
        return {
            "gates": [g.name for g in self.gateset.gates],
            "custom_gates": custom,
            "qubits": self.gateset.num_qubits,
            "coupling": coupling if isinstance(coupling, str) else [list(e) for e in coupling],
            "source": self.source.to_json(),
            "unique": self.unique,
            "dtype": self.dtype,
            "seed": self.seed,
            "task_size": self.task_size,
            "unitaries": self.unitaries,
            "kernel_version": self.kernel,
        } | ({} if self.keys == "grid" else {"keys": self.keys})

    def canonical_json(self) -> str:
        """The spec as compact, key-sorted JSON: equal specs give equal strings."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Spec:
        """Rebuild a spec from :meth:`to_json` output (as stored in a dataset)."""
        custom = {name: custom_gate(name, {"matrix": m}) for name, m in data.get("custom_gates", {}).items()}
        gates = tuple(parse_gate(name, custom) for name in data["gates"])
        coupling = data["coupling"]
        if not isinstance(coupling, str):
            coupling = tuple(tuple(e) for e in coupling)
        src = data["source"]
        source: Source
        if src["kind"] == "random":
            source = RandomSource(src["count"], src["min_length"], src["max_length"])
        else:
            source = Enumeration(src["max_length"], src["prune"], src.get("max_cost"))
        return cls(
            GateSet(gates, data["qubits"], coupling),
            source,
            unique=data["unique"],
            dtype=data["dtype"],
            seed=data["seed"],
            task_size=data["task_size"],
            unitaries=data.get("unitaries", "stored"),
            cost=data.get("cost"),
            keys=data.get("keys", "grid"),
            kernel=data.get("kernel_version", KERNEL_VERSION),
        )

    def describe(self) -> str:
        """One line for humans: ``clifford+t... on 2 qubits, random 1000 x 12, seed 7``."""
        gates = ",".join(g.name for g in self.gateset.gates)
        src = self.source
        if isinstance(src, RandomSource):
            length = str(src.min_length) if src.min_length == src.max_length else f"{src.min_length}:{src.max_length}"
            what = f"random count={src.count} length={length}"
        else:
            what = f"enumerate max_length={src.max_length}{'' if src.prune else ' (no pruning)'}"
            if self.cost is not None:
                bound = "" if src.max_cost is None else f" max_cost={src.max_cost}"
                what += f" cost={describe_cost(self.cost)}{bound}"
        return (
            f"gates={gates} qubits={self.gateset.num_qubits} coupling={self.to_json()['coupling']} "
            f"{what}{' unique' if self.unique else ''} dtype={self.dtype} seed={self.seed}"
            + ("" if self.stored_unitaries else " unitaries=computed")
            + ("" if self.keys == "grid" else f" keys={self.keys}")
        )


def memory_limit() -> int | None:
    """Bytes this process may use: physical memory, lowered by ``RLIMIT_AS`` and by a
    cgroup limit (in a container, physical memory is the host's); None if unknown."""
    limits = []
    with contextlib.suppress(ValueError, OSError, AttributeError):
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    for name in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):  # absent, or "max"
            limits.append(int(Path(name).read_text()))
    return min(limits) if limits else None


def make_spec(
    *,
    gates: str | list[str],
    qubits: int,
    count: int | None = None,
    length: str | int | None = None,
    max_length: int | None = None,
    unique: bool = False,
    prune: bool = True,
    coupling: str = "full",
    gate_file: str | os.PathLike[str] | None = None,
    dtype: str = "complex64",
    seed: int = 0,
    unitaries: str = "stored",
    cost: str | dict[str, int] | None = None,
    max_cost: int | None = None,
    keys: str = "grid",
    task_size: int = 0,
) -> Spec:
    """Build a spec the way the CLI does: ``gates`` as ``"h,t,cx"`` or a preset, and
    either ``count`` + ``length`` (``12`` or ``"1:30"``) for random circuits, or
    ``max_length`` for exhaustive enumeration. ``unitaries="computed"`` stores circuits only.
    ``cost`` (``"t=1,tdg=1"`` or ``{"t": 1, "tdg": 1}``: unnamed gates weigh 0) enumerates by
    increasing cost up to ``max_cost`` (and/or ``max_length``); see :mod:`unitarium._core.cost`.
    ``keys`` (unique mode): ``grid`` (the default: float grid keys), ``auto`` (exact keys where the
    gate set allows) or ``exact``. Exact keys cost 1.3x grid keys per candidate today (BENCHMARKS.md,
    "Exact keys"): the default moves to ``auto`` once they are as fast. ``task_size``: records
    (random) or candidates (enumeration) per task; 0: :func:`default_task_size` (part of the spec:
    random content depends on it; an enumeration's records do not)."""
    from .._core.gates import load_gate_file, parse_gates, split_gate_list
    from .._core.gateset import parse_coupling

    custom = load_gate_file(gate_file) if gate_file else {}
    names = split_gate_list(gates) if isinstance(gates, str) else list(gates)
    if not names and custom:
        names = list(custom)
    if not isinstance(qubits, int) or isinstance(qubits, bool) or qubits < 1:
        raise SpecError(f"--qubits {qubits!r} must be a positive integer")
    gateset = GateSet(tuple(parse_gates(names, custom)), qubits, parse_coupling(coupling, qubits))
    source: Source
    model = parse_cost(cost, [g.name for g in gateset.gates])
    if model is None and max_cost is not None and max_length is None:
        max_length = max_cost  # every gate 1: the cost is the length (the same spec as --max-length)
    elif model is None and max_cost is not None:
        max_length = min(max_cost, max_length)  # type: ignore[type-var]
    if max_length is not None or max_cost is not None:
        if count is not None or length is not None:
            raise SpecError("--enumerate takes --max-length only, not --count or --length")
        source = Enumeration(
            MAX_LENGTH if max_length is None else max_length, prune, None if model is None else max_cost
        )
    else:
        if cost is not None:
            raise SpecError("--cost orders a unique enumeration: use it with --enumerate --unique")
        if count is None or length is None:
            raise SpecError("random circuits need --count and --length (or use --enumerate --max-length)")
        lo, hi = parse_length(str(length))
        source = RandomSource(count, lo, hi)
    if not isinstance(task_size, int) or isinstance(task_size, bool):
        raise SpecError(f"--task-size {task_size!r} must be an integer")
    spec = Spec(
        gateset,
        source,
        unique=unique,
        dtype=dtype,
        seed=seed,
        task_size=task_size,
        unitaries=unitaries,
        cost=model,
        keys=keys,
    )
    check_free_closure(gateset, model)
    return spec
