"""Export a dataset (or a view) to a directory other tools read without unitarium.

``export(ds, "out", format="parquet", split={"train": 0.8, "test": 0.2}, seed=0)`` writes

- ``parquet``: ``out/data/<split>-00000-of-000NN.parquet`` (see :mod:`unitarium.interop.parquet`),
  the layout of a Hugging Face dataset repository;
- ``npz`` (small sets, loaded whole by ``numpy.load``): ``out/data/<split>.npz`` with arrays ``id``
  (int64), ``circuit`` (unicode), ``tokens`` (int64 ``(n, L)``, padded with the number of moves),
  ``length`` (int64), ``unitary`` (complex64 ``(n, d, d)``) and ``moves`` (unicode);

and, when the dataset carries labels (a complete ``unitarium label`` file beside it:
:mod:`unitarium._read.labels`), a ``label`` column (int32; npz: int64): the least cost under the
labelling table's cost model, ``-(R + 1)`` beyond its reach ``R``;

and ``out/README.md``, a dataset card: YAML ``configs`` naming each split's files, the columns, the
conventions and the spec. Without ``split`` everything is one split, ``train``.

**Split names** are Hugging Face's: ``train``, ``validation``, ``test`` (any other word is kept as
given). The other names ``datasets`` reads as these (:data:`SPLIT_ALIASES`: ``val``, ``valid``,
``dev``; ``training``; ``testing``, ``eval``, ``evaluation``) are written under the standard name,
so ``datasets.load_dataset("parquet", data_dir=...)`` gives back the split names written, whether
``data_dir`` is ``out`` or ``out/data``.

The directory is built under a temporary name beside ``out`` (``.out.unitarium-export-<pid>-<hex>``,
``flock``-ed while its exporter lives) and renamed into place when complete: ``out`` must not exist or
be an empty directory, and a failed export leaves nothing behind; the temporaries of an exporter killed
with -9 are removed by the next export into that directory.

**A dataset still being written** (or an interrupted run) is refused unless ``allow_incomplete``:
then the records committed when the export starts are exported (a prefix fixed once: the counts
returned, printed and written in the card are the rows written), and the card says so.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import DatasetError, SpecError, StorageError
from .._read.labels import carried_labels, carries_labels, label_meta
from .._read.records import pad_tokens
from .._read.split import as_source, max_length, parse_fractions, read_positions, split_source
from .._storage.manifest import remove_abandoned
from .._storage.sqlite import path_text

__all__ = ["FORMATS", "NPZ_MAX_BYTES", "SPLIT_ALIASES", "export", "split_names"]

FORMATS = ("parquet", "npz")
NPZ_MAX_BYTES = 1 << 30
"""``npz`` holds everything in memory: larger exports are refused (use Parquet)."""

SPLIT_ALIASES = {
    "val": "validation",
    "valid": "validation",
    "dev": "validation",
    "training": "train",
    "testing": "test",
    "eval": "test",
    "evaluation": "test",
}
"""Split names Hugging Face ``datasets`` reads as ``train``/``validation``/``test`` (its
``SPLIT_KEYWORDS``, by file name): written under that name, so a split loads as it was written."""


def export(
    source: Any,
    out: str | os.PathLike[str],
    *,
    format: str = "parquet",
    split: Mapping[str, float] | str | None = None,
    seed: int = 0,
    stratify_by_length: bool = False,
    allow_incomplete: bool = False,
) -> dict[str, int]:
    """Write ``source`` (a :class:`~unitarium.Dataset` or view) to directory ``out``; returns
    ``{split name: records}``. ``split`` takes fractions as :meth:`~unitarium.Dataset.split` does.
    Raises :class:`SpecError` for a bad format, fractions, or an ``out`` that exists and is not empty
    (nothing is changed then), :class:`DatasetError` for a dataset whose run has not finished unless
    ``allow_incomplete`` (then the records committed now are exported, and the card says so)."""
    if format not in FORMATS:
        raise SpecError(f"export format {format!r} is not supported: use {' or '.join(FORMATS)}")
    ds, ids = as_source(source)
    if split is not None:
        split = split_names(split)
    target = _check_target(Path(out))
    snapshot = ds.snapshot()  # the count, fixed once, and whether the run had finished
    if ids is None:
        source = snapshot
    if not snapshot.complete and not allow_incomplete:
        raise DatasetError(
            f"{path_text(ds.path)} is not complete ({len(snapshot):,} records so far: still being generated, or "
            f"interrupted): finish it with its generate command, or pass --allow-incomplete "
            f"(allow_incomplete=True) to export what it holds now (nothing was written)"
        )
    if format == "npz":
        _check_npz_size(source)
    parts = (
        {"train": source}
        if split is None
        else split_source(source, split, seed=seed, stratify_by_length=stratify_by_length)
    )
    remove_abandoned(target.parent, _TEMPORARY)
    tmp = target.parent / f".{target.name}.unitarium-export-{os.getpid()}-{secrets.token_hex(4)}"
    lock = None
    try:
        tmp.mkdir()
        lock = _lock(tmp)
        _write(parts, tmp, format, source, complete=snapshot.complete)
        if target.exists():
            target.rmdir()  # empty (checked); rename cannot replace it everywhere
        os.rename(tmp, target)
    except OSError as exc:
        raise _storage_error(exc, target) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if lock is not None:
            os.close(lock)
    return {name: len(view) for name, view in parts.items()}


def split_names(fractions: Mapping[str, float] | str) -> dict[str, float]:
    """Checked split fractions (as :meth:`~unitarium.Dataset.split` takes them) under Hugging Face's
    split names: ``val`` -> ``validation`` and the other :data:`SPLIT_ALIASES`; order kept. Raises
    :class:`SpecError` when two names given stand for the same split (``val`` and ``validation``)."""
    out: dict[str, float] = {}
    given: dict[str, str] = {}
    for name, value in parse_fractions(fractions).items():
        standard = SPLIT_ALIASES.get(name, name)
        if standard in out:
            raise SpecError(
                f"split names {given[standard]!r} and {name!r} both name the {standard!r} split: give it once"
            )
        out[standard], given[standard] = value, name
    return out


_TEMPORARY = re.compile(r"\..+\.unitarium-export-(\d+)(?:-[0-9a-f]+)?", re.DOTALL)
"""An export's temporary directory (the pid of its exporter; older ones had no random part)."""


