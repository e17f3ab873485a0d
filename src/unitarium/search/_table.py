"""The table a search runs over: every record of a unique enumerated dataset, in memory.

Loaded once per :class:`~unitarium.Dataset` handle (:func:`table_of`) through the public
range API: lengths, move codes padded to the longest circuit, where each length (level)
starts, and the ``(N, d, d)`` unitaries recomputed from the codes in complex128 (exact to
~1e-15 whatever the stored dtype, so that matches can be checked against a tight ``atol``).
Enumeration is breadth-first, so records are sorted by length and level ``l`` is the id range
``starts[l] .. starts[l+1] - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from .._circuit import Circuit, Record
from .._errors import DatasetError, SpecError
from .._kernels import ProductTable
from .._spec import Enumeration
from ._keys import KeyIndex

if TYPE_CHECKING:
    from .._dataset import Dataset
    from .._gateset import GateSet

__all__ = ["SearchTable", "as_targets", "table_of"]

UNITARY_TOL = 1e-5
"""How far ``U^dag U`` may stray from the identity (entrywise) before a target is refused:
loose enough for matrices saved in complex64."""


@dataclass(frozen=True, eq=False)
class SearchTable:
    """All records of a complete unique enumeration of max length ``max_length``.

    ``unitaries`` ``(N, d, d)`` complex128 (recomputed from the circuits), ``lengths`` ``(N,)``,
    ``codes`` ``(N, max_length)`` padded with ``-1``, ``starts`` ``(max_length + 2,)``: level
    ``l`` is ids ``starts[l] .. starts[l + 1] - 1``; ``stored``: the unitaries as stored."""

    gateset: GateSet
    max_length: int
    unitaries: np.ndarray
    lengths: np.ndarray
    codes: np.ndarray
    starts: np.ndarray
    stored: np.ndarray

    @cached_property
    def index(self) -> KeyIndex:
        """The hash index of :attr:`unitaries` (exact matching up to phase)."""
        return KeyIndex.build(self.unitaries)

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

    def record(self, i: int) -> Record:
        """Record ``i`` as ``ds[i]`` returns it (stored unitary), without a read."""
        return Record(i, self.circuit(i), self.stored[i])

    def circuit(self, *ids: int) -> Circuit:
        """The circuit of records ``ids`` applied one after the other (first id first)."""
        parts = [self.codes[i, : self.lengths[i]] for i in ids]
        return Circuit(np.concatenate([np.zeros(0, np.int64), *parts]).astype(np.int64), self.gateset)


def table_of(ds: Dataset, feature: str) -> SearchTable:
    """The dataset's :class:`SearchTable`, built on first use and kept on the handle."""
    cached = ds.__dict__.get("_search_table")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    _check_searchable(ds, feature)
    table = _load(ds)
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
    big = src.max_length
    lengths = ds.lengths().astype(np.int64)
    if len(lengths) == 0 or lengths[0] != 0 or np.any(np.diff(lengths) < 0) or lengths[-1] > big:
        raise DatasetError(f"{str(ds.path)!r} is not in breadth-first order: it cannot be searched")
    starts = np.searchsorted(lengths, np.arange(big + 2), side="left").astype(np.int64)
    codes = np.full((len(lengths), big), -1, dtype=np.int64)
    for length in range(1, big + 1):
        a, b = int(starts[length]), int(starts[length + 1])
        if b > a:
            codes[a:b, :length] = ds.circuit_array(a, b, length)
    moves = ds.gateset.move_matrices
    unitaries = ProductTable(moves, np.complex128).unitaries(np.where(codes < 0, len(moves), codes))
    return SearchTable(ds.gateset, big, unitaries, lengths, codes, starts, ds.unitaries(0, len(lengths)))


def as_targets(unitary: object, d: int, what: str) -> tuple[np.ndarray, bool]:
    """``(n, d, d)`` complex128 targets from one ``(d, d)`` matrix or a stack ``(n, d, d)``,
    and whether one matrix was given. Raises :class:`SpecError` for anything else: not
    numbers, another shape, NaN or infinite entries, not unitary."""
    u = np.asarray(unitary)
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
