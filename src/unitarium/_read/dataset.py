"""Reading datasets: records by id, batches as numpy arrays, iteration, lookup, verify.

A :class:`Dataset` is a read-only view of a dataset file or directory (:class:`._blockstore.BlockStore`);
it works while a writer is adding records (readers see the last committed state; records only
ever get appended, in id order, whole tasks at a time). Every page of a block is checked against
its checksums when it is first read (by this handle, in this process; :mod:`.single`): damage
raises, it is never served. With ``--unitaries computed`` the unitaries are recomputed from the
circuits on read (:func:`._sources.recompute`: the bits a stored dataset holds). Connections are
per process: a dataset handle pickles as its path and reconnects after a fork.

The class is a facade over parts that take it and never import it back: :mod:`.meta` (what the
dataset says of itself), :mod:`.locate` (ids, ranges, spans), :mod:`.single` (records by id),
:mod:`.bulk` (arrays of many records), :mod:`.lookup`, :mod:`.verify` and :mod:`.split`.
"""

from __future__ import annotations

import contextlib
import itertools
import numbers
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .._core.circuit import Circuit, Record
from .._core.codec import Block, BlockFormat
from .._core.gateset import GateSet
from .._errors import SpecError
from .._spec.sources import TaskContext
from .._spec.spec import Spec
from .._storage.blocks import BlockStore
from .._storage.sqlite import sqlite_errors
from . import bulk, meta
from .labels import find_labels, read_labels
from .locate import checked_ids
from .lookup import lookup
from .single import RecordReader
from .split import DatasetView, sample_source, split_source
from .verify import VerifyReport, verify

__all__ = ["Dataset", "DatasetSnapshot", "VerifyReport"]


