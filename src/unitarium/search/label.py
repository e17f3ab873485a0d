"""Labels: every record of a dataset labelled with its least cost under a search table's cost model.

``unitarium label DATA --table TABLE`` (``ds.label(table)``) synthesises each record's unitary from
the table (:func:`unitarium.search.mitm.synthesize_many`: least cost, exact up to the table's reach
``R = 2C - w_max + 1``, ``2 L`` for a table by length) and stores, per record, that least cost, or
``-(R + 1)`` where no circuit of cost ``<= R`` exists (the cost is then at least ``R + 1``: a lower
bound). Read them with ``ds.labels(start, stop)`` (int64; negative: a lower bound, negated).

Storage: a SQLite file beside the dataset, ``DATA.labels`` (:func:`labels_path`; the dataset's own
file keeps its exact schema and bytes: readers refuse any other table in it). It holds a table
``label_table`` naming the labelled dataset (spec, records) and the table (spec, records): another
table, or a dataset that changed, is refused, as ``generate`` refuses another spec; and
``labels(first_id, count, costs)``, one row per chunk of :data:`CHUNK` records (little-endian
int32), each committed in one transaction (``BEGIN IMMEDIATE``, rollback journal,
``synchronous=FULL``): a ``kill -9`` loses at most the chunk in flight, and running the same
command again resumes after the last committed chunk.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.cost import circuit_costs, describe_cost, move_weights
from .._errors import DatasetError, SpecError, StorageError
from .._storage.sqlite import SMALL_PAGE_SIZE, atomic, connect, path_text, sqlite_errors
from ._table import table_of
from .mitm import cost_reach, synthesize_many

if TYPE_CHECKING:
    from .._read.dataset import Dataset

__all__ = ["CHUNK", "LabelSummary", "label", "labels_path", "read_labels"]

CHUNK = 4096
"""Records labelled and committed at once."""
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS label_table(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS labels(first_id INTEGER PRIMARY KEY, count INTEGER NOT NULL, costs BLOB NOT NULL)",
)


class LabelSummary(dict[str, Any]):
    """``{"records", "new", "exact", "reach", "table"}`` of a finished labelling."""


def label(
    ds: Dataset, table: Dataset, *, chunk: int = CHUNK, progress: Callable[[int, int], None] | None = None
) -> LabelSummary:
    """Label every record of ``ds`` (a complete dataset file) with its least cost under ``table``
    (a complete unique enumeration on as many qubits), resuming a labelling by the same table."""
    if not ds.complete:
        raise DatasetError(f"{path_text(ds.path)} is not complete: finish its generate command before labelling it")
    if table.gateset.num_qubits != ds.gateset.num_qubits:
        raise SpecError(
            f"the table {path_text(table.path)} is on {table.gateset.num_qubits} qubits and "
            f"{path_text(ds.path)} on {ds.gateset.num_qubits}: use a table on as many qubits"
        )
    search = table_of(table, "label")
    reach = cost_reach(table.spec)  # 2 L for a table by length
    ident = json.dumps(
        {"table": table.spec.to_json(), "records": len(table), "labelled": len(ds), **_whose_of(ds)}, sort_keys=True
    )
    weights = move_weights(table.gateset, table.spec.cost)
    n, new, exact = len(ds), 0, 0
    with _writer(labels_path(ds)) as conn:
        with atomic(conn):
            for statement in _SCHEMA:
                conn.execute(statement)
            row = conn.execute("SELECT value FROM label_table WHERE key = 'table'").fetchone()
            if row is None:
                conn.execute("INSERT INTO label_table VALUES ('table', ?)", (ident,))
            elif row[0] != ident:
                raise SpecError(
                    f"{path_text(labels_path(ds))} holds labels by another table or of another dataset "
                    f"({_describe(row[0])}), not {path_text(table.path)} ({_describe(ident)}): "
                    "move it away to label again"
                )
        done = _done(conn)
        while done < n:
            stop = min(n, done + chunk)
            found = synthesize_many(search, ds.unitaries(done, stop).astype(np.complex128), atol=1e-5, spec=table.spec)
            costs = np.full(stop - done, -(reach + 1), dtype=np.int64)
            hit = [k for k, c in enumerate(found) if c is not None]
            if hit:
                codes = [found[k].codes for k in hit]  # type: ignore[union-attr]
                offsets = np.concatenate([[0], np.cumsum([len(c) for c in codes])])
                costs[hit] = circuit_costs(np.concatenate([np.zeros(0, np.int64), *codes]), offsets, weights)
            with atomic(conn):
                if _done(conn) != done:  # another labeller committed this chunk meanwhile
                    done = _done(conn)
                    continue
                conn.execute("INSERT INTO labels VALUES (?, ?, ?)", (done, stop - done, costs.astype("<i4").tobytes()))
            new, exact, done = new + stop - done, exact + len(hit), stop
            if progress is not None:
                progress(done, n)
    return LabelSummary(records=n, new=new, exact=exact, reach=reach, table=str(table.path))


def read_labels(ds: Dataset, start: int = 0, stop: int | None = None) -> np.ndarray:
    """``(stop - start,)`` int64 labels of records ``start .. stop-1``: the least cost, or ``-(R + 1)``
    where it is beyond the table's reach ``R``. Raises when the dataset is not (fully) labelled."""
    n = len(ds)
    stop = n if stop is None else stop
    if not 0 <= start <= stop <= n:
        raise SpecError(f"labels {start}..{stop} are out of range: the dataset has {n} records")
    where = labels_path(ds)
    if not where.is_file():
        raise DatasetError(f"{path_text(ds.path)} has no labels: run unitarium label on it with a table")
    with _reader(where) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"labels", "label_table"} <= tables:
            raise DatasetError(f"{path_text(ds.path)} has no labels: run unitarium label on it with a table")
        row = conn.execute("SELECT value FROM label_table WHERE key = 'table'").fetchone()
        if row is None or _whose(row[0]) != _whose_of(ds):
            raise DatasetError(
                f"{path_text(where)} holds the labels of another dataset (copied or swapped?): not read; "
                "run unitarium label on this dataset"
            )
        rows = conn.execute(
            "SELECT first_id, count, costs FROM labels WHERE first_id + count > ? AND first_id < ? ORDER BY first_id",
            (start, stop),
        ).fetchall()
    out = np.empty(stop - start, dtype=np.int64)
    filled = start
    for first, count, blob in rows:
        costs = np.frombuffer(blob, dtype="<i4")
        if first > filled or len(costs) != count:
            break
        a, b = max(first, start), min(first + count, stop)
        out[a - start : b - start] = costs[a - first : b - first]
        filled = b
    if filled < stop:
        raise DatasetError(
            f"{path_text(ds.path)} is labelled up to record {filled} only: re-run unitarium label to finish it"
        )
    return out


