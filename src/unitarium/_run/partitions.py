"""How the key authority (:mod:`.authority`) reaches its partitions: the :class:`Partitions` interface,
and its implementations here: the driver's own process (:class:`InProcess`, ``P = 1``), and for every
local engine's ``P > 1`` partition 0 in the driver and the others in spawned local processes talking
over pipes (:class:`LocalProcesses`). Ray's actors are in :mod:`.actors`; an engine hands the
authority its :data:`PartitionsFactory` (:data:`.engines.ENGINES`).

Whatever the transport, partition ``i`` answers (:meth:`.partition.KeyPartition.handle`) the messages
sent to it in the order sent; :meth:`Partitions.reply` returns the answers in that order, skipping the
:data:`~.partition.SILENT` messages, which have none; a failure in any message surfaces, as one line
naming the partition, at the next reply at the latest, and a partition gone (killed, out of memory,
its node lost) as a :class:`WorkerError` naming it (resumable: the driver says how).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import WorkerError
from .partition import KeyPartition, PartitionArgs, serve
from .wire import recv_message, send_message, start_worker, stop_workers

if TYPE_CHECKING:
    from .progress import StallWatch

__all__ = ["Failed", "InProcess", "LocalProcesses", "Partitions", "PartitionsFactory"]

Failed = Callable[[str], WorkerError]
"""The driver's error for a partition that failed or died (what happened, in words)."""


class Partitions(Protocol):
    """The partitions of one run, as the authority sees them."""

    def start(self, args: Sequence[PartitionArgs]) -> None:
        """Start partition ``i`` of ``args[i]`` for each."""

    def send(self, i: int, message: tuple[Any, ...]) -> None:
        """Send ``message`` to partition ``i`` (its answer, if any, comes from :meth:`reply`)."""

    def reply(self, i: int) -> Any:
        """Partition ``i``'s answer to the oldest message sent to it and not yet answered."""

    def close(self) -> None:
        """Stop the partitions (their stores closed; idempotent)."""


PartitionsFactory = Callable[[Failed, "StallWatch | None"], Partitions]
"""Makes the partitions of a run with ``P > 1`` (``failed``: the driver's error for a partition lost;
the watch: says what a long wait waits for, and ends it at a stop)."""


class InProcess:
    """One partition, in the driver's process (``P = 1``, and partition 0 of :class:`LocalProcesses`): a message
    is answered when sent; its failures are raised as they are."""

    def __init__(self) -> None:
        self.partition: KeyPartition | None = None
        self.answers: list[Any] = []

    def start(self, args: Sequence[PartitionArgs]) -> None:
        (one,) = args
        self.partition = KeyPartition(one)

    def send(self, i: int, message: tuple[Any, ...]) -> None:
        assert self.partition is not None
        answer = self.partition.handle(message)
        if answer is not None:
            self.answers.append(answer)

    def reply(self, i: int) -> Any:
        return self.answers.pop(0)

    def close(self) -> None:
        if self.partition is not None:
            self.partition.close()
        self.partition, self.answers = None, []


class LocalProcesses:
    """Partition 0 in the driver's process (:class:`InProcess`) and partitions ``1 .. P-1`` in spawned processes of
    this machine (:func:`.partition.serve`), over pipes. The driver would only wait while the others answer, so
    it answers its own share meanwhile (the authority sends to partition 0 last): one process and one message
    each way per decision fewer than a process per partition. Measured (BENCHMARKS.md, "A partition in the
    driver"): 2 partitions cost 1.20x one partition's CPU with both in processes of their own, 1.13-1.15x so
    (5M candidates, 2 workers, 2 cores)."""

    def __init__(self, failed: Failed, watch: StallWatch | None) -> None:
        """``watch``: says which partition process (pid) a decision waits for, when it waits long
        (a partition stopped by SIGSTOP, as a worker: :class:`~.progress.StallWatch`)."""
        self.failed, self.watch = failed, watch
        self.own = InProcess()
        self.procs: list[multiprocessing.process.BaseProcess] = []
        """Partition ``i``'s process at ``i - 1``, and its pipe in :attr:`conns`."""
        self.conns: list[Connection] = []

    def start(self, args: Sequence[PartitionArgs]) -> None:
        ctx = multiprocessing.get_context("spawn")
        resource_tracker.ensure_running()
        try:
            for one in args[1:]:  # (started first: they load while the driver opens its own)
                mine, theirs = ctx.Pipe(duplex=True)
                self.procs.append(start_worker(ctx, serve, (theirs, one), (theirs,)))
                self.conns.append(mine)
            self.own.start(args[:1])
        except BaseException:
            self.close()
            raise

    def _died(self, i: int) -> WorkerError:
        return self.failed(f"key partition process {self.procs[i - 1].pid} died (killed, or out of memory?)")

    def _waiting(self, i: int) -> Callable[[], None] | None:
        """What a blocked transfer with partition ``i`` calls: the watch's check, from now on."""
        watch = self.watch
        if watch is None:
            return None
        watch.arrived()
        pid = self.procs[i - 1].pid
        return lambda: watch.check(f"key partition {i}", [] if pid is None else [pid])

    def send(self, i: int, message: tuple[Any, ...]) -> None:
        if i == 0:
            self.own.send(0, message)
            return
        try:
            send_message(self.conns[i - 1].fileno(), message, wait=self._waiting(i))
        except OSError:
            raise self._died(i) from None

    def reply(self, i: int) -> Any:
        if i == 0:
            return self.own.reply(0)
        try:
            reply = recv_message(self.conns[i - 1].fileno(), wait=self._waiting(i))
        except (EOFError, OSError):
            raise self._died(i) from None
        if isinstance(reply, tuple) and isinstance(reply[0], str) and reply[0] == "error":
            raise self.failed(f"key partition {i} failed: {reply[1]}")
        return reply

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        try:
            stop_workers(self.procs, graceful=True, wait_s=10)
        finally:
            self.conns, self.procs = [], []
            self.own.close()
