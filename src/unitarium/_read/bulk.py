"""Bulk reads of a reader: blocks of a range, unitaries and circuits of a range or of any ids
(only the checksummed pages holding them are read), iteration, dedup keys, and the checked slow
road of records by id (:mod:`.single` takes it off its fast road). Functions of a reader."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.circuit import Circuit, Record
from .._core.codec import Block
from .._spec.sources import recompute
from .locate import check_id, checked_ids, id_range, spans
from .records import concat_ragged, ragged_take

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["blocks", "codes", "dedup_keys", "gather", "iterate", "slow_record", "slow_records", "unitaries"]

READ_RECORDS = 1 << 16
"""Records per piece when a large range is read (bounds the temporaries of computed unitaries)."""


def blocks(ds: Dataset, start: int, stop: int) -> Iterator[tuple[int, Block]]:
    """``(first id, block part)`` for the records ``[start, stop)``, in order, checked."""
    fmt = ds.format
    for span in spans(ds, start, stop):
        yield span[2] + span[4], ds._store.read(fmt, span)


def unitaries_of(ds: Dataset, block: Block) -> np.ndarray:
    """The unitaries of a block part: stored (in native byte order), or recomputed from its circuits."""
    if block.unitaries is not None:
        return block.unitaries.astype(ds.format.unitary_dtype.newbyteorder("="))
    return recompute(ds._context, block.codes.astype(np.int64), block.offsets)


def finite(ds: Dataset, u: np.ndarray, ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """``u`` (of records ``ids``) unless one holds NaN or inf: a record is never served with one
    (checked where records are built; bulk ``unitaries()`` is left to verify)."""
    if not np.isfinite(u).all():
        k = int(np.flatnonzero(~np.isfinite(u).reshape(len(u), -1).all(axis=1))[0])
        raise ds._store.damaged(
            (int(ids[k]), int(ids[k]) + 1), "its stored unitary holds NaN or infinite entries (forged, or a bug)"
        )
    return u


def check_codes(ds: Dataset, block: Block, first: int) -> Block:
    """``block`` unless a move code is past the gate set's last move."""
    if block.codes.size and int(block.codes.max()) >= len(ds.gateset.moves):
        raise ds._store.damaged(
            (first, first + block.count), f"move code {int(block.codes.max())} is past the last move"
        )
    return block


