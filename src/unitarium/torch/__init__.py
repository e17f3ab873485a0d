"""PyTorch datasets over a unitarium dataset or view (``pip install 'unitarium[torch]'``).

Two ways in, both taking a :class:`~unitarium.Dataset` or a :class:`~unitarium.DatasetView`
(a split part, a sample):

- :class:`ShuffledBatches`, the fast one: an ``IterableDataset`` of whole batches, read in chunks
  (position ranges) and shuffled within windows that each take one chunk of every stratum of the
  dataset (well mixed whatever the record order). Use it with ``DataLoader(sb, batch_size=None,
  num_workers=k)``; call ``sb.set_epoch(e)`` before each epoch for a new order. Each batch is a
  :class:`Batch`: one buffer, built by a DataLoader worker in a shared-memory slot
  (:class:`~unitarium.torch.batch._Ring`).
- :class:`UnitaryDataset`: a map-style ``Dataset`` (any sampler); its ``__getitems__`` reads a
  whole batch of ids in a few range reads. Use ``collate_fn=UnitaryDataset.collate``.

A batch is a dict of tensors (``B`` records, ``d = 2**qubits``, ``L`` = the longest circuit the
dataset's spec allows):

==========  ===================  =======================================================
key         dtype, shape         meaning
==========  ===================  =======================================================
``id``      int64 ``(B,)``       record ids in the dataset (not positions in a view)
``unitary`` complex64 ``(B,d,d)``  the unitary, qubit 0 least significant (Qiskit's order)
``tokens``  int64 ``(B, L)``     move codes (``ds.gateset.moves[c]``), then padding
``length``  int64 ``(B,)``       circuit length: ``tokens[b, :length[b]]`` are the moves
``label``   int64 ``(B,)``       only when the dataset carries labels (``unitarium label``, complete:
                                 :mod:`unitarium._read.labels`): the least cost under the labelling
                                 table's cost model, ``-(R + 1)`` beyond its reach ``R``
==========  ===================  =======================================================

Padding is :data:`pad` = the number of moves (one past the last move code), so
``torch.nn.Embedding(num_moves + 1, dim, padding_idx=num_moves)`` takes ``tokens`` as they are.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._errors import MissingOptionalLibraryError, SpecError
from .._read.labels import carried_labels, carries_labels
from .._read.records import pad_tokens
from .._read.split import as_source, max_length, read_position_ranges

try:
    import torch
    from torch.utils.data import Dataset as _TorchDataset
    from torch.utils.data import IterableDataset as _TorchIterable
    from torch.utils.data import get_worker_info
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise MissingOptionalLibraryError("torch", "unitarium.torch", "torch") from exc

from .batch import Batch, _batch, _narrow, _worker_ring  # (after torch: it needs it)

__all__ = ["Batch", "ShuffledBatches", "UnitaryDataset", "pad_tokens", "pad_value"]

_WINDOW_BYTES = 32 << 20  # unitary bytes in a shuffle window (2 qubits: 262,144 records, read in chunks)
_MIN_CHUNK = 64  # records per chunk at least (a range read has a fixed cost)
_MIN_STRATA = 128  # chunks per window at least


def pad_value(source: Any) -> int:
    """The padding token of a dataset or view: its number of moves (one past the last move code)."""
    ds, _ = as_source(source)
    return len(ds.gateset.moves)


def _tensors(cols: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in cols.items()}


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SpecError(f"{what} {value!r} must be a positive integer")
    return int(value)


class _Samples(list):  # type: ignore[type-arg]
    """Per-record dicts of one ``__getitems__`` read, carrying the stacked batch for :meth:`UnitaryDataset.collate`."""

    batch: dict[str, torch.Tensor]


class UnitaryDataset(_TorchDataset):  # type: ignore[type-arg]
    """Map-style dataset: item ``k`` is the record at position ``k`` of a dataset or view, as a dict
    of tensors (``id``, ``unitary`` ``(d, d)`` complex64, ``tokens`` ``(L,)`` padded, ``length``).

    ``__getitems__`` (used by ``DataLoader`` for a batch of indices) reads the batch in a few range
    reads; pass ``collate_fn=UnitaryDataset.collate`` to get it as one batch dict without copying it
    record by record (``torch.utils.data.default_collate`` works too, more slowly)."""

    def __init__(self, source: Any, *, records: int | None = None) -> None:
        as_source(source)  # type check
        self.source = source
        self.pad = pad_value(source)
        self.width = max_length(source)
        self.records = _agreed_count(source, records)
        self.labelled = carries_labels(as_source(source)[0])  # every batch has a label field, or none

    def __len__(self) -> int:
        return self.records

    def _positions(self, indices: Any) -> np.ndarray:
        pos = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        pos = np.where(pos < 0, pos + n, pos)
        if len(pos) and (pos.min() < 0 or pos.max() >= n):
            raise IndexError(f"index out of range for a dataset of {n} records: {np.asarray(indices).tolist()}")
        return pos

    def _batch(self, indices: Any) -> dict[str, np.ndarray]:
        """One bulk read (``ds[ids]``: each block touched once) of the records at ``indices``."""
        pos = self._positions(indices)
        ds, ids = as_source(self.source)
        records = ds[(pos if ids is None else ids[pos]).tolist()]
        lengths = np.array([len(r.circuit) for r in records], dtype=np.int64)
        offsets = np.zeros(len(records) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        codes = np.concatenate([r.circuit.codes for r in records]) if records else np.zeros(0, np.int64)
        d = ds.gateset.dim
        u = np.stack([r.unitary for r in records]) if records else np.zeros((0, d, d))
        cols = {
            "id": np.array([r.id for r in records], dtype=np.int64),
            "unitary": u.astype(np.complex64),
            "tokens": pad_tokens(codes.astype(np.int64), offsets, self.width, self.pad),
            "length": lengths,
        }
        if self.labelled:  # ds[ids] read them (one read per batch); None: no longer carried, said by carried_labels
            labels = [r.label for r in records]
            cols["label"] = carried_labels(ds, cols["id"]) if None in labels else np.array(labels, dtype=np.int64)
        return cols

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        cols = self._batch([index])
        return {k: torch.from_numpy(np.ascontiguousarray(v[0])) for k, v in cols.items()}

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        batch = _tensors(self._batch(indices))
        samples = _Samples({k: v[i] for k, v in batch.items()} for i in range(len(indices)))
        samples.batch = batch
        return samples

    @staticmethod
    def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Stack per-record dicts into a batch dict (free for the output of ``__getitems__``)."""
        if isinstance(samples, _Samples):
            return samples.batch
        return {k: torch.stack([s[k] for s in samples]) for k in samples[0]} if samples else {}


