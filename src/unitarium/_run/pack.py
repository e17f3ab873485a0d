"""``unitarium pack DIR FILE``: one dataset file from a finished sharded dataset.

The file gets the same spec, dataset id, ids, circuits and (stored) unitaries: each task's block is checked
(every page's checksum) and copied byte for byte, with its lookup rows, in task order, a batch of
tasks per transaction. The file is created privately and linked into place by :class:`.._storage.layout.FileWriter`,
so a reader never sees a half-made file; until the last task is copied it is an incomplete dataset
(a prefix), and an interrupted pack leaves a file that ``pack`` refuses to overwrite: delete it and
pack again. A source whose segments are not its own (foreign, swapped, resized) is refused before
anything is written; a damaged block found while copying removes the new file.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np

from .._errors import DatasetDamagedError, DatasetError
from .._read.dataset import Dataset
from .._storage.layout import FileWriter
from .._storage.schema import update_summary
from .._storage.sqlite import path_text, sqlite_errors
from .progress import Summary

__all__ = ["pack"]

_BATCH_TASKS = 64


def pack(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Summary:
    """Copy the complete sharded dataset ``source`` into the new file ``target``."""
    t0 = time.monotonic()
    source, target = Path(source), Path(target)
    with Dataset(source) as ds:
        store = ds._store
        if store.directory is None:
            raise DatasetError(f"{path_text(source)} is already a dataset file: nothing to pack")
        if not ds.complete:
            raise DatasetError(
                f"{path_text(source)} is not finished: resume it with its generate command, then pack it"
            )
        if os.path.lexists(target):
            raise DatasetError(f"{path_text(target)} exists: pack writes a new file only")
        store.check_segments()  # every segment its manifest's (identity, task range, size) before writing
        tasks = store.query("SELECT task_id, level, first_id, count, candidates, shard FROM tasks ORDER BY task_id")
        with FileWriter(target, ds.spec, fmt=ds.format) as writer:  # the same dataset id: blocks copied as they are
            try:
                for a in range(0, len(tasks), _BATCH_TASKS):
                    _copy(ds, writer, tasks[a : a + _BATCH_TASKS])
            except DatasetDamagedError:  # damage found in a block: no partial file stays behind
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(OSError):
                        os.unlink(f"{os.fspath(target)}{suffix}")
                raise
            writer.manifest.set_state(complete=True)
        return Summary(os.fspath(target), len(ds), len(ds), len(tasks), time.monotonic() - t0, True)


def _copy(ds: Dataset, writer: FileWriter, tasks: list[tuple[int, int, int, int, int, int]]) -> None:
    store, fmt = ds._store, ds.format
    entries, blocks, lookups = [], [], []
    for task_id, level, first, count, candidates, shard in tasks:
        lengths: dict[int, int] = {}
        if count:
            block = store.read(fmt, (task_id, shard, first, count, 0, count))  # every page checked
            values, counts = np.unique(np.diff(block.offsets), return_counts=True)
            lengths = {int(v): int(c) for v, c in zip(values, counts, strict=True)}
            conn = store.shard(shard)
            with sqlite_errors(store.manifest if shard == 0 else store.segment_path(shard), "reading"):
                blocks.append(
                    conn.execute(
                        "SELECT task_id, count, offsets, codes, unitaries, keys, checks FROM blocks WHERE task_id = ?",
                        (task_id,),
                    ).fetchone()
                )
                lookups += conn.execute("SELECT key, task_id, row FROM lookup WHERE task_id = ?", (task_id,)).fetchall()
        entries.append(((task_id, level, first, count, candidates), (count, candidates, lengths)))
    with writer.manifest.transaction() as conn:
        update_summary(conn, [e[1] for e in entries])
        conn.executemany("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, 0)", [e[0] for e in entries])
        conn.executemany("INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?)", blocks)
        conn.executemany("INSERT INTO lookup VALUES (?, ?, ?)", lookups)
