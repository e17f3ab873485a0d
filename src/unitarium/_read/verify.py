"""``verify``: SQLite integrity, the task structure and counts, every checksum of the pages read,
the lookup index of the records read, and the unitaries of a sample recomputed in complex128."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .._core.kernels import ProductTable
from .._errors import DatasetDamagedError
from .._spec.spec import Enumeration, RandomSource
from .._storage.sqlite import sqlite_errors
from .bulk import READ_RECORDS, gather, unitaries_of
from .lookup import lookup

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["VerifyReport", "verify"]


@dataclass
class VerifyReport:
    """What :meth:`Dataset.verify` checked and found."""

    records: int
    checked: int
    max_error: float
    integrity: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(ds: Dataset, *, sample: int | None = 1000, seed: int = 0) -> VerifyReport:
    """See :meth:`Dataset.verify`."""
    ds._store.check_segments()  # a foreign, swapped or replaced segment: refused, as by every reader
    integrity = _integrity(ds, full=sample is None)
    problems = [] if integrity == "ok" else [f"integrity_check: {integrity}"]
    with ds.read_transaction():  # tasks, summary and state of one commit (a run may be writing)
        problems += _structure_problems(ds)
    n = len(ds)
    if sample is None or sample >= n:
        pieces = [np.arange(a, min(n, a + READ_RECORDS)) for a in range(0, n, READ_RECORDS)]
    else:
        pieces = [np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))]
    table = ProductTable(ds.gateset.move_matrices, np.complex128)  # (within a tolerance: any kernel)
    worst, checked = 0.0, 0
    for ids in pieces:
        try:
            error = _max_error(ds, ids, table)
        except DatasetDamagedError as exc:
            problems.append(str(exc))
            break
        checked += len(ids)
        worst = error if not error <= worst else worst  # NaN is kept: it is never <=
    tol = 1e-4 if ds.format.unitary_dtype.itemsize == 8 else 1e-9
    if not worst <= tol:
        problems.append(f"a stored unitary differs from its circuit's product by {worst:.3g} > {tol:g}")
    return VerifyReport(n, checked, worst, integrity, problems)


def _integrity(ds: Dataset, *, full: bool) -> str:
    """``PRAGMA integrity_check`` of every file (``full``), or of the manifest's small tables only:
    a whole-file check reads every page, which a sample must not (the sampled blocks' pages are
    checked by their checksums instead)."""
    if full:
        results = [str(ds._query("PRAGMA integrity_check")[0][0])]
    else:
        results = [
            str(ds._query("PRAGMA integrity_check(meta)")[0][0]),
            str(ds._query("PRAGMA integrity_check(tasks)")[0][0]),
            str(ds._query("PRAGMA integrity_check(shards)")[0][0]),
        ]
    if full:
        for shard, path in ds._store.segments():
            conn = ds._store.shard(shard)
            with sqlite_errors(path, "reading"):
                outcome = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
            results.append(outcome if outcome == "ok" else f"{path.name}: {outcome}")
    bad = [r for r in results if r != "ok"]
    return "ok" if not bad else "; ".join(bad)


def _max_error(ds: Dataset, ids: np.ndarray, table: ProductTable) -> float:
    if not len(ids):
        return 0.0
    parts, rows = gather(ds, ids)
    worst = 0.0
    for block, want in zip(parts, rows, strict=True):
        stored = unitaries_of(ds, block)[want]
        lengths = np.diff(block.offsets)[want]
        seqs = np.full((len(want), int(lengths.max(initial=0))), table.num_moves, dtype=np.int64)
        for k, r in enumerate(want):
            seqs[k, : lengths[k]] = block.codes[block.offsets[r] : block.offsets[r + 1]]
        error = float(np.abs(table.unitaries(seqs) - stored).max(initial=0.0))
        worst = error if not error <= worst else worst
        if ds.spec.unique and block.keys is not None:
            _check_lookup_rows(ds, stored)
    return worst


def _check_lookup_rows(ds: Dataset, unitaries: np.ndarray) -> None:
    """Each record read must be found by lookup (the index is complete for what it holds)."""
    for u in unitaries[:4]:
        if np.isfinite(u).all() and not lookup(ds, u, atol=1e-4):  # NaN: reported by the recomputation
            raise ds._store.damaged(None, "its lookup index misses a record")


def _structure_problems(ds: Dataset) -> list[str]:
    problems = []
    rows = ds._query("SELECT task_id, first_id, count, candidates FROM tasks ORDER BY task_id")
    expect = candidates = 0
    for k, (task_id, first, count, cand) in enumerate(rows):
        if task_id != k or first != expect:
            problems.append(f"task {task_id} breaks the committed prefix (expected task {k} at id {expect})")
            break
        expect += count
        candidates += cand
    summary = ds.summary
    if summary.get("records") != expect or summary.get("tasks") != len(rows):
        problems.append(f"the summary says {summary.get('records')} records, the tasks {expect}")
    src = ds.spec.source
    if ds.complete and isinstance(src, RandomSource):
        got = candidates if ds.spec.unique else expect
        if got != src.count:
            problems.append(f"the dataset is complete but holds {got} of the spec's {src.count} circuits")
    if ds.complete and isinstance(src, Enumeration) and not rows:
        problems.append("the dataset is complete but holds no task")
    return problems
