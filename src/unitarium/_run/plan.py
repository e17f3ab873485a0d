"""What a run computes, and with how many workers: the tasks of a spec in order (:func:`plan`),
the worker count this machine can take, and the size check before a random run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .._core.codec import code_dtype
from .._core.cost import level_of, move_weights
from .._errors import SpecError, StorageError, UnitariumError
from .._read.dataset import Dataset
from .._spec.sources import Task
from .._spec.spec import Enumeration, RandomSource, Spec, memory_limit
from .._storage.keyruns import file_resident
from .._storage.manifest import Manifest
from .._storage.sqlite import path_text

__all__ = [
    "BARRIER",
    "SIZE_NOTE_BYTES",
    "adopt_stored",
    "check_size",
    "check_workers",
    "default_workers",
    "estimated_bytes",
    "plan",
    "task_count",
]

BARRIER = None
"""In a plan: everything before must be committed before what follows is planned."""
_MAX_WORKERS = 1024


PARENT_PAGES = 32 << 20
"""Bytes of the dataset's pages the plan's reader may keep mapped (SQLite maps a reader's file, and a page
read stays resident until the map goes): past that, the reader is opened afresh."""


class _Parents:
    """The plan's reader of parent circuits: a :class:`Dataset` reopened whenever the file-backed pages
    of this process have grown :data:`PARENT_PAGES` above the lowest level seen since it was opened (an
    enumeration reads every record of a level once: kept mapped, its pages would be a resident copy of
    the dataset). A reopen takes the level it leaves as the new mark: file-backed pages that are not
    the reader's (a library loaded meanwhile, e.g. numba's LLVM: ~40 MiB) stay, and against the old
    mark every task would reopen the reader (~2 ms each)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reader = Dataset(path)
        self.low = file_resident()

    def circuit_array(self, start: int, stop: int, length: int) -> np.ndarray:
        circuits = self.reader.circuit_array(start, stop, length)
        now = file_resident()
        self.low = min(self.low, now)
        if now - self.low > PARENT_PAGES:
            self.reader.close()
            self.reader = Dataset(self.path)
            self.low = file_resident()
        return circuits

    def __enter__(self) -> _Parents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.close()


def default_workers() -> int:
    """One less than the cores this process may use (at least 1): the writer needs a core of
    its own (receiving results and committing them costs about as much CPU per record as
    computing a 2-qubit circuit). With one worker the writer computes in-process and commits
    in a background thread, which keeps two cores busy without moving results between
    processes (measured: BENCHMARKS.md, "Workers")."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def plan(spec: Spec, manifest: Manifest, done: int, *, reader_path: Path) -> Iterator[Task | None]:
    """Tasks from task ``done`` on, in order; ``None`` marks a barrier (everything before must be
        committed). Enumeration tasks carry their parents' circuits, read from the committed records
    (the dataset at ``reader_path``; the level ranges from ``manifest``)."""
    size = spec.task_size
    src = spec.source
    if isinstance(src, RandomSource):
        for t in range(done, -(-src.count // size)):
            yield Task(t, 0, t * size, min(src.count, (t + 1) * size))
        return
    if spec.cost is not None:
        yield from _cost_plan(spec, manifest, done, reader_path)
        return
    if done == 0:
        yield Task(0, 0, 0, 1)
    yield BARRIER
    task_id = 1
    per_task = max(1, size // len(spec.gateset.moves))
    compact = code_dtype(len(spec.gateset.moves))  # parents travel as stored (8x fewer bytes than int64)
    with _Parents(reader_path) as reader:
        for level in range(1, src.max_length + 1):
            parents = manifest.level_range(level - 1)
            if parents is None or parents[0] == parents[1]:
                return
            for start in range(parents[0], parents[1], per_task):
                stop = min(parents[1], start + per_task)
                if task_id >= done:
                    circuits = reader.circuit_array(start, stop, level - 1).astype(compact)
                    yield Task(task_id, level, start, stop, circuits)
                task_id += 1
            yield BARRIER


def _cost_plan(spec: Spec, manifest: Manifest, done: int, reader_path: Path) -> Iterator[Task | None]:
    """Enumeration under a cost model (see :mod:`unitarium._spec.sources`): levels ``(c, l)`` in
    increasing ``(cost, length)`` order, each the children of the levels ``(c - w, l - 1)`` by the
    moves of weight ``w``, heaviest first (so the parents come in record order)."""
    src = spec.source
    assert isinstance(src, Enumeration)
    weights = sorted({int(w) for w in move_weights(spec.gateset, spec.cost)}, reverse=True)
    heaviest = max(weights)
    max_cost = src.max_cost if src.max_cost is not None else heaviest * src.max_length
    per_task = max(1, spec.task_size // len(spec.gateset.moves))
    compact = code_dtype(len(spec.gateset.moves))
    if done == 0:
        yield Task(0, 0, 0, 1)
    yield BARRIER
    filled: dict[tuple[int, int], tuple[int, int]] = {(0, 0): (0, 1)}  # nonempty levels: record ranges
    longest: dict[int, int] = {0: 0}  # per cost, the longest nonempty level
    task_id = 1
    with _Parents(reader_path) as reader:
        for cost in range(0, max_cost + 1):
            if cost > 0 and not any(c in longest for c in range(cost - heaviest, cost)):
                return  # no level within reach of the heaviest move: nothing costs more
            length = 1
            while length <= src.max_length and length - 1 <= max(longest[c] for c in longest if c <= cost):
                groups = [(w, filled[(cost - w, length - 1)]) for w in weights if (cost - w, length - 1) in filled]
                if groups:
                    for weight, (first, end) in groups:
                        for start in range(first, end, per_task):
                            stop = min(end, start + per_task)
                            if task_id >= done:
                                parents = reader.circuit_array(start, stop, length - 1).astype(compact)
                                yield Task(task_id, level_of(cost, length), start, stop, parents, weight)
                            task_id += 1
                    yield BARRIER
                    found = manifest.level_range(level_of(cost, length))
                    if found is not None and found[0] < found[1]:
                        filled[(cost, length)] = found
                        longest[cost] = max(length, longest.get(cost, 0))
                length += 1


def task_count(spec: Spec) -> int | None:
    """How many tasks a random spec has (None for enumeration: it depends on the levels)."""
    src = spec.source
    return -(-src.count // spec.task_size) if isinstance(src, RandomSource) else None


def check_workers(spec: Spec, workers: int) -> int:
    """``workers`` if this machine can run that many (each needs its memory estimate and the
    processes are for cores to share), capped at the tasks that exist; else a clear SpecError."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SpecError(f"--workers {workers} must be at least 1")
    cores = default_workers() + 1
    memory = memory_limit()
    fit = memory // max(1, spec.memory_estimate() + (64 << 20)) if memory else None
    most = max(1, min(4 * cores, fit if fit is not None else 4 * cores, _MAX_WORKERS))
    if workers > most:
        raise SpecError(
            f"--workers {workers} is more than this machine can run: at most {most} "
            f"({cores} cores; each worker needs about {spec.memory_estimate() / 2**20:,.0f} MiB)"
        )
    tasks = task_count(spec)
    return workers if tasks is None else max(1, min(workers, tasks))