class Dataset:
    """A dataset (file or directory), read-only: the reader (:class:`unitarium.Dataset` adds search).
    ``len(ds)``, ``ds[i]``, ``ds[a:b]``, ``ds[[i, j]]``, ``ds.unitaries(a, b)`` or ``ds.unitaries(ids)``,
    ``for rec in ds``, ``ds.lookup(U)``, ``ds.split(...)``, ``ds.sample(n)``."""

    _fixed: int | None = None
    """A snapshot's length (None: every record committed)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._store = BlockStore(path)  # the path as given: a trailing / says directory
        self._store.connection()  # fail early on a missing or foreign dataset
        self._single = RecordReader(self)
        self._labels = find_labels(self)  # one stat, at open: None when no labels file lies beside it

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (os.fspath(self.path),))

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return self._store.query(sql, args)

    def close(self) -> None:
        self._store.close()
        self._single.forget()  # (the records kept for ds[i]: up to single.KEPT_BYTES)

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata (:mod:`.meta`) ---------------------------------------------------------------

    @cached_property
    def meta(self) -> dict[str, Any]:
        return meta.load_meta(self._store, self.path)

    @cached_property
    def spec(self) -> Spec:
        """The spec the dataset was generated from."""
        return meta.load_spec(self.meta, self.path)

    @property
    def gateset(self) -> GateSet:
        return self.spec.gateset

    @cached_property
    def format(self) -> BlockFormat:
        """The block layout, checked against what the spec implies."""
        return meta.checked_format(self.meta, self.spec, self._store, self.path)

    @cached_property
    def _context(self) -> TaskContext:
        return TaskContext(self.spec)

    @property
    def complete(self) -> bool:
        """Whether the generating run finished (re-read from the dataset each time)."""
        return bool(meta.state(self, "state").get("complete"))

    @property
    def summary(self) -> dict[str, Any]:
        """Records, tasks, candidates and the length histogram, as committed (kept with every commit)."""
        return meta.state(self, "summary")

    def info(self) -> dict[str, Any]:
        """Summary: spec, record and task counts, length histogram, sizes (from the committed
        summary: time and memory independent of the record count)."""
        return meta.info(self)

    def __len__(self) -> int:
        n = self._single.length()  # the task list in memory, reloaded after every commit
        if n is not None:
            return n
        row = self._query("SELECT max(first_id + count) FROM tasks WHERE first_id = (SELECT max(first_id) FROM tasks)")
        value = row[0][0] if row else None
        if value is not None and not isinstance(value, int):
            raise self._store.damaged(None, f"the tasks table says {value!r} records")
        return int(value or 0)

    def __repr__(self) -> str:
        return f"<unitarium.Dataset {str(self.path)!r}: {len(self)} records, {self.spec.describe()}>"

    # -- records (:mod:`.single`, :mod:`.bulk`) --------------------------------------------------

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray) -> Any:
        """Record ``i`` (negative ids count from the end); a slice or a list/array of ids gives
        a list of records."""
        if self._labels is not None:  # labels beside the dataset: carried when complete (_read/labels.py)
            return self._labels.attach(self, self._unlabelled(key))
        return self._unlabelled(key)

    def _unlabelled(self, key: int | slice | Sequence[int] | np.ndarray) -> Any:
        if type(key) is int:
            return self._single.one(key, self._fixed)
        if isinstance(key, slice):
            return self._single.many(np.arange(*key.indices(len(self))))
        if isinstance(key, list | tuple | np.ndarray):
            return self._single.many(checked_ids(self, key))
        return self._single.one(key, self._fixed)

    def _slow_record(self, key: Any) -> Record:
        return bulk.slow_record(self, key)

    def _slow_records(self, ids: np.ndarray) -> list[Record]:
        return bulk.slow_records(self, ids)

    def unitaries(self, start: int | Sequence[int] | np.ndarray = 0, stop: int | None = None) -> np.ndarray:
        """Unitaries ``(n, d, d)`` of records ``start .. stop-1``, or of the ids in an array
        ``start`` (any order, repeats allowed); only the pages holding them are read."""
        return bulk.unitaries(self, start, stop)

    def codes(
        self, start: int | Sequence[int] | np.ndarray = 0, stop: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Circuits of records ``start .. stop-1``, or of the ids in an array ``start`` (any order,
        repeats allowed; only the pages holding them are read), as move codes: ``(codes, offsets)``,
        record ``k`` being ``codes[offsets[k]:offsets[k+1]]`` (``offsets`` int64, n + 1, from 0)."""
        return bulk.codes(self, start, stop)

    def circuits(self, start: int = 0, stop: int | None = None) -> list[Circuit]:
        """Circuits of records ``start .. stop-1``."""
        codes, off = self.codes(start, stop)
        gs = self.gateset
        return [Circuit(codes[a:b], gs) for a, b in itertools.pairwise(off.tolist())]

    def costs(self, start: int | Sequence[int] | np.ndarray = 0, stop: int | None = None) -> np.ndarray:
        """``(n,)`` int64 costs of records ``start .. stop-1`` (or of the ids in an array ``start``)
        under the dataset's cost model (``spec.cost``; without one, the lengths): computed from the
        circuits, see :mod:`unitarium._core.cost`."""
        from .._core.cost import circuit_costs, move_weights

        codes, off = self.codes(start, stop)
        return circuit_costs(codes, off, move_weights(self.gateset, self.spec.cost))

    def labels(self, start: int | Sequence[int] | np.ndarray = 0, stop: int | None = None) -> np.ndarray:
        """``(n,)`` int64 labels (``unitarium label``, ``ds.label(table)``) of records ``start .. stop-1``
        (or of the ids in an array ``start``): the least cost under the labelling table's cost model,
        or ``-(R + 1)`` beyond its reach ``R``. Raises when there are none that far
        (:mod:`unitarium._read.labels`: which reads carry them, and when)."""
        return read_labels(self, start, stop)

    # (bulk reads by range for torch batches: records.read_ranges)
    def _blocks(self, start: int, stop: int) -> Iterator[tuple[int, Block]]:
        return bulk.blocks(self, start, stop)

    def _check_codes(self, block: Block, first: int) -> Block:
        return bulk.check_codes(self, block, first)

    def _unitaries_of(self, block: Block) -> np.ndarray:
        return bulk.unitaries_of(self, block)

    def lengths(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Circuit lengths of records ``start .. stop-1``."""
        return np.diff(self.codes(start, stop)[1])

    def tokens(self, start: int = 0, stop: int | None = None, *, pad: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """Circuits of records ``start .. stop-1`` as a padded ``(n, longest)`` int64 array of move
        codes (``pad`` after each circuit's end) and their lengths ``(n,)``."""
        codes, off = self.codes(start, stop)
        lengths = np.diff(off)
        out = np.full((len(lengths), int(lengths.max(initial=0))), pad, dtype=np.int64)
        out[np.arange(out.shape[1])[None, :] < lengths[:, None]] = codes
        return out, lengths

    def circuit_array(self, start: int, stop: int, length: int) -> np.ndarray:
        """Circuits ``start .. stop-1``, all of length ``length``, as ``(n, length)`` codes."""
        codes, off = self.codes(start, stop)
        if np.any(np.diff(off) != length):
            raise SpecError(f"records {start}..{stop - 1} are not all of length {length}: use tokens() for padding")
        return codes.reshape(len(off) - 1, length)

    def __iter__(self) -> Iterator[Record]:
        """Records in id order, a block at a time."""
        if self._labels is not None:
            return self._labels.attach_all(self, bulk.iterate(self))
        return bulk.iterate(self)

    def dedup_keys(self) -> np.ndarray:
        """The 128-bit dedup keys ``(n, 2)`` of every record (unique datasets; to resume one)."""
        return bulk.dedup_keys(self)

    # -- lookup, verification, splits (:mod:`.lookup`, :mod:`.verify`, :mod:`.split`) -----------

    def lookup(self, unitary: Any, *, atol: float = 1e-5) -> list[Record]:
        """Records whose unitary equals ``unitary`` up to global phase (entrywise ``atol``),
        found through the lookup index (datasets generated with ``unique``). ``unitary`` is a
        ``(d, d)`` matrix (or anything :func:`unitarium.interop.as_unitary` takes)."""
        return lookup(self, unitary, atol=atol)

    def verify(self, *, sample: int | None = 1000, seed: int = 0) -> VerifyReport:
        """Check SQLite integrity, the task structure and counts, every checksum of the pages
        read, the lookup index of the records read, and recompute the unitaries of ``sample``
        random records (all when ``sample`` is None) in complex128. Time and memory depend on
        ``sample``, not on the dataset's size (``sample=None`` reads everything)."""
        return verify(self, sample=sample, seed=seed)

    def split(
        self, fractions: Mapping[str, float] | str, *, seed: int = 0, stratify_by_length: bool = False
    ) -> dict[str, DatasetView]:
        """Split into named parts, e.g. ``ds.split({"train": 0.8, "val": 0.1, "test": 0.1}, seed=0)``:
        see :meth:`unitarium._read.split.SplitMixin.split`."""
        return split_source(self, fractions, seed=seed, stratify_by_length=stratify_by_length)

    def sample(
        self, n: int, *, length: int | None = None, seed: int | np.random.Generator = 0, replace: bool = False
    ) -> DatasetView:
        """``n`` records drawn uniformly (of circuit length ``length`` if given) as a view, in draw
        order: see :meth:`unitarium._read.split.SplitMixin.sample`."""
        return sample_source(self, n, length=length, seed=seed, replace=replace)

    # -- a fixed prefix (readers of a dataset that is still being written) ----------------

    def snapshot(self, records: int | None = None) -> DatasetSnapshot:
        """A dataset of fixed length: the first ``records`` records (default: all committed now).

        Records are only ever appended, whole tasks at a time, so a prefix never changes: every
        reader of the snapshot (``len``, reads, :meth:`split`, :meth:`sample`, :meth:`verify`,
        export, :mod:`unitarium.torch`) sees the same records however far a running ``generate``
        has gone meanwhile. ``snapshot.complete`` says whether the run had finished and the
        snapshot holds all of it. Pickles as its path and ``records``."""
        with self.read_transaction():  # the count and the completion flag of one commit
            n, complete = len(self), self.complete
        if records is None:
            records = n
        if isinstance(records, bool) or not isinstance(records, numbers.Integral) or not 0 <= records <= n:
            raise SpecError(f"snapshot records {records!r} must be an integer from 0 to the {n:,} records committed")
        return DatasetSnapshot(self._store.path, int(records), complete=complete and records == n)

    @contextlib.contextmanager
    def read_transaction(self) -> Iterator[None]:
        """A read transaction on the manifest: every query inside it sees the same commit."""
        conn = self._store.connection()
        if conn.in_transaction:
            yield
            return
        with sqlite_errors(self._store.manifest, "reading"):
            conn.execute("BEGIN")
        try:
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("COMMIT")


class DatasetSnapshot(Dataset):
    """The first ``records`` records of a dataset, a fixed length whatever a running ``generate``
    appends (see :meth:`Dataset.snapshot`). Reads like a :class:`Dataset`; ``complete`` is whether
    the run had finished when the snapshot was taken and the snapshot holds every record."""

    def __init__(self, path: str | os.PathLike[str], records: int, *, complete: bool = False) -> None:
        super().__init__(path)
        self._fixed = int(records)
        self._complete = bool(complete)

    def __reduce__(self) -> tuple[Any, ...]:  # type: ignore[override]
        return (_rebuild_snapshot, (os.fspath(self.path), self._fixed, self._complete))

    def __len__(self) -> int:
        return self._fixed  # type: ignore[return-value]

    @property
    def complete(self) -> bool:
        return self._complete

    def snapshot(self, records: int | None = None) -> DatasetSnapshot:
        if records is None:
            records = len(self)
        if isinstance(records, bool) or not isinstance(records, numbers.Integral) or not 0 <= records <= len(self):
            raise SpecError(f"snapshot records {records!r} must be an integer from 0 to the {len(self):,} records held")
        return DatasetSnapshot(self._store.path, int(records), complete=self._complete and records == len(self))

    def __repr__(self) -> str:
        return f"<unitarium.Dataset {str(self.path)!r}: snapshot of {len(self)} records, {self.spec.describe()}>"


def _rebuild_snapshot(path: str, records: int, complete: bool) -> DatasetSnapshot:
    return DatasetSnapshot(path, records, complete=complete)