def labels_path(ds: Dataset) -> Path:
    """Where the labels of ``ds`` live: ``DATA.labels`` beside the file or directory ``DATA``."""
    return Path(str(ds.path).rstrip("/") + ".labels")


def _done(conn: sqlite3.Connection) -> int:
    (total,) = conn.execute("SELECT coalesce(max(first_id + count), 0) FROM labels").fetchone()
    return int(total)


def _whose_of(ds: Dataset) -> dict[str, Any]:
    """The labelled dataset's identity: its spec and its random id (schema 3), so that labels copied
    beside another dataset are refused, never served."""
    fmt = ds.format
    return {"dataset": ds.spec.to_json(), "dataset_id": None if fmt.dataset is None else fmt.dataset.hex()}


def _whose(ident: str) -> dict[str, Any]:
    try:
        data = json.loads(ident)
    except ValueError:
        return {}
    return {k: data.get(k) for k in ("dataset", "dataset_id")} if isinstance(data, dict) else {}


def _describe(ident: str) -> str:
    data = json.loads(ident)
    spec = data["table"]
    return (
        f"table of gates {','.join(spec['gates'])}, cost {describe_cost(spec.get('cost'))}, "
        f"{data['records']:,} records; dataset of {data['labelled']:,} records"
    )


@contextlib.contextmanager
def _writer(path: Path) -> Iterator[sqlite3.Connection]:
    """The labels file, created if missing, through the project's connection settings (rollback
    journal, ``synchronous=FULL``: one chunk per transaction survives kill -9)."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
    except OSError as exc:
        raise StorageError(f"cannot write labels into {path_text(path)}: {exc.strerror}") from exc
    with sqlite_errors(path, "writing"):
        conn = connect(path, readonly=False, journal="delete", page_size=SMALL_PAGE_SIZE)
        try:
            yield conn
        finally:
            conn.close()


@contextlib.contextmanager
def _reader(path: Path) -> Iterator[sqlite3.Connection]:
    with sqlite_errors(path, "reading"):
        conn = connect(path, readonly=True)
        try:
            yield conn
        finally:
            conn.close()
