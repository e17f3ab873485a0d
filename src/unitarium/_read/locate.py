"""Where records are: ids checked against the dataset's length, ranges, and the task blocks
(spans) holding a range of records, from the manifest's ``tasks`` table. Functions of a reader."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .._errors import RecordIndexError
from .._storage.blocks import Span

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["check_id", "checked_ids", "id_range", "spans"]


def check_id(ds: Dataset, i: object, n: int | None = None) -> int:
    """Record id ``i`` as a non-negative int (negative ids count from the end), or a clear error."""
    if isinstance(i, bool) or not isinstance(i, int | np.integer):
        raise TypeError(f"record ids are integers, not {type(i).__name__}")
    n = len(ds) if n is None else n
    j = int(i) + n if i < 0 else int(i)
    if not 0 <= j < n:
        raise RecordIndexError(f"record id {i} is out of range: the dataset has {n} records (0..{n - 1})")
    return j


def id_range(ds: Dataset, start: object, stop: object) -> tuple[int, int]:
    """``start, stop`` (``stop`` None: the end) checked against the dataset's length."""
    n = len(ds)
    stop = n if stop is None else stop
    if not (isinstance(start, int | np.integer) and isinstance(stop, int | np.integer)) or isinstance(start, bool):
        raise RecordIndexError(f"range {start!r}:{stop!r} must be two integers (or pass an array of ids)")
    if not 0 <= start <= stop <= n:
        raise RecordIndexError(f"range {start}:{stop} is outside the dataset's {n} records")
    return int(start), int(stop)


def checked_ids(ds: Dataset, ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """``ids`` as a checked int64 array (negative ids count from the end)."""
    arr = np.asarray(ids)
    if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise RecordIndexError(f"record ids must be a 1-D sequence of integers, got {arr.dtype} of shape {arr.shape}")
    arr = arr.astype(np.int64)
    n = len(ds)
    arr = np.where(arr < 0, arr + n, arr)
    bad = (arr < 0) | (arr >= n)
    if bad.any():
        raise RecordIndexError(f"record id {int(np.asarray(ids)[bad][0])} is out of range: the dataset has {n} records")
    return arr


def spans(ds: Dataset, start: int, stop: int) -> list[Span]:
    """The task blocks holding records ``[start, stop)``, and which rows of each."""
    rows = ds._query(
        "SELECT task_id, shard, first_id, count FROM tasks WHERE count > 0 AND first_id < ? AND first_id >= "
        "(SELECT coalesce(max(first_id), 0) FROM tasks WHERE first_id <= ? AND count > 0) ORDER BY first_id",
        (stop, start),
    )
    found = []
    for task_id, shard, first, count in rows:
        if not all(isinstance(v, int) for v in (task_id, shard, first, count)) or count < 0:
            raise ds._store.damaged(None, f"task {task_id!r} has a malformed row")
        lo, hi = max(start, first) - first, min(stop, first + count) - first
        if lo < hi:
            found.append((task_id, shard, first, count, lo, hi))
    if sum(s[5] - s[4] for s in found) != stop - start:
        raise ds._store.damaged((start, stop), "the tasks table does not cover these records")
    return found
