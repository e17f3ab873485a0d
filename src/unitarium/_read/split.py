"""Leakage-free splits of a dataset into named views, sampling by length, and bulk reads by id.

**Views.** A :class:`DatasetView` is a sequence of record ids of one dataset (any order,
repeats allowed) that reads like a dataset: ``len(view)``, ``view[k]`` (the record with id
``view.ids[k]``), ``view.unitaries(a, b)``, ``view.circuits(a, b)``, ``view.lengths(a, b)``,
iteration. :mod:`unitarium.torch` and ``unitarium export`` accept views wherever they accept
a dataset.

**Splits.** :meth:`SplitMixin.split` puts each record in exactly one part, and two records
whose unitaries are equal up to global phase always in the same part, however differently
their circuits compute them (e.g. ``h 0; h 0`` and the empty circuit). How:

1. Each stored unitary gets a phase-invariant grid key (:data:`SPLIT_KEYS`: the global phase
   fixed smoothly as in :mod:`unitarium._core.canonical`, 6 random projections, grid spacing
   ``2**-6``). Rounding noise can move a coordinate across a cell boundary only when it lies
   within ``eta = 2**-13`` of it; such a coordinate also yields the neighbouring cell's key
   (an *alternate*).
2. A key graph joins each record's key to its alternates; its connected components are the
   *groups* (union-find, the group named by its smallest key). Two computations of one
   unitary whose key coordinates differ by less than ``eta`` (about 1e-4 entrywise: float32
   rounding of circuits thousands of gates long stays far below) share a group: when they fall
   in different cells, each one's key is among the other's alternates. Distinct unitaries that
   share a cell are grouped too; that only makes groups a little larger.
3. Groups are ordered by a hash of their key and the seed (with ``stratify_by_length``: by
   their shortest record's length, then the hash) and cut at the cumulative fractions, each
   group going to the part its midpoint falls in. Each part's size is within one group of its
   fraction of the records (of each length, when stratified); a dataset with few distinct
   unitaries (1-qubit Cliffords have 24) has large groups and coarse sizes, by necessity.

The result depends only on the records, the fractions and the seed (not on the order ids
were read in); a dataset that grows can move records between parts. Memory: about 40 bytes
per record while splitting.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.canonical import KeyScheme, _splitmix
from .._core.circuit import Circuit, Record
from .._errors import RecordIndexError, SpecError
from .labels import carried_labels, carries_labels
from .records import chunk_records, gather, read_ranges

if TYPE_CHECKING:
    from .._core.gateset import GateSet
    from .._spec.spec import Spec
    from .dataset import Dataset

__all__ = ["SPLIT_KEYS", "DatasetView", "SplitMixin", "parse_fractions"]

SPLIT_KEYS = KeyScheme("split", dims=6, delta=2.0**-6, eta=2.0**-13)
"""Coarse phase-invariant keys for splits: tolerant of float32 noise, near a boundary in ~9% of records."""


# -- sources: a dataset or a view, read by position ------------------------------------------------------


def as_source(obj: Any) -> tuple[Dataset, np.ndarray | None]:
    """``(dataset, ids)`` of a :class:`~unitarium.Dataset` (ids None: all, in order) or a view."""
    if isinstance(obj, DatasetView):
        return obj.dataset, obj.ids
    if callable(getattr(obj, "unitaries", None)) and callable(getattr(obj, "codes", None)) and hasattr(obj, "spec"):
        return obj, None  # a Dataset (this module is below it: it never imports the reader back)
    raise TypeError(f"expected a unitarium Dataset or DatasetView, not {type(obj).__name__}")


def read_positions(
    obj: Any, start: int, stop: int, *, unitaries: bool = True, codes: bool = True
) -> tuple[np.ndarray, np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
    """Records at positions ``start .. stop-1`` of a dataset or view: ``(ids, unitaries, (codes, offsets))``."""
    ds, ids = as_source(obj)
    if ids is None:
        u = ds.unitaries(start, stop) if unitaries else None
        c = ds.codes(start, stop) if codes else None
        return np.arange(start, stop, dtype=np.int64), u, c
    picked = ids[start:stop]
    u, c = gather(ds, picked, unitaries=unitaries, codes=codes)
    return picked, u, c


def read_position_ranges(
    obj: Any, ranges: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Records at the position ranges ``[a, b)`` of a dataset or view, in the order given, in one
    pass (a dataset: each block part read once; a view: one gather of all their ids):
    ``(ids, unitaries, (codes, offsets))``."""
    ds, ids = as_source(obj)
    if ids is None:
        return read_ranges(ds, ranges)
    picked = np.concatenate([ids[a:b] for a, b in ranges]) if ranges else ids[:0]
    u, c = gather(ds, picked)
    assert u is not None and c is not None
    return picked, u, c


