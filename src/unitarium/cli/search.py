"""``unitarium synth``, ``nearest`` and ``index``: synthesis and nearest search from a dataset,
and the persistent search index they map (docs/search.md)."""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np

from .._core.circuit import Circuit
from .._core.inputs import load_matrix
from .._errors import SpecError
from ..search.nearest import MAX_PAIRS

__all__ = ["index_after_generate", "index_cmd", "label_cmd", "nearest_cmd", "synth_cmd"]

_TARGET_OPTIONS = [
    click.option(
        "--matrix",
        type=click.Path(dir_okay=False, path_type=Path),
        help=".npy file holding a d x d unitary, or a stack of them (n x d x d): one result per target.",
    ),
    click.option("--qasm", type=click.Path(dir_okay=False, path_type=Path), help="OpenQASM 2/3 file (any gates)."),
    click.option("--circuit", help='A circuit in the dataset\'s gates, e.g. "h 0; cx 0 1".'),
]


def _targets(f: Any) -> Any:
    for option in reversed(_TARGET_OPTIONS):
        f = option(f)
    return f


@click.command("synth")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@_targets
@click.option("--approximate", is_flag=True, help="The nearest circuit of at most --max-length moves instead.")
@click.option("--max-length", type=int, help="Budget for --approximate (default and limit: 2 x the dataset's).")
@click.option(
    "--max-pairs",
    type=click.IntRange(min=1),
    help="Refuse an --approximate search scoring more pairs than this (default 5e8: tens of seconds).",
)
@click.option("--estimate", is_flag=True, help="With --approximate: print what the search would cost, and stop.")
@click.option("--atol", type=float, default=1e-5, show_default=True, help="Entrywise tolerance (exact synthesis).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON lines for a stack).")
def synth_cmd(
    path: Path,
    matrix: Path | None,
    qasm: Path | None,
    circuit: str | None,
    approximate: bool,
    max_length: int | None,
    max_pairs: int | None,
    estimate: bool,
    atol: float,
    as_json: bool,
) -> None:
    """A shortest circuit for a unitary from a unique enumerated dataset PATH (max length L):
    exact up to global phase with at most 2L moves, or with --approximate the nearest one.
    --matrix may hold a stack (n x d x d): one result per target, in order (one JSON object a
    line with --json). Exit status 1 when no circuit of at most 2L moves implements a target.

    --approximate first says on stderr what the search will cost (pairs, time, memory; --estimate
    says it and stops); a search above --max-pairs is refused before it starts (exit status 2),
    with the largest --max-length that fits. Searches over a couple of seconds show a progress
    bar when stderr is a terminal. With a search index beside PATH (`unitarium index PATH`) the
    table is mapped, not loaded: a target costs milliseconds to a second instead of seconds."""
    from .._dataset import Dataset

    read_only_exit()
    ds = Dataset(path)
    if sum(x is not None for x in (matrix, qasm, circuit)) != 1:
        raise SpecError("give exactly one of --matrix FILE.npy, --qasm FILE.qasm or --circuit TEXT")
    if (max_length is not None or max_pairs is not None or estimate) and not approximate:
        raise SpecError("--max-length, --max-pairs and --estimate go with --approximate")
    u, stack = _target(ds, matrix, qasm, circuit)
    with _index_warnings():
        if approximate:
            with blas_on_every_core():  # its large products are its parallelism
                _approximate(ds, u, stack, max_length, max_pairs, estimate, as_json)
            return
        results = ds.synthesize_many(u, atol=atol) if stack else [ds.synthesize(u, atol=atol)]
    if ds.spec.cost is not None:
        from ..search.mitm import cost_reach

        reach, bound = cost_reach(ds.spec), "max_cost"
        beyond = f"of cost at most {reach}"
    else:
        reach, bound = 2 * ds.spec.source.max_length, "max_length"  # type: ignore[union-attr]  # synthesize checked
        beyond = f"of at most {reach} moves"
    for i, result in enumerate(results):
        if result is not None:
            _report(result, _cost_of(ds, result), as_json, i if stack else None)
        elif as_json:
            click.echo(json.dumps({**_which(i, stack), "circuit": None, "length": None, bound: reach}))
        elif stack:
            click.echo(f"{i}\tnone")
    missing = sum(r is None for r in results)
    if missing:
        what = "this unitary" if not stack else f"{missing:,} of the {len(results):,} targets"
        click.echo(f"no circuit {beyond} implements {what}", err=True)
        sys.exit(1)


