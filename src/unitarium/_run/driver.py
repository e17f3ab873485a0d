"""The driver of a sharded run: the one process that decides and commits.

Whatever executes the tasks (local workers writing their own segments, :mod:`._dirrun`; jobs on any
executor or on Ray, :mod:`._executors`), the driver decides deduplication in task order (unique mode:
the one ordered authority, "first record in task order wins", so the content never depends on the
executor) and lists published tasks in the manifest, the commit point, in task order, so the
manifest always describes a prefix of the final dataset. It also words the stop and failure messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._core.keyset import KeySet
from .._errors import Interrupted, WorkerError
from .._read.dataset import Dataset
from .._spec.spec import RandomSource
from .._storage.shards import DirectoryWriter, Published
from .progress import Progress

__all__ = ["Driver"]


class Driver:
    """Dedups in task order, commits published tasks in task order to the manifest, and counts."""

    def __init__(self, writer: DirectoryWriter, progress: Callable[[Any], None] | None, stop: Any) -> None:
        self.writer, self.spec, self.progress, self.stop = writer, writer.spec, progress, stop
        with Dataset(writer.directory) as reader:
            self.keys = KeySet(reader.dedup_keys()) if self.spec.unique else None
        self.next_commit = writer.manifest.tasks_done()
        self.next_dedup = self.next_commit
        self.records = writer.manifest.next_id()
        self.start_records = self.records
        self.candidates = writer.manifest.candidates_done()
        self.tasks = 0
        self.level = 0
        self.published: dict[int, Published] = {}
        self.undecided: dict[int, tuple[int, Any]] = {}

    def decide(self, task_id: int, keys: Any) -> np.ndarray:
        assert self.keys is not None
        primary, alternates = keys
        keep = self.keys.select_new(primary, alternates or {})
        self.keys.add(primary[keep])
        return keep

    def add_published(self, published: list[Published]) -> None:
        for p in published:
            self.published[p.task_id] = p
        batch = []
        while self.next_commit in self.published:
            batch.append(self.published.pop(self.next_commit))
            self.next_commit += 1
        if batch:
            self.writer.commit_published(batch)
            for p in batch:
                self.records += p.count
                self.candidates += p.candidates
                self.tasks += 1
                self.level = p.level
            if self.progress:
                total = self.spec.source.count if isinstance(self.spec.source, RandomSource) else None
                self.progress(Progress(self.records, self.candidates, total, self.level))

    def counts(self) -> Progress:
        total = self.spec.source.count if isinstance(self.spec.source, RandomSource) else None
        return Progress(self.records, self.candidates, total, self.level)

    def check_stop(self) -> None:
        if self.stop.requested:
            raise Interrupted(
                f"stopped by signal; {self.records} records are committed in {str(self.writer.directory)!r}: "
                "re-run the same command to resume"
            )

    def failed(self, task_id: int | None, error: str | None) -> WorkerError:
        committed = f"{self.records} records are committed: re-run the same command to resume"
        if error is None:
            return WorkerError(f"a worker process died (killed, or out of memory?); {committed}")
        if task_id is None:
            return WorkerError(f"a worker process failed: {error}; {committed}")
        return WorkerError(f"task {task_id} failed: {error}; {committed}")
