"""Executors: where the jobs of a sharded run execute, behind one small interface.

The driver (:class:`._driver.Driver`) plans the spec's tasks in order, decides deduplication in
task order (unique mode: the one ordered authority) and is the only writer of the manifest, the
commit point (:mod:`._shards`). :class:`JobRun` groups the planned tasks into *jobs*: runs of
consecutive spec tasks (``first..last``, one enumeration level at most), sized to take about
:data:`TARGET_SECONDS`, built from the spec and those tasks alone (enumeration: they carry their
parents' circuits, read from the committed dataset). A job computes its tasks and writes them as ONE
segment, ``shards/t<first>-<last>.db``, atomically (a temporary name unique to the attempt,
``fsync``, rename, ``fsync`` the directory), and returns small metadata only (the
:class:`~._shards.Published` tasks), so a job re-run by its executor writes the same content under
the same name, and the driver lists each job's tasks in the manifest in one transaction, in order.

Unique mode runs each job twice (idempotent, nothing held between the calls): phase 1
(:func:`chunk_keys`) returns the dedup keys (16 bytes per candidate), the driver decides in task
order which rows are new, and phase 2 (:func:`write_chunk`) recomputes the tasks and writes the kept
rows. Enumeration levels are barriers: a level starts once the previous one is committed.

An executor only runs jobs: anything with the :class:`JobExecutor` methods. :class:`FuturesExecutor`
adapts any :class:`concurrent.futures.Executor` (the standard library's pools, Dask's
``Client.get_executor()``, ``mpi4py.futures``, loky); :mod:`._rayrun` adapts Ray. A new engine is
one adapter. The content never depends on the executor, its size or its retries.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import queue
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import BrokenExecutor, CancelledError, Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .._errors import SpecError, UnitariumError, WorkerError
from .._spec.sources import Task, TaskContext, run_task
from .._spec.spec import RandomSource, Spec
from .._storage.schema import block_format
from .._storage.shards import SHARDS, DirectoryWriter, Published, SegmentWriter, range_segment_name
from .driver import RESUME, Driver, Execute
from .plan import default_workers

__all__ = [
    "TARGET_SECONDS",
    "FuturesExecutor",
    "JobExecutor",
    "JobFailed",
    "JobLost",
    "JobRun",
    "RunStats",
    "chunk_keys",
    "remove_job_temporaries",
    "run_jobs",
    "write_chunk",
]

TARGET_SECONDS = 1.5
"""What a job should take: a distributed executor costs milliseconds per job, so jobs of >= 1 s keep it below 1%."""
POLL_S = 0.2


# -- in the executor's workers ------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _context(spec_text: str) -> TaskContext:
    """The task context of a spec, built once per worker process (the product table)."""
    return TaskContext(Spec.from_json(json.loads(spec_text)), run=True)


def chunk_keys(
    spec_text: str, tasks: list[Task]
) -> tuple[list[tuple[np.ndarray, dict[int, np.ndarray], np.ndarray]], float]:
    """Phase 1 of a unique job: each task's :meth:`~.._spec.sources.TaskResult.decision_keys` (its dedup keys
    ``(candidates, 2)``, their alternates and order), and the seconds it took."""
    t0 = time.perf_counter()
    ctx = _context(spec_text)
    keys = [run_task(ctx, task).decision_keys() for task in tasks]
    return keys, time.perf_counter() - t0


def write_chunk(
    spec_text: str,
    tasks: list[Task],
    keep: list[np.ndarray] | None,
    directory: str,
    network: bool,
    dataset: str | None,
) -> tuple[list[Published], float]:
    """Compute ``tasks`` (unique mode: keep the rows of ``keep``) and publish them as the segment
    ``t<first>-<last>`` of the dataset of id ``dataset`` (hex; None: schema 2); returns their
    :class:`Published` entries and the seconds it took. The same arguments always write the same
    content under the same name."""
    t0 = time.perf_counter()
    ctx = _context(spec_text)
    name = range_segment_name(tasks[0].task_id, tasks[-1].task_id)
    fmt = block_format(ctx.spec, None if dataset is None else bytes.fromhex(dataset))
    segment = SegmentWriter(Path(directory), name, fmt, network=network)
    try:
        for i, task in enumerate(tasks):
            result = run_task(ctx, task)
            segment.add(result if keep is None else result.select(keep[i]))
        published = segment.publish()
    finally:
        segment.discard()  # nothing once published; else the attempt's temporary file
    return published, time.perf_counter() - t0


# -- the executor interface -----------------------------------------------------------------------------


class JobFailed(Exception):
    """A job raised: its message, in words (the task's own error for a :class:`UnitariumError`)."""


class JobLost(Exception):
    """A job did not finish, and its executor will not run it again (a worker or node died, the
    executor broke or was shut down): what happened, as a phrase after "jobs first..last"."""


class JobExecutor(Protocol):
    """What :class:`JobRun` needs of an engine: submit a function call, learn which calls are done,
    fetch a result (raising :class:`JobFailed` or :class:`JobLost`), and cancel what is in flight."""

    jobs: str
    """What its jobs are called in messages ("Ray tasks", "executor jobs")."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def ready(self, handles: dict[Any, Any], timeout: float) -> list[Any]: ...

    def result(self, handle: Any) -> Any: ...

    def cancel(self, handles: dict[Any, Any]) -> None: ...


class FuturesExecutor:
    """A :class:`concurrent.futures.Executor` (or anything whose ``submit`` returns futures with
    ``add_done_callback``, ``result`` and ``cancel``: Dask's, mpi4py's, loky's) as a
    :class:`JobExecutor`. Its owner keeps it: nothing here shuts it down."""

    jobs = "executor jobs"

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.done: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        future = self.executor.submit(fn, *args)
        future.add_done_callback(self.done.put)  # from the executor's thread, or at once if done
        return future

    def ready(self, handles: dict[Any, Any], timeout: float) -> list[Any]:
        try:
            done = [self.done.get(timeout=timeout)]
        except queue.Empty:
            return []
        with contextlib.suppress(queue.Empty):
            while True:
                done.append(self.done.get_nowait())
        return [future for future in done if future in handles]

    def result(self, handle: Any) -> Any:
        try:
            return handle.result()
        except (BrokenExecutor, CancelledError, RuntimeError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
            raise JobLost(f"were lost ({type(exc).__name__}: {detail})") from None
        except UnitariumError as exc:
            raise JobFailed(str(exc)) from None
        except Exception as exc:
            raise JobFailed(f"{type(exc).__name__}: {exc}") from None

    def cancel(self, handles: dict[Any, Any]) -> None:
        for future in handles:
            with contextlib.suppress(Exception):
                future.cancel()


# -- the run ------------------------------------------------------------------------------------------------


@dataclass
class _Chunk:
    """A job: spec tasks ``tasks`` (consecutive, one level)."""

    tasks: list[Task]
    keep: list[np.ndarray] | None = None

    @property
    def first(self) -> int:
        return self.tasks[0].task_id


@dataclass
class RunStats:
    """Where a run's time went, for the benchmark: jobs and their worker-side seconds, and the
    driver's seconds waiting, fetching results, deciding keys and committing the manifest."""

    jobs: int = 0
    spec_tasks: int = 0
    worker_s: list[float] = field(default_factory=list)
    wait_s: float = 0.0
    get_s: float = 0.0
    decide_s: float = 0.0
    keys: int = 0
    commit_s: float = 0.0
    commits: int = 0


class _Sizer:
    """How many spec tasks the next job gets: one at first, then enough for :data:`TARGET_SECONDS`
    by the measured seconds per spec task (random mode: at most an even share of what is left, so
    every worker gets some)."""

    def __init__(self, workers: int, total: int | None) -> None:
        self.workers, self.total = workers, total
        self.per_task: float | None = None

    def observe(self, tasks: int, seconds: float) -> None:
        per_task = seconds / max(1, tasks)
        self.per_task = per_task if self.per_task is None else max(0.5 * self.per_task + 0.5 * per_task, 1e-7)

    def size(self, next_task: int) -> int:
        size = 1 if self.per_task is None else max(1, int(TARGET_SECONDS / max(self.per_task, 1e-7)))
        if self.total is not None:
            size = min(size, max(1, math.ceil((self.total - next_task) / self.workers)))
        return size


class _Chunker:
    """Groups the planned tasks into jobs, never across a barrier (``None`` in the plan): at a
    barrier it answers ``None`` until :meth:`cross` (the plan reads the committed level after it)."""

    def __init__(self, plan: Iterator[Task | None]) -> None:
        self.plan = plan
        self.at_barrier = False
        self.done = False
        self.next_task = 0

    def take(self, size: int) -> _Chunk | None:
        tasks: list[Task] = []
        while not (self.at_barrier or self.done) and len(tasks) < size:
            task = next(self.plan, False)
            if task is False:
                self.done = True
            elif task is None:
                self.at_barrier = True
            else:
                assert isinstance(task, Task)
                tasks.append(task)
                self.next_task = task.task_id + 1
        return _Chunk(tasks) if tasks else None

    def cross(self) -> None:
        self.at_barrier = False


class JobRun:
    """Submits jobs in order (at most ``workers`` in flight), decides unique rows in order, and hands
    the published tasks to the driver, which lists them in the manifest in task order."""

    def __init__(self, executor: JobExecutor, writer: DirectoryWriter, driver: Driver, workers: int) -> None:
        self.executor, self.writer, self.driver, self.workers = executor, writer, driver, workers
        self.spec_text = json.dumps(writer.spec.to_json(), sort_keys=True)
        self.directory = str(writer.directory.absolute())
        self.dataset = None if writer.fmt.dataset is None else writer.fmt.dataset.hex()
        self.inflight: dict[Any, tuple[str, _Chunk]] = {}
        self.undecided: deque[_Chunk] = deque()  # unique: in task order, awaiting their keys
        self.keys: dict[int, list[tuple[np.ndarray, dict[int, np.ndarray]]]] = {}
        self.to_write: deque[_Chunk] = deque()
        source = writer.spec.source
        total = -(-source.count // writer.spec.task_size) if isinstance(source, RandomSource) else None
        self.sizer = _Sizer(workers, total)
        self.stats = RunStats()
        self.unique = writer.spec.unique

    def run(self, plan: Iterator[Task | None]) -> None:
        chunks = _Chunker(plan)
        try:
            while True:
                self.driver.check_stop()
                self._fill(chunks)
                if not self.inflight:
                    if chunks.at_barrier:
                        chunks.cross()
                        continue
                    if chunks.done:
                        return
                self._pump()
        finally:
            self.executor.cancel(self.inflight)
            self._remove_cancelled()
            self.inflight.clear()

    def _remove_cancelled(self) -> None:
        """What a stopped run's unfinished write jobs left, never to be listed: the segments of jobs
        cancelled (published after the stop) or done but waiting for an earlier one, and attempts'
        temporaries. So a stopped run leaves only what its manifest lists (the next run would remove
        them too; an executor that does not wait for its cancelled jobs may still leave one)."""
        shards = Path(self.directory) / SHARDS
        names = {p.segment for p in self.driver.published.values() if p.segment is not None}
        for kind, chunk in self.inflight.values():
            if kind == "write":
                names.add(range_segment_name(chunk.tasks[0].task_id, chunk.tasks[-1].task_id))
        for name in names:
            for entry in [shards / f"{name}.db", *shards.glob(f".{name}.*.tmp")]:
                with contextlib.suppress(OSError):
                    entry.unlink()

    def _fill(self, chunks: _Chunker) -> None:
        while len(self.inflight) < self.workers:
            if self.to_write:
                self._submit("write", self.to_write.popleft())
                continue
            if self.unique and len(self.undecided) >= 2 * self.workers:
                return  # keys wait for an earlier job: bound what the driver holds
            chunk = chunks.take(self.sizer.size(chunks.next_task))
            if chunk is None:
                return
            if self.unique:
                self.undecided.append(chunk)
            self._submit("keys" if self.unique else "write", chunk)

    def _submit(self, kind: str, chunk: _Chunk) -> None:
        if kind == "keys":
            handle = self.executor.submit(chunk_keys, self.spec_text, chunk.tasks)
        else:
            args = (self.spec_text, chunk.tasks, chunk.keep, self.directory, self.writer.network, self.dataset)
            handle = self.executor.submit(write_chunk, *args)
        self.inflight[handle] = (kind, chunk)
        self.stats.jobs += 1

    def _pump(self) -> None:
        t0 = time.perf_counter()
        ready = self.executor.ready(self.inflight, POLL_S)
        t1 = time.perf_counter()
        self.stats.wait_s += t1 - t0
        for handle in ready:
            kind, chunk = self.inflight.pop(handle)
            value, seconds = self._get(handle, chunk)
            self.stats.get_s += time.perf_counter() - t1
            self.stats.worker_s.append(seconds)
            self.sizer.observe(len(chunk.tasks), seconds)
            if kind == "keys":
                self.keys[chunk.first] = value
                self._decide()
            else:
                self.stats.spec_tasks += len(chunk.tasks)
                t2 = time.perf_counter()
                self.driver.add_published(value)
                self.stats.commit_s += time.perf_counter() - t2
                self.stats.commits += 1

    def _decide(self) -> None:
        """Keep-masks for the jobs whose keys are in, in task order (the ordered authority)."""
        while self.undecided and self.undecided[0].first in self.keys:
            chunk = self.undecided.popleft()
            t0 = time.perf_counter()
            keys = self.keys.pop(chunk.first)
            chunk.keep = [self.driver.decide(t.task_id, k) for t, k in zip(chunk.tasks, keys, strict=True)]
            self.stats.decide_s += time.perf_counter() - t0
            self.stats.keys += sum(len(k[0]) for k in keys)
            self.to_write.append(chunk)

    def _get(self, handle: Any, chunk: _Chunk) -> Any:
        """A job's result; its failure as one clear error (a signal first: it may have stopped the job)."""
        try:
            return self.executor.result(handle)
        except JobFailed as exc:
            self.driver.check_stop()
            detail = str(exc).splitlines()[0] if str(exc) else "no detail"
            raise self.driver.failed(chunk.first, detail) from None
        except JobLost as exc:
            self.driver.check_stop()
            raise WorkerError(
                f"{self.executor.jobs} {chunk.first}..{chunk.tasks[-1].task_id} {exc}; {self.driver.records} "
                f"records are committed: {RESUME}"
            ) from None


def remove_job_temporaries(directory: Path) -> None:
    """Temporary files of job attempts that were stopped (never listed, never read)."""
    with contextlib.suppress(OSError):
        for entry in (directory / SHARDS).iterdir():
            if entry.name.startswith(".t") and entry.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    entry.unlink()


def check_jobs_in_flight(workers: int | None) -> None:
    """``workers`` (jobs in flight; None: the executor's default) must be a positive int."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise SpecError(f"--workers {workers} must be at least 1")


def run_jobs(driver: Driver, tasks: Iterator[Task | None], executor: JobExecutor, workers: int) -> RunStats:
    """Run ``tasks`` as jobs on ``executor``, at most ``workers`` in flight, for the directory
    ``driver.writer`` writes; returns the run's job statistics. Raises :class:`Interrupted` or
    :class:`WorkerError` (resumable)."""
    writer = driver.writer
    assert isinstance(writer, DirectoryWriter)
    run = JobRun(executor, writer, driver, workers)
    run.run(tasks)
    driver.check_stop()
    remove_job_temporaries(writer.directory)  # of attempts that died (the executor re-ran them)
    return run.stats


@contextlib.contextmanager
def start(executor: Executor, workers: int | None) -> Iterator[Execute]:
    """The ``executor=`` engine: jobs on the caller's :class:`concurrent.futures.Executor` (kept
    open: its owner shuts it down); ``workers`` caps the jobs in flight (default: one per core of
    this machine)."""
    check_jobs_in_flight(workers)
    if not callable(getattr(executor, "submit", None)):
        raise SpecError(
            f"executor= takes a concurrent.futures.Executor (something with submit()), not {type(executor).__name__}"
        )
    jobs = FuturesExecutor(executor)
    yield lambda driver, tasks: run_jobs(driver, tasks, jobs, workers or default_workers() + 1)
