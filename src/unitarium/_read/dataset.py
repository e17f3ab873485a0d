"""Reading datasets: records by id, batches as numpy arrays, iteration, lookup, verify.

A :class:`Dataset` is a read-only view of a dataset file or directory (:class:`._blockstore.BlockStore`);
it works while a writer is adding records (readers see the last committed state; records only
ever get appended, in id order, whole tasks at a time). Every read checks the checksums of the
pages it touches: damage raises, it is never served. With ``--unitaries computed`` the unitaries
are recomputed from the circuits on read (:func:`._sources.recompute`: the bits a stored dataset
holds). Connections are per process: a dataset handle pickles as its path and reconnects after a fork.
"""

from __future__ import annotations

import contextlib
import itertools
import numbers
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .._core.canonical import equal_up_to_phase
from .._core.circuit import Circuit, Record
from .._core.codec import Block, BlockFormat
from .._core.exact import lookup_probes
from .._core.gateset import GateSet
from .._core.kernels import ProductTable
from .._errors import (
    DatasetDamagedError,
    DatasetError,
    NotADatasetError,
    RecordIndexError,
    SpecError,
    UnitariumError,
)
from .._spec.sources import TaskContext, recompute
from .._spec.spec import Enumeration, RandomSource, Spec
from .._storage.blocks import BlockStore, Span
from .._storage.schema import block_format, damaged_meta, load_json, read_meta
from .._storage.sqlite import bounded, path_text, sqlite_errors
from .records import concat_ragged, ragged_take
from .split import SplitMixin

__all__ = ["Dataset", "VerifyReport", "open"]

_READ_RECORDS = 1 << 16
"""Records per piece when a large range is read (bounds the temporaries of computed unitaries)."""


