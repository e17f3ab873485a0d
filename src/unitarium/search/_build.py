"""Building the persistent search index (:mod:`._index`) of a dataset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import DatasetError
from ._index import CHECK_ROWS, Stream, searchable_kind, write_index
from ._table import _check_searchable, _load
from .mitm import directory

if TYPE_CHECKING:
    from .._read.dataset import Dataset

__all__ = ["build_index"]


def build_index(dataset: Dataset | str | os.PathLike[str]) -> Path:
    """Write the search index of the complete dataset ``dataset`` (a reader or a path) beside it
    (``x.db`` -> ``x.db.index``, replacing any older one atomically) and return its path.

    A unique enumeration gets its synthesis table (move codes, the hash index, the unitaries in
    complex128 and complex64: about ``N (24 d^2 + L + 31)`` bytes for ``N`` records of at most ``L`` moves);
    any other dataset its unitaries in complex128 (``N d^2 16`` bytes, for ``nearest``). Later
    searches (``synthesize``, ``nearest``, ``approximate``, and the CLI's ``synth``/``nearest``)
    map it instead of loading the table. Costs one load of the table (what the first search of
    a handle costs without an index)."""
    if not hasattr(dataset, "spec"):
        from .._read.dataset import Dataset as Reader

        dataset = Reader(dataset)  # type: ignore[arg-type]
    ds: Dataset = dataset  # type: ignore[assignment]
    if not ds.complete:
        raise DatasetError(
            f"{str(ds.path)!r} is not complete (its generation was interrupted or is still running): "
            "an index needs every record; re-run its generate command to finish it"
        )
    n, d = len(ds), ds.gateset.dim
    kind = searchable_kind(ds)
    extra: dict[str, Any] = {}
    if kind == "enumeration":
        _check_searchable(ds, "index")
        table = _load(ds)
        keys = table.index
        buckets, bits = directory(keys.packed, keys.row_bits)
        filt, filt_bits = table.bloom
        arrays: dict[str, Any] = {
            "lengths": table.lengths,
            "codes": table.codes,
            "starts": table.starts,
            "keys": keys.packed,
            "directory": buckets,
            "bloom": filt,
            "unitaries": Stream((n, d, d), table.block, rows=CHECK_ROWS),
            "coarse": Stream((n, d, d), table.block, "<c8"),
        }
        extra = {
            "max_length": table.max_length,
            "row_bits": keys.row_bits,
            "directory_bits": bits,
            "bloom_bits": filt_bits,
        }
    else:
        arrays = {"unitaries": Stream((n, d, d), lambda a, b: ds.unitaries(a, b).astype(np.complex128))}
    return write_index(ds, kind, arrays, extra)
