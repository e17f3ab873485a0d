"""The local engine for sharded datasets: every worker computes and writes its own segments.

The driver (this process) plans tasks, hands them to workers, decides deduplication in task
order (unique mode: the one ordered authority; only keys travel, 16 bytes per candidate), and
is the only writer of the manifest, the commit point (:mod:`._shards`). Workers compute a
task, append its block to their open segment, and *publish* the segment (durably, atomically)
when it is :data:`SEGMENT_BYTES` big, :data:`SEGMENT_SECONDS` old, or asked to (at a level
barrier or the end). Nothing but small messages crosses processes: task descriptions
(enumeration: the parents' circuits), keys and keep-masks (unique mode), and the list of tasks
in each published segment. The driver lists published tasks in the manifest in task order, so
the manifest always describes a prefix of the final dataset, identical to the file engine's
(same ids, circuits and unitaries) whatever the worker count or interruptions.

With one worker everything runs in this process (no pipes). SIGINT/SIGTERM stop the run at the
next safe point: workers are terminated, their unpublished segments deleted; everything listed
in the manifest is kept.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from .._core.codec import BlockFormat
from .._core.compiled import own_process
from .._core.kernels import pin_one_blas_thread
from .._errors import SpecError, UnitariumError
from .._spec.sources import Task, TaskContext, TaskResult, run_task
from .._spec.spec import Spec
from .._storage.schema import block_format
from .._storage.shards import SHARDS, DirectoryWriter, Published, SegmentWriter, segment_name
from .driver import Driver
from .progress import StallWatch
from .wire import Outbox, Wait, grow_pipe, recv_message, send_message, start_worker, stop_workers

__all__ = ["SEGMENT_BYTES", "SEGMENT_SECONDS", "SEGMENT_SECONDS_ENV", "run_directory", "segment_seconds"]

SEGMENT_BYTES = 256 << 20
"""A worker publishes its segment once it holds this many bytes of records..."""
SEGMENT_SECONDS = 2.0
"""...or once its first block is this old: what a crash can lose, and how fresh readers are
(the default of :func:`segment_seconds`)."""
SEGMENT_SECONDS_ENV = "UNITARIUM_SEGMENT_SECONDS"
_QUEUED = 4
"""Tasks sent to a worker and not yet computed."""
_ACKS = 4
"""A worker acknowledges computed tasks (non-unique mode) in groups of up to this many, while more
tasks wait in its pipe: one driver wake-up per group, not per task (the driver's CPU per record)."""
_UNDECIDED = 4
"""Unique mode: computed tasks per worker awaiting their keep-mask (bounds workers' memory)."""
_UNCOMMITTED = 1 << 16
"""Tasks submitted but not yet listed in the manifest (bounds the driver's memory)."""
_POLL_S = 0.2


def segment_seconds() -> float:
    """How old a worker's segment may grow before it is published: :data:`SEGMENT_SECONDS`, or
    ``UNITARIUM_SEGMENT_SECONDS`` (0.01 to 3600: lower, fresher readers and less lost to a crash, more
    segment files; never the content). Checked before the run opens anything."""
    raw = os.environ.get(SEGMENT_SECONDS_ENV, "").strip()
    if not raw:
        return SEGMENT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0.01 <= value <= 3600:
        raise SpecError(f"{SEGMENT_SECONDS_ENV}={raw!r} is not a number of seconds from 0.01 to 3600")
    return value


class _Segments:
    """A worker's current segment, published by size, age (``seconds``) or request."""

    def __init__(
        self, directory: Path, fmt: BlockFormat, namer: Callable[[int], str], network: bool, seconds: float
    ) -> None:
        self.directory, self.fmt, self.namer, self.network = directory, fmt, namer, network
        self.seconds = seconds
        self.seq = 0
        self.current = SegmentWriter(directory, namer(0), self.fmt, network=network)
        self.opened: float | None = None

    def add(self, result: TaskResult) -> list[Published]:
        self.current.add(result)
        if self.opened is None:
            self.opened = time.monotonic()
        return self.publish() if self.current.nbytes >= SEGMENT_BYTES else []

    def due(self) -> float | None:
        """Seconds until the segment must be published (None: nothing in it)."""
        return None if self.opened is None else max(0.0, self.opened + self.seconds - time.monotonic())

    def publish(self) -> list[Published]:
        """Publish the segment (if it holds any block, its name is used up: the next gets a new one)."""
        wrote = self.current.conn is not None
        published = self.current.publish()
        if wrote:
            self.seq += 1
            self.current = SegmentWriter(self.directory, self.namer(self.seq), self.fmt, network=self.network)
        self.opened = None
        return published

    def discard(self) -> None:
        self.current.discard()


# -- worker processes ---------------------------------------------------------------------------


def _serve(
    tasks: Connection,
    results: Connection,
    spec_json: dict[str, Any],
    directory: str,
    worker: int,
    workers: int,
    run: int,
    network: bool,
    dataset: str | None,
    seconds: float,
) -> None:
    """A worker (number ``worker`` of ``workers``): compute tasks, write segments (of the dataset of id ``dataset``,
    hex), report; return at end-of-file on ``tasks``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the driver decides
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    segments = None
    outbox = Outbox(results.fileno())
    try:
        pin_one_blas_thread()
        own_process()
        spec = Spec.from_json(spec_json)
        ctx = TaskContext(spec, run=True, processes=workers)
        fmt = block_format(spec, None if dataset is None else bytes.fromhex(dataset))
        segments = _Segments(Path(directory), fmt, lambda seq: segment_name(run, worker, seq), network, seconds)
        _loop(tasks, outbox, ctx, segments)
    except Exception as exc:  # reported as one line by the driver, never a worker's traceback
        outbox.put(("error", None, f"{type(exc).__name__}: {exc}"))
    finally:
        outbox.close()
        if segments is not None:
            segments.discard()


def _loop(tasks: Connection, outbox: Outbox, ctx: TaskContext, segments: _Segments) -> None:
    pending: dict[int, TaskResult] = {}
    acks: list[int] = []
    while True:
        if acks and (len(acks) >= _ACKS or not tasks.poll(0)):  # never block with acks unsent
            if not outbox.put(("computed", acks, None)):
                return  # the driver is gone
            acks = []
        due = segments.due()
        if due == 0.0 or not tasks.poll(due):
            if not outbox.put(("published", segments.publish())):
                return
            continue
        try:
            message = recv_message(tasks.fileno())
        except EOFError:
            return
        kind = message[0]
        published: list[Published] = []
        if kind == "task":
            task: Task = message[1]
            try:
                result = run_task(ctx, task)
            except Exception as exc:
                outbox.put(("error", task.task_id, f"{type(exc).__name__}: {exc}"))
                return
            if ctx.spec.unique:
                pending[task.task_id] = result
                if not outbox.put(("computed", [task.task_id], [result.decision_keys()])):
                    return
            else:
                acks.append(task.task_id)
                published = segments.add(result)
        elif kind == "keep":
            published = segments.add(pending.pop(message[1]).select(message[2]))
        elif kind == "flush":
            published = segments.publish()
        if published and not outbox.put(("published", published)):
            return


class _Workers:
    """Worker processes (``spawn``) with a task pipe and a result pipe each."""

    def __init__(self, count: int, writer: DirectoryWriter, seconds: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.send: list[Connection] = []
        self.recv: list[Connection] = []
        self.queued = [0] * count
        resource_tracker.ensure_running()
        spec_json = writer.spec.to_json()
        try:
            for w in range(count):
                task_r, task_w = ctx.Pipe(duplex=False)
                result_r, result_w = ctx.Pipe(duplex=False)
                grow_pipe(result_r)
                grow_pipe(task_w)
                dataset = None if writer.fmt.dataset is None else writer.fmt.dataset.hex()
                args = (
                    task_r,
                    result_w,
                    spec_json,
                    str(writer.directory),
                    w,
                    count,
                    writer.run,
                    _build_locally(writer),
                    dataset,
                    seconds,
                )
                proc = start_worker(ctx, _serve, args, (task_r, result_w))
                self.procs.append(proc)
                self.send.append(task_w)
                self.recv.append(result_r)
        except BaseException:
            self.close(graceful=False)
            raise

    def post(self, worker: int, message: tuple[Any, ...], wait: Wait | None = None) -> None:
        try:
            send_message(self.send[worker].fileno(), message, wait=wait)
        except OSError:
            raise _Died(worker) from None

    def close(self, *, graceful: bool) -> None:
        for conn in (*self.send, *self.recv):
            conn.close()
        stop_workers(self.procs, graceful=graceful, wait_s=10)


class _Died(Exception):
    """A worker's pipe closed (``args = (worker,)``)."""


def _run_inline(driver: Driver, writer: DirectoryWriter, tasks: Iterator[Task | None], seconds: float) -> None:
    ctx = TaskContext(driver.spec, run=True)
    run = writer.run
    network = _build_locally(writer)
    segments = _Segments(writer.directory, writer.fmt, lambda seq: segment_name(run, 0, seq), network, seconds)
    try:
        for task in tasks:
            driver.check_stop()
            if task is None:
                driver.add_published(segments.publish())
                continue
            try:
                result = run_task(ctx, task)
            except UnitariumError:
                raise
            except Exception as exc:
                raise driver.failed(task.task_id, f"{type(exc).__name__}: {exc}") from exc
            if driver.keys is not None:
                result = result.select(driver.decide(task.task_id, result.decision_keys()))
            published = segments.add(result)
            if not published and segments.due() == 0.0:
                published = segments.publish()
            driver.add_published(published)
        driver.add_published(segments.publish())
    finally:
        segments.discard()


def _run_pool(
    driver: Driver, writer: DirectoryWriter, tasks: Iterator[Task | None], count: int, seconds: float
) -> None:
    pool = _Workers(count, writer, seconds)
    owner: dict[int, int] = {}
    submitted = driver.next_commit
    watch = StallWatch(driver.progress, driver.counts)

    def waiting() -> None:
        """Called while waiting: stop on a signal, say what the run waits for after a while."""
        driver.check_stop()
        w = owner.get(driver.next_commit)
        pids = [pool.procs[w].pid or 0] if w is not None else [p.pid or 0 for p in pool.procs]
        watch.check(f"task {driver.next_commit}", pids)

    inbox: deque[tuple[int, tuple[Any, ...]]] = deque()  # received, not yet handled: (worker, message)

    def receive(timeout: float, wait_fn: Wait) -> None:
        for conn in wait(pool.recv, timeout):
            assert isinstance(conn, Connection)
            try:
                message = recv_message(conn.fileno(), wait=wait_fn)
            except (EOFError, OSError):
                driver.check_stop()
                raise driver.failed(None, None) from None
            watch.arrived()
            inbox.append((pool.recv.index(conn), message))

    def sending() -> None:
        """While a post waits for room in a task pipe: take in the results meanwhile (handled after the
        post), since a worker blocked writing its result into a full pipe is not reading its tasks."""
        waiting()
        receive(0, waiting)

    def post(worker: int, message: tuple[Any, ...]) -> None:
        pool.post(worker, message, sending)

    def pump(timeout: float) -> None:
        receive(timeout, waiting)
        while inbox:
            w, message = inbox.popleft()
            _handle(driver, pool, w, message, owner, post)

    def wait_until(condition: Callable[[], bool]) -> None:
        while not condition():
            waiting()
            pump(_POLL_S)

    try:
        for task in tasks:
            driver.check_stop()
            if task is None:  # a barrier: everything so far listed in the manifest
                wait_until(lambda s=submitted: driver.keys is None or driver.next_dedup >= s)  # type: ignore[misc]
                for w in range(count):
                    post(w, ("flush",))
                wait_until(lambda s=submitted: driver.next_commit >= s)  # type: ignore[misc]
                continue
            wait_until(lambda s=submitted: _room(driver, pool, s))  # type: ignore[misc]
            w = min(range(count), key=lambda k: pool.queued[k])
            post(w, ("task", task))
            pool.queued[w] += 1
            owner[task.task_id] = w
            submitted = task.task_id + 1
            pump(0)
        wait_until(lambda: driver.keys is None or driver.next_dedup >= submitted)
        for w in range(count):
            post(w, ("flush",))
        wait_until(lambda: driver.next_commit >= submitted)
    except _Died:
        driver.check_stop()
        pool.close(graceful=False)
        raise driver.failed(None, None) from None
    except BaseException:
        pool.close(graceful=False)
        raise
    finally:
        _remove_run_temporaries(writer)
    pool.close(graceful=True)


def _room(driver: Driver, pool: _Workers, submitted: int) -> bool:
    if min(pool.queued) >= _QUEUED:
        return False
    if driver.keys is not None and submitted - driver.next_dedup >= _UNDECIDED * len(pool.queued):
        return False
    return submitted - driver.next_commit < _UNCOMMITTED


def _handle(
    driver: Driver,
    pool: _Workers,
    w: int,
    message: tuple[Any, ...],
    owner: dict[int, int],
    post: Callable[[int, tuple[Any, ...]], None],
) -> None:
    kind = message[0]
    if kind == "error":
        driver.check_stop()
        raise driver.failed(message[1], message[2])
    if kind == "computed":
        pool.queued[w] -= len(message[1])
        if driver.keys is not None:
            for task_id, keys in zip(message[1], message[2], strict=True):
                driver.undecided[task_id] = (w, keys)
            while driver.next_dedup in driver.undecided:
                worker, keys = driver.undecided.pop(driver.next_dedup)
                post(worker, ("keep", driver.next_dedup, driver.decide(driver.next_dedup, keys)))
                owner.pop(driver.next_dedup, None)
                driver.next_dedup += 1
    elif kind == "published":
        driver.add_published(message[1])


def _build_locally(writer: DirectoryWriter) -> bool:
    """Whether segments are built in the local temporary directory and copied into place: on a
    network filesystem, and whenever the rollback journal is asked for (``--journal delete``)."""
    return writer.network or writer.journal == "delete"


def _remove_run_temporaries(writer: DirectoryWriter) -> None:
    """Unpublished segments of this run (workers stopped or died): never listed, never read."""
    prefix = f".r{writer.run:04d}-"
    with contextlib.suppress(OSError):
        for entry in (writer.directory / SHARDS).iterdir():
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    entry.unlink()


def run_directory(driver: Driver, tasks: Iterator[Task | None], workers: int, seconds: float = SEGMENT_SECONDS) -> None:
    """Run ``tasks`` for the directory ``writer`` writes: in this process (``workers`` 1) or
    on ``workers`` processes, each writing its own segments, published at least every ``seconds``."""
    writer = driver.writer
    assert isinstance(writer, DirectoryWriter)
    if workers == 1:
        _run_inline(driver, writer, tasks, seconds)
    else:
        _run_pool(driver, writer, tasks, workers, seconds)
