"""The table a search runs over: every record of a unique enumerated dataset, compact in memory.

Loaded once per :class:`~unitarium.Dataset` handle (:func:`table_of`) through the public
range API, in chunks of :data:`CHUNK` records: lengths ``(N,)`` uint8, move codes ``(N, L)``
uint8 (uint16 past 254 moves) padded with the number of moves, where each length (level)
starts, and the hash index of the unitaries (:mod:`._keys`, 8 bytes an entry). The ``(N, d, d)``
unitaries, recomputed from the codes in complex128 (exact to ~1e-15 whatever the stored dtype,
so that matches can be checked against a tight ``atol``), are kept when they fit in
:data:`CACHE_BYTES` and recomputed chunk by chunk otherwise. Enumeration is breadth-first, so
records are sorted by length and level ``l`` is the id range ``starts[l] .. starts[l+1] - 1``.

Memory: about ``N (L + 1 + 21)`` bytes (codes, lengths, index) plus ``N d^2 16`` bytes for the
unitaries while that is at most :data:`CACHE_BYTES`, plus working buffers of a few
:data:`CHUNK` records; beyond the budget nothing grows with ``N`` but the codes and the index.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .._core.circuit import Circuit, Record
from .._core.kernels import ProductTable
from .._errors import DatasetError, SpecError
from .._spec.spec import Enumeration
from ._index import ROW_CHUNK, SearchIndex, usable_index
from ._keys import KeyIndex, bloom
from ._progress import progress

if TYPE_CHECKING:
    from .._core.gateset import GateSet
    from .._read.dataset import Dataset

__all__ = ["CACHE_BYTES", "CHUNK", "SearchTable", "as_targets", "table_of"]

UNITARY_TOL = 1e-5
"""How far ``U^dag U`` may stray from the identity (entrywise) before a target is refused:
loose enough for matrices saved in complex64."""

CACHE_BYTES = 1 << 30
"""The recomputed unitaries (``N d^2 16`` bytes) are kept in memory up to this size; larger
tables recompute them from the codes, :data:`CHUNK` records at a time, on every pass."""

CHUNK = ROW_CHUNK
"""Records read, recomputed or scored at once (4 MiB of 2-qubit unitaries)."""

THREADS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
"""Threads of a scan (:func:`scan`): the cores this process may run on, at most 4."""

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class SearchTable:
    """All records of a complete unique enumeration of max length ``max_length``.

    ``lengths`` ``(N,)`` uint8, ``codes`` ``(N, max_length)`` uint8/uint16 padded with
    ``num_moves``, ``starts`` ``(max_length + 2,)``: level ``l`` is ids ``starts[l] ..
    starts[l + 1] - 1``; ``cache``: the ``(N, d, d)`` complex128 unitaries when they fit in
    :data:`CACHE_BYTES`, else None (see :meth:`block`, :meth:`take`); ``read``: record ``i``
    as ``ds[i]`` returns it (stored unitary)."""

    gateset: GateSet
    max_length: int
    lengths: np.ndarray
    codes: np.ndarray
    starts: np.ndarray
    read: Callable[[int], Record]
    cache: np.ndarray | None = None
    stored: SearchIndex | None = None

    @cached_property
    def _products(self) -> ProductTable:
        """The product table of the moves (built on first use: a mapped index never needs it)."""
        return ProductTable(self.gateset.move_matrices, np.complex128)

    @cached_property
    def index(self) -> KeyIndex:
        """The hash index of the unitaries (exact matching up to phase), built chunk by chunk."""
        with progress("indexing the search table", len(self)) as bar:
            return KeyIndex.build(self.blocks(bar=bar), len(self))

    @cached_property
    def bloom(self) -> tuple[np.ndarray, int]:
        """``(bits, nbits)``: bit ``h`` (little-endian within bytes) is set when some key of the
        index has top ``nbits`` bits ``h`` (:func:`._keys.bloom`): most query keys are ruled
        out by one read of this small array, before the bucket directory."""
        return bloom(self.index.packed, self.index.row_bits)

    @property
    def dim(self) -> int:
        return self.gateset.dim

    def __len__(self) -> int:
        return len(self.lengths)

    def level(self, length: int) -> slice:
        """The ids of the records of exactly ``length`` moves, as a slice."""
        return slice(int(self.starts[length]), int(self.starts[length + 1]))

    def upto(self, length: int) -> int:
        """How many records have at most ``length`` moves (they are ids ``0 .. upto - 1``)."""
        return int(self.starts[min(max(length, -1), self.max_length) + 1])

    def block(self, start: int, stop: int) -> np.ndarray:
        """The ``(stop - start, d, d)`` complex128 unitaries of ids ``start .. stop - 1``."""
        if self.cache is not None:
            return self.cache[start:stop]
        if self.stored is not None:
            return self.stored.unitaries(start, stop)
        return self._compute(self.codes[start:stop])

    def spans(self, start: int, stop: int) -> list[tuple[int, int]]:
        """Ids ``start .. stop - 1`` cut at multiples of :data:`CHUNK` (the index's chunks)."""
        cuts = [start, *range((start // CHUNK + 1) * CHUNK, stop, CHUNK), stop]
        return [(a, b) for a, b in itertools.pairwise(cuts) if a < b]

    @contextmanager
    def coarse(self, start: int, stop: int) -> Iterator[np.ndarray]:
        """The ``(stop - start, d, d)`` unitaries of one span of :meth:`spans`, rounded to
        complex64: with an index, a view of its complex64 copy (half the bytes of the complex128
        ones; checked on first read, dropped from the resident pages at exit)."""
        if self.stored is None:
            yield self.block(start, stop).astype(np.complex64)
            return
        c = start // ROW_CHUNK
        chunk = self.stored.coarse(c)
        try:
            yield chunk[start - c * ROW_CHUNK : stop - c * ROW_CHUNK]
        finally:
            self.stored.release(c)

    def take(self, ids: np.ndarray) -> np.ndarray:
        """The ``(len(ids), d, d)`` complex128 unitaries of the records ``ids`` (any order)."""
        if self.cache is not None:
            return self.cache[ids]
        if self.stored is not None:
            return self.stored.take(ids)
        return self._compute(self.codes[ids])

    def blocks(self, start: int = 0, stop: int | None = None, *, bar: Any = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(first id, unitaries)`` of ids ``start .. stop - 1`` in chunks of :data:`CHUNK`."""
        stop = len(self) if stop is None else stop
        for a in range(start, stop, CHUNK):
            b = min(stop, a + CHUNK)
            yield a, self.block(a, b)
            if bar is not None:
                bar.advance(b - a)

    def record(self, i: int) -> Record:
        """Record ``i`` as ``ds[i]`` returns it."""
        return self.read(i)

    def circuit(self, *ids: int) -> Circuit:
        """The circuit of records ``ids`` applied one after the other (first id first)."""
        parts = [self.codes[i, : self.lengths[i]] for i in ids]
        return Circuit(np.concatenate([np.zeros(0, np.int64), *parts]).astype(np.int64), self.gateset)

    def _compute(self, codes: np.ndarray) -> np.ndarray:
        out = np.empty((len(codes), self.dim, self.dim), dtype=np.complex128)
        for a in range(0, len(codes), CHUNK):
            out[a : a + CHUNK] = self._products.unitaries(codes[a : a + CHUNK].astype(np.intp))
        return out


def scan(work: Callable[[int, int], T], spans: list[tuple[int, int]]) -> Generator[T, None, None]:
    """``work(start, stop)`` of each span, in order, on up to :data:`THREADS` threads (numpy's
    products and array operations release the GIL, so a scan uses every core it is given). At
    most :data:`THREADS` spans run ahead of the one yielded; closing the iterator early cancels
    the spans not started and waits for the running ones."""
    threads = min(THREADS, len(spans))
    if threads <= 1:
        yield from (work(a, b) for a, b in spans)
        return
    from concurrent.futures import Future, ThreadPoolExecutor  # (here: a command that scans nothing skips it)

    pending: deque[Future[T]] = deque()
    with ThreadPoolExecutor(threads) as pool:
        try:
            for a, b in spans:
                pending.append(pool.submit(work, a, b))
                if len(pending) > threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def table_of(ds: Dataset, feature: str) -> SearchTable:
    """The dataset's :class:`SearchTable`, built on first use and kept on the handle."""
    cached = ds.__dict__.get("_search_table")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    _check_searchable(ds, feature)
    stored = usable_index(ds, "enumeration")
    table = _load(ds) if stored is None else _from_index(ds, stored)
    ds.__dict__["_search_table"] = table
    return table


def _check_searchable(ds: Dataset, feature: str) -> None:
    spec, name = ds.spec, repr(str(ds.path))
    if not isinstance(spec.source, Enumeration) or not spec.unique:
        raise DatasetError(
            f"{feature} needs a unique enumerated dataset, and {name} is {spec.describe()}: "
            "generate one with --enumerate --max-length L --unique"
        )
    if not ds.complete:
        raise DatasetError(
            f"{name} is not complete (its generation was interrupted or is still running): "
            f"{feature} needs every level; re-run its generate command to finish it"
        )


def _load(ds: Dataset) -> SearchTable:
    src = ds.spec.source
    assert isinstance(src, Enumeration)
    big, n, moves = src.max_length, len(ds), len(ds.gateset.move_matrices)
    if ds.spec.cost is not None:  # by cost: --max-length may be unbounded; the longest record decides
        big = min(big, int(ds.lengths().max(initial=0)))
    lengths = np.zeros(n, dtype=np.uint8 if big < 255 else np.uint16)
    codes = np.full((n, big), moves, dtype=np.uint8 if moves < 255 else np.uint16)
    with progress("loading the search table", n) as bar:
        for a in range(0, n, CHUNK):
            flat, off = ds.codes(a, min(n, a + CHUNK))
            size = np.diff(off)
            if np.any(size > big):
                raise DatasetError(
                    f"{str(ds.path)!r} holds a circuit longer than its max length: it cannot be searched"
                )
            row = np.repeat(np.arange(len(size)), size)
            codes[a + row, np.arange(len(flat)) - off[row]] = flat
            lengths[a : a + len(size)] = size
            bar.advance(len(size))
    order = lengths.astype(np.int64)
    if ds.spec.cost is not None:  # enumerated by (cost, length)
        order = order + (ds.costs() << 20)
    if n == 0 or lengths[0] != 0 or np.any(np.diff(order) < 0):
        raise DatasetError(f"{str(ds.path)!r} is not in breadth-first order: it cannot be searched")
    starts = np.searchsorted(lengths, np.arange(big + 2), side="left").astype(np.int64)
    table = SearchTable(ds.gateset, big, lengths, codes, starts, ds.__getitem__)
    d = ds.gateset.dim
    if n * d * d * 16 <= CACHE_BYTES:
        cache = np.empty((n, d, d), dtype=np.complex128)
        with progress("computing the table's unitaries", n) as bar:
            for first, block in table.blocks(bar=bar):
                cache[first : first + len(block)] = block
        object.__setattr__(table, "cache", cache)
    return table


def _from_index(ds: Dataset, stored: SearchIndex) -> SearchTable:
    """The table of ``ds`` as its search index (:mod:`._index`) holds it: memory maps, nothing loaded."""
    big = int(stored.header["max_length"])
    table = SearchTable(
        ds.gateset,
        big,
        stored.array("lengths"),
        stored.array("codes"),
        stored.array("starts"),
        ds.__getitem__,
        stored=stored,
    )
    table.__dict__["index"] = KeyIndex(stored.array("keys"), int(stored.header["row_bits"]))
    table.__dict__["_directory"] = (stored.array("directory"), int(stored.header["directory_bits"]))
    table.__dict__["bloom"] = (stored.array("bloom"), int(stored.header["bloom_bits"]))
    return table


def as_targets(unitary: object, gateset: GateSet, what: str) -> tuple[np.ndarray, bool]:
    """``(n, d, d)`` complex128 targets and whether one was given, from what ``lookup`` takes
    (a matrix, a unitarium ``Circuit``, a Qiskit ``QuantumCircuit``, a Cirq circuit, OpenQASM
    text: one conversion, :func:`unitarium.interop.as_unitary`), a ``(n, d, d)`` stack, or a
    list of any of these. Raises :class:`SpecError` for anything else: not numbers, another
    shape, NaN or infinite entries, not unitary."""
    if _named(unitary):
        return _convert(unitary, gateset, what)[None], True
    if isinstance(unitary, list | tuple) and unitary and any(_named(x) for x in unitary):
        return np.stack([_convert(x, gateset, what) for x in unitary]), False
    return _as_matrices(unitary, gateset.dim, what)


def _named(x: object) -> bool:
    """Whether ``x`` names a unitary without being one (a circuit of any kind, OpenQASM text)."""
    from .._core.cirq import is_cirq_circuit
    from .._core.qiskit import is_qiskit_circuit

    return isinstance(x, str | Circuit) or is_qiskit_circuit(x) or is_cirq_circuit(x)


def _convert(x: object, gateset: GateSet, what: str) -> np.ndarray:
    from .._core.convert import as_unitary

    if not _named(x):
        return _as_matrices(x, gateset.dim, what)[0][0]
    try:
        return as_unitary(x, gateset)
    except SpecError as exc:
        raise SpecError(f"{what}: {exc}") from exc


def _as_matrices(unitary: object, d: int, what: str) -> tuple[np.ndarray, bool]:
    try:
        u = np.asarray(unitary)
    except (TypeError, ValueError) as exc:
        raise SpecError(
            f"{what} needs a {d}x{d} matrix, a Circuit, a Qiskit or Cirq circuit or OpenQASM text, "
            f"got a {type(unitary).__name__}"
        ) from exc
    if u.dtype.kind not in "biufc" or u.dtype.names is not None:
        raise SpecError(f"{what} needs a matrix of numbers, got an array of dtype {u.dtype}")
    single = u.ndim == 2
    if u.shape[-2:] != (d, d) or u.ndim not in (2, 3):
        raise SpecError(f"{what} needs a {d}x{d} matrix (or a stack of them), got shape {u.shape}")
    u = u.astype(np.complex128).reshape(-1, d, d)
    if not np.all(np.isfinite(u)):
        raise SpecError(f"{what} needs a finite {d}x{d} matrix: this one has NaN or infinite entries")
    if len(u):
        with np.errstate(all="ignore"):  # entries near 1e308 overflow: inf or NaN, refused below
            err = np.abs(np.conj(np.swapaxes(u, 1, 2)) @ u - np.eye(d)).max(axis=(1, 2))
        bad = np.flatnonzero(~(err <= UNITARY_TOL))  # NaN is never <= anything
        if bad.size:
            worst = int(bad[0])
            where = "" if single else f" (matrix {worst} of the stack)"
            raise SpecError(
                f"{what} needs a unitary matrix: max |U^dag U - I| = {err[worst]:.3g} > {UNITARY_TOL:g}{where}"
            )
    return u, single
