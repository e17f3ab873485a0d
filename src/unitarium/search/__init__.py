"""Synthesis on top of the data: meet-in-the-middle and nearest unitaries.

- :meth:`SearchMixin.synthesize` / :meth:`~SearchMixin.synthesize_many`: a shortest circuit
  equal to ``U`` up to global phase, of length at most ``2 L`` (``L`` the max length of a
  unique enumerated dataset), or None when none exists (:mod:`.mitm` says why it is shortest).
- :meth:`SearchMixin.nearest`: the ``k`` records nearest to ``U`` in the phase-invariant
  distance ``sqrt(2 d - 2 |tr(U^dag V)|)``, exact (:mod:`.nearest`).
- :meth:`SearchMixin.approximate`: the circuit of length at most ``max_length <= 2 L``
  nearest to ``U``, over all such circuits (meet in the middle over the nearest search).

The tables are loaded into memory once per dataset handle, compact (about ``N (L + 22)`` bytes
for ``N`` records of at most ``L`` moves, plus ``N d^2 16`` bytes of unitaries up to a 1 GiB
budget, recomputed in chunks beyond it: :mod:`._table`), unless a search index lies beside the
dataset (:func:`build_index`, ``unitarium index``; :mod:`._index`): then they are mapped from it,
nothing loaded, after checking it is this dataset's (a foreign, stale or damaged index is
ignored with a :class:`SearchIndexWarning`). Searches never write beside the dataset. Searches
that run for more than a couple of seconds show a progress bar when stderr is a terminal;
``approximate`` says what it will cost (:meth:`SearchMixin.approximate_cost`) and refuses,
before it starts, a search of more than ``max_pairs`` scores (:class:`~unitarium.SearchCostError`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.circuit import Circuit, Record
from .._errors import SpecError
from .._spec.spec import Enumeration
from ._build import build_index
from ._index import ROW_CHUNK, SearchIndexError, SearchIndexWarning, index_path, usable_index
from ._progress import Bar, progress
from ._table import as_targets, table_of
from .nearest import MAX_PAIRS, SearchCost

if TYPE_CHECKING:
    from .._read.dataset import Dataset

__all__ = [
    "Approximation",
    "Match",
    "SearchCost",
    "SearchIndexError",
    "SearchIndexWarning",
    "SearchMixin",
    "build_index",
    "index_path",
]

_CACHE_BYTES = 1 << 29
"""Stored unitaries of datasets up to this size are kept in memory between ``nearest`` calls."""
_CHUNK_BYTES = 1 << 26
"""Beyond it, they are read and scored this many bytes (as complex128) at a time."""


@dataclass(frozen=True)
class Match:
    """A record and its distance ``sqrt(2 d - 2 |tr(U^dag V)|)`` to the query."""

    record: Record
    distance: float


@dataclass(frozen=True)
class Approximation:
    """A circuit and the distance of its unitary to the target (same formula as :class:`Match`)."""

    circuit: Circuit
    distance: float


class SearchMixin:
    """Methods of :class:`~unitarium.Dataset` that search the data (synthesis, nearest).

    Every method takes what :meth:`~unitarium.Dataset.lookup` takes: a ``(d, d)`` matrix, a
    unitarium ``Circuit``, a Qiskit ``QuantumCircuit``, a Cirq circuit or OpenQASM 2/3 text,
    through one conversion (:func:`unitarium.interop.as_unitary`); the ``_many`` forms (and
    ``nearest``) also a ``(n, d, d)`` stack or a list of any of these."""

    def synthesize(self, unitary: Any, *, atol: float = 1e-5) -> Circuit | None:
        """A shortest circuit whose unitary equals ``unitary`` ``(d, d)`` up to global phase
        (entrywise within ``atol``, at most ``1e-4``), or None when no circuit of at most
        ``2 L`` moves does, ``L`` being the max length of this unique enumerated dataset.

        Meet in the middle: ``U = B A`` with ``A`` and ``B`` records. Shortest because halves
        of a shortest circuit are shortest circuits, hence table records of exactly their
        lengths, and prefixes are tried by increasing length (proof in
        :mod:`unitarium.search.mitm`). The first call loads the table and its hash index."""
        return self.synthesize_many(_one(unitary, self._ds, "synthesize"), atol=atol)[0]

    def synthesize_many(self, unitaries: Any, *, atol: float = 1e-5) -> list[Circuit | None]:
        """:meth:`synthesize` for a ``(n, d, d)`` stack, batched (one list entry per target)."""
        from .mitm import synthesize_many

        table = table_of(self._ds, "synthesize")
        targets, _ = as_targets(unitaries, table.gateset, "synthesize")
        return synthesize_many(table, targets, atol=atol, spec=self._ds.spec)

    def nearest(self, unitary: Any, k: int = 1) -> list[Match] | list[list[Match]]:
        """The ``k`` records nearest to ``unitary`` in ``D = sqrt(2 d - 2 |tr(U^dag V)|)``, nearest
        first, ties to the lower id; exact (brute force over every record, in chunks). A
        ``(n, d, d)`` stack gives one list per target. Distances are to the stored unitaries;
        on a unique enumerated dataset, to the circuits' exact unitaries (recomputed in complex128)."""
        from .nearest import nearest_ids, nearest_in_table

        ds = self._ds
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise SpecError(f"nearest needs k >= 1 (a whole number), got {k!r}")
        targets, single = as_targets(unitary, ds.gateset, "nearest")
        with progress("nearest", len(ds)) as bar:
            if _is_table(ds):
                ids, dists = nearest_in_table(table_of(ds, "nearest"), targets, int(k), bar)
            else:
                ids, dists = nearest_ids(targets, _blocks(ds, bar), int(k))
        record = _reader(ds, ids)
        out = [
            [Match(record(int(i)), float(x)) for i, x in zip(row, drow, strict=True)]
            for row, drow in zip(ids, dists, strict=True)
        ]
        return out[0] if single else out

    def approximate(self, unitary: Any, *, max_length: int | None = None, max_pairs: int = MAX_PAIRS) -> Approximation:
        """The circuit of at most ``max_length`` moves (default and limit ``2 L``) nearest to
        ``unitary``, with its distance: the best over *all* such circuits, found by meeting
        in the middle (``B A`` with ``A``, ``B`` records, see
        :func:`unitarium.search.nearest.approximate_many`). Costs about
        ``sum_a N_a (N_{a-1} + N_a)`` scores, ``N_a`` the records of length ``a``; raises
        :class:`~unitarium.SearchCostError` (saying which ``max_length`` fits) before a search
        of more than ``max_pairs`` scores. On a table enumerated with ``--cost`` (weights 0 and
        1), ``max_length`` bounds the *cost* (default and limit ``2 C``) and of near-ties the
        cheaper circuit wins (:class:`unitarium.search.mitm.CostView`)."""
        targets = _one(unitary, self._ds, "approximate")
        return self.approximate_many(targets, max_length=max_length, max_pairs=max_pairs)[0]

    def approximate_many(
        self, unitaries: Any, *, max_length: int | None = None, max_pairs: int = MAX_PAIRS
    ) -> list[Approximation]:
        """:meth:`approximate` for a ``(n, d, d)`` stack (``max_pairs`` counts all targets)."""
        from .mitm import by_cost
        from .nearest import approximate_many

        table = by_cost(table_of(self._ds, "approximate"), self._ds.spec)  # by cost under a cost model
        budget = _budget(table.max_length, max_length)
        if isinstance(max_pairs, bool) or not isinstance(max_pairs, int | np.integer) or max_pairs < 1:
            raise SpecError(f"max_pairs {max_pairs!r} must be a whole number >= 1")
        targets, _ = as_targets(unitaries, table.gateset, "approximate")
        found = approximate_many(table, targets, int(budget), max_pairs=int(max_pairs))  # type: ignore[arg-type]
        return [Approximation(table.circuit(i, j), x) for i, j, x in found]

    def approximate_cost(self, targets: int = 1, *, max_length: int | None = None) -> SearchCost:
        """What :meth:`approximate_many` of ``targets`` targets at ``max_length`` (default
        ``2 L``) will cost, without searching: pairs to score, a rough time and memory
        (:class:`~unitarium.search.nearest.SearchCost`; ``str(cost.describe())`` says it in a line).
        Loads the table (or maps its index) as the search would."""
        from .nearest import estimate

        table = table_of(self._ds, "approximate")  # (by length: under a cost model, a bound of the cost's)
        budget = _budget(table.max_length, max_length)
        if isinstance(targets, bool) or not isinstance(targets, int | np.integer) or targets < 1:
            raise SpecError(f"targets {targets!r} must be a whole number >= 1")
        return estimate(table, budget, int(targets))

    def label(
        self, table: Any, *, progress: Callable[[int, int], None] | None = None, chunk: int = 4096
    ) -> dict[str, Any]:
        """Store, for every record, its least cost under ``table`` (a unique enumerated dataset or
        its path; its cost model, ``--cost``, or the length), or ``-(R + 1)`` beyond the table's
        reach ``R`` (:mod:`unitarium.search.label`); resumes a labelling by the same table. Read them
        with ``ds.labels()``; ``ds[i].label``, batches and exports carry them once complete."""
        from .._read.dataset import Dataset as Reader
        from .label import label

        own = not hasattr(table, "spec")
        handle = Reader(table) if own else table
        try:
            return label(self._ds, handle, progress=progress, chunk=chunk)
        finally:
            if own:
                handle.close()

    @property
    def _ds(self) -> Dataset:
        return self  # type: ignore[return-value]


