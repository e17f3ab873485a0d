"""Parquet shards of a dataset or view, as a Hugging Face dataset repository holds them (``pip install
'unitarium[parquet]'``).

One split is written as ``data/<split>-00000-of-000NN.parquet`` ... (zstd, at most about 500 MB
each: a shard holds as many records as fit in 500 MB uncompressed). Columns, one row per record:

============  ==================================  ================================================
column        Arrow type                          meaning
============  ==================================  ================================================
``id``        int64                               record id in the source dataset
``circuit``   string                              ``str(rec.circuit)``, e.g. ``"h 0; cx 0 1"``
``tokens``    list<int32>                         move codes (``moves[c]`` in the card)
``length``    int32                               number of moves
``unitary``   fixed_size_list<float32>[2 d^2]     ``U`` row-major, re/im interleaved:
                                                  ``U[r, c] = x[2(rd + c)] + i x[2(rd + c) + 1]``
``label``     int32                               only when the dataset carries labels (a complete
                                                  ``unitarium label`` file beside it): the least
                                                  cost under the labelling table's cost model,
                                                  ``-(R + 1)`` beyond its reach ``R``
============  ==================================  ================================================

The file's schema metadata holds ``unitarium`` (JSON: spec, dim, moves, conventions; ``label``:
the labelling table's gates and cost model, its reach, what the values mean).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import MissingOptionalLibraryError
from .._read.labels import carried_labels, carries_labels, label_meta
from .._read.split import as_source, max_length, read_positions

__all__ = ["SHARD_BYTES", "shard_names", "write_split"]

SHARD_BYTES = 500 * 10**6
"""Upper bound on a shard's uncompressed size; compressed files are smaller."""

_CHUNK_RECORDS = 1 << 16


def _pyarrow() -> tuple[Any, Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingOptionalLibraryError("pyarrow", "Parquet export", "parquet") from exc
    return pa, pc, pq


def record_bytes(source: Any) -> int:
    """An upper bound on one record's uncompressed bytes in a shard (longest circuit of the spec)."""
    ds, _ = as_source(source)
    d, length = ds.gateset.dim, max_length(ds)
    widest = max(len(m.text) for m in ds.gateset.moves) + 2  # "; " between moves
    return 8 + 8 * d * d + 4 + 4 + 4 * length + 4 + widest * length


def shard_names(split: str, records: int, per_record: int) -> list[tuple[str, int, int]]:
    """``(file name, first position, stop position)`` of each shard of a split of ``records`` records."""
    per_shard = max(1, SHARD_BYTES // per_record)
    count = max(1, math.ceil(records / per_shard))
    return [
        (f"{split}-{k:05d}-of-{count:05d}.parquet", k * per_shard, min(records, (k + 1) * per_shard))
        for k in range(count)
    ]


def schema_and_meta(source: Any) -> tuple[Any, dict[str, Any]]:
    """The Arrow schema of the shards and the ``unitarium`` metadata it carries."""
    pa, _, _ = _pyarrow()
    ds, _ = as_source(source)
    d = ds.gateset.dim
    meta = {
        "spec": ds.spec.to_json(),
        "dim": d,
        "moves": [m.text for m in ds.gateset.moves],
        "qubit_order": "qiskit: qubit 0 is the least significant bit of the basis index",
        "unitary_layout": "row-major, re/im interleaved float32, 2*dim*dim values",
    }
    fields = [
        ("id", pa.int64()),
        ("circuit", pa.string()),
        ("tokens", pa.list_(pa.int32())),
        ("length", pa.int32()),
        ("unitary", pa.list_(pa.float32(), 2 * d * d)),
    ]
    if carries_labels(ds):  # a complete labels file beside the dataset
        fields.append(("label", pa.int32()))
        meta["label"] = label_meta(ds)
    schema = pa.schema(fields, metadata={"unitarium": json.dumps(meta)})
    return schema, meta


def table(source: Any, start: int, stop: int, schema: Any, move_texts: Any) -> Any:
    """Positions ``start .. stop-1`` of a dataset or view as an Arrow table of ``schema``."""
    pa, pc, _ = _pyarrow()
    ids, u, c = read_positions(source, start, stop)
    assert u is not None and c is not None
    codes, offsets = c
    tokens = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(codes.astype(np.int32)))
    words = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), move_texts.take(pa.array(codes)))
    flat = np.ascontiguousarray(u, dtype=np.complex64).view(np.float32).reshape(-1)
    d2 = 2 * u.shape[-1] ** 2
    columns = [
        pa.array(ids, type=pa.int64()),
        pc.binary_join(words, "; "),
        tokens,
        pa.array(np.diff(offsets).astype(np.int32)),
        pa.FixedSizeListArray.from_arrays(pa.array(flat), d2),
    ]
    if "label" in schema.names:
        columns.append(pa.array(carried_labels(as_source(source)[0], ids).astype(np.int32)))
    return pa.Table.from_arrays(columns, schema=schema)


def _chunks(start: int, stop: int) -> Iterator[tuple[int, int]]:
    for a in range(start, stop, _CHUNK_RECORDS):
        yield a, min(stop, a + _CHUNK_RECORDS)


def write_split(source: Any, directory: Path, split: str) -> list[Path]:
    """Write every record of ``source`` (a dataset or view) as the shards of split ``split`` in
    ``directory``; returns the files written."""
    pa, _, pq = _pyarrow()
    schema, meta = schema_and_meta(source)
    move_texts = pa.array(meta["moves"], type=pa.string())
    written = []
    for name, start, stop in shard_names(split, len(source), record_bytes(source)):
        path = directory / name
        # an open file, not the path: pyarrow cannot encode a path that is not UTF-8 (legal on Linux)
        with (
            path.open("wb") as f,
            pq.ParquetWriter(f, schema, compression="zstd", use_dictionary=["circuit"]) as writer,
        ):
            for a, b in _chunks(start, stop):
                writer.write_table(table(source, a, b, schema, move_texts), row_group_size=_CHUNK_RECORDS)
            if start == stop:
                writer.write_table(schema.empty_table())
        written.append(path)
    return written