def max_length(obj: Any) -> int:
    """The longest circuit a dataset's spec allows (its source's maximum length); by cost
    (``--cost``), where ``--max-length`` may be unbounded, the longest committed circuit."""
    ds, _ = as_source(obj)
    if ds.spec.cost is not None:
        return min(int(ds.spec.source.max_length), max(map(int, ds.summary.get("lengths") or {"0": 0})))
    return int(ds.spec.source.max_length)


# -- fractions --------------------------------------------------------------------------------------------


def parse_fractions(fractions: Mapping[str, float] | str) -> dict[str, float]:
    """Validate split fractions: a mapping of part names to non-negative numbers summing to 1,
    or text ``"train=0.8,val=0.1,test=0.1"``. Raises :class:`SpecError` naming the fault."""
    if isinstance(fractions, str):
        fractions = _parse_fraction_text(fractions)
    if not isinstance(fractions, Mapping) or not fractions:
        raise SpecError(f"split fractions {fractions!r} must be a non-empty mapping like {{'train': 0.8, 'test': 0.2}}")
    out: dict[str, float] = {}
    for name, value in fractions.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise SpecError(f"split name {name!r} must be a word (letters, digits, _), e.g. 'train'")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            raise SpecError(f"split fraction {name}={value!r} must be a finite number")
        if value < 0:
            raise SpecError(f"split fraction {name}={value!r} is negative: use numbers from 0 to 1")
        out[name] = float(value)
    total = sum(out.values())
    if abs(total - 1) > 1e-6:
        shown = ", ".join(f"{k}={v:g}" for k, v in out.items())
        raise SpecError(f"split fractions {shown} sum to {total:g}, not 1: make them add up to 1")
    return out


