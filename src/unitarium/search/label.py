"""Labels: every record of a dataset labelled with its least cost under a search table's cost model.

``unitarium label DATA --table TABLE`` (``ds.label(table)``) synthesises each record's unitary from
the table (:func:`unitarium.search.mitm.synthesize_many`: least cost, exact up to the table's reach
``R = 2C - w_max + 1``, ``2 L`` for a table by length) and stores, per record, that least cost, or
``-(R + 1)`` where no circuit of cost ``<= R`` exists (the cost is then at least ``R + 1``: a lower
bound). Read them with ``ds.labels(start, stop)`` (int64; negative: a lower bound, negated); once
complete, ``ds[i].label``, views, the torch datasets and the exports carry them
(:mod:`unitarium._read.labels`, which this module's writer shares the schema and identity with).

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
from .._read.labels import LABELS_SCHEMA, labels_path, refresh_labels, whose_of
from .._storage.sqlite import SMALL_PAGE_SIZE, atomic, connect, path_text, sqlite_errors
from ._table import table_of
from .mitm import cost_reach, synthesize_many

if TYPE_CHECKING:
    from .._read.dataset import Dataset

__all__ = ["CHUNK", "LabelSummary", "label"]

CHUNK = 4096
"""Records labelled and committed at once."""


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
        {"table": table.spec.to_json(), "records": len(table), "labelled": len(ds), **whose_of(ds)}, sort_keys=True
    )
    weights = move_weights(table.gateset, table.spec.cost)
    n, new, exact = len(ds), 0, 0
    with _writer(labels_path(ds.path)) as conn:
        with atomic(conn):
            for statement in (s.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1) for s in LABELS_SCHEMA):
                conn.execute(statement)
            row = conn.execute("SELECT value FROM label_table WHERE key = 'table'").fetchone()
            if row is None:
                conn.execute("INSERT INTO label_table VALUES ('table', ?), ('reach', ?)", (ident, str(reach)))
            elif row[0] != ident:
                raise SpecError(
                    f"{path_text(labels_path(ds.path))} holds labels by another table or of another dataset "
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
    refresh_labels(ds)  # this handle's reads carry them from now on
    return LabelSummary(records=n, new=new, exact=exact, reach=reach, table=str(table.path))


def _done(conn: sqlite3.Connection) -> int:
    (total,) = conn.execute("SELECT coalesce(max(first_id + count), 0) FROM labels").fetchone()
    return int(total)


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