def _approximate(
    ds: Any, u: np.ndarray, stack: bool, max_length: int | None, max_pairs: int | None, estimate: bool, as_json: bool
) -> None:
    """``synth --approximate``: says the cost on stderr first (or only, with ``--estimate``)."""
    cost = ds.approximate_cost(len(u) if stack else 1, max_length=max_length)
    if estimate:
        click.echo(json.dumps(vars(cost)) if as_json else cost.describe())
        return
    pairs = {} if max_pairs is None else {"max_pairs": max_pairs}
    if cost.pairs <= (MAX_PAIRS if max_pairs is None else max_pairs):  # else refused, in one line
        click.echo(f"unitarium: {cost.describe()}", err=True)
    one = [] if stack else [ds.approximate(u, max_length=max_length, **pairs)]
    for i, a in enumerate(ds.approximate_many(u, max_length=max_length, **pairs) if stack else one):
        _report(a.circuit, {"distance": a.distance, **_cost_of(ds, a.circuit)}, as_json, i if stack else None)


_EXIT = [False]


def read_only_exit() -> None:
    """At the interpreter's exit, skip the collector's passes over every object left (``gc.freeze``:
    30-50 ms of a search command on the machine of BENCHMARKS.md): a command that writes nothing
    leaves no cyclic garbage whose finalizer matters (the OS closes its files). Registered once."""
    if not _EXIT[0]:
        _EXIT[0] = True
        atexit.register(gc.freeze)


_BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def blas_on_every_core() -> Iterator[None]:
    """BLAS on a thread per core for the block unless the user chose its threads (one of
    :data:`_BLAS_THREADS` set): the command line loads numpy with one (:data:`.main.BLAS_PINNED`)."""
    if any(var in os.environ for var in _BLAS_THREADS):
        yield
        return
    from threadpoolctl import threadpool_limits

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with threadpool_limits(limits=cores, user_api="blas"):
        yield


def _cost_of(ds: Any, circuit: Circuit) -> dict[str, float]:
    """``{"cost": ...}`` under the table's cost model (``--cost``), else nothing (the length says it)."""
    from .._core.cost import circuit_cost

    return {} if ds.spec.cost is None else {"cost": circuit_cost(circuit, ds.spec.cost)}


@click.command("nearest")
@click.argument("path", type=click.Path(path_type=Path))
@_targets
@click.option("-k", "k", type=click.IntRange(min=1), default=1, show_default=True, help="Records per target.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per target and line.")
def nearest_cmd(path: Path, matrix: Path | None, qasm: Path | None, circuit: str | None, k: int, as_json: bool) -> None:
    """The K records of dataset PATH nearest to a unitary, in the phase-invariant distance
    sqrt(2d - 2|tr(U^dag V)|), nearest first (exact: every record is scored). --matrix may hold a
    stack (n x d x d). Prints, per match, the target's number (for a stack), the record id, the
    distance and the circuit. Maps the search index beside PATH when there is one."""
    from .._dataset import Dataset

    read_only_exit()
    ds = Dataset(path)
    if sum(x is not None for x in (matrix, qasm, circuit)) != 1:
        raise SpecError("give exactly one of --matrix FILE.npy, --qasm FILE.qasm or --circuit TEXT")
    u, stack = _target(ds, matrix, qasm, circuit)
    with _index_warnings():
        found: Any = ds.nearest(u, k=k)
    rows: list[list[Any]] = found if stack else [found]
    for i, matches in enumerate(rows):
        if as_json:
            items = [{"id": m.record.id, "distance": m.distance, "circuit": str(m.record.circuit)} for m in matches]
            click.echo(json.dumps({**_which(i, stack), "matches": items}))
            continue
        for m in matches:
            lead = f"{i}\t" if stack else ""
            click.echo(f"{lead}{m.record.id}\t{m.distance:.6g}\t{m.record.circuit}")


@click.command("index")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--check", is_flag=True, help="Say whether the index beside PATH is usable, without building.")
def index_cmd(path: Path, check: bool) -> None:
    """Build the search index of the complete dataset PATH beside it (x.db -> x.db.index;
    a directory runs/big/ -> runs/big.index), replacing an older one. synth, nearest and the
    API's synthesize/nearest/approximate then map it instead of loading the table: a 1M-record
    table answers one target in a fraction of a second. The dataset is never written. With
    --check: exit status 0 when the index exists and belongs to PATH as it is now, else 1 with
    the reason (missing, stale, foreign, damaged)."""
    from .._dataset import Dataset
    from ..search._index import index_path, open_index

    ds = Dataset(path)
    if check:
        index, why = open_index(ds)
        where = str(index_path(ds.path))
        if index is None:
            click.echo(f"{where}: {why or 'no index'}", err=True)
            sys.exit(1)
        for name in ("unitaries", "coarse"):  # the arrays checked a chunk at a time when read
            if name in index.header["arrays"]:
                index.check(name)
        index.close()
        click.echo(f"{where}: ok ({len(ds):,} records)")
        return
    _build(ds)