def _budget(big: int, max_length: Any) -> int:
    """``max_length`` of ``approximate`` checked (default ``2 L``)."""
    top = 2 * big
    budget = top if max_length is None else max_length
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or not 0 <= budget <= top:
        raise SpecError(f"max_length {max_length!r} is out of range for this dataset: use 0 to {top} (2 L)")
    return int(budget)


def _one(unitary: Any, ds: Dataset, what: str) -> np.ndarray:
    """A single target (anything :func:`~._table.as_targets` takes) as a ``(1, d, d)`` stack,
    refusing stacks and lists (use the ``_many`` form)."""
    targets, single = as_targets(unitary, ds.gateset, what)
    if not single:
        d = ds.gateset.dim
        raise SpecError(f"{what} takes one {d}x{d} matrix or circuit: use {what}_many for a stack")
    return targets


def _reader(ds: Dataset, ids: np.ndarray) -> Callable[[int], Record]:
    """Records ``ids`` as ``ds[i]`` returns them: with a search table, its circuits and one bulk
    read of the stored unitaries; else ``ds[i]``."""
    table = ds.__dict__.get("_search_table")
    if table is None or not ids.size:
        return ds.__getitem__
    wanted = sorted(set(ids.ravel().tolist()))  # (np.unique would import numpy.ma: 0.1-0.25 s)
    stored = dict(zip(wanted, ds.unitaries(np.array(wanted, dtype=np.int64)), strict=True))
    return lambda i: Record(i, table.circuit(i), stored[i], ds.spec.cost)


