"""Labels beside a dataset, read: ``DATA.labels`` (written by ``unitarium label``: :mod:`unitarium.search.label`).

A labels file holds, for every record of the dataset it names, its least cost under a search table's
cost model, or ``-(R + 1)`` where that cost is beyond the table's reach ``R``. Schema
(:data:`LABELS_SCHEMA`): ``label_table(key, value)`` (``table``: JSON naming the table's spec and
records and the labelled dataset's spec, id and records; ``reach``: ``R``) and ``labels(first_id,
count, costs)``, one row per committed chunk, ``costs`` little-endian int32.

**What is carried, and when.** ``ds[i].label``, ``ds[ids]``, iteration, views, the torch datasets (a
``label`` field) and the exports (a ``label`` column) carry the labels only when the file is
*complete*: it names this dataset (spec and random dataset id) and its committed chunks cover every
record of the handle without a gap. That is decided once per handle, at the first read that would
carry them (:meth:`Labels.carried`). A file naming another dataset (copied or swapped) is refused with
a :class:`~unitarium.DatasetError`, a crafted or damaged one with a
:class:`~unitarium.DatasetDamagedError`; an *incomplete* one (labelling interrupted, or still running)
is not carried: those reads give no label (``Record.label`` None, no ``label`` field or column) and a
:class:`LabelsWarning` says, once per handle, how far it got and how to finish it. ``ds.labels(a, b)``
reads any labelled range, complete file or not, and raises beyond the labelled prefix.

Whether a labels file exists is looked up once, when the dataset is opened (one ``stat``; nothing per
``ds[i]`` when there is none): a handle opened before ``unitarium label`` finished carries nothing
new; open the dataset again (``ds.label(table)`` refreshes its own handle). Connections are per
process (reopened after a fork), read-only, through the project's :func:`~._storage.sqlite.connect`.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.circuit import Record
from .._errors import DatasetDamagedError, DatasetError, SpecError
from .._storage.sqlite import bounded, connect, path_text, sqlite_errors

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = [
    "LABELS_SCHEMA",
    "Labels",
    "LabelsWarning",
    "carried_labels",
    "carries_labels",
    "find_labels",
    "label_meta",
    "labels_path",
    "read_labels",
    "refresh_labels",
    "whose",
    "whose_of",
]

LABELS_SCHEMA = (
    "CREATE TABLE label_table(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE labels(first_id INTEGER PRIMARY KEY, count INTEGER NOT NULL, costs BLOB NOT NULL)",
)
"""The tables of a labels file, exactly (anything else in it is refused)."""
_AUTOINDEX = "sqlite_autoindex_label_table_1"
_CACHE_BYTES = 16 << 20
"""Label chunks kept in memory per handle (a 4,096-record chunk is 16 KiB)."""


class LabelsWarning(UserWarning):
    """A labels file lies beside the dataset but is not carried by its reads (incomplete)."""


def labels_path(path: str | os.PathLike[str]) -> Path:
    """Where the labels of the dataset at ``path`` live: ``DATA.labels`` beside the file or directory ``DATA``."""
    return Path(os.fspath(path).rstrip("/") + ".labels")


def find_labels(ds: Dataset) -> Labels | None:
    """The labels beside ``ds``, or None when there is no labels file (one ``stat``)."""
    where = labels_path(ds.path)
    return Labels(where) if os.path.lexists(where) else None


def refresh_labels(ds: Dataset) -> None:
    """Look for ``ds``'s labels again (after labelling it through this handle)."""
    ds._labels = find_labels(ds)


def whose_of(ds: Dataset) -> dict[str, Any]:
    """The labelled dataset's identity: its spec and its random id (schema 3), so that labels copied
    beside another dataset are refused, never served."""
    fmt = ds.format
    return {"dataset": ds.spec.to_json(), "dataset_id": None if fmt.dataset is None else fmt.dataset.hex()}


def whose(ident: str) -> dict[str, Any]:
    """The labelled dataset's identity as a labels file's ``table`` entry names it ({} if unreadable)."""
    try:
        data = json.loads(ident)
    except ValueError:
        return {}
    return {k: data.get(k) for k in ("dataset", "dataset_id")} if isinstance(data, dict) else {}