def _build(ds: Any) -> None:
    from ..search import build_index

    t0 = time.perf_counter()
    out = build_index(ds)
    click.echo(
        f"search index {str(out)!r}: {len(ds):,} records, {out.stat().st_size / 2**20:,.1f} MiB in "
        f"{time.perf_counter() - t0:.1f} s"
    )


def index_after_generate(path: str, *, always: bool = False) -> None:
    """At the end of ``generate``: the search index of a complete unique enumeration (unless it is large
    and not asked for: ``always``, ``generate --index``)."""
    from .._dataset import Dataset
    from ..search._build import index_room
    from ..search._index import open_index, searchable_kind

    ds = Dataset(path)
    if always and not (ds.spec.unique and searchable_kind(ds) == "enumeration"):
        click.echo("unitarium: note: --index: only a unique enumeration has a search index (none built)", err=True)
    if ds.spec.unique and ds.complete and searchable_kind(ds) == "enumeration":
        index, _ = open_index(ds)
        if index is not None:
            index.close()
            return
        # None yet, or not this dataset's as it is now (a finished resume: kept). Built unasked only
        # while it is small: the 3-qubit Clifford group's would take ~133 GiB and an hour.
        need, free = index_room(ds)
        if not always and need > min(AUTO_INDEX_BYTES, free // 4):
            click.echo(
                f"unitarium: note: no search index built for {len(ds):,} records (it would take about "
                f"{need / 2**30:,.1f} GiB, {free / 2**30:,.1f} GiB free): synth and nearest search the table "
                f"without it; build it with `unitarium index {path}` (or `generate --index`) where it fits",
                err=True,
            )
            return
        _build(ds)


AUTO_INDEX_BYTES = 4 << 30
"""The largest search index ``generate`` builds unasked (and at most a quarter of the free disk)."""


@contextmanager
def _index_warnings() -> Iterator[None]:
    """An unusable search index said in one line on stderr (the search goes on without it)."""
    from ..search import SearchIndexWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", SearchIndexWarning)
        shown = warnings.showwarning

        def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
            if issubclass(category, SearchIndexWarning):
                click.echo(f"unitarium: warning: {message}", err=True)
            else:
                shown(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


def _which(i: int, stack: bool) -> dict[str, int]:
    return {"target": i} if stack else {}


def _target(ds: Any, matrix: Path | None, qasm: Path | None, circuit: str | None) -> tuple[np.ndarray, bool]:
    """The target (``(d, d)``) or targets (``(n, d, d)``, a stack) and whether they are a stack."""
    if matrix is not None:
        m = load_matrix(matrix)
        return m, m.ndim == 3
    if qasm is not None:
        try:
            from .._core.convert import unitary_from_qasm_file
        except ImportError as exc:  # the interop package is newer than this command
            raise SpecError(f"--qasm is not available in this installation ({exc}): use --matrix") from exc
        return unitary_from_qasm_file(qasm, ds.gateset), False
    return Circuit.from_text(circuit or "", ds.gateset).unitary(), False


def _report(circuit: Circuit, extra: dict[str, float], as_json: bool, i: int | None) -> None:
    if as_json:
        which = {} if i is None else {"target": i}
        body = {"circuit": str(circuit), "length": len(circuit), "qasm": circuit.to_qasm(), **extra}
        click.echo(json.dumps({**which, **body}))
        return
    more = "".join(f", {key} {value:.6g}" for key, value in extra.items())
    if i is not None:
        click.echo(f"{i}\t{len(circuit)} gates{more}\t{circuit}")
        return
    click.echo(f"{len(circuit)} gates{more}\ncircuit: {circuit}\n\n{circuit.to_qasm()}", nl=False)


@click.command("label")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--table", type=click.Path(path_type=Path), required=True, help="A unique enumerated dataset.")
@click.option("--chunk", type=click.IntRange(1, 1 << 20), default=4096, show_default=True, help="Records per commit.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def label_cmd(path: Path, table: Path, chunk: int, quiet: bool) -> None:
    """Store in the dataset file PATH, for every record, its least cost under TABLE's cost model
    (--cost, else the length), or a lower bound beyond TABLE's reach. Resumable: re-run to finish."""
    from .._dataset import Dataset as Full

    def shown(done: int, total: int) -> None:
        if not quiet:
            click.echo(f"labelled {done:,}/{total:,}", err=True)

    ds, tab = Full(path), Full(table)
    try:
        found = ds.label(tab, progress=shown, chunk=chunk)
    finally:
        ds.close()
        tab.close()
    click.echo(
        f"{path}: {found['records']:,} records labelled ({found['new']:,} new, {found['exact']:,} of them exact; "
        f"the others cost more than {found['reach']}) by {table}"
    )