def _parse_fraction_text(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in (t.strip() for t in text.split(",")):
        name, eq, value = item.partition("=")
        try:
            number: float | None = float(value)  # nan and inf pass: said to be "not finite" below
        except ValueError:
            number = None
        if not eq or not name.strip() or number is None:
            raise SpecError(f"--split part {item!r} must be NAME=FRACTION, e.g. train=0.8,val=0.1,test=0.1")
        if name.strip() in out:
            raise SpecError(f"--split names part {name.strip()!r} twice")
        out[name.strip()] = number
    return out


# -- splitting --------------------------------------------------------------------------------------------


def _components(nodes: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected components of a graph on ``nodes`` (0..m-1) with edges ``src[k] - dst[k]``: for
    each node, the smallest node of its component (hook to the smaller root, then pointer jumping)."""
    label = nodes.copy()
    while True:
        ls, ld = label[src], label[dst]
        if np.array_equal(ls, ld):
            return label
        lo = np.minimum(ls, ld)
        np.minimum.at(label, ls, lo)
        np.minimum.at(label, ld, lo)
        while True:
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped


def group_keys(obj: Any, total: int | None = None) -> np.ndarray:
    """For each record of a dataset or view (by position), the key naming its group: records
    whose unitaries are equal up to global phase (within ``SPLIT_KEYS.eta``) share it. ``total``:
    only the first ``total`` positions (a prefix fixed once, while a run may be appending)."""
    ds, _ = as_source(obj)
    total, step = len(obj) if total is None else total, chunk_records(ds)
    chunks = (read_positions(obj, a, min(total, a + step), codes=False)[1] for a in range(0, total, step))
    return group_keys_of(chunks, total)  # type: ignore[arg-type]


def group_keys_of(chunks: Iterable[np.ndarray], total: int) -> np.ndarray:
    """:func:`group_keys` of unitaries given as ``(n_k, d, d)`` chunks, ``total`` rows in all."""
    primary = np.empty(total, dtype=np.int64)
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    a = 0
    for u in chunks:
        cells, neighbour, near = SPLIT_KEYS.cells(u)
        keys = _hash_cells(cells)
        primary[a : a + len(u)] = keys
        a += len(u)
        for rows, alternates in _alternates(cells, neighbour, near):
            src.append(np.repeat(keys[rows], alternates.shape[1]))
            dst.append(_hash_cells(alternates.reshape(-1, cells.shape[1])))
    if not src:
        return primary
    s, t = np.concatenate(src), np.concatenate(dst)
    nodes, inverse = np.unique(np.concatenate([primary, s, t]), return_inverse=True)
    label = _components(np.arange(len(nodes)), inverse[total : total + len(s)], inverse[total + len(s) :])
    return nodes[label[inverse[:total]]]


_SALT = np.random.default_rng(np.random.SeedSequence(0x5B117)).integers(1, 2**62, size=64, dtype=np.uint64) * 2 + 1


def _hash_cells(cells: np.ndarray) -> np.ndarray:
    """One int64 key per row of integer grid cells ``(n, dims)``."""
    with np.errstate(over="ignore"):
        acc = (cells.astype(np.uint64) * _SALT[: cells.shape[1]]).sum(axis=-1, dtype=np.uint64)
    return _splitmix(acc).view(np.int64)


def _alternates(cells: np.ndarray, neighbour: np.ndarray, near: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For the rows with ``c`` near coordinates (each ``c``): the rows and their ``2**c - 1`` alternate
    cells ``(rows, 2**c - 1, dims)``, every non-empty subset of near coordinates moved across."""
    counts = near.sum(axis=1)
    for c in range(1, cells.shape[1] + 1):
        rows = np.flatnonzero(counts == c)
        if not len(rows):
            continue
        idx = np.nonzero(near[rows])[1].reshape(len(rows), c)
        bits = (np.arange(1, 2**c)[:, None] >> np.arange(c)) & 1  # (2**c - 1, c): which coordinates move
        moved = np.repeat(cells[rows][:, None, :], len(bits), axis=1)
        across = np.take_along_axis(neighbour[rows], idx, axis=1)
        m = np.arange(len(rows))[:, None]
        for j in range(c):
            subsets = np.flatnonzero(bits[:, j])[None, :]
            moved[m, subsets, idx[:, j : j + 1]] = across[:, j : j + 1]
        yield rows, moved


def assign_parts(groups: np.ndarray, fractions: list[float], seed: int, strata: np.ndarray | None = None) -> np.ndarray:
    """Part index (into ``fractions``) of each record: groups in a seeded hash order (within each
    stratum, when ``strata`` gives one per record), cut at the cumulative fractions by midpoint."""
    keys, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    stratum = np.zeros(len(keys), dtype=np.int64)
    if strata is not None:
        stratum = np.full(len(keys), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(stratum, inverse, np.asarray(strata, dtype=np.int64))
    salt = _seed_salt(seed)
    rank = _splitmix(keys.view(np.uint64) ^ salt)
    order = np.lexsort((rank, stratum))
    s, size = stratum[order], sizes[order]
    ends = np.cumsum(size)
    new = np.r_[True, s[1:] != s[:-1]]
    segment = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    seg_base = np.r_[0, ends[first[1:] - 1]]
    seg_total = np.r_[ends[first[1:] - 1], ends[-1]] - seg_base
    mid = (ends - size / 2 - seg_base[segment]) / seg_total[segment]
    part = np.empty(len(keys), dtype=np.int64)
    part[order] = np.searchsorted(np.cumsum(fractions)[:-1], mid, side="right")
    return part[inverse]


def _seed_salt(seed: int) -> np.uint64:
    """A 64-bit salt of any non-negative integer seed: below 2**64 it is ``splitmix(seed)`` (the
    parts of those seeds never change); each further 64-bit word of a larger seed is mixed in."""
    seed = int(seed)
    salt = _splitmix(np.array([seed & (2**64 - 1)], dtype=np.uint64))
    seed >>= 64
    while seed:
        word = np.array([seed & (2**64 - 1)], dtype=np.uint64)
        salt = _splitmix(salt ^ _splitmix(word + np.uint64(0x9E3779B97F4A7C15)))
        seed >>= 64
    return salt[0]


def split_source(
    obj: Any, fractions: Mapping[str, float] | str, *, seed: int = 0, stratify_by_length: bool = False
) -> dict[str, DatasetView]:
    """See :meth:`SplitMixin.split`."""
    parts = parse_fractions(fractions)
    _check_seed(seed)
    ds, ids = as_source(obj)
    n = len(obj)  # once: a dataset still being written is split as the prefix it holds now
    positions_ids = np.arange(n, dtype=np.int64) if ids is None else ids
    groups = group_keys(obj, n)
    strata = _lengths_of(obj, n) if stratify_by_length else None
    part = assign_parts(groups, list(parts.values()), seed, strata)
    return {name: DatasetView(ds, positions_ids[part == k], name=name) for k, name in enumerate(parts)}


def _check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise SpecError(f"seed {seed!r} must be a non-negative integer")


def _lengths_of(obj: Any, n: int | None = None) -> np.ndarray:
    """Circuit lengths of every record of a dataset or view (by position; of a dataset, its first
    ``n``), cached on the dataset: records never change, so a grown dataset reads only its new ones."""
    ds, ids = as_source(obj)
    n = len(ds) if ids is not None or n is None else n
    cached = ds.__dict__.get("_unitarium_lengths")
    if cached is None or len(cached) < n:
        have = 0 if cached is None else len(cached)
        tail = ds.lengths(have, n)
        cached = tail if cached is None else np.concatenate([cached, tail])
        ds.__dict__["_unitarium_lengths"] = cached
    return cached[:n] if ids is None else cached[ids]


def sample_source(
    obj: Any, n: int, *, length: int | None = None, seed: int | np.random.Generator = 0, replace: bool = False
) -> DatasetView:
    """See :meth:`SplitMixin.sample`."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise SpecError(f"sample size {n!r} must be a non-negative integer")
    ds, ids = as_source(obj)
    pool = np.arange(len(obj), dtype=np.int64) if ids is None else ids  # a prefix fixed once
    if length is not None:
        if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 0:
            raise SpecError(f"sample length {length!r} must be a non-negative integer")
        pool = pool[_lengths_of(obj, len(pool)) == length]
    if not replace and n > len(pool):
        what = f"of length {length}" if length is not None else "in all"
        raise SpecError(
            f"cannot sample {n} records without replacement: only {len(pool)} records {what} (use replace=True)"
        )
    if n and not len(pool):
        raise SpecError(f"cannot sample: no record has length {length}")
    if not isinstance(seed, np.random.Generator):
        _check_seed(seed)
    _check_sample_memory(int(n))
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    picked = pool[rng.choice(len(pool), size=int(n), replace=replace)] if n else pool[:0]
    return DatasetView(ds, picked, name=f"sample(length={length})" if length is not None else "sample")


def _check_sample_memory(n: int) -> None:
    """Refuse, before allocating, a sample whose ids (8 bytes each, and a copy) cannot fit."""
    from .._spec.spec import memory_limit

    need, limit = 16 * n, memory_limit()
    if limit is not None and need > limit // 2:
        raise SpecError(
            f"cannot sample {n:,} records: their ids take about {need / 2**30:,.1f} GiB, more than half of the "
            f"{limit / 2**30:.1f} GiB this machine allows (RAM, cgroup or ulimit -v): sample fewer"
        )


# -- the view and the mixin -------------------------------------------------------------------------------


class SplitMixin:
    """Methods of :class:`~unitarium.Dataset` (and :class:`DatasetView`) about splits and sampling."""

    def split(
        self, fractions: Mapping[str, float] | str, *, seed: int = 0, stratify_by_length: bool = False
    ) -> dict[str, DatasetView]:
        """Split into named parts, e.g. ``ds.split({"train": 0.8, "val": 0.1, "test": 0.1}, seed=0)``.

        Returns ``{name: DatasetView}`` in the order given, each view's ids ascending. Every record is
        in exactly one part; records whose unitaries are equal up to global phase are always in the
        same part; each part holds its fraction of the records to within one group of equal
        unitaries (of each circuit length, with ``stratify_by_length``). Deterministic: the same
        records, fractions and seed give the same parts. See :mod:`unitarium._read.split` for how.
        Raises :class:`SpecError` for fractions that are negative, not numbers, or do not sum to 1.
        """
        return split_source(self, fractions, seed=seed, stratify_by_length=stratify_by_length)

    def sample(
        self, n: int, *, length: int | None = None, seed: int | np.random.Generator = 0, replace: bool = False
    ) -> DatasetView:
        """``n`` records drawn uniformly (of circuit length ``length`` if given) as a view, in draw order.

        ``view.ids`` are the drawn ids; ``view[k]`` / ``view.unitaries()`` read them. In a dataset
        enumerated with ``unique``, a record of length ``d`` is a shortest circuit for its unitary,
        so ``ds.sample(n, length=d)`` draws targets at exact optimal distance ``d`` (an RL
        curriculum by distance). ``seed`` is an integer or a ``numpy.random.Generator``.
        """
        return sample_source(self, n, length=length, seed=seed, replace=replace)


class DatasetView(SplitMixin):
    """Records ``ids`` of ``dataset`` (a split part or a sample) read like a dataset: position
    ``k`` is the record with id ``ids[k]``. Pickles as its dataset's path and its ids."""

    def __init__(self, dataset: Dataset, ids: np.ndarray, *, name: str = "view") -> None:
        self.dataset = dataset
        self.ids = np.ascontiguousarray(ids, dtype=np.int64)
        self.ids.setflags(write=False)
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_view, (self.dataset, np.array(self.ids), self.name))

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"<unitarium.DatasetView {self.name!r}: {len(self)} records of {str(self.dataset.path)!r}>"

    @property
    def spec(self) -> Spec:
        return self.dataset.spec

    @property
    def gateset(self) -> GateSet:
        return self.dataset.gateset

    @property
    def path(self) -> Any:
        return self.dataset.path

    def __getitem__(self, k: int | slice) -> Any:
        """The record at position ``k`` (id ``ids[k]``); a slice gives a sub-view."""
        if isinstance(k, slice):
            return DatasetView(self.dataset, self.ids[k], name=self.name)
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"view positions are integers or slices, not {type(k).__name__}")
        if not -len(self) <= k < len(self):
            raise RecordIndexError(f"position {k} is out of range: the view {self.name!r} has {len(self)} records")
        return self.dataset[int(self.ids[k])]

    def _range(self, start: int, stop: int | None) -> tuple[int, int]:
        stop = len(self) if stop is None else stop
        if not 0 <= start <= stop <= len(self):
            raise RecordIndexError(f"range {start}:{stop} is outside the view's {len(self)} records")
        return int(start), int(stop)

    def unitaries(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Unitaries at positions ``start .. stop-1`` as one ``(n, d, d)`` array."""
        start, stop = self._range(start, stop)
        return read_positions(self, start, stop, codes=False)[1]  # type: ignore[return-value]

    def codes(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Circuits at positions ``start .. stop-1`` as ``(codes, offsets)`` (see :func:`.records.gather`)."""
        start, stop = self._range(start, stop)
        return read_positions(self, start, stop, unitaries=False)[2]  # type: ignore[return-value]

    def circuits(self, start: int = 0, stop: int | None = None) -> list[Circuit]:
        """Circuits at positions ``start .. stop-1``."""
        codes, off = self.codes(start, stop)
        return [Circuit(codes[a:b], self.gateset) for a, b in itertools.pairwise(off)]

    def lengths(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Circuit lengths at positions ``start .. stop-1``."""
        start, stop = self._range(start, stop)
        return np.diff(self.codes(start, stop)[1])

    def __iter__(self) -> Iterator[Record]:
        """Records in view order, read a chunk at a time."""
        step = chunk_records(self.dataset)
        labelled = carries_labels(self.dataset)  # (a complete labels file beside the dataset)
        for a in range(0, len(self), step):
            ids, u, c = read_positions(self, a, min(len(self), a + step))
            assert u is not None and c is not None
            codes, off = c
            labels = carried_labels(self.dataset, ids).tolist() if labelled else [None] * len(ids)
            for k, i in enumerate(ids.tolist()):
                circuit = Circuit(codes[off[k] : off[k + 1]], self.gateset)
                yield Record(i, circuit, u[k], self.dataset.spec.cost, labels[k])


def _rebuild_view(dataset: Dataset, ids: np.ndarray, name: str) -> DatasetView:
    return DatasetView(dataset, ids, name=name)
