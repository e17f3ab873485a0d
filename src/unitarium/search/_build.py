"""Building the persistent search index (:mod:`._index`) of a dataset."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import DatasetError, StorageError
from ._index import CHECK_ROWS, Stream, searchable_kind, write_index
from ._table import _check_searchable, _load
from .mitm import directory

if TYPE_CHECKING:
    from .._read.dataset import Dataset

__all__ = ["build_index", "index_bytes", "index_room"]


def index_bytes(ds: Dataset) -> int:
    """About how many bytes the index of ``ds`` takes (see :func:`build_index`): the file, and the
    table's codes and keys the build holds in memory are a small part of it."""
    n, d = len(ds), ds.gateset.dim
    if searchable_kind(ds) == "enumeration":
        src = ds.spec.source
        longest = int(getattr(src, "max_length", 0) or 0)
        if ds.spec.cost is not None or longest > 255:
            longest = int(ds.lengths().max(initial=0))
        return n * (24 * d * d + longest + 31)
    return n * d * d * 16


def index_room(ds: Dataset) -> tuple[int, int]:
    """``(bytes the index takes, bytes free where it goes)``."""
    from ._index import index_path

    where = index_path(ds.path).parent
    return index_bytes(ds), shutil.disk_usage(where).free


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
    need, free = index_room(ds)
    if need > free:
        raise StorageError(
            f"the search index of {str(ds.path)!r} ({len(ds):,} records) would take about {need / 2**30:,.1f} GiB "
            f"and {free / 2**30:,.1f} GiB are free there: not built (synth and nearest search the table without it)"
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
