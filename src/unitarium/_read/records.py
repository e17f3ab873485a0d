"""Bulk reads by id, for every reader: :func:`gather` (unitaries and circuits of any ids, in any order,
repeats allowed) over the reader's own page-wise reads (``Dataset.unitaries(ids)``,
``Dataset.codes(ids)``), and the ragged-array helpers the reader, splits, PyTorch and export share.

Circuits travel as ragged arrays ``(codes, offsets)``: flat int64 move codes and ``n + 1`` int64
offsets from 0, record ``k`` being ``codes[offsets[k]:offsets[k + 1]]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._errors import RecordIndexError

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["chunk_records", "concat_ragged", "gather", "pad_tokens", "ragged_take", "read_ranges"]

_CHUNK_BYTES = 32 << 20
"""Unitary bytes read per piece when a reader walks many records (splits, views, exports)."""


def chunk_records(ds: Dataset) -> int:
    """Records per piece of :data:`_CHUNK_BYTES` of complex128 unitaries of ``ds``."""
    d = ds.gateset.dim
    return max(1, _CHUNK_BYTES // (d * d * 16))


def gather(
    ds: Dataset, ids: np.ndarray, *, unitaries: bool = True, codes: bool = True
) -> tuple[np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
    """Unitaries ``(n, d, d)`` and circuits ``(codes, offsets)`` of records ``ids`` (any order,
    repeats allowed), each from the reader's bulk read by id (only the pages holding them are read)."""
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ds)
    if len(ids) and (ids.min() < 0 or ids.max() >= n):
        bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
        raise RecordIndexError(f"record id {bad} is out of range: the dataset has {n} records (0..{n - 1})")
    return (ds.unitaries(ids) if unitaries else None), (ds.codes(ids) if codes else None)


def read_ranges(
    ds: Dataset, ranges: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Records of the id ranges ``[a, b)`` of ``ds``, in the order given, in one pass: each block
    part read and checked once for both columns (``ds.unitaries(a, b)`` then ``ds.codes(a, b)``
    would read and check it twice). Returns ``(ids, unitaries (n, d, d), (codes, offsets))``."""
    d = ds.gateset.dim
    n = sum(b - a for a, b in ranges)
    out = np.empty((n, d, d), dtype=ds.format.unitary_dtype.newbyteorder("="))
    ids = np.empty(n, dtype=np.int64)
    codes: list[np.ndarray] = []
    offsets, base, k = [np.zeros(1, np.int64)], 0, 0
    for a, b in ranges:
        ids[k : k + b - a] = np.arange(a, b)
        for first, block in ds._blocks(a, b):
            ds._check_codes(block, first)
            part = block.unitaries if block.unitaries is not None else ds._unitaries_of(block)
            out[k : k + block.count] = part
            codes.append(block.codes)
            offsets.append(block.offsets[1:] + base)
            base += int(block.offsets[-1])
            k += block.count
    flat = np.concatenate(codes).astype(np.int64) if codes else np.zeros(0, np.int64)
    return ids, out, (flat, np.concatenate(offsets).astype(np.int64))


def ragged_take(codes: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``rows`` (any order, repeats allowed) of the ragged array ``(codes, offsets)``."""
    starts, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
    out_off = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_off[1:])
    index = np.repeat(starts - out_off[:-1], lengths) + np.arange(out_off[-1], dtype=np.int64)
    return codes[index], out_off


def concat_ragged(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One ragged array of several, in order."""
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    codes = np.concatenate([c for c, _ in parts])
    shifts = np.cumsum([0] + [int(o[-1]) for _, o in parts[:-1]])
    offsets = np.concatenate(
        [np.zeros(1, dtype=np.int64)] + [o[1:] + s for (_, o), s in zip(parts, shifts, strict=True)]
    )
    return codes, offsets


def pad_tokens(
    codes: np.ndarray, offsets: np.ndarray, width: int, pad: int, dtype: type[np.integer] = np.int64
) -> np.ndarray:
    """Ragged circuits ``(codes, offsets)`` as an ``(n, width)`` array (int64 unless ``dtype``)
    padded with ``pad``."""
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    out = np.full((n, width), pad, dtype=dtype)
    if n and lengths.min() == lengths.max():
        out[:, : int(lengths[0])] = codes.reshape(n, -1)
        return out
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(len(codes)) - np.repeat(offsets[:-1], lengths)
    out[rows, cols] = codes
    return out