def _lock(tmp: Path) -> int:
    """Hold ``tmp``'s ``flock`` while this export lives: another export never removes it."""
    fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def _check_target(target: Path) -> Path:
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        what = "a file" if not target.is_dir() else "a directory that is not empty"
        raise SpecError(f"export target {str(target)!r} is {what}: choose a new directory (nothing was written)")
    if not target.parent.is_dir():
        raise SpecError(f"cannot export to {str(target)!r}: {str(target.parent)!r} is not an existing directory")
    return target


def _check_npz_size(source: Any) -> None:
    from .parquet import record_bytes

    size = len(source) * record_bytes(source)
    if size > NPZ_MAX_BYTES:
        raise SpecError(
            f"--format npz is for small sets: {len(source):,} records take about {size / 2**30:.1f} GiB in memory "
            f"(limit {NPZ_MAX_BYTES / 2**30:.0f} GiB): use --format parquet"
        )


def _storage_error(exc: OSError, target: Path) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        why = "no space (disk full, quota or file size limit)"
    else:
        why = exc.strerror or str(exc)
    return StorageError(f"exporting to {str(target)!r} failed: {why}; nothing was written")


def _write(parts: dict[str, Any], tmp: Path, format: str, source: Any, *, complete: bool = True) -> None:
    (tmp / "data").mkdir(parents=True)
    files: dict[str, list[str]] = {}
    for name, view in parts.items():
        if format == "parquet":
            from .parquet import write_split

            files[name] = [p.name for p in write_split(view, tmp / "data", name)]
        else:
            _write_npz(view, tmp / "data" / f"{name}.npz")
            files[name] = [f"{name}.npz"]
    picture = _profile_figure(source, tmp)
    # a source path that is not UTF-8 is shown escaped: the card stays valid UTF-8
    text = card(source, parts, files, format, complete=complete, figure=picture)
    (tmp / "README.md").write_text(text, encoding="utf-8", errors="backslashreplace")
    for path in [*tmp.rglob("*"), tmp]:
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())
    with contextlib.suppress(OSError):
        fd = os.open(tmp / "data", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _profile_figure(source: Any, tmp: Path) -> str | None:
    """``profile.png`` beside the card (the dataset's lengths, records per task, move frequencies:
    :mod:`unitarium.plot`) when matplotlib is installed (``unitarium[plot]``); else None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from ..plot import figure, profile

    ds, _ = as_source(source)
    figure(profile(ds), tmp / "profile.png")
    return "profile.png"


def _write_npz(view: Any, path: Path) -> None:
    ds, _ = as_source(view)
    moves = [m.text for m in ds.gateset.moves]
    ids, u, c = read_positions(view, 0, len(view))
    assert u is not None and c is not None
    codes, offsets = c
    words = np.array(moves, dtype=str)[codes] if len(codes) else np.zeros(0, dtype=str)
    circuit = np.array(["; ".join(words[a:b]) for a, b in itertools.pairwise(offsets.tolist())], dtype=str)
    arrays: dict[str, Any] = {
        "id": ids,
        "circuit": circuit,
        "tokens": pad_tokens(codes, offsets, max_length(view), len(moves)),
        "length": np.diff(offsets),
        "unitary": u.astype(np.complex64),
        "moves": np.array(moves, dtype=str),
    }
    if carries_labels(ds):
        arrays["label"] = carried_labels(ds, ids)
    np.savez_compressed(path, **arrays)


_COLUMNS = {
    "parquet": """| column | type | meaning |
|---|---|---|
| `id` | int64 | record id in the source dataset |
| `circuit` | string | the circuit as text, e.g. `h 0; cx 0 1` (gates applied left to right) |
| `tokens` | list of int32 | move codes: `tokens[k]` is move `moves[tokens[k]]` below |
| `length` | int32 | number of moves |
| `unitary` | fixed-size list of {n} float32 | the unitary, row-major, re/im interleaved (below) |

`U[r, c] = x[2 * (r * {d} + c)] + 1j * x[2 * (r * {d} + c) + 1]`:

```python
import numpy as np
u = np.asarray(row["unitary"], dtype=np.float32).view(np.complex64).reshape({d}, {d})
```""",
    "npz": """Each `data/<split>.npz` holds arrays `id` (int64), `circuit` (text), `tokens` (int64, `(n, {L})`, padded
with {pad}, the number of moves), `length` (int64), `unitary` (complex64, `(n, {d}, {d})`) and `moves` (text).

```python
import numpy as np
z = np.load("data/train.npz")   # no pickle needed
z["unitary"][0], z["circuit"][0]
```""",
}


def card(
    source: Any,
    parts: dict[str, Any],
    files: dict[str, list[str]],
    format: str,
    *,
    complete: bool = True,
    figure: str | None = None,
) -> str:
    """The dataset card (``README.md``): YAML ``configs`` front matter, columns, conventions, spec;
    a dataset exported before its run finished (``complete`` False) is said to be incomplete;
    ``figure``: a picture of the dataset beside the card, shown under the split table."""
    ds, _ = as_source(source)
    picture = (
        f"\n\n![circuit lengths, records per task and move frequencies of {ds.path.name}]({figure})" if figure else ""
    )
    note = "" if complete else "\n\n" + _incomplete_note(ds, sum(len(v) for v in parts.values()))
    d, moves = ds.gateset.dim, [m.text for m in ds.gateset.moves]
    yaml_files = "\n".join(f"  - split: {name}\n    path: data/{name}-*" for name in parts)
    if format == "npz":
        yaml_files = "\n".join(f"  - split: {name}\n    path: data/{name}.npz" for name in parts)
    sizes = "\n".join(f"| {name} | {len(view):,} | {', '.join(files[name])} |" for name, view in parts.items())
    columns = _COLUMNS[format].format(n=2 * d * d, d=d, L=max_length(source), pad=len(moves)) + _label_note(ds)
    spec = json.dumps(ds.spec.to_json(), indent=2)
    return f"""---
configs:
- config_name: default
  data_files:
{yaml_files}
tags:
- quantum-computing
- quantum-circuits
- unitary
---

# {ds.path.name}: {ds.spec.describe()}

Quantum circuits and the unitaries they implement, exported by
[unitarium](https://pypi.org/project/unitarium/) from `{ds.path.name}` ({len(source):,} records).{note}

| split | records | files |
|---|---|---|
{sizes}{picture}

## Columns

{columns}

Moves (`tokens` values, in order): {", ".join(f"`{k}`={t}" for k, t in enumerate(moves))}.

## Conventions

- **Qubit order: Qiskit's.** Qubit 0 is the least significant bit of the basis index; a gate's first
  qubit is its least significant (`cx 0 1`: control 0, target 1). Qiskit's `Operator` of the circuit
  equals `unitary`; Cirq and pytket order qubits the other way (big-endian).
- Gates apply left to right: the unitary of `g0; g1; g2` is `M2 @ M1 @ M0`.
- Unitaries are stored as computed (complex64 here), global phase included. Splits never share a unitary
  (up to global phase) between them.

## Spec

```json
{spec}
```
"""


def _label_note(ds: Any) -> str:
    """The card's paragraph on the ``label`` column, when the dataset carries labels."""
    if not carries_labels(ds):
        return ""
    meta = label_meta(ds)
    cost = meta["cost"]
    model = ", ".join(f"{g}={w}" for g, w in cost.items() if w) if cost else "every gate 1 (length)"
    reach = "" if meta["reach"] is None else f" (here R = {meta['reach']})"
    return (
        f"\n\n`label` (int32 in Parquet, int64 in npz): each record's least cost under the cost model of the "
        f"table it was labelled with (`unitarium label`; gates {', '.join(meta['table_gates'] or [])}, weights "
        f"{model}), or `-(R + 1)` when it is beyond the table's reach R{reach}: the cost is then at least R + 1."
    )


def _incomplete_note(ds: Any, exported: int) -> str:
    """The card's line for a dataset whose generating run had not finished at export time."""
    count = getattr(ds.spec.source, "count", None)
    of = f" of the spec's {count:,} circuits" if count is not None else ""
    return (
        f"**Incomplete:** {exported:,} records exported{of}; the dataset was still being generated (or its "
        f"run was interrupted) at export time."
    )