def gather(ds: Dataset, ids: np.ndarray) -> tuple[list[Block], list[np.ndarray]]:
    """For sorted unique ``ids``: the block parts holding them (only the checksummed pages
    that hold some of them: runs of adjacent pages are read together), and the ids' rows in
    each part."""
    parts, rows = [], []
    page = ds.format.page
    k = 0
    while k < len(ids):
        task_id, shard, first, count, _, _ = spans(ds, int(ids[k]), int(ids[k]) + 1)[0]
        end = int(np.searchsorted(ids, first + count))
        want = ids[k:end] - first
        cuts = np.flatnonzero(np.diff(want // page) > 1) + 1  # a gap of a page or more: read apart
        for group in np.split(want, cuts):
            lo, hi = int(group[0]), int(group[-1]) + 1
            block = ds._store.read(ds.format, (task_id, shard, first, count, lo, hi))
            parts.append(check_codes(ds, block, first))
            rows.append(group - lo)
        k = end
    return parts, rows


def slow_record(ds: Dataset, key: Any) -> Record:
    """Record ``key`` through SQLite: its task found by a query, its page read and checked."""
    i = (
        check_id(ds, key)
        if isinstance(key, bool) or not isinstance(key, int | np.integer) or not 0 <= key < 2**62
        else int(key)  # (past 2**63 SQLite cannot even compare it: check_id says out of range)
    )
    found = ds._query(
        "SELECT t.task_id, t.shard, t.first_id, t.count, p.first_id + p.count FROM tasks t "
        "LEFT JOIN tasks p ON p.task_id = t.task_id - 1 WHERE t.first_id <= ? AND t.count > 0 "
        "ORDER BY t.first_id DESC LIMIT 1",
        (i,),
    )
    if not found or i >= found[0][2] + found[0][3] or i >= len(ds):
        check_id(ds, i)  # raises for ids past the end
        raise ds._store.damaged((i, i + 1), "no task holds this record")
    task_id, shard, first, count, chained = found[0]
    if first != (0 if task_id == 0 else chained):  # the chain of first ids, at this task
        raise ds._store.damaged((i, i + 1), f"task {task_id} starts at id {first}, its predecessor ends at {chained}")
    block = check_codes(ds, ds._store.read(ds.format, (task_id, shard, first, count, i - first, i - first + 1)), i)
    unitary = finite(ds, unitaries_of(ds, block), [i])[0]
    return Record(i, Circuit(block.codes.astype(np.int64), ds.gateset), unitary, ds.spec.cost)


def slow_records(ds: Dataset, ids: np.ndarray) -> list[Record]:
    """Records ``ids`` (checked; any order, repeats allowed) through SQLite, a page group at a time."""
    order = np.unique(ids)
    parts, rows = gather(ds, order)
    by_id: dict[int, Record] = {}
    k = 0
    for block, want in zip(parts, rows, strict=True):
        u = finite(ds, unitaries_of(ds, block)[want], order[k : k + len(want)])
        for j, r in enumerate(want):
            a, b = int(block.offsets[r]), int(block.offsets[r + 1])
            rid = int(order[k])
            by_id[rid] = Record(rid, Circuit(block.codes[a:b].astype(np.int64), ds.gateset), u[j], ds.spec.cost)
            k += 1
    return [by_id[int(i)] for i in ids]


def unitaries(ds: Dataset, start: int | Sequence[int] | np.ndarray = 0, stop: int | None = None) -> np.ndarray:
    """See :meth:`Dataset.unitaries`."""
    d = ds.gateset.dim
    dtype = ds.format.unitary_dtype.newbyteorder("=")
    if isinstance(start, list | tuple | np.ndarray):
        order, inverse = np.unique(checked_ids(ds, start), return_inverse=True)
        parts, rows = gather(ds, order)
        found = [unitaries_of(ds, b)[r] for b, r in zip(parts, rows, strict=True)]
        stacked = np.concatenate(found) if found else np.zeros((0, d, d), dtype=dtype)
        return stacked[inverse]
    a, b = id_range(ds, start, stop)
    out = np.empty((b - a, d, d), dtype=dtype)
    for first, block in blocks(ds, a, b):
        # stored: one copy, straight from the BLOB's bytes (little-endian cast on the way)
        part = block.unitaries if block.unitaries is not None else unitaries_of(ds, block)
        out[first - a : first - a + block.count] = part
    return out


def codes(
    ds: Dataset, start: int | Sequence[int] | np.ndarray = 0, stop: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """See :meth:`Dataset.codes`."""
    if isinstance(start, list | tuple | np.ndarray):
        order, inverse = np.unique(checked_ids(ds, start), return_inverse=True)
        parts, rows = gather(ds, order)
        found = [
            ragged_take(b.codes.astype(np.int64), b.offsets.astype(np.int64), r)
            for b, r in zip(parts, rows, strict=True)
        ]
        return ragged_take(*concat_ragged(found), inverse)
    a, b = id_range(ds, start, stop)
    pieces, offsets, base = [], [np.zeros(1, np.int64)], 0
    for first, block in blocks(ds, a, b):
        check_codes(ds, block, first)
        pieces.append(block.codes.astype(np.int64))
        offsets.append(block.offsets[1:] + base)
        base += int(block.offsets[-1])
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.int64)), np.concatenate(offsets)


def iterate(ds: Dataset) -> Iterator[Record]:
    """Records in id order, a block at a time."""
    n = len(ds)
    for a in range(0, n, READ_RECORDS):
        for first, block in blocks(ds, a, min(n, a + READ_RECORDS)):
            check_codes(ds, block, first)
            u = unitaries_of(ds, block)
            moves = block.codes.astype(np.int64)
            for k in range(block.count):
                c = Circuit(moves[block.offsets[k] : block.offsets[k + 1]], ds.gateset)
                yield Record(first + k, c, u[k], ds.spec.cost)


def dedup_keys(ds: Dataset) -> np.ndarray:
    """The 128-bit dedup keys ``(n, 2)`` of every record (unique datasets; to resume one)."""
    parts = [b.keys for _, b in blocks(ds, 0, len(ds)) if b.keys is not None]
    return np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