SIZE_NOTE_BYTES = 1 << 30
"""A random run that will write more than this is announced (:attr:`Progress.note`) before it starts."""


def estimated_bytes(spec: Spec) -> int | None:
    """About how many bytes a random dataset of ``spec`` takes when complete (an upper bound in
    unique mode, where duplicates are dropped); None for enumeration (it depends on pruning)."""
    src = spec.source
    if not isinstance(src, RandomSource):
        return None
    gs = spec.gateset
    u = gs.dim**2 * spec.np_dtype.itemsize if spec.stored_unitaries else 0
    code = 1 if len(gs.moves) <= 256 else 2
    per_record = u + code * (src.min_length + src.max_length) / 2 + 4 + (16 + 24 if spec.unique else 0)
    return int(src.count * per_record * 1.05)  # pages, indexes


def check_size(path: Path, spec: Spec) -> str | None:
    """Before a random run: refuse one whose dataset cannot fit in the free space of its
    filesystem (unique mode may drop records: only announced); returns the note announcing a
    large one (for :func:`announce`, once the run holds its write lock), else None."""
    size = estimated_bytes(spec)
    if size is None:
        return None
    try:
        where = path if path.is_dir() else path.absolute().parent
        while not where.exists() and where != where.parent:  # parents the writer will create
            where = where.parent
        free = shutil.disk_usage(where).free
        have = path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*.db"))
        # (a path not there yet holds nothing: rglob of a missing directory yields nothing)
    except OSError:
        return None  # the writer reports a missing or unreadable path
    count = spec.source.count  # type: ignore[union-attr]  # random (estimated_bytes said so)
    what = f"{count:,} records take about {size / 2**30:,.1f} GiB" + (" at most (--unique)" if spec.unique else "")
    if size - have > free and not spec.unique:
        raise StorageError(
            f"--count {count:,}: {what}, and {path_text(where)} has {free / 2**30:,.1f} GiB free: lower --count, "
            "use --unitaries computed (circuits only), or write where there is room (nothing was written)"
        )
    return f"{what}; {free / 2**30:,.1f} GiB free" if size >= SIZE_NOTE_BYTES else None


def adopt_stored(path: str | os.PathLike[str], spec: Spec) -> Spec:
    """``spec`` as the dataset at ``path`` was made, when ``spec`` resumes it (:meth:`Spec.adopt`): its kernel
    version, where this code computes it, and its key scheme where ``spec`` chose its keys by ``auto`` or ``exact``
    (one made before exact keys resumes with grid keys, a Clifford+T one made before ring keys with channel keys)."""
    try:
        with Dataset(path) as ds:
            stored = ds.meta.get("spec")
    except (UnitariumError, OSError):  # nothing there yet (or the writer reports what is wrong)
        return spec
    return spec.adopt(stored)
