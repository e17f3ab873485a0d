"""Reading datasets: records by id, batches as numpy arrays, iteration, lookup, verify.

A :class:`Dataset` is a read-only view; it works while a writer is adding records
(WAL readers see the last committed state; records only ever get appended, in id
order, whole tasks at a time). Connections are per process: a dataset handle pickles
as its path and reconnects after a fork.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ._canonical import LOOKUP, equal_up_to_phase
from ._circuit import Circuit, Record
from ._errors import DatasetError, NotADatasetError, RecordIndexError, SpecError, UnitariumError
from ._gateset import GateSet
from ._kernels import ProductTable
from ._spec import Spec
from ._split import SplitMixin
from ._store import code_dtype, damaged_meta, load_json, open_readonly, read_meta, storage_error
from .search import SearchMixin

__all__ = ["Dataset", "VerifyReport", "open"]


def open(path: str | os.PathLike[str]) -> Dataset:
    """Open a dataset for reading (also while it is being generated)."""
    return Dataset(path)


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


class Dataset(SplitMixin, SearchMixin):
    """A dataset file, read-only. ``len(ds)``, ``ds[i]``, ``ds.unitaries(a, b)``,
    ``for rec in ds``, ``ds.lookup(U)``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._pid = -1
        self._conn: sqlite3.Connection | None = None
        self._connection()  # fail early on a missing or foreign file

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (str(self.path),))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self._conn = open_readonly(self.path)
            self._pid = os.getpid()
        return self._conn

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._connection().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path, "reading") from exc

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata ------------------------------------------------------------------------

    @cached_property
    def meta(self) -> dict[str, Any]:
        try:
            meta = read_meta(self._connection())
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path, "reading") from exc
        except ValueError as exc:  # not JSON
            raise damaged_meta(self.path, exc) from exc
        if not all(isinstance(meta.get(key), dict) for key in ("spec", "format", "state")):
            raise damaged_meta(self.path, "no 'spec', 'format' or 'state'")
        return meta

    @cached_property
    def spec(self) -> Spec:
        """The spec the dataset was generated from."""
        try:
            return Spec.from_json(self.meta["spec"])
        except (UnitariumError, LookupError, TypeError, ValueError, AttributeError) as exc:
            detail = str(exc) if isinstance(exc, UnitariumError) else f"{type(exc).__name__}: {exc}"
            raise NotADatasetError(f"{str(self.path)!r} holds a spec this unitarium cannot use ({detail})") from exc

    @property
    def gateset(self) -> GateSet:
        return self.spec.gateset

    @cached_property
    def _dtypes(self) -> tuple[np.dtype, np.dtype, int]:
        fmt, gs = self.meta["format"], self.spec.gateset
        udt, cdt = np.dtype(self.spec.np_dtype).newbyteorder("<"), code_dtype(len(gs.moves)).newbyteorder("<")
        for key, want in (("dim", gs.dim), ("unitary_dtype", udt), ("code_dtype", cdt)):
            value = fmt.get(key)
            try:
                ok = value == want if key == "dim" else np.dtype(value).newbyteorder("<") == want
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise damaged_meta(self.path, f"format {key} {value!r} disagrees with its spec")
        return udt, cdt, gs.dim

    @property
    def complete(self) -> bool:
        """Whether the generating run finished (re-read from the file each time)."""
        row = self._query("SELECT value FROM meta WHERE key = 'state'")
        try:
            state = load_json(row[0][0]) if row else {}
        except ValueError as exc:
            raise damaged_meta(self.path, exc) from exc
        return bool(state.get("complete")) if isinstance(state, dict) else False

    def __len__(self) -> int:
        row = self._query("SELECT first_id + count FROM blocks ORDER BY first_id DESC LIMIT 1")
        return int(row[0][0]) if row else 0

    def __repr__(self) -> str:
        return f"<unitarium.Dataset {str(self.path)!r}: {len(self)} records, {self.spec.describe()}>"

    # -- records -------------------------------------------------------------------------

    def _locate(self, i: int) -> tuple[int, int]:
        """``(first_id, j)``: record ``i`` is the ``j``-th of the block starting at ``first_id``
        (one query; the dataset's length only for negative ids or a miss)."""
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or i < 0:
            i = self._check_id(i)
        row = self._query(
            "SELECT first_id, count FROM blocks WHERE first_id <= ? ORDER BY first_id DESC LIMIT 1", (int(i),)
        )
        if not row or not (isinstance(row[0][0], int) and isinstance(row[0][1], int)) or i >= row[0][0] + row[0][1]:
            self._check_id(i)  # raises for ids past the end
            raise self._damaged(row[0][0] if row else 0, f"no block holds record {i}")
        return row[0][0], int(i) - row[0][0]

    def _check_id(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"record ids are integers, not {type(i).__name__}")
        n = len(self)
        j = int(i) + n if i < 0 else int(i)
        if not 0 <= j < n:
            raise RecordIndexError(f"record id {i} is out of range: the dataset has {n} records (0..{n - 1})")
        return j

    def __getitem__(self, i: int) -> Record:
        """Record ``i`` (negative ids count from the end), read without loading its block."""
        first, j = self._locate(i)
        i = first + j
        udt, cdt, d = self._dtypes
        size = d * d * udt.itemsize
        lo, hi = self._part(first, "offsets", None, 4 * j, 8, "<u4")
        if hi < lo:
            raise self._damaged(first, "offsets decrease")
        n = int(hi - lo) * cdt.itemsize
        codes = self._check_codes(self._part(first, "codes", None, int(lo) * cdt.itemsize, n, cdt), first)
        u = self._part(first, "unitaries", None, j * size, size, udt).reshape(d, d)
        return Record(i, Circuit(codes, self.gateset), u.astype(udt.newbyteorder("=")))

    # -- damaged files ----------------------------------------------------------------------

    def _damaged(self, first: int, what: str) -> NotADatasetError:
        return NotADatasetError(f"{str(self.path)!r} has a damaged block (records from id {first}): {what}")

    def _exact(self, data: object, size: int, first: int, column: str, dtype: Any) -> np.ndarray:
        """``data`` (a BLOB or part of one) as an array, if it is exactly ``size`` bytes."""
        if not isinstance(data, bytes) or len(data) != size:
            got = f"{len(data)} bytes" if isinstance(data, bytes) else type(data).__name__
            raise self._damaged(first, f"its {column} hold {got}, expected {size} bytes")
        return np.frombuffer(data, dtype=dtype)

    def _check_codes(self, codes: np.ndarray, first: int) -> np.ndarray:
        if codes.size and int(codes.max()) >= len(self.gateset.moves):
            raise self._damaged(first, f"move code {int(codes.max())} is past the last move")
        return codes.astype(np.int64)

    def _range(self, start: int, stop: int | None) -> tuple[int, int]:
        n = len(self)
        stop = n if stop is None else stop
        if (
            not (isinstance(start, int | np.integer) and isinstance(stop, int | np.integer))
            or not 0 <= start <= stop <= n
        ):
            raise RecordIndexError(f"range {start}:{stop} is outside the dataset's {n} records")
        return int(start), int(stop)

    def _spans(self, start: int, stop: int) -> list[tuple[int, int, int, int]]:
        """``(first, count, lo, hi)`` for each block holding records of ``[start, stop)``: the
        block starting at record ``first`` holds ``count`` records, of which ``lo .. hi-1`` are wanted."""
        spans = []
        rows = self._query(
            "SELECT first_id, count FROM blocks "
            "WHERE first_id >= (SELECT coalesce(max(first_id), 0) FROM blocks WHERE first_id <= ?) "
            "AND first_id < ? ORDER BY first_id",
            (start, stop),
        )
        for first, count in rows:
            if not (isinstance(first, int) and isinstance(count, int) and count >= 0):
                raise self._damaged(first, f"its first id and count are {first!r}, {count!r}")
            lo, hi = max(start, first) - first, min(stop, first + count) - first
            if lo < hi:
                spans.append((first, count, lo, hi))
        return spans

    def _part(self, first: int, column: str, total: int | None, at: int, size: int, dtype: Any) -> np.ndarray:
        """Bytes ``at .. at+size-1`` of the ``column`` BLOB of block ``first`` as an array, read
        without loading the rest; the BLOB must hold ``total`` bytes (unless None). Each call
        reads in its own transaction, which is safe because a committed block never changes."""
        try:
            with self._connection().blobopen("blocks", column, first, readonly=True) as blob:
                if total is not None and len(blob) != total:
                    raise self._damaged(first, f"its {column} hold {len(blob)} bytes, expected {total} bytes")
                if at > len(blob):
                    raise self._damaged(first, f"its {column} end before byte {at}")
                blob.seek(at)
                return self._exact(blob.read(size), size, first, column, dtype)
        except (sqlite3.DataError, sqlite3.OperationalError) as exc:  # not a BLOB, no such block
            raise self._damaged(first, f"cannot read its {column}: {exc}") from exc
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path, "reading") from exc

    def unitaries(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Unitaries of records ``start .. stop-1`` as one ``(n, d, d)`` array (only the bytes
        of the wanted records are read, also from a block that holds others)."""
        start, stop = self._range(start, stop)
        udt, _, d = self._dtypes
        size = d * d * udt.itemsize
        out = np.empty((stop - start, d, d), dtype=udt.newbyteorder("="))
        for first, count, lo, hi in self._spans(start, stop):
            part = self._part(first, "unitaries", count * size, lo * size, (hi - lo) * size, udt)
            out[first + lo - start : first + hi - start] = part.reshape(-1, d, d)
        return out

    def _circuit_parts(self, start: int, stop: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per block: (codes, offsets) restricted to ``[start, stop)``, offsets rebased."""
        _, cdt, _ = self._dtypes
        for first, count, lo, hi in self._spans(start, stop):
            off = self._part(first, "offsets", 4 * (count + 1), 4 * lo, 4 * (hi - lo + 1), "<u4").astype(np.int64)
            if (lo == 0 and off[0] != 0) or np.any(np.diff(off) < 0):
                raise self._damaged(first, "its offsets do not start at 0 and grow")
            # the codes BLOB's size is known when the last offset was read
            total = int(off[-1]) * cdt.itemsize if hi == count else None
            at, n = int(off[0]) * cdt.itemsize, int(off[-1] - off[0]) * cdt.itemsize
            codes = self._part(first, "codes", total, at, n, cdt)
            yield self._check_codes(codes, first), off - off[0]

    def circuits(self, start: int = 0, stop: int | None = None) -> list[Circuit]:
        """Circuits of records ``start .. stop-1``."""
        start, stop = self._range(start, stop)
        gs = self.gateset
        return [
            Circuit(codes[a:b], gs)
            for codes, off in self._circuit_parts(start, stop)
            for a, b in itertools.pairwise(off)
        ]

    def lengths(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Circuit lengths of records ``start .. stop-1``."""
        start, stop = self._range(start, stop)
        parts = [np.diff(off) for _, off in self._circuit_parts(start, stop)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def circuit_array(self, start: int, stop: int, length: int) -> np.ndarray:
        """Circuits ``start .. stop-1``, all of length ``length``, as ``(n, length)`` codes."""
        start, stop = self._range(start, stop)
        parts = [codes.reshape(len(off) - 1, length) for codes, off in self._circuit_parts(start, stop)]
        return np.concatenate(parts) if parts else np.zeros((0, length), dtype=np.int64)

    def __iter__(self) -> Iterator[Record]:
        """Records in id order, a block at a time."""
        n, step = len(self), 4096
        for a in range(0, n, step):
            b = min(n, a + step)
            for k, (c, u) in enumerate(zip(self.circuits(a, b), self.unitaries(a, b), strict=True)):
                yield Record(a + k, c, u)

    # -- lookup & verification -------------------------------------------------------------

    def lookup(self, unitary: np.ndarray, *, atol: float = 1e-5) -> list[Record]:
        """Records whose unitary equals ``unitary`` up to global phase (entrywise ``atol``),
        found through the lookup index (datasets generated with ``unique``)."""
        d = self.gateset.dim
        u = np.asarray(unitary)
        if u.shape != (d, d):
            raise SpecError(f"lookup needs a {d}x{d} matrix, got shape {u.shape}")
        if not np.all(np.isfinite(u)):
            raise SpecError(f"lookup needs a finite {d}x{d} matrix: this one has NaN or infinite entries")
        if not self.spec.unique:
            raise DatasetError(f"{str(self.path)!r} has no lookup index: only --unique datasets have one")
        probes = LOOKUP.probes(u)
        marks = ",".join("?" * len(probes))
        ids = sorted({int(i) for (i,) in self._query(f"SELECT id FROM lookup WHERE key IN ({marks})", tuple(probes))})
        found = [self[i] for i in ids]
        return [r for r in found if equal_up_to_phase(r.unitary, u, atol=atol)]

    def verify(self, *, sample: int | None = 1000, seed: int = 0) -> VerifyReport:
        """Check SQLite integrity, the task/block structure, and recompute the unitaries
        of ``sample`` random records (all when ``sample`` is None) in complex128."""
        integrity = str(self._query("PRAGMA integrity_check")[0][0])
        problems = [] if integrity == "ok" else [f"integrity_check: {integrity}"]
        problems += self._structure_problems()
        n = len(self)
        ids = (
            np.arange(n)
            if sample is None or sample >= n
            else np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
        )
        table = ProductTable(self.gateset.move_matrices, np.complex128)
        worst = 0.0
        for chunk in np.array_split(ids, max(1, len(ids) // 4096)):
            worst = max(worst, self._max_error(chunk, table))
        tol = 1e-4 if self._dtypes[0].itemsize == 8 else 1e-9
        if worst > tol:
            problems.append(f"a stored unitary differs from its circuit's product by {worst:.3g} > {tol:g}")
        return VerifyReport(n, len(ids), worst, integrity, problems)

    def _max_error(self, ids: np.ndarray, table: ProductTable) -> float:
        if not len(ids):
            return 0.0
        a, b = int(ids[0]), int(ids[-1]) + 1
        circuits = self.circuits(a, b)
        stored = self.unitaries(a, b)[ids - a]
        picked = [circuits[i - a].codes for i in ids]
        width = max(len(c) for c in picked)
        seqs = np.full((len(picked), width), table.num_moves, dtype=np.int64)
        for r, c in enumerate(picked):
            seqs[r, : len(c)] = c
        return float(np.abs(table.unitaries(seqs) - stored).max())

    def _structure_problems(self) -> list[str]:
        problems = []
        tasks = self._query("SELECT task_id, first_id, count FROM tasks ORDER BY task_id")
        expect = 0
        for k, (task_id, first, count) in enumerate(tasks):
            if task_id != k or first != expect:
                problems.append(f"task {task_id} breaks the committed prefix (expected task {k} at id {expect})")
                break
            expect += count
        blocks = self._query("SELECT first_id, count FROM blocks ORDER BY first_id")
        total = sum(c for _, c in blocks)
        if total != expect or any(
            f != s for (f, _), s in zip(blocks, np.cumsum([0] + [c for _, c in blocks]), strict=False)
        ):
            problems.append(f"blocks hold {total} records in a non-contiguous layout; tasks account for {expect}")
        return problems

    def info(self) -> dict[str, Any]:
        """Summary: spec, record and task counts, length histogram, sizes."""
        n = len(self)
        lengths = self.lengths()
        hist = {int(k): int(v) for k, v in zip(*np.unique(lengths, return_counts=True), strict=True)}
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        tasks, candidates = self._query("SELECT count(*), coalesce(sum(candidates), 0) FROM tasks")[0]
        return {
            "path": str(self.path),
            "spec": self.meta["spec"],
            "description": self.spec.describe(),
            "records": n,
            "tasks_done": int(tasks),
            "candidates": int(candidates),
            "complete": self.complete,
            "moves": [m.text for m in self.gateset.moves],
            "length_histogram": hist,
            "file_bytes": size,
            "bytes_per_record": size / n if n else None,
        }
