"""The driver: the one process that decides and commits, whatever runs the tasks and wherever
their blocks go.

Whatever executes the tasks (this process, local worker processes, jobs on any executor or on Ray:
:mod:`.engines`), the driver decides deduplication in task order (unique mode: the one ordered
authority, "first record in task order wins", so the content never depends on the executor or the
layout), has tasks listed in the manifest, the commit point, in task order (a file's writer commits
them with their blocks, :mod:`.file`; a directory's lists published segments, :meth:`add_published`),
so the manifest always describes a prefix of the final dataset; it counts what is committed, reports
progress, and words the stop and failure messages (the one place that says how to resume).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .._errors import Interrupted, WorkerError
from .._spec.sources import Task
from .._spec.spec import RandomSource
from .._storage.keystore import memory_budget
from .._storage.layout import FileWriter
from .._storage.manifest import Committed
from .._storage.shards import DirectoryWriter, Published
from .authority import KeyAuthority
from .partitions import LocalProcesses, PartitionsFactory
from .progress import Progress, StallWatch

__all__ = ["RESUME", "Driver", "Execute"]

RESUME = "re-run the same command to resume"


Execute = Callable[["Driver", Iterator[Task | None]], Any]
"""What an engine runs: the tasks of the plan (``None``: a barrier, everything before it committed
first), for the driver; returns the engine's statistics, if any."""


class Driver:
    """Dedups in task order, has tasks committed in task order, counts, and words stops and failures."""

    def __init__(
        self,
        writer: FileWriter | DirectoryWriter,
        progress: Callable[[Any], None] | None,
        stop: Any,
        memory: int | None = None,
        partitions: int = 1,
        make_partitions: PartitionsFactory = LocalProcesses,
    ) -> None:
        """``memory``: the key store's budget in bytes (unique mode; None: the default share of RAM),
        shared by ``partitions`` partitions of the key authority (:mod:`.authority`), made by
        ``make_partitions`` when more than one (the engine's: local processes, Ray actors)."""
        self.writer, self.spec, self.progress, self.stop = writer, writer.spec, progress, stop
        manifest = writer.manifest
        self.next_commit = manifest.tasks_done()
        self.start_tasks = self.next_commit
        self.keys: KeyAuthority | None = None
        if self.spec.unique:
            budget = memory if memory is not None else memory_budget(None)
            watch = StallWatch(progress, self.counts, self.check_stop)  # (Ctrl-C ends a wait for a stopped partition)
            failed = self.partition_failed
            self.keys = KeyAuthority(writer, budget, self.note, failed, partitions, watch, make_partitions)
        self.next_dedup = self.next_commit
        self.records = manifest.next_id()
        self.start_records = self.records
        self.candidates = manifest.candidates_done()
        self.tasks = 0
        self.level = 0
        self.published: dict[int, Published] = {}
        self.undecided: dict[int, tuple[int, Any]] = {}

    def note(self, text: str) -> None:
        """Say ``text`` through the progress callback (the CLI prints it on stderr)."""
        if self.progress is not None:
            self.progress(dataclasses.replace(self.counts(), note=text))

    def decide(self, task_id: int, keys: Any) -> np.ndarray:
        """The keep-mask of task ``task_id``'s candidates (``keys``: primary keys and alternates),
        decided against everything before it; called in task order."""
        assert self.keys is not None
        return self.keys.decide(task_id, keys)

    def complete(self) -> None:
        """Mark the dataset complete; its key store (resumable state only) goes."""
        self.writer.manifest.set_state(complete=True)
        if self.keys is not None:
            self.keys.finish()

    def close(self) -> None:
        if self.keys is not None:
            self.keys.close()

    def add_published(self, published: list[Published]) -> None:
        """Tasks whose segments are published (any order): the next ones in task order are listed."""
        assert isinstance(self.writer, DirectoryWriter)
        for p in published:
            self.published[p.task_id] = p
        batch = []
        while self.next_commit in self.published:
            batch.append(self.published.pop(self.next_commit))
            self.next_commit += 1
        if batch:
            self.writer.commit_published(batch)
            self.committed(batch)

    def committed(self, batch: Sequence[Committed]) -> None:
        """Count ``batch``, now committed, and report progress."""
        for t in batch:
            self.records += t.count
            self.candidates += t.candidates
            self.tasks += 1
            self.level = t.level
        if self.keys is not None:
            self.keys.committed(self.start_tasks + self.tasks)
        if self.progress:
            self.progress(self.counts())

    def counts(self) -> Progress:
        total = self.spec.source.count if isinstance(self.spec.source, RandomSource) else None
        return Progress(self.records, self.candidates, total, self.level)

    def check_stop(self) -> None:
        if self.stop.requested:
            raise Interrupted(
                f"stopped by signal; {self.records} records are committed in {str(self.writer.location)!r}: {RESUME}"
            )

    def partition_failed(self, what: str) -> WorkerError:
        """The error of a key partition (process or actor) that failed or died (``what``, in words); a stop
        requested meanwhile is reported instead (the same signal may have ended the partition)."""
        self.check_stop()
        return WorkerError(f"{what}; {self.records} records are committed: {RESUME}")

    def failed(self, task_id: int | None, error: str | None) -> WorkerError:
        """The error of a failed task (``error``: ``"Type: message"``) or of a worker that died (None)."""
        committed = f"{self.records} records are committed: {RESUME}"
        if error is None:
            during = "" if task_id is None else f" while computing task {task_id}"
            return WorkerError(f"a worker process died{during} (killed, or out of memory?); {committed}")
        if task_id is None:
            return WorkerError(f"a worker process failed: {error}; {committed}")
        return WorkerError(f"task {task_id} failed: {error}; {committed}")
