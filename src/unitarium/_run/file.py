"""The local engine's file layout: tasks on worker processes, one writer (this process), in order.

Tasks are submitted in order through a bounded window (memory stays bounded whatever the count) and
their results are committed strictly in task order, several finished tasks per transaction. The file
therefore always holds a prefix of the final dataset: a resume continues after the last committed
task, and record ids never depend on the worker count. In unique mode the driver decides each
result against the keys of everything before it (:class:`.Driver`), in the same order.

Commits run in a background thread of the writer process (:class:`_Run`), one group at a time and in
order: sqlite3 releases the GIL while SQLite writes, so results keep arriving and workers keep
computing meanwhile (measured in BENCHMARKS.md, "Workers").

Each worker talks to the writer over its own pipe (:class:`_Pool`), not a shared queue: a worker
that dies, even halfway through sending a result, shows up as end-of-file on its pipe (a clean
:class:`WorkerError`, never a hang), and a worker whose writer dies sees end-of-file and exits (no
orphans). With one worker, tasks run in this process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_any
from typing import Any

from .._core.compiled import own_process
from .._core.kernels import pin_one_blas_thread
from .._errors import UnitariumError, WorkerError
from .._spec.sources import Task, TaskContext, TaskResult, run_task
from .._spec.spec import Spec
from .._storage.layout import FileWriter
from .driver import Driver
from .plan import BARRIER
from .progress import StallWatch
from .wire import Wait, grow_pipe, recv_message, send_message, start_worker, stop_workers

__all__ = ["run_file"]

_COMMIT_BYTES = 32 << 20
_LOOKUP_GROWTH = 4
"""Unique mode: a commit started early (while results keep arriving) waits for at least 1/this of the records
already in the dataset (see :meth:`_Run.flush`)."""
_POLL_S = 0.2
_PER_WORKER = 2


_CONTEXT: TaskContext | None = None


def _init_worker(spec_json: dict[str, Any], workers: int) -> None:
    global _CONTEXT
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the writer decides
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by _Pool while it started us
    pin_one_blas_thread()
    own_process()
    _CONTEXT = TaskContext(Spec.from_json(spec_json), run=True, processes=workers)


def _work(task: Task) -> TaskResult:
    assert _CONTEXT is not None, "worker not initialised"
    return run_task(_CONTEXT, task)


def _serve(tasks: Connection, results: Connection, spec_json: dict[str, Any], workers: int) -> None:
    """A worker process: receive tasks, send back ``(task_id, result, error)``; return at
    end-of-file (the writer closed its end, or died). ``error`` is ``"Type: message"``."""
    try:
        _init_worker(spec_json, workers)
    except Exception as exc:
        _reply(results, (None, None, f"could not start: {type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            task = recv_message(tasks.fileno())
        except (EOFError, OSError):
            return  # the writer closed the task pipe, or is gone
        except Exception as exc:  # e.g. MemoryError: reported, never a worker's traceback
            _reply(results, (None, None, f"{type(exc).__name__}: {exc}"))
            return
        reply: tuple[int | None, TaskResult | None, str | None]
        try:
            reply = (task.task_id, _work(task), None)
        except Exception as exc:
            reply = (task.task_id, None, f"{type(exc).__name__}: {exc}")
        if not _reply(results, reply):
            return


def _reply(conn: Connection, reply: tuple[int | None, TaskResult | None, str | None]) -> bool:
    try:
        send_message(conn.fileno(), reply)
        return True
    except OSError:  # the writer is gone
        return False


def result_bytes(result: TaskResult) -> int:
    """About how many bytes a result holds (for batching commits)."""
    size = result.codes.nbytes + result.offsets.nbytes + 1024
    return size + (0 if result.unitaries is None else result.unitaries.nbytes)


class _WorkerFailed(Exception):
    """Raised by :class:`_Pool`: ``args = (task_id or None, error or None)``; no error: it died."""


class _Pool:
    """Worker processes (``spawn``), each with a task pipe and a result pipe, at most
    :data:`_PER_WORKER` tasks outstanding per worker; results are kept by task id until taken."""

    def __init__(self, workers: int, spec_json: dict[str, Any]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.outstanding: dict[Connection, deque[int]] = {}  # by result pipe
        self.senders: dict[Connection, Connection] = {}  # result pipe -> task pipe
        self.results: dict[int, TaskResult] = {}
        self.pids: dict[Connection, int] = {}  # by result pipe
        resource_tracker.ensure_running()  # now: starting it later would unblock SIGINT (below)
        try:
            for _ in range(workers):
                task_r, task_w = ctx.Pipe(duplex=False)
                result_r, result_w = ctx.Pipe(duplex=False)
                grow_pipe(result_r)
                proc = start_worker(ctx, _serve, (task_r, result_w, spec_json, workers), (task_r, result_w))
                self.procs.append(proc)
                self.outstanding[result_r] = deque()
                self.senders[result_r] = task_w
                self.pids[result_r] = proc.pid or 0
        except BaseException:
            self.close(graceful=False)
            raise

    def has_room(self) -> bool:
        return any(len(q) < _PER_WORKER for q in self.outstanding.values())

    def submit(self, task: Task, wait: Wait | None = None) -> None:
        conn = min(self.outstanding, key=lambda c: len(self.outstanding[c]))
        try:
            send_message(self.senders[conn].fileno(), task, wait=wait)
        except OSError:
            raise _WorkerFailed(task.task_id, None) from None
        self.outstanding[conn].append(task.task_id)

    def holder(self, task_id: int) -> list[int]:
        """The pid of the worker that has task ``task_id`` (all workers' if none has it)."""
        held = [self.pids[c] for c, q in self.outstanding.items() if task_id in q]
        return held or list(self.pids.values())

    def poll(self, timeout: float, wait: Wait | None = None) -> None:
        """Receive what arrives within ``timeout``; raises :class:`_WorkerFailed`. A message that
        stops arriving halfway (a stopped worker) calls ``wait()`` every :data:`._wire.WAIT_S`."""
        for conn in wait_any(list(self.outstanding), timeout):
            assert isinstance(conn, Connection)
            queue = self.outstanding[conn]
            try:
                task_id, result, error = recv_message(conn.fileno(), wait=wait)
            except (EOFError, OSError):  # died, maybe halfway through a message
                raise _WorkerFailed(queue[0] if queue else None, None) from None
            if error is not None:
                raise _WorkerFailed(task_id, error)
            queue.popleft()
            self.results[task_id] = result

    def close(self, *, graceful: bool) -> None:
        """Close the pipes (idle workers exit), terminate the rest unless ``graceful``."""
        for conn in (*self.outstanding, *self.senders.values()):
            conn.close()
        stop_workers(self.procs, graceful=graceful, wait_s=5)


class _Run:
    """The file layout's side of a run: feeds tasks (inline or to :class:`_Pool`), hands each result to
    the driver's dedup in task order, and commits results in order in a background thread, several
    tasks per transaction; the driver counts what is committed and words stops and failures."""

    def __init__(self, driver: Driver, workers: int) -> None:
        self.driver = driver
        self.writer: FileWriter = driver.writer  # type: ignore[assignment]
        self.spec = driver.spec
        self.workers = workers
        self._batch: list[TaskResult] = []
        self._batch_bytes = 0
        self._batch_records = 0
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="unitarium-commit")
        self._pending: tuple[Future[None], list[TaskResult]] | None = None
        self.watch = StallWatch(driver.progress, driver.counts)

    def accept(self, result: TaskResult) -> None:
        if self.driver.keys is not None:
            result = result.select(self.driver.decide(result.task_id, result.decision_keys()))
        self._batch.append(result)
        self._batch_bytes += result_bytes(result)
        self._batch_records += result.count
        self.driver.level = result.level
        if self._batch_bytes >= _COMMIT_BYTES:
            self.flush()

    def flush(self, *, eager: bool = False) -> None:
        """Start committing the accepted results in the background, after the commit in
        flight (waiting for it, unless ``eager``: then an unfinished one lets the batch grow).

        In unique mode an ``eager`` commit also waits until the batch holds 1/:data:`_LOOKUP_GROWTH` of
        the records already committed (or :data:`_COMMIT_BYTES`): each commit rewrites every page of
        the ``lookup`` index its rows land on, and random keys land on nearly every page, so a commit
        costs about the index's size whatever its rows (2M random candidates, 1.2M records: commits of a
        median 5,000 rows took the commit thread 4.1 CPU-s, grown this way 1.9 to 2.8). The content is
        the same: only how many tasks a transaction holds changes, which always depended on timing."""
        if not self._batch:
            return
        if self._pending is not None:
            if eager and not self._pending[0].done():
                return
            self._settle()
        if eager and self.driver.keys is not None and self._batch_records * _LOOKUP_GROWTH < self.driver.records:
            return
        batch, self._batch, self._batch_bytes, self._batch_records = self._batch, [], 0, 0
        self._pending = (self._committer.submit(self.writer.commit, batch), batch)

    def sync(self) -> None:
        """Commit everything accepted and wait until it is committed."""
        self.flush()
        self._settle()

    def _settle(self, *, quiet: bool = False) -> None:
        """Wait for the commit in flight and count it; its error is raised unless ``quiet``
        (another error is being reported; what failed to commit is simply not counted)."""
        if self._pending is None:
            return
        future, batch = self._pending
        self._pending = None
        try:
            future.result()
        except Exception:
            if quiet:
                return
            raise
        self.driver.committed(batch)

    def close(self) -> None:
        """Wait for the commit in flight (the writer's connection must outlive it)."""
        with contextlib.suppress(Exception):
            self._settle(quiet=True)
        self._committer.shutdown(wait=True)

    def check_stop(self) -> None:
        if self.driver.stop.requested:
            self._settle(quiet=True)
            self.driver.check_stop()

    def run_inline(self, tasks: Iterator[Task | None]) -> None:
        ctx = TaskContext(self.spec, run=True)
        for task in tasks:
            self.check_stop()
            if task is BARRIER:
                self.sync()
                continue
            self.accept(self._compute(ctx, task))
            self.flush(eager=True)
        self.sync()

    def _compute(self, ctx: TaskContext, task: Task) -> TaskResult:
        try:
            return run_task(ctx, task)
        except UnitariumError:
            raise
        except Exception as exc:
            raise self._worker_error(task.task_id, f"{type(exc).__name__}: {exc}") from exc

    def run_pool(self, tasks: Iterator[Task | None]) -> None:
        pool = _Pool(self.workers, self.spec.to_json())
        window: deque[Task] = deque()  # submitted and not yet accepted, in task order
        try:
            for task in tasks:
                if task is BARRIER:
                    while window:
                        self._take(pool, window)
                    self.sync()
                    continue
                self._submit(pool, task)
                window.append(task)
                self._poll(pool, 0)
                while window and (
                    len(window) >= 2 * self.workers + 2 or not pool.has_room() or window[0].task_id in pool.results
                ):
                    self._take(pool, window)
                    if not (window and window[0].task_id in pool.results):
                        self.flush(eager=True)
            while window:
                self._take(pool, window)
            self.sync()
        except BaseException:
            pool.close(graceful=False)
            raise
        pool.close(graceful=True)

    def _worker_error(self, task_id: int | None, error: str | None) -> WorkerError:
        self._settle(quiet=True)
        return self.driver.failed(task_id, error)

    def _waiting(self, pool: _Pool, task_id: int) -> Wait:
        """What blocked pipe transfers call: stop on a signal, and say what the run waits for."""

        def wait() -> None:
            self.check_stop()
            self.watch.check(f"task {task_id}", pool.holder(task_id))

        return wait

    def _submit(self, pool: _Pool, task: Task) -> None:
        waiting = self._waiting(pool, task.task_id)

        def sending() -> None:
            """While the task waits for room in its pipe: take in results meanwhile (a worker blocked writing
            its result into a full pipe is not reading its tasks)."""
            waiting()
            pool.poll(0, waiting)

        try:
            pool.submit(task, sending)
        except _WorkerFailed as exc:
            self.check_stop()
            raise self._worker_error(*exc.args) from None

    def _poll(self, pool: _Pool, timeout: float, task_id: int | None = None) -> None:
        try:
            pool.poll(timeout, self._waiting(pool, -1 if task_id is None else task_id))
        except _WorkerFailed as exc:
            self.check_stop()  # workers killed by the same signal: report the signal
            raise self._worker_error(*exc.args) from None

    def _take(self, pool: _Pool, window: deque[Task]) -> None:
        task = window[0]
        wait = self._waiting(pool, task.task_id)
        while task.task_id not in pool.results:
            wait()
            self._poll(pool, _POLL_S, task.task_id)
        window.popleft()
        self.watch.arrived()
        self.accept(pool.results.pop(task.task_id))


def run_file(driver: Driver, tasks: Iterator[Task | None], workers: int) -> None:
    """Run ``tasks`` for the file ``driver.writer`` writes: in this process (``workers`` 1) or on
    ``workers`` processes; everything computed is committed when it returns."""
    run = _Run(driver, workers)
    try:
        if workers == 1:
            run.run_inline(tasks)
        else:
            run.run_pool(tasks)
    finally:
        run.close()
