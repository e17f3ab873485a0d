"""The local engine: tasks on worker processes, one writer (this process), in order.

Tasks are submitted in order through a bounded window (memory stays bounded whatever
the count) and their results are committed strictly in task order, several finished
tasks per transaction. The file therefore always holds a prefix of the final dataset:
a resume continues after the last committed task, and record ids never depend on the
worker count. In unique mode the writer filters each result against the keys of
everything before it (:class:`KeySet`), in the same order.

SIGINT and SIGTERM stop the run at the next safe point (within a task's time): the
workers are terminated, nothing half-written remains, :class:`Interrupted` is raised.

Each worker talks to the writer over its own pipe (:class:`_Pool`), not a shared queue:
a worker that dies, even halfway through sending a result, shows up as end-of-file on
its pipe (a clean :class:`WorkerError`, never a hang), and a worker whose writer dies
sees end-of-file and exits (no orphans).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import FrameType
from typing import Any

from ._errors import Interrupted, UnitariumError, WorkerError
from ._keyset import KeySet
from ._sources import Task, TaskContext, run_task
from ._spec import RandomSource, Spec
from ._store import TaskResult, Writer

__all__ = ["Progress", "Summary", "generate"]

_BARRIER = None
_COMMIT_BYTES = 32 << 20
_POLL_S = 0.2
_PER_WORKER = 2


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
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the writer decides
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by _Pool while it started us
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    _CONTEXT = TaskContext(Spec.from_json(spec_json), path)


def _work(task: Task) -> TaskResult:
    assert _CONTEXT is not None, "worker not initialised"
    return run_task(_CONTEXT, task)


def _serve(conn: Connection, spec_json: dict[str, Any], path: str) -> None:
    """A worker process: receive tasks, send back ``(task_id, result, error)``; return at
    end-of-file (the writer closed its end, or died). ``error`` is ``"Type: message"``."""
    try:
        _init_worker(spec_json, path)
    except Exception as exc:
        _reply(conn, (None, None, f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        reply: tuple[int | None, TaskResult | None, str | None]
        try:
            reply = (task.task_id, _work(task), None)
        except Exception as exc:
            reply = (task.task_id, None, f"{type(exc).__name__}: {exc}")
        if not _reply(conn, reply):
            return


def _reply(conn: Connection, reply: tuple[int | None, TaskResult | None, str | None]) -> bool:
    try:
        conn.send(reply)
        return True
    except OSError:  # the writer is gone
        return False


class _WorkerFailed(Exception):
    """Raised by :class:`_Pool`: ``args = (task_id or None, error or None)``; no error: it died."""


class _Pool:
    """Worker processes (``spawn``), each on its own pipe, at most :data:`_PER_WORKER`
    tasks outstanding per worker; results are kept by task id until taken."""

    def __init__(self, workers: int, spec_json: dict[str, Any], path: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.outstanding: dict[Connection, deque[int]] = {}
        self.results: dict[int, TaskResult] = {}
        resource_tracker.ensure_running()  # now: starting it later would unblock SIGINT (below)
        try:
            for _ in range(workers):
                ours, theirs = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(theirs, spec_json, path), daemon=True)
                # A Ctrl-C while a worker imports would print its traceback: it starts with SIGINT blocked.
                old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
                try:
                    proc.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old)
                    theirs.close()
                self.procs.append(proc)
                self.outstanding[ours] = deque()
        except BaseException:
            self.close(graceful=False)
            raise

    def has_room(self) -> bool:
        return any(len(q) < _PER_WORKER for q in self.outstanding.values())

    def submit(self, task: Task) -> None:
        conn = min(self.outstanding, key=lambda c: len(self.outstanding[c]))
        try:
            conn.send(task)
        except OSError:
            raise _WorkerFailed(task.task_id, None) from None
        self.outstanding[conn].append(task.task_id)

    def poll(self, timeout: float) -> None:
        """Receive what arrives within ``timeout``; raises :class:`_WorkerFailed`."""
        for conn in wait(list(self.outstanding), timeout):
            assert isinstance(conn, Connection)
            queue = self.outstanding[conn]
            try:
                task_id, result, error = conn.recv()
            except (EOFError, OSError):  # died, maybe halfway through a message
                raise _WorkerFailed(queue[0] if queue else None, None) from None
            if error is not None:
                raise _WorkerFailed(task_id, error)
            queue.popleft()
            self.results[task_id] = result

    def close(self, *, graceful: bool) -> None:
        """Close the pipes (idle workers exit), terminate the rest unless ``graceful``."""
        for conn in self.outstanding:
            conn.close()
        for proc in self.procs:
            if not graceful:
                proc.terminate()
        for proc in self.procs:
            proc.join(5)
            if proc.exitcode is None:
                proc.kill()
                proc.join()


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
        pool = _Pool(self.workers, self.spec.to_json(), str(self.writer.path))
        window: deque[Task] = deque()  # submitted and not yet accepted, in task order
        try:
            for task in tasks:
                if task is _BARRIER:
                    while window:
                        self._take(pool, window)
                    self.flush()
                    continue
                self._submit(pool, task)
                window.append(task)
                self._poll(pool, 0)
                while window and (
                    len(window) >= 2 * self.workers + 2 or not pool.has_room() or window[0].task_id in pool.results
                ):
                    self._take(pool, window)
                    if not (window and window[0].task_id in pool.results):
                        self.flush()
            while window:
                self._take(pool, window)
            self.flush()
        except BaseException:
            pool.close(graceful=False)
            raise
        pool.close(graceful=True)

    def _failed(self, task: Task, exc: Exception) -> WorkerError:
        return self._worker_error(task.task_id, f"{type(exc).__name__}: {exc}")

    def _worker_error(self, task_id: int | None, error: str | None) -> WorkerError:
        committed = f"{self.records} records are committed: re-run the same command to resume"
        if error is None:
            during = "" if task_id is None else f" while computing task {task_id}"
            return WorkerError(f"a worker process died{during} (killed, or out of memory?); {committed}")
        if task_id is None:
            return WorkerError(f"a worker process could not start: {error}; {committed}")
        return WorkerError(f"task {task_id} failed: {error}; {committed}")

    def _submit(self, pool: _Pool, task: Task) -> None:
        try:
            pool.submit(task)
        except _WorkerFailed as exc:
            self.check_stop()
            raise self._worker_error(*exc.args) from None

    def _poll(self, pool: _Pool, timeout: float) -> None:
        try:
            pool.poll(timeout)
        except _WorkerFailed as exc:
            self.check_stop()  # workers killed by the same signal: report the signal
            raise self._worker_error(*exc.args) from None

    def _take(self, pool: _Pool, window: deque[Task]) -> None:
        task = window[0]
        while task.task_id not in pool.results:
            self.check_stop()
            self._poll(pool, _POLL_S)
        window.popleft()
        self.accept(pool.results.pop(task.task_id))


def generate(
    path: str | os.PathLike[str],
    spec: Spec,
    *,
    workers: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    journal: str = "wal",
) -> Summary:
    """Generate (or resume) the dataset ``spec`` into the SQLite file ``path``.

    ``workers`` processes compute tasks (default: all cores; 1 computes in this
    process). The content depends only on ``spec``. Raises :class:`Interrupted` on
    SIGINT/SIGTERM, :class:`WorkerError` if a worker fails; both leave the file resumable.
    ``journal="delete"`` writes with a rollback journal instead of WAL, for network
    filesystems (where WAL is refused); it is not part of the spec.
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        from ._errors import SpecError

        raise SpecError(f"--workers {workers} must be at least 1")
    t0 = time.monotonic()
    with _Stop() as stop, Writer(Path(path), spec, journal=journal) as writer:
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