class Labels:
    """The labels file of one dataset handle (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pid = -1
        self._conn: Any = None
        self._lock, self._owner = threading.Lock(), os.getpid()
        self._carried: tuple[np.ndarray, np.ndarray] | None = None
        """First ids and counts of the chunks, once the file is found complete (then carried)."""
        self._decided = False
        self._index: tuple[list[int], list[int]] = ([], [])
        self._info: dict[str, Any] = {}
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached = 0
        self._empty = False

    # -- the file ------------------------------------------------------------------------------

    def _held(self) -> threading.Lock:
        """This handle's lock in this process (a forked child gets a fresh one: a parent's thread
        holding it at the fork would never release the child's copy)."""
        if self._owner != os.getpid():
            self._lock, self._owner = threading.Lock(), os.getpid()
        return self._lock

    def _connection(self) -> Any:
        if self._conn is None or self._pid != os.getpid():
            self._cache.clear()
            self._cached = 0
            if not self.path.is_file():
                raise DatasetError(f"{path_text(self.path)} is not a labels file (gone, or not a regular file)")
            with sqlite_errors(self.path, "opening"):
                conn = connect(self.path, readonly=True)
            try:
                self._check_schema(conn)
            except BaseException:
                conn.close()
                raise
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _check_schema(self, conn: Any) -> None:
        with sqlite_errors(self.path, "opening"), bounded(conn, self.path):
            rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
        want = {s.split(" ")[2].split("(")[0]: s for s in LABELS_SCHEMA}
        seen = set()
        for kind, name, table, sql in rows:
            if kind == "index" and name == _AUTOINDEX and table == "label_table" and sql is None:
                continue
            text = " ".join(sql.split()) if isinstance(sql, str) else None
            if kind != "table" or want.get(name) != text:
                raise DatasetDamagedError(
                    f"{path_text(self.path)} is not a labels file as unitarium writes it: its schema has {kind} "
                    f"{name!r} (crafted or edited: not read)"
                )
            seen.add(name)
        if seen and seen != set(want):
            raise DatasetDamagedError(f"{path_text(self.path)} is damaged: it lacks a table of labels")
        self._empty = not seen  # (created, its tables not yet committed: labelling is starting)

    def _load(self, ds: Dataset) -> tuple[np.ndarray, np.ndarray, int]:
        """The chunks of the labelled prefix (first ids, counts) and its end, after checking the
        file names ``ds``; reads the file's ``reach`` and ``table`` entries into ``_info``."""
        conn = self._connection()
        if self._empty:
            self._check_schema(conn)  # (look again: the tables may exist now)
        if self._empty:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
        with sqlite_errors(self.path, "reading"), bounded(conn, self.path):
            conn.execute("BEGIN")
            try:
                entries = dict(conn.execute("SELECT key, value FROM label_table").fetchall())
                rows = conn.execute("SELECT first_id, count FROM labels ORDER BY first_id").fetchall()
            finally:
                conn.execute("COMMIT")
        ident = entries.get("table")
        if not isinstance(ident, str) or whose(ident) != whose_of(ds):
            raise DatasetError(
                f"{path_text(self.path)} holds the labels of another dataset (copied or swapped?): not read; "
                f"move it away and run unitarium label on {path_text(ds.path)}"
            )
        self._info = {"table": json.loads(ident).get("table"), "reach": entries.get("reach")}
        firsts, counts, end = [], [], 0
        for first, count in rows:
            if type(first) is not int or type(count) is not int or count < 1 or first > end:
                break
            if first < end:
                raise DatasetDamagedError(f"{path_text(self.path)} is damaged: its chunks overlap at record {first}")
            firsts.append(first)
            counts.append(count)
            end = first + count
        return np.array(firsts, dtype=np.int64), np.array(counts, dtype=np.int64), end

    def _chunk(self, first: int, count: int) -> np.ndarray:
        """The labels of the chunk starting at ``first`` (int32, kept in a small cache)."""
        hit = self._cache.get(first)
        if hit is not None:
            self._cache.move_to_end(first)
            return hit
        conn = self._connection()
        with sqlite_errors(self.path, "reading"):
            row = conn.execute("SELECT costs FROM labels WHERE first_id = ?", (first,)).fetchone()
        blob = row[0] if row is not None else None
        if not isinstance(blob, bytes) or len(blob) != 4 * count:
            raise DatasetDamagedError(
                f"{path_text(self.path)} is damaged: the labels of records {first}..{first + count - 1} "
                f"are not {count} int32 values"
            )
        values = np.frombuffer(blob, dtype="<i4").astype(np.int32)
        self._cache[first] = values
        self._cached += values.nbytes
        while self._cached > _CACHE_BYTES and len(self._cache) > 1:
            self._cached -= self._cache.popitem(last=False)[1].nbytes
        return values

    def _take(self, firsts: np.ndarray, counts: np.ndarray, ids: np.ndarray) -> np.ndarray:
        out = np.empty(len(ids), dtype=np.int64)
        rows = np.searchsorted(firsts, ids, side="right") - 1
        with self._held():
            for r in np.unique(rows).tolist():
                mask = rows == r
                out[mask] = self._chunk(int(firsts[r]), int(counts[r]))[ids[mask] - firsts[r]]
        return out

    # -- reads -----------------------------------------------------------------------------------

    def read(self, ds: Dataset, ids: np.ndarray) -> np.ndarray:
        """Labels of records ``ids`` (checked in range), from the file as it is now; raises for an
        id beyond the labelled prefix."""
        with self._held():
            firsts, counts, end = self._load(ds)
        if len(ids) and int(ids.max()) >= end:
            raise DatasetError(
                f"{path_text(ds.path)} is labelled up to record {end} only (of {len(ds):,}): "
                "re-run unitarium label to finish it"
            )
        return self._take(firsts, counts, ids)

    def carried(self, ds: Dataset) -> bool:
        """Whether the reads of this handle carry the labels: the file is complete (decided once;
        an incomplete file warns once, a foreign or damaged one raises every time)."""
        if self._decided:
            return self._carried is not None
        with self._held():
            if self._decided:  # (another thread decided meanwhile)
                return self._carried is not None
            firsts, counts, end = self._load(ds)
            n = len(ds)
            if end >= n:
                self._carried = firsts, counts
                self._index = firsts.tolist(), counts.tolist()
            else:
                warnings.warn(
                    f"{path_text(self.path)} is incomplete (labelled up to record {end:,} of {n:,}): its labels "
                    f"are not carried by reads; finish it with unitarium label {path_text(ds.path)} --table ...",
                    LabelsWarning,
                    stacklevel=4,
                )
            self._decided = True
        return self._carried is not None

    def take(self, ds: Dataset, ids: np.ndarray) -> np.ndarray:
        """Carried labels (int64) of records ``ids``; raises when this handle carries none."""
        if not self.carried(ds) or self._carried is None:
            raise DatasetError(f"{path_text(self.path)} is incomplete: its labels are not carried")
        return self._take(*self._carried, np.asarray(ids, dtype=np.int64))

    def attach(self, ds: Dataset, found: Any) -> Any:
        """``found`` (a record or a list of records of ``ds``) with their labels, when carried."""
        if not self.carried(ds):
            return found
        if isinstance(found, Record):
            return replace(found, label=self._one(found.id))
        values = self.take(ds, np.array([r.id for r in found], dtype=np.int64)).tolist()
        return [replace(r, label=v) for r, v in zip(found, values, strict=True)]

    def _one(self, i: int) -> int:
        """The carried label of record ``i`` (the one-record road of ``ds[i]``: no arrays)."""
        assert self._carried is not None
        firsts, counts = self._index
        k = bisect_right(firsts, i) - 1
        with self._held():
            return int(self._chunk(firsts[k], counts[k])[i - firsts[k]])

    def attach_all(self, ds: Dataset, records: Iterator[Record], step: int = 4096) -> Iterator[Record]:
        """Records of an iteration with their labels (a piece of ``step`` records at a time)."""
        if not self.carried(ds):
            yield from records
            return
        piece: list[Record] = []
        for rec in records:
            piece.append(rec)
            if len(piece) == step:
                yield from self.attach(ds, piece)
                piece = []
        yield from self.attach(ds, piece)

    def meta(self, ds: Dataset) -> dict[str, Any]:
        """What a carried label means, for exports: the table's gates and cost model, the reach."""
        self.carried(ds)
        table = self._info.get("table") or {}
        reach = self._info.get("reach")
        return {
            "table_gates": table.get("gates"),
            "cost": table.get("cost"),
            "reach": None if reach is None else int(reach),
            "meaning": "least cost under the table's cost model (cost: gate weights; none: every gate 1); "
            "a negative value -(R + 1): beyond the table's reach R, the cost is at least R + 1",
        }


