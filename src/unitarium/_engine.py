"""The local engine: tasks on worker processes, one writer (this process), in order.

Tasks are submitted in order through a bounded window (memory stays bounded whatever
the count) and their results are committed strictly in task order, several finished
tasks per transaction. The file therefore always holds a prefix of the final dataset:
a resume continues after the last committed task, and record ids never depend on the
worker count. In unique mode the writer filters each result against the keys of
everything before it (:class:`KeySet`), in the same order.

SIGINT and SIGTERM stop the run at the next safe point (within a task's time): the
workers are terminated, nothing half-written remains, :class:`Interrupted` is raised.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from ._errors import Interrupted, UnitariumError, WorkerError
from ._keyset import KeySet
from ._sources import Task, TaskContext, run_task
from ._spec import Enumeration, RandomSource, Spec
from ._store import TaskResult, Writer

__all__ = ["Progress", "Summary", "generate"]

_BARRIER = None
_COMMIT_BYTES = 32 << 20
_POLL_S = 0.2


@dataclass(frozen=True)
class Progress:
    """Reported after each commit: records stored, candidates processed (random: of
    ``total``), and the enumeration level in progress."""

    records: int
    candidates: int
    total: int | None
    level: int


@dataclass(frozen=True)
class Summary:
    """What a :func:`generate` call did."""

    path: str
    records: int
    new_records: int
    tasks: int
    seconds: float
    complete: bool


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _plan(spec: Spec, writer: Writer) -> Iterator[Task | None]:
    """Tasks in order; ``None`` marks a barrier (everything before must be committed)."""
    size = spec.task_size
    src = spec.source
    if isinstance(src, RandomSource):
        for t in range(-(-src.count // size)):
            yield Task(t, 0, t * size, min(src.count, (t + 1) * size))
        return
    yield Task(0, 0, 0, 1)
    yield _BARRIER
    task_id = 1
    per_task = max(1, size // len(spec.gateset.moves))
    for level in range(1, src.max_length + 1):
        parents = writer.level_range(level - 1)
        if parents is None or parents[0] == parents[1]:
            return
        for start in range(parents[0], parents[1], per_task):
            yield Task(task_id, level, start, min(parents[1], start + per_task))
            task_id += 1
        yield _BARRIER


_CONTEXT: TaskContext | None = None


def _init_worker(spec_json: dict[str, Any], path: str) -> None:
    global _CONTEXT
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    _CONTEXT = TaskContext(Spec.from_json(spec_json), path)


def _work(task: Task) -> TaskResult:
    assert _CONTEXT is not None, "worker not initialised"
    return run_task(_CONTEXT, task)


class _Stop:
    """Turns SIGINT/SIGTERM into a flag checked at safe points (a second one aborts)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _Stop:
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Run:
    """One generate run: feeds tasks, commits results in order."""

    def __init__(self, writer: Writer, workers: int, progress: Callable[[Progress], None] | None, stop: _Stop) -> None:
        self.writer = writer
        self.spec = writer.spec
        self.workers = workers
        self.progress = progress
        self.stop = stop
        self.keys = KeySet(writer.stored_dedup_keys()) if self.spec.unique else None
        self.records = writer.next_id()
        self.start_records = self.records
        self.candidates = self._candidates_done()
        self.tasks = 0
        self.level = 0
        self._batch: list[TaskResult] = []
        self._batch_bytes = 0

    def _candidates_done(self) -> int:
        row = self.writer.conn.execute("SELECT coalesce(sum(candidates), 0) FROM tasks").fetchone()
        return int(row[0])

    def total(self) -> int | None:
        src = self.spec.source
        return src.count if isinstance(src, RandomSource) else None

    def accept(self, result: TaskResult) -> None:
        if self.keys is not None:
            assert result.dedup is not None
            keep = self.keys.select_new(result.dedup, result.alternates or {})
            result = result.select(keep)
            self.keys.add(result.dedup)  # type: ignore[arg-type]
        self._batch.append(result)
        self._batch_bytes += result.unitaries.nbytes + 1024
        self.level = result.level
        if self._batch_bytes >= _COMMIT_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._batch:
            return
        self.writer.commit(self._batch)
        for r in self._batch:
            self.records += r.count
            self.candidates += r.candidates
            self.tasks += 1
        self._batch, self._batch_bytes = [], 0
        if self.progress:
            self.progress(Progress(self.records, self.candidates, self.total(), self.level))

    def check_stop(self) -> None:
        if self.stop.requested:
            raise Interrupted(
                f"stopped by signal; {self.records} records are committed in {str(self.writer.path)!r}: "
                "re-run the same command to resume"
            )

    def run_inline(self, tasks: Iterator[Task | None]) -> None:
        ctx = TaskContext(self.spec, str(self.writer.path))
        for task in tasks:
            self.check_stop()
            if task is _BARRIER:
                self.flush()
                continue
            try:
                result = run_task(ctx, task)
            except UnitariumError:
                raise
            except Exception as exc:
                raise self._failed(task, exc) from exc
            self.accept(result)
            self.flush()
        self.flush()

    def run_pool(self, tasks: Iterator[Task | None]) -> None:
        ctx = multiprocessing.get_context("spawn")
        others = set(multiprocessing.active_children())
        args = (self.spec.to_json(), str(self.writer.path))
        pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker, initargs=args)
        window: deque[tuple[Task, Future[TaskResult]]] = deque()
        try:
            for task in tasks:
                if task is _BARRIER:
                    while window:
                        self._take(window)
                    self.flush()
                    continue
                window.append((task, pool.submit(_work, task)))
                while len(window) >= 2 * self.workers + 2 or (window and window[0][1].done()):
                    self._take(window)
                    if not (window and window[0][1].done()):
                        self.flush()
            while window:
                self._take(window)
            self.flush()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            ours = set(multiprocessing.active_children()) - others
            for child in ours:
                child.terminate()
            for child in ours:
                child.join(5)

    def _failed(self, task: Task, exc: Exception) -> WorkerError:
        return WorkerError(
            f"task {task.task_id} failed: {type(exc).__name__}: {exc}; "
            f"{self.records} records are committed: re-run the same command to resume"
        )

    def _take(self, window: deque[tuple[Task, Future[TaskResult]]]) -> None:
        task, future = window[0]
        while True:
            self.check_stop()
            try:
                result = future.result(timeout=_POLL_S)
                break
            except TimeoutError:
                continue
            except BrokenProcessPool:
                self.check_stop()
                raise WorkerError(
                    f"a worker process died while computing task {task.task_id} (killed, or out of memory?); "
                    f"{self.records} records are committed: re-run the same command to resume"
                ) from None
            except Exception as exc:
                raise self._failed(task, exc) from exc
        window.popleft()
        self.accept(result)


def generate(
    path: str | os.PathLike[str],
    spec: Spec,
    *,
    workers: int | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> Summary:
    """Generate (or resume) the dataset ``spec`` into the SQLite file ``path``.

    ``workers`` processes compute tasks (default: all cores; 1 computes in this
    process). The content depends only on ``spec``. Raises :class:`Interrupted` on
    SIGINT/SIGTERM, :class:`WorkerError` if a worker fails; both leave the file resumable.
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        from ._errors import SpecError

        raise SpecError(f"--workers {workers} must be at least 1")
    t0 = time.monotonic()
    with _Stop() as stop, Writer(Path(path), spec) as writer:
        run = _Run(writer, workers, progress, stop)
        done = writer.tasks_done()
        tasks = (t for t in _plan(spec, writer) if t is _BARRIER or t.task_id >= done)
        if workers == 1:
            run.run_inline(tasks)
        else:
            run.run_pool(tasks)
        run.check_stop()
        writer.set_state(complete=True)
        return Summary(str(path), run.records, run.records - run.start_records, run.tasks, time.monotonic() - t0, True)
