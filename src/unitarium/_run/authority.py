"""The dedup authority of a unique run: the driver's keys, under the run's memory budget.

The rule is the one unique mode always had: a candidate is kept iff its key is in no earlier task
and it is the first of its key in its task ("the first record in task order wins"). The keys live in
a :class:`~.._storage.keystore.KeyStore` (in RAM up to a share of ``--memory``, then in sorted runs on
disk beside the dataset). The store is opened at the first decision of a run: the runs its listing
trusts are taken up, and the keys of the committed tasks after them are read from the dataset's
records (all of them when there is no store, or one that cannot be trusted: a note says so). Listed
runs follow the commits; a complete dataset's store is deleted (nothing will resume it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._read.bulk import blocks
from .._read.dataset import Dataset
from .._storage.keystore import KeyStore, StoreRejected, remove_store
from .._storage.layout import FileWriter
from .._storage.manifest import Manifest
from .._storage.shards import DirectoryWriter
from .._storage.sqlite import path_text, sqlite_errors

__all__ = ["FEED_RECORDS", "KeyAuthority", "store_directory"]

FEED_RECORDS = 1 << 16
"""Records whose keys are read from the dataset at a time when the store is extended or rebuilt."""


def store_directory(writer: FileWriter | DirectoryWriter) -> Path:
    """Where a dataset's key store lives: ``DATA.keys/`` beside a file, ``DATA/keys/`` in a directory."""
    if isinstance(writer, DirectoryWriter):
        return writer.directory / "keys"
    return writer.path.with_name(writer.path.name + ".keys")


def _identity(writer: FileWriter | DirectoryWriter) -> bytes:
    """The dataset's id (none before schema 3) and its spec's digest: what a store is bound to."""
    spec = json.dumps(writer.spec.to_json(), sort_keys=True).encode()
    return (writer.fmt.dataset or b"") + hashlib.sha256(spec).digest()


def _records_before(manifest: Manifest, tasks: int) -> int:
    with sqlite_errors(manifest.path, "reading"):
        row = manifest.conn.execute("SELECT coalesce(sum(count), 0) FROM tasks WHERE task_id < ?", (tasks,)).fetchone()
    return int(row[0])


def _task_groups(manifest: Manifest, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
    """``(first id, end id, through)`` over the committed tasks ``start .. stop-1``: record ranges of
    about :data:`FEED_RECORDS`, each ending with a whole task (``through``: the task after it)."""
    with sqlite_errors(manifest.path, "reading"):
        rows = manifest.conn.execute(
            "SELECT task_id, first_id, count FROM tasks WHERE task_id >= ? AND task_id < ? ORDER BY task_id",
            (start, stop),
        ).fetchall()
    first = end = through = None
    for task_id, first_id, count in rows:
        first = first_id if first is None else first
        end, through = first_id + count, task_id + 1
        if end - first >= FEED_RECORDS:
            yield first, end, through
            first = None
    if first is not None:
        assert end is not None and through is not None
        yield first, end, through


class KeyAuthority:
    """Decides keep-masks in task order against every key before (see the module's docstring)."""

    def __init__(self, writer: FileWriter | DirectoryWriter, budget: int, note: Callable[[str], None]) -> None:
        self.writer, self.note = writer, note
        self.store = KeyStore(store_directory(writer), _identity(writer), budget)
        self.opened = False

    def decide(self, task_id: int, keys: Any) -> np.ndarray:
        """The keep-mask of task ``task_id``'s candidates (``keys``: primary keys and alternates);
        called in task order."""
        if not self.opened:
            self._open(task_id)
        primary, alternates = keys
        keep = self.store.select_new(primary, alternates or {})
        self.store.add(primary[keep], through=task_id + 1)
        return keep

    def _open(self, committed: int) -> None:
        manifest = self.writer.manifest
        try:
            covered = self.store.open(committed, lambda tasks: _records_before(manifest, tasks))
        except StoreRejected as exc:
            self.note(
                f"note: the key store {path_text(self.store.directory)} is not used ({exc}): rebuilt from the dataset"
            )
            covered = 0
        if covered < committed:
            with Dataset(self.writer.location) as reader:
                for first, end, through in _task_groups(manifest, covered, committed):
                    parts = [b.keys for _, b in blocks(reader, first, end) if b.keys is not None]
                    self.store.add(np.concatenate(parts) if parts else np.zeros((0, 2), np.int64), through)
        self.opened = True

    def committed(self, tasks: int) -> None:
        """Tasks ``0 .. tasks-1`` are committed (the store lists the runs they cover)."""
        if self.opened:
            self.store.committed(tasks)

    def finish(self) -> None:
        """The dataset is complete: its key store goes."""
        self.store.close()
        remove_store(self.store.directory)

    def close(self) -> None:
        self.store.close()