# -- for readers above (torch, exports) and the facade -----------------------------------------------


def carries_labels(ds: Dataset) -> bool:
    """Whether reads of ``ds`` carry labels (a complete labels file beside it)."""
    found = getattr(ds, "_labels", None)
    return found is not None and found.carried(ds)


def carried_labels(ds: Dataset, ids: np.ndarray) -> np.ndarray:
    """The carried labels (int64) of records ``ids`` of ``ds``; raises when it carries none."""
    found = getattr(ds, "_labels", None)
    if found is None:
        raise DatasetError(f"{path_text(ds.path)} has no labels beside it (gone since it was opened?)")
    return found.take(ds, ids)


def label_meta(ds: Dataset) -> dict[str, Any]:
    """What the carried labels of ``ds`` mean (:meth:`Labels.meta`)."""
    found = ds._labels
    assert found is not None
    return found.meta(ds)


def read_labels(ds: Dataset, start: int | Sequence[int] | np.ndarray = 0, stop: int | None = None) -> np.ndarray:
    """``ds.labels(start, stop)``: int64 labels of records ``start .. stop-1`` (or of the ids in an
    array ``start``): the least cost, or ``-(R + 1)`` beyond the table's reach ``R``. Raises when the
    dataset has no labels or they do not reach that far."""
    from .locate import checked_ids

    n = len(ds)
    if isinstance(start, int | np.integer):
        first, end = int(start), n if stop is None else int(stop)
        if not 0 <= first <= end <= n:
            raise SpecError(f"labels {first}..{end} are out of range: the dataset has {n} records")
        ids = np.arange(first, end, dtype=np.int64)
    else:
        ids = checked_ids(ds, start)
    found = ds._labels if ds._labels is not None else find_labels(ds)  # (an explicit read looks again)
    if found is None:
        raise DatasetError(f"{path_text(ds.path)} has no labels: run unitarium label on it with a table")
    return found.read(ds, np.asarray(ids, dtype=np.int64))