def _is_table(ds: Dataset) -> bool:
    """Whether ``ds`` is searched through its search table (a complete unique enumeration: the
    circuits' exact unitaries, recomputed in complex128) rather than its stored unitaries."""
    spec = ds.spec
    return isinstance(spec.source, Enumeration) and bool(spec.unique) and ds.complete


def _blocks(ds: Dataset, bar: Bar) -> Iterator[tuple[int, np.ndarray]]:
    """Every stored unitary as ``(first id, (b, d, d) complex128)`` blocks (kept in memory when
    small) of a dataset that is not a search table (:func:`_is_table`)."""
    n, d = len(ds), ds.gateset.dim
    if "_search_index" not in ds.__dict__:  # looked for once per handle (one warning when unusable)
        ds.__dict__["_search_index"] = usable_index(ds, "records")
    stored = ds.__dict__["_search_index"]
    if stored is not None:
        for a in range(0, n, ROW_CHUNK):
            yield a, stored.unitaries(a, min(n, a + ROW_CHUNK))
            bar.advance(min(n, a + ROW_CHUNK) - a)
        return
    cached = ds.__dict__.get("_search_stored")
    if cached is not None and len(cached) == n:
        yield 0, cached
        return
    if n * d * d * 16 <= _CACHE_BYTES:
        ds.__dict__["_search_stored"] = ds.unitaries(0, n).astype(np.complex128)
        yield 0, ds.__dict__["_search_stored"]
        return
    step = max(1, _CHUNK_BYTES // (d * d * 16))
    for a in range(0, n, step):
        yield a, ds.unitaries(a, min(n, a + step)).astype(np.complex128)
        bar.advance(min(n, a + step) - a)
