"""What a dataset says of itself: its metadata, spec and block format (checked against each other),
its committed state and summary, and the ``info`` summary. Functions of a reader's store and path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core.codec import BlockFormat
from .._errors import DatasetError, NotADatasetError, UnitariumError
from .._spec.spec import Spec
from .._storage.blocks import BlockStore
from .._storage.schema import block_format, damaged_meta, load_json, read_meta
from .._storage.sqlite import bounded, path_text, sqlite_errors

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["checked_format", "info", "load_meta", "load_spec", "state"]


def load_meta(store: BlockStore, path: Path) -> dict[str, Any]:
    """The ``meta`` table as a dict, refused unless it holds the four parts every dataset has."""
    conn = store.connection()
    try:
        with sqlite_errors(store.manifest, "reading"), bounded(conn, store.manifest):
            meta = read_meta(conn)
    except DatasetError:
        raise
    except ValueError as exc:  # not JSON
        raise damaged_meta(path, exc) from exc
    if not all(isinstance(meta.get(key), dict) for key in ("spec", "format", "state", "summary")):
        raise damaged_meta(path, "no 'spec', 'format', 'state' or 'summary'")
    return meta


def load_spec(meta: dict[str, Any], path: Path) -> Spec:
    """The spec the dataset was generated from."""
    try:
        return Spec.from_json(meta["spec"])
    except (UnitariumError, LookupError, TypeError, ValueError, AttributeError) as exc:
        detail = str(exc) if isinstance(exc, UnitariumError) else f"{type(exc).__name__}: {exc}"
        raise NotADatasetError(f"{path_text(path)} holds a spec this unitarium cannot use ({detail})") from exc


def checked_format(meta: dict[str, Any], spec: Spec, store: BlockStore, path: Path) -> BlockFormat:
    """The block layout, checked against what the spec implies."""
    fmt, want = meta["format"], block_format(spec, store.identity)
    checks = {
        "dim": want.dim,
        "unitary_dtype": want.unitary_dtype.name,
        "code_dtype": want.code_dtype.name,
        "unitaries": "stored" if want.stored_unitaries else "computed",
        "page_records": want.page,
    }
    for key, value in checks.items():
        if fmt.get(key) != value:
            raise damaged_meta(path, f"format {key} {fmt.get(key)!r} disagrees with its spec")
    return want


def state(ds: Dataset, key: str) -> dict[str, Any]:
    """A JSON row of ``meta`` (``state``, ``summary``) as committed now ({} when absent)."""
    row = ds._query("SELECT value FROM meta WHERE key = ?", (key,))
    try:
        value = load_json(row[0][0]) if row else {}
    except ValueError as exc:
        raise damaged_meta(ds.path, exc) from exc
    return value if isinstance(value, dict) else {}


def info(ds: Dataset) -> dict[str, Any]:
    """Summary: spec, record and task counts, length histogram, sizes (from the committed
    summary: time and memory independent of the record count)."""
    store = ds._store
    summary = ds.summary
    n = int(summary.get("records", 0))
    hist = {int(k): int(v) for k, v in sorted(summary.get("lengths", {}).items(), key=lambda kv: int(kv[0]))}
    files = [store.manifest, Path(f"{store.manifest}-wal")]
    store.check_segments()  # foreign, swapped or replaced: said here, not at the first read
    for _, segment in store.segments():
        store.check_segment(segment)  # missing or truncated: said here, not at the first read
        files.append(segment)
    size = sum(p.stat().st_size for p in files if p.exists())
    return {
        "path": os.fsdecode(ds.path),
        "layout": "directory" if store.directory is not None else "file",
        "spec": ds.meta["spec"],
        "description": ds.spec.describe(),
        "records": n,
        "tasks_done": int(summary.get("tasks", 0)),
        "candidates": int(summary.get("candidates", 0)),
        "complete": ds.complete,
        "moves": [m.text for m in ds.gateset.moves],
        "length_histogram": hist,
        "shards": len(files) - 2,
        "file_bytes": size,
        "bytes_per_record": size / n if n else None,
    }