def _chunk_size(buffer_size: int, batch_size: int) -> int:
    """Records per chunk: a window holds ``max(128, batch_size // 4)`` chunks (strata; enough for
    batch means as spread as a true shuffle's, see :class:`ShuffledBatches`), each of at least
    :data:`_MIN_CHUNK` records (a range read has a fixed cost), and no more than the window."""
    strata = max(_MIN_STRATA, batch_size // 4)
    return max(1, min(buffer_size, max(_MIN_CHUNK, -(-buffer_size // strata))))


class ShuffledBatches(_TorchIterable):  # type: ignore[type-arg]
    """Shuffled batches of a dataset or view, every record exactly once per epoch.

    **Order.** Positions ``0 .. n-1`` are cut into chunks of ``chunk`` contiguous positions and the
    chunks into ``s`` strata of consecutive chunks (``s`` = the chunks a window of ``buffer_size``
    records holds). Each epoch, from ``SeedSequence(seed, spawn_key=(epoch,))``, every window takes
    one randomly drawn chunk of each stratum (a stratified sample of the whole dataset, whatever
    its record order: records sorted by length, as enumerations are, give windows of the dataset's
    own length mix). The window sequence is cut into ``world_size * num_workers`` consecutive
    pieces of equal record count (differing by at most one): piece ``rank * num_workers + worker``
    is read by that DataLoader worker of that rank, a window at a time (as ranges of positions),
    shuffled within the window (the leftover of a window that does not fill a batch joins the
    next); a window cut by a piece boundary is read as its two parts. Nothing is shared or skipped
    between pieces. The chunk size follows the batch size (:func:`_chunk_size`): with
    ``s >= batch_size / 4`` strata, the spread of batch-mean lengths stays within a few percent of
    a true random permutation's (tests/test_batches_speed_mixing.py, benchmarks/bench_batches.py).

    ``rank`` and ``world_size`` default to ``torch.distributed``'s when it is initialised, else 0 and 1.
    ``set_epoch(e)`` selects the epoch (call it before creating the epoch's iterator). ``drop_last``
    drops each worker's final short batch. Batches are :class:`Batch` dicts as in the module
    docstring, each field a view of one buffer per batch; iterate through ``DataLoader(sb,
    batch_size=None, num_workers=k)`` (a batch crosses from a worker as one buffer: see
    :class:`Batch`).

    **A dataset still being written.** ``n`` is fixed in this (the main) process, never by a worker:
    at construction and at each ``set_epoch(e, records=None)`` (``records``: that many, else all
    committed then), and kept in a small shared-memory tensor ``(epoch, n)`` that every DataLoader
    worker reads when it starts an epoch (persistent workers too), so all of them cut the same ``n``
    records: an epoch is exactly once over a prefix. Under ``torch.distributed`` the ranks agree on
    the smallest ``n`` (an ``all_reduce`` MIN: call ``set_epoch`` on every rank, as with
    ``DistributedSampler``).
    """

    source: Any
    batch_size: int
    seed: int
    drop_last: bool
    buffer_size: int
    chunk: int
    rank: int
    world_size: int
    pad: int
    width: int
    labelled: bool
    _state: torch.Tensor

    def __init__(
        self,
        source: Any,
        batch_size: int,
        *,
        seed: int = 0,
        drop_last: bool = False,
        buffer_size: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        ds, _ = as_source(source)
        self.source = source
        self.batch_size = _positive(batch_size, "batch_size")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise SpecError(f"seed {seed!r} must be a non-negative integer")
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        unitary_bytes = ds.gateset.dim**2 * 8
        default_buffer = max(self.batch_size, _WINDOW_BYTES // unitary_bytes)
        self.buffer_size = default_buffer if buffer_size is None else _positive(buffer_size, "buffer_size")
        self.chunk = _chunk_size(self.buffer_size, self.batch_size)
        self.rank, self.world_size = _distributed(rank, world_size)
        self.pad = pad_value(source)
        self.width = max_length(source)
        # (epoch, records): written by the main process only, shared with DataLoader workers
        self._state = torch.tensor([0, _agreed_count(source, None)], dtype=torch.int64).share_memory_()
        self.labelled = carries_labels(ds)  # every batch has a label field, or none

    @property
    def epoch(self) -> int:
        """The epoch whose order the next iterator gives."""
        return int(self._state[0])

    @property
    def records(self) -> int:
        """The records of the epoch (positions ``0 .. records-1``), fixed at construction or ``set_epoch``."""
        return int(self._state[1])

    def set_epoch(self, epoch: int, records: int | None = None) -> None:
        """Use epoch ``epoch``'s order from the next iterator on, over the first ``records`` records
        (default: all committed now; under ``torch.distributed``, the fewest any rank sees)."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise SpecError(f"epoch {epoch!r} must be a non-negative integer")
        if get_worker_info() is not None:
            raise SpecError("set_epoch is called in the main process, not in a DataLoader worker")
        count = _agreed_count(self.source, records)
        self._state.copy_(torch.tensor([int(epoch), count], dtype=torch.int64))

    def pieces(self, shards: int) -> list[list[tuple[int, int]]]:
        """This epoch's position ranges for each of ``shards`` readers (see the class docstring)."""
        return [
            [r for window in self._windows(shards, s, self.epoch, self.records) for r in window] for s in range(shards)
        ]

    def _order(self, epoch: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The epoch's chunks in reading order: ``(starts, sizes, window)`` (window number of each)."""
        c = self.chunk
        chunks = -(-n // c)
        windows = max(1, -(-chunks // max(1, self.buffer_size // c)))
        k = np.arange(chunks, dtype=np.int64)
        stratum, slot = k // windows, k % windows
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(epoch,)))
        draw = np.argsort(rng.random((-(-chunks // windows), windows)), axis=1)  # per stratum: slot -> window
        window = draw[stratum, slot]
        order = np.lexsort((stratum, window))  # by window, then stratum (ascending positions)
        starts = order * c
        return starts, np.minimum(starts + c, n) - starts, window[order]

    def _windows(self, shards: int, shard: int, epoch: int, n: int) -> list[list[tuple[int, int]]]:
        """Piece ``shard`` of ``shards``: its windows, each a list of position ranges (adjacent merged)."""
        starts, sizes, window = self._order(epoch, n)
        ends = np.cumsum(sizes)
        lo, hi = n * shard // shards, n * (shard + 1) // shards
        out: list[list[tuple[int, int]]] = []
        last = -1
        for k in range(int(np.searchsorted(ends, lo, side="right")), len(starts)):
            begin = int(ends[k] - sizes[k])  # records before chunk k
            if begin >= hi:
                break
            a, b = int(starts[k]) + max(lo, begin) - begin, int(starts[k]) + min(hi, int(ends[k])) - begin
            if window[k] != last:
                out.append([])
                last = int(window[k])
            ranges = out[-1]
            if ranges and ranges[-1][1] == a:
                ranges[-1] = (ranges[-1][0], b)
            else:
                ranges.append((a, b))
        return out

    def _shard(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        return self.rank * workers + worker, self.world_size * workers

    def _columns(self, ranges: list[tuple[int, int]]) -> dict[str, np.ndarray]:
        """The records of position ranges as numpy batch columns (see the module docstring)."""
        ids, u, (codes, offsets) = read_position_ranges(self.source, ranges)
        cols = {
            "id": ids,
            "unitary": u.astype(np.complex64, copy=False),
            "tokens": pad_tokens(codes, offsets, self.width, self.pad, np.uint8 if self.pad < 256 else np.int64),
            "length": _narrow(np.diff(offsets)),
        }
        if self.labelled:
            cols["label"] = _narrow(carried_labels(as_source(self.source)[0], ids))
        return cols

    def __iter__(self) -> Iterator[Batch]:
        shard, shards = self._shard()
        epoch, n = (int(v) for v in self._state.tolist())  # one read: epoch and count together
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(epoch, shard, shards)))
        left: dict[str, np.ndarray] | None = None
        ring = _worker_ring()  # in a DataLoader worker: batches built in shared memory
        for ranges in self._windows(shards, shard, epoch, n):
            cols = self._columns(ranges)
            if left is not None:
                cols = {k: np.concatenate([left[k], v]) for k, v in cols.items()}
            perm = rng.permutation(len(cols["id"]))
            full = len(perm) // self.batch_size * self.batch_size
            for a in range(0, full, self.batch_size):
                yield _batch(cols, perm[a : a + self.batch_size], ring)
            left = {k: v[perm[full:]] for k, v in cols.items()}
        if left is not None and len(left["id"]) and not self.drop_last:
            yield _batch(left, np.arange(len(left["id"])), ring)


def _agreed_count(source: Any, records: int | None) -> int:
    """The records to read: ``records`` (checked), else all of ``source`` now; under an initialised
    ``torch.distributed`` with several ranks, the smallest count of any rank (all_reduce MIN)."""
    n = len(source)
    if records is not None:
        if isinstance(records, bool) or not isinstance(records, numbers.Integral) or not 0 <= records <= n:
            raise SpecError(f"records {records!r} must be an integer from 0 to the {n:,} records of the dataset")
        n = int(records)
    dist = torch.distributed
    if get_worker_info() is None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        device = torch.device("cpu")
        if dist.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        count = torch.tensor([n], dtype=torch.int64, device=device)
        dist.all_reduce(count, op=dist.ReduceOp.MIN)
        n = int(count.item())
    return n


def _distributed(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``(rank, world_size)``: as given, else ``torch.distributed``'s when initialised, else ``(0, 1)``."""
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if world_size is None:
        world_size = torch.distributed.get_world_size() if initialised else 1
    if rank is None:
        rank = torch.distributed.get_rank() if initialised else 0
    world_size = _positive(world_size, "world_size")
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 0 <= rank < world_size:
        raise SpecError(f"rank {rank!r} must be an integer from 0 to world_size - 1 = {world_size - 1}")
    return int(rank), world_size
