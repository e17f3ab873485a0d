"""Lookup of a unitary through a unique dataset's index (the ``lookup`` table of each shard)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.canonical import equal_up_to_phase
from .._core.circuit import Record
from .._core.exact import lookup_probes
from .._errors import DatasetError, SpecError
from .._storage.sqlite import path_text, sqlite_errors

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["lookup", "target"]


def lookup(ds: Dataset, unitary: Any, *, atol: float = 1e-5) -> list[Record]:
    """See :meth:`Dataset.lookup`."""
    u = target(ds, unitary)
    if not (isinstance(atol, int | float) and 0 <= atol < float("inf")):
        raise SpecError(f"atol {atol!r} must be a finite number >= 0")
    if not ds.spec.unique:
        raise DatasetError(f"{path_text(ds.path)} has no lookup index: only --unique datasets have one")
    store = ds._store
    probes = lookup_probes(ds.spec.keys, u)  # tableau keys: none when u is not a Clifford
    if not probes:
        return []
    marks = ",".join("?" * len(probes))
    hits: set[tuple[int, int]] = set()
    shards = [0] if store.directory is None else [s for s, _ in store.segments()]
    for shard in shards:
        conn = store.shard(shard)
        with sqlite_errors(store.manifest if shard == 0 else store.segment_path(shard), "reading"):
            rows = conn.execute(f"SELECT task_id, row FROM lookup WHERE key IN ({marks})", tuple(probes)).fetchall()
        hits.update((int(t), int(r)) for t, r in rows)
    ids = []
    for task_id, row in sorted(hits):
        found = ds._query("SELECT first_id, count FROM tasks WHERE task_id = ?", (task_id,))
        if found and 0 <= row < found[0][1]:  # tasks the manifest does not list are ignored
            ids.append(found[0][0] + row)
    records = ds[np.array(sorted(ids), dtype=np.int64)] if ids else []
    return [r for r in records if equal_up_to_phase(r.unitary, u, atol=atol)]


def target(ds: Dataset, unitary: Any) -> np.ndarray:
    """A lookup target as a finite ``(d, d)`` complex128 matrix, or a clear SpecError."""
    from .._core.convert import as_unitary

    d = ds.gateset.dim
    if isinstance(unitary, np.ndarray) and unitary.dtype.kind not in "biufc":
        raise SpecError(f"lookup needs a {d}x{d} matrix of numbers, got an array of {unitary.dtype}")
    arr = np.asarray(as_unitary(unitary, ds.gateset))
    if arr.shape != (d, d):
        raise SpecError(f"lookup needs a {d}x{d} matrix, got shape {arr.shape}")
    arr = arr.astype(np.complex128)
    if not np.all(np.isfinite(arr)):
        raise SpecError(f"lookup needs a finite {d}x{d} matrix: this one has NaN or infinite entries")
    return arr