@dataclass
class VerifyReport:
    """What :meth:`Dataset.verify` checked and found."""

    records: int
    checked: int
    max_error: float
    integrity: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class Dataset(SplitMixin):
    """A dataset (file or directory), read-only: the reader (:class:`unitarium.Dataset` adds search).
    ``len(ds)``, ``ds[i]``, ``ds[a:b]``,
    ``ds[[i, j]]``, ``ds.unitaries(a, b)`` or ``ds.unitaries(ids)``, ``for rec in ds``, ``ds.lookup(U)``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._store = BlockStore(path)  # the path as given: a trailing / says directory
        self._store.connection()  # fail early on a missing or foreign dataset

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (os.fspath(self.path),))

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return self._store.query(sql, args)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata ------------------------------------------------------------------------

    @cached_property
    def meta(self) -> dict[str, Any]:
        conn = self._store.connection()
        try:
            with sqlite_errors(self._store.manifest, "reading"), bounded(conn, self._store.manifest):
                meta = read_meta(conn)
        except DatasetError:
            raise
        except ValueError as exc:  # not JSON
            raise damaged_meta(self.path, exc) from exc
        if not all(isinstance(meta.get(key), dict) for key in ("spec", "format", "state", "summary")):
            raise damaged_meta(self.path, "no 'spec', 'format', 'state' or 'summary'")
        return meta

    @cached_property
    def spec(self) -> Spec:
        """The spec the dataset was generated from."""
        try:
            return Spec.from_json(self.meta["spec"])
        except (UnitariumError, LookupError, TypeError, ValueError, AttributeError) as exc:
            detail = str(exc) if isinstance(exc, UnitariumError) else f"{type(exc).__name__}: {exc}"
            raise NotADatasetError(f"{path_text(self.path)} holds a spec this unitarium cannot use ({detail})") from exc

    @property
    def gateset(self) -> GateSet:
        return self.spec.gateset

    @cached_property
    def format(self) -> BlockFormat:
        """The block layout, checked against what the spec implies."""
        fmt, want = self.meta["format"], block_format(self.spec, self._store.identity)
        checks = {
            "dim": want.dim,
            "unitary_dtype": want.unitary_dtype.name,
            "code_dtype": want.code_dtype.name,
            "unitaries": "stored" if want.stored_unitaries else "computed",
            "page_records": want.page,
        }
        for key, value in checks.items():
            if fmt.get(key) != value:
                raise damaged_meta(self.path, f"format {key} {fmt.get(key)!r} disagrees with its spec")
        return want

    @cached_property
    def _context(self) -> TaskContext:
        return TaskContext(self.spec)

    def _state(self, key: str) -> dict[str, Any]:
        row = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        try:
            value = load_json(row[0][0]) if row else {}
        except ValueError as exc:
            raise damaged_meta(self.path, exc) from exc
        return value if isinstance(value, dict) else {}

    @property
    def complete(self) -> bool:
        """Whether the generating run finished (re-read from the dataset each time)."""
        return bool(self._state("state").get("complete"))

    @property
    def summary(self) -> dict[str, Any]:
        """Records, tasks, candidates and the length histogram, as committed (kept with every commit)."""
        return self._state("summary")

    def __len__(self) -> int:
        row = self._query("SELECT max(first_id + count) FROM tasks WHERE first_id = (SELECT max(first_id) FROM tasks)")
        value = row[0][0] if row else None
        if value is not None and not isinstance(value, int):
            raise self._store.damaged(None, f"the tasks table says {value!r} records")
        return int(value or 0)

    def __repr__(self) -> str:
        return f"<unitarium.Dataset {str(self.path)!r}: {len(self)} records, {self.spec.describe()}>"

    # -- locating records ------------------------------------------------------------------

    def _check_id(self, i: object, n: int | None = None) -> int:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"record ids are integers, not {type(i).__name__}")
        n = len(self) if n is None else n
        j = int(i) + n if i < 0 else int(i)
        if not 0 <= j < n:
            raise RecordIndexError(f"record id {i} is out of range: the dataset has {n} records (0..{n - 1})")
        return j

    def _range(self, start: object, stop: object) -> tuple[int, int]:
        n = len(self)
        stop = n if stop is None else stop
        if not (isinstance(start, int | np.integer) and isinstance(stop, int | np.integer)) or isinstance(start, bool):
            raise RecordIndexError(f"range {start!r}:{stop!r} must be two integers (or pass an array of ids)")
        if not 0 <= start <= stop <= n:
            raise RecordIndexError(f"range {start}:{stop} is outside the dataset's {n} records")
        return int(start), int(stop)

    def _spans(self, start: int, stop: int) -> list[Span]:
        """The task blocks holding records ``[start, stop)``, and which rows of each."""
        rows = self._query(
            "SELECT task_id, shard, first_id, count FROM tasks WHERE count > 0 AND first_id < ? AND first_id >= "
            "(SELECT coalesce(max(first_id), 0) FROM tasks WHERE first_id <= ? AND count > 0) ORDER BY first_id",
            (stop, start),
        )
        spans = []
        for task_id, shard, first, count in rows:
            if not all(isinstance(v, int) for v in (task_id, shard, first, count)) or count < 0:
                raise self._store.damaged(None, f"task {task_id!r} has a malformed row")
            lo, hi = max(start, first) - first, min(stop, first + count) - first
            if lo < hi:
                spans.append((task_id, shard, first, count, lo, hi))
        if sum(s[5] - s[4] for s in spans) != stop - start:
            raise self._store.damaged((start, stop), "the tasks table does not cover these records")
        return spans

    def _blocks(self, start: int, stop: int) -> Iterator[tuple[int, Block]]:
        """``(first id, block part)`` for the records ``[start, stop)``, in order, checked."""
        fmt = self.format
        for span in self._spans(start, stop):
            yield span[2] + span[4], self._store.read(fmt, span)

    def _unitaries_of(self, block: Block) -> np.ndarray:
        if block.unitaries is not None:
            return block.unitaries.astype(self.format.unitary_dtype.newbyteorder("="))
        return recompute(self._context, block.codes.astype(np.int64), block.offsets)

    def _finite(self, unitaries: np.ndarray, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """``unitaries`` (of records ``ids``) unless one holds NaN or inf: a record is never
        served with one (checked where records are built; bulk ``unitaries()`` is left to verify)."""
        if not np.isfinite(unitaries).all():
            k = int(np.flatnonzero(~np.isfinite(unitaries).reshape(len(unitaries), -1).all(axis=1))[0])
            raise self._store.damaged(
                (int(ids[k]), int(ids[k]) + 1), "its stored unitary holds NaN or infinite entries (forged, or a bug)"
            )
        return unitaries

    def _check_codes(self, block: Block, first: int) -> Block:
        if block.codes.size and int(block.codes.max()) >= len(self.gateset.moves):
            raise self._store.damaged(
                (first, first + block.count), f"move code {int(block.codes.max())} is past the last move"
            )
        return block

    # -- records -------------------------------------------------------------------------

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray) -> Any:
        """Record ``i`` (negative ids count from the end); a slice or a list/array of ids gives
        a list of records (read a block at a time)."""
        if isinstance(key, slice):
            return self._records(np.arange(*key.indices(len(self))))
        if isinstance(key, list | tuple | np.ndarray):
            return self._records(self._ids(key))
        i = (
            self._check_id(key)
            if isinstance(key, bool) or not isinstance(key, int | np.integer) or not 0 <= key < 2**62
            else int(key)  # (past 2**63 SQLite cannot even compare it: _check_id says out of range)
        )
        found = self._query(
            "SELECT t.task_id, t.shard, t.first_id, t.count, p.first_id + p.count FROM tasks t "
            "LEFT JOIN tasks p ON p.task_id = t.task_id - 1 WHERE t.first_id <= ? AND t.count > 0 "
            "ORDER BY t.first_id DESC LIMIT 1",
            (i,),
        )
        if not found or i >= found[0][2] + found[0][3]:
            self._check_id(i)  # raises for ids past the end
            raise self._store.damaged((i, i + 1), "no task holds this record")
        task_id, shard, first, count, chained = found[0]
        if first != (0 if task_id == 0 else chained):  # the chain of first ids, at this task
            raise self._store.damaged(
                (i, i + 1), f"task {task_id} starts at id {first}, its predecessor ends at {chained}"
            )
        block = self._check_codes(
            self._store.read(self.format, (task_id, shard, first, count, i - first, i - first + 1)), i
        )
        unitary = self._finite(self._unitaries_of(block), [i])[0]
        return Record(i, Circuit(block.codes.astype(np.int64), self.gateset), unitary, self.spec.cost)

    def _ids(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """``ids`` as a checked int64 array (negative ids count from the end)."""
        arr = np.asarray(ids)
        if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
            raise RecordIndexError(
                f"record ids must be a 1-D sequence of integers, got {arr.dtype} of shape {arr.shape}"
            )
        arr = arr.astype(np.int64)
        n = len(self)
        arr = np.where(arr < 0, arr + n, arr)
        bad = (arr < 0) | (arr >= n)
        if bad.any():
            raise RecordIndexError(
                f"record id {int(np.asarray(ids)[bad][0])} is out of range: the dataset has {n} records"
            )
        return arr

    def _gather(self, ids: np.ndarray) -> tuple[list[Block], list[np.ndarray], np.ndarray]:
        """For sorted unique ``ids``: the block parts holding them (only the checksummed pages
        that hold some of them: runs of adjacent pages are read together), and the ids' rows in
        each part."""
        parts, rows = [], []
        page = self.format.page
        k = 0
        while k < len(ids):
            task_id, shard, first, count, _, _ = self._spans(int(ids[k]), int(ids[k]) + 1)[0]
            end = int(np.searchsorted(ids, first + count))
            want = ids[k:end] - first
            cuts = np.flatnonzero(np.diff(want // page) > 1) + 1  # a gap of a page or more: read apart
            for group in np.split(want, cuts):
                lo, hi = int(group[0]), int(group[-1]) + 1
                block = self._store.read(self.format, (task_id, shard, first, count, lo, hi))
                parts.append(self._check_codes(block, first))
                rows.append(group - lo)
            k = end
        return parts, rows, ids

    def _records(self, ids: np.ndarray) -> list[Record]:
        order = np.unique(ids)
        parts, rows, _ = self._gather(order)
        by_id: dict[int, Record] = {}
        k = 0
        for block, want in zip(parts, rows, strict=True):
            u = self._finite(self._unitaries_of(block)[want], order[k : k + len(want)])
            for j, r in enumerate(want):
                a, b = int(block.offsets[r]), int(block.offsets[r + 1])
                rid = int(order[k])
                by_id[rid] = Record(rid, Circuit(block.codes[a:b].astype(np.int64), self.gateset), u[j], self.spec.cost)
                k += 1
        return [by_id[int(i)] for i in ids]

    def unitaries(self, start: int | Sequence[int] | np.ndarray = 0, stop: int | None = None) -> np.ndarray:
        """Unitaries ``(n, d, d)`` of records ``start .. stop-1``, or of the ids in an array
        ``start`` (any order, repeats allowed); only the pages holding them are read."""
        d = self.gateset.dim
        dtype = self.format.unitary_dtype.newbyteorder("=")
        if isinstance(start, list | tuple | np.ndarray):
            ids = self._ids(start)
            order, inverse = np.unique(ids, return_inverse=True)
            parts, rows, _ = self._gather(order)
            found = [self._unitaries_of(b)[r] for b, r in zip(parts, rows, strict=True)]
            stacked = np.concatenate(found) if found else np.zeros((0, d, d), dtype=dtype)
            return stacked[inverse]
        a, b = self._range(start, stop)
        out = np.empty((b - a, d, d), dtype=dtype)
        for first, block in self._blocks(a, b):
            # stored: one copy, straight from the BLOB's bytes (little-endian cast on the way)
            part = block.unitaries if block.unitaries is not None else self._unitaries_of(block)
            out[first - a : first - a + block.count] = part
        return out

    def codes(
        self, start: int | Sequence[int] | np.ndarray = 0, stop: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Circuits of records ``start .. stop-1``, or of the ids in an array ``start`` (any order,
        repeats allowed; only the pages holding them are read), as move codes: ``(codes, offsets)``,
        record ``k`` being ``codes[offsets[k]:offsets[k+1]]`` (``offsets`` int64, n + 1, from 0)."""
        if isinstance(start, list | tuple | np.ndarray):
            ids = self._ids(start)
            order, inverse = np.unique(ids, return_inverse=True)
            parts, rows, _ = self._gather(order)
            found = [
                ragged_take(b.codes.astype(np.int64), b.offsets.astype(np.int64), r)
                for b, r in zip(parts, rows, strict=True)
            ]
            return ragged_take(*concat_ragged(found), inverse)
        a, b = self._range(start, stop)
        codes, offsets, base = [], [np.zeros(1, np.int64)], 0
        for first, block in self._blocks(a, b):
            self._check_codes(block, first)
            codes.append(block.codes.astype(np.int64))
            offsets.append(block.offsets[1:] + base)
            base += int(block.offsets[-1])
        return (np.concatenate(codes) if codes else np.zeros(0, np.int64)), np.concatenate(offsets)

    def circuits(self, start: int = 0, stop: int | None = None) -> list[Circuit]:
        """Circuits of records ``start .. stop-1``."""
        codes, off = self.codes(start, stop)
        gs = self.gateset
        return [Circuit(codes[a:b], gs) for a, b in itertools.pairwise(off.tolist())]

    def lengths(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Circuit lengths of records ``start .. stop-1``."""
        return np.diff(self.codes(start, stop)[1])

    def costs(self, start: int | Sequence[int] | np.ndarray = 0, stop: int | None = None) -> np.ndarray:
        """``(n,)`` int64 costs of records ``start .. stop-1`` (or of the ids in an array ``start``)
        under the dataset's cost model (``spec.cost``; without one, the lengths): computed from the
        circuits, see :mod:`unitarium._core.cost`."""
        from .._core.cost import circuit_costs, move_weights

        codes, off = self.codes(start, stop)
        return circuit_costs(codes, off, move_weights(self.gateset, self.spec.cost))

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
        n = len(self)
        for a in range(0, n, _READ_RECORDS):
            for first, block in self._blocks(a, min(n, a + _READ_RECORDS)):
                self._check_codes(block, first)
                u = self._unitaries_of(block)
                codes = block.codes.astype(np.int64)
                for k in range(block.count):
                    c = Circuit(codes[block.offsets[k] : block.offsets[k + 1]], self.gateset)
                    yield Record(first + k, c, u[k], self.spec.cost)

    def dedup_keys(self) -> np.ndarray:
        """The 128-bit dedup keys ``(n, 2)`` of every record (unique datasets; to resume one)."""
        parts = [b.keys for _, b in self._blocks(0, len(self)) if b.keys is not None]
        return np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)

    # -- lookup & verification -------------------------------------------------------------

    def lookup(self, unitary: Any, *, atol: float = 1e-5) -> list[Record]:
        """Records whose unitary equals ``unitary`` up to global phase (entrywise ``atol``),
        found through the lookup index (datasets generated with ``unique``). ``unitary`` is a
        ``(d, d)`` matrix (or anything :func:`unitarium.interop.as_unitary` takes)."""
        u = self._target(unitary)
        if not (isinstance(atol, int | float) and 0 <= atol < float("inf")):
            raise SpecError(f"atol {atol!r} must be a finite number >= 0")
        if not self.spec.unique:
            raise DatasetError(f"{path_text(self.path)} has no lookup index: only --unique datasets have one")
        probes = lookup_probes(self.spec.keys, u)  # tableau keys: none when u is not a Clifford
        if not probes:
            return []
        marks = ",".join("?" * len(probes))
        hits: set[tuple[int, int]] = set()
        shards = [0] if self._store.directory is None else [s for s, _ in self._store.segments()]
        for shard in shards:
            conn = self._store.shard(shard)
            with sqlite_errors(self._store.manifest if shard == 0 else self._store.segment_path(shard), "reading"):
                rows = conn.execute(f"SELECT task_id, row FROM lookup WHERE key IN ({marks})", tuple(probes)).fetchall()
            hits.update((int(t), int(r)) for t, r in rows)
        ids = []
        for task_id, row in sorted(hits):
            found = self._query("SELECT first_id, count FROM tasks WHERE task_id = ?", (task_id,))
            if found and 0 <= row < found[0][1]:  # tasks the manifest does not list are ignored
                ids.append(found[0][0] + row)
        records = self._records(np.array(sorted(ids), dtype=np.int64)) if ids else []
        return [r for r in records if equal_up_to_phase(r.unitary, u, atol=atol)]

    def _target(self, unitary: Any) -> np.ndarray:
        """A lookup target as a finite ``(d, d)`` complex128 matrix, or a clear SpecError."""
        from .._core.convert import as_unitary

        d = self.gateset.dim
        if isinstance(unitary, np.ndarray) and unitary.dtype.kind not in "biufc":
            raise SpecError(f"lookup needs a {d}x{d} matrix of numbers, got an array of {unitary.dtype}")
        arr = np.asarray(as_unitary(unitary, self.gateset))
        if arr.shape != (d, d):
            raise SpecError(f"lookup needs a {d}x{d} matrix, got shape {arr.shape}")
        arr = arr.astype(np.complex128)
        if not np.all(np.isfinite(arr)):
            raise SpecError(f"lookup needs a finite {d}x{d} matrix: this one has NaN or infinite entries")
        return arr

    def verify(self, *, sample: int | None = 1000, seed: int = 0) -> VerifyReport:
        """Check SQLite integrity, the task structure and counts, every checksum of the pages
        read, the lookup index of the records read, and recompute the unitaries of ``sample``
        random records (all when ``sample`` is None) in complex128. Time and memory depend on
        ``sample``, not on the dataset's size (``sample=None`` reads everything)."""
        self._store.check_segments()  # a foreign, swapped or replaced segment: refused, as by every reader
        integrity = self._integrity(full=sample is None)
        problems = [] if integrity == "ok" else [f"integrity_check: {integrity}"]
        with self.read_transaction():  # tasks, summary and state of one commit (a run may be writing)
            problems += self._structure_problems()
        n = len(self)
        if sample is None or sample >= n:
            pieces = [np.arange(a, min(n, a + _READ_RECORDS)) for a in range(0, n, _READ_RECORDS)]
        else:
            pieces = [np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))]
        table = ProductTable(self.gateset.move_matrices, np.complex128)
        worst, checked = 0.0, 0
        for ids in pieces:
            try:
                error = self._max_error(ids, table)
            except DatasetDamagedError as exc:
                problems.append(str(exc))
                break
            checked += len(ids)
            worst = error if not error <= worst else worst  # NaN is kept: it is never <=
        tol = 1e-4 if self.format.unitary_dtype.itemsize == 8 else 1e-9
        if not worst <= tol:
            problems.append(f"a stored unitary differs from its circuit's product by {worst:.3g} > {tol:g}")
        return VerifyReport(n, checked, worst, integrity, problems)

    def _integrity(self, *, full: bool) -> str:
        """``PRAGMA integrity_check`` of every file (``full``), or of the manifest's small tables only:
        a whole-file check reads every page, which a sample must not (the sampled blocks' pages are
        checked by their checksums instead)."""
        if full:
            results = [str(self._query("PRAGMA integrity_check")[0][0])]
        else:
            results = [
                str(self._query("PRAGMA integrity_check(meta)")[0][0]),
                str(self._query("PRAGMA integrity_check(tasks)")[0][0]),
                str(self._query("PRAGMA integrity_check(shards)")[0][0]),
            ]
        if full:
            for shard, path in self._store.segments():
                conn = self._store.shard(shard)
                with sqlite_errors(path, "reading"):
                    outcome = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
                results.append(outcome if outcome == "ok" else f"{path.name}: {outcome}")
        bad = [r for r in results if r != "ok"]
        return "ok" if not bad else "; ".join(bad)

    def _max_error(self, ids: np.ndarray, table: ProductTable) -> float:
        if not len(ids):
            return 0.0
        parts, rows, _ = self._gather(ids)
        worst = 0.0
        for block, want in zip(parts, rows, strict=True):
            stored = self._unitaries_of(block)[want]
            lengths = np.diff(block.offsets)[want]
            seqs = np.full((len(want), int(lengths.max(initial=0))), table.num_moves, dtype=np.int64)
            for k, r in enumerate(want):
                seqs[k, : lengths[k]] = block.codes[block.offsets[r] : block.offsets[r + 1]]
            error = float(np.abs(table.unitaries(seqs) - stored).max(initial=0.0))
            worst = error if not error <= worst else worst
            if self.spec.unique and block.keys is not None:
                self._check_lookup_rows(stored)
        return worst

    def _check_lookup_rows(self, unitaries: np.ndarray) -> None:
        """Each record read must be found by lookup (the index is complete for what it holds)."""
        for u in unitaries[:4]:
            if np.isfinite(u).all() and not self.lookup(u, atol=1e-4):  # NaN: reported by the recomputation
                raise self._store.damaged(None, "its lookup index misses a record")

    def _structure_problems(self) -> list[str]:
        problems = []
        rows = self._query("SELECT task_id, first_id, count, candidates FROM tasks ORDER BY task_id")
        expect = candidates = 0
        for k, (task_id, first, count, cand) in enumerate(rows):
            if task_id != k or first != expect:
                problems.append(f"task {task_id} breaks the committed prefix (expected task {k} at id {expect})")
                break
            expect += count
            candidates += cand
        summary = self.summary
        if summary.get("records") != expect or summary.get("tasks") != len(rows):
            problems.append(f"the summary says {summary.get('records')} records, the tasks {expect}")
        src = self.spec.source
        if self.complete and isinstance(src, RandomSource):
            got = candidates if self.spec.unique else expect
            if got != src.count:
                problems.append(f"the dataset is complete but holds {got} of the spec's {src.count} circuits")
        if self.complete and isinstance(src, Enumeration) and not rows:
            problems.append("the dataset is complete but holds no task")
        return problems

    def info(self) -> dict[str, Any]:
        """Summary: spec, record and task counts, length histogram, sizes (from the committed
        summary: time and memory independent of the record count)."""
        summary = self.summary
        n = int(summary.get("records", 0))
        hist = {int(k): int(v) for k, v in sorted(summary.get("lengths", {}).items(), key=lambda kv: int(kv[0]))}
        files = [self._store.manifest, Path(f"{self._store.manifest}-wal")]
        self._store.check_segments()  # foreign, swapped or replaced: said here, not at the first read
        for _, segment in self._store.segments():
            self._store.check_segment(segment)  # missing or truncated: said here, not at the first read
            files.append(segment)
        size = sum(p.stat().st_size for p in files if p.exists())
        return {
            "path": os.fsdecode(self.path),
            "layout": "directory" if self._store.directory is not None else "file",
            "spec": self.meta["spec"],
            "description": self.spec.describe(),
            "records": n,
            "tasks_done": int(summary.get("tasks", 0)),
            "candidates": int(summary.get("candidates", 0)),
            "complete": self.complete,
            "moves": [m.text for m in self.gateset.moves],
            "length_histogram": hist,
            "shards": len(files) - 2,
            "file_bytes": size,
            "bytes_per_record": size / n if n else None,
        }

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
        return self._fixed

    @property
    def complete(self) -> bool:
        return self._complete

    def snapshot(self, records: int | None = None) -> DatasetSnapshot:
        if records is None:
            records = self._fixed
        if isinstance(records, bool) or not isinstance(records, numbers.Integral) or not 0 <= records <= len(self):
            raise SpecError(f"snapshot records {records!r} must be an integer from 0 to the {len(self):,} records held")
        return DatasetSnapshot(self._store.path, int(records), complete=self._complete and records == len(self))

    def __repr__(self) -> str:
        return f"<unitarium.Dataset {str(self.path)!r}: snapshot of {len(self)} records, {self.spec.describe()}>"


def _rebuild_snapshot(path: str, records: int, complete: bool) -> DatasetSnapshot:
    return DatasetSnapshot(path, records, complete=complete)
