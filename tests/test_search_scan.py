"""The scans of the search (unitarium.search.mitm, nearest, _table.scan): synthesis that jumps to
the longest level gives the answers of the plain level-by-level search (written here), on any
number of threads and any chunking, and no chunk of a scan is lost; the command line runs BLAS
on one thread (the scans' threads are the parallelism) and gives ``--approximate`` every core."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qiskit.quantum_info import Operator, random_unitary

import unitarium
from unitarium.search import _table, build_index, mitm
from unitarium.search._keys import primary_keys
from unitarium.search._table import table_of

L = 4
SPEC = {"gates": "h,s,t,tdg,cx", "qubits": 2, "max_length": L, "unique": True}  # levels 1, 10, 62, 322, 1474


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scan") / "plain" / "t.db"
    path.parent.mkdir()
    unitarium.generate(path, unitarium.make_spec(**SPEC), workers=1)
    return path


@pytest.fixture(scope="module")
def indexed(plain) -> Path:
    path = plain.parent.parent / "indexed" / "t.db"
    path.parent.mkdir()
    shutil.copyfile(plain, path)
    build_index(path)
    return path


@pytest.fixture(scope="module")
def targets(plain) -> np.ndarray:
    """Products of random pairs of records of every two lengths (shortest circuits of every length
    up to 2L), records, and Haar-random unitaries (no circuit)."""
    ds = unitarium.open(plain)
    lengths, rng = ds.lengths(), np.random.default_rng(11)
    out = []
    for a in range(L + 1):
        for b in range(L + 1):
            ia, ib = (rng.choice(np.flatnonzero(lengths == x), 12) for x in (a, b))
            out += [ds[int(j)].circuit.unitary() @ ds[int(i)].circuit.unitary() for i, j in zip(ia, ib, strict=True)]
    out += [random_unitary(4, seed=s).data for s in range(4)]
    return np.stack(out)


def _reference(ds: unitarium.Dataset, targets: np.ndarray, atol: float = 1e-5) -> list[tuple[int, int] | None]:
    """The search of docs/search.md, plainly: prefixes ``A`` by level, every product ``U A^dag``
    formed and looked up by its key, every candidate verified; the answer is the least
    ``(length, id of A, id of B)`` at the first level with any hit."""
    table = table_of(ds, "synthesize")
    units = table.block(0, len(table))
    out: list[tuple[int, int] | None] = []
    for u in targets:
        answer = None
        for a in range(L + 1):
            ids = np.arange(table.level(a).start, table.level(a).stop)
            products = u[None] @ np.conj(np.swapaxes(units[ids], 1, 2))
            query, rows = table.index.find(primary_keys(products))
            hits = []
            for q, b in zip(query.tolist(), rows.tolist(), strict=True):
                p = units[b] @ units[ids[q]]
                phase = np.vdot(p, u)
                if np.abs(u - phase / abs(phase) * p).max() <= atol:
                    hits.append((int(table.lengths[ids[q]]) + int(table.lengths[b]), int(ids[q]), b))
            if hits:
                answer = min(hits)[1:]
                break
        out.append(answer)
    return out


def test_jump_to_the_longest_level_gives_the_answers_of_the_plain_search(plain, indexed, targets, monkeypatch):
    """Level L right after the cheap levels (or right after level 0), then the level of the first
    hit: the same prefix and suffix ids as trying every level in order, which are the plain search's."""
    ds = unitarium.open(plain)
    want = _reference(ds, targets)
    table = table_of(ds, "synthesize")
    lengths = {None if x is None else int(table.lengths[x[0]]) + int(table.lengths[x[1]]) for x in want}
    assert lengths == {None, *range(2 * L + 1)}  # every shortest length, and none
    sizes = [int(x) for x in np.bincount(ds.lengths())]
    assert mitm._jump_after(sizes, 1 / 8) == 2  # levels 0-2 in order, then level 4
    assert mitm._jump_after(sizes, 0.0) == 0 and mitm._jump_after(sizes, math.inf) == L  # no jump
    for path in (plain, indexed):
        for share in (math.inf, 1 / 8, 0.0):
            monkeypatch.setattr(mitm, "JUMP_SHARE", share)
            fresh = unitarium.open(path)
            best, reach = mitm._search(table_of(fresh, "synthesize"), targets, 1e-5, fresh.spec)
            got = [None if b[0] > reach else (int(b[2]), int(b[3])) for b in best]
            assert got == want, (path.parent.name, share)
            circuits = fresh.synthesize_many(targets)
            assert [None if c is None else str(c) for c in circuits] == [
                None if x is None else str(table.circuit(*x)) for x in want
            ]
    for c, u in list(zip(circuits, targets, strict=True))[::17]:
        assert c is None or Operator(c.to_qiskit()).equiv(Operator(u), atol=1e-5)


@pytest.mark.parametrize("chunk", [64, 1000])
def test_threads_and_chunks_change_no_answer(plain, indexed, targets, monkeypatch, chunk):
    """Synthesis and nearest on 1 and 3 threads, in chunks of 64 or 1,000 prefixes (with the index:
    64 divides its chunks) give the answers of one thread in one chunk; a target equal to a record
    of each chunk finds that record (a lost chunk would lose it)."""
    ds = unitarium.open(plain)
    one = [str(c) for c in ds.synthesize_many(targets)]
    near = ds.nearest(targets[::7], k=3)
    one_near = [[(m.record.id, m.distance) for m in row] for row in near]
    monkeypatch.setattr(_table, "CHUNK", chunk)
    for path in (plain, indexed) if 65536 % chunk == 0 else (plain,):
        for threads in (1, 3):
            monkeypatch.setattr(_table, "THREADS", threads)
            fresh = unitarium.open(path)
            assert [str(c) for c in fresh.synthesize_many(targets)] == one
            near = fresh.nearest(targets[::7], k=3)
            assert [[(m.record.id, m.distance) for m in row] for row in near] == one_near
            ids = np.arange(5, len(fresh), chunk)  # one record of every chunk
            table = table_of(fresh, "nearest")
            hits = fresh.nearest(table.take(ids), k=1)
            assert [row[0].record.id for row in hits] == ids.tolist()


def test_scan_yields_every_span_once_in_order_and_stops_when_closed(plain, monkeypatch):
    """``scan`` on several threads: each span's result once, in the spans' order; closed early,
    it cancels what has not started and returns."""
    table = table_of(unitarium.open(plain), "synthesize")
    monkeypatch.setattr(_table, "CHUNK", 100)
    spans = table.spans(0, len(table))
    assert spans[0][0] == 0 and spans[-1][1] == len(table) and len(spans) == 19
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # contiguous: nothing left out
    calls: list[tuple[int, int]] = []

    def work(start: int, stop: int) -> tuple[int, int, float]:
        calls.append((start, stop))
        return start, stop, float(np.abs(table.block(start, stop)).sum())

    want = [work(a, b) for a, b in spans]
    for threads in (2, 3, 5):
        monkeypatch.setattr(_table, "THREADS", threads)
        calls.clear()
        assert list(_table.scan(work, spans)) == want
        assert sorted(calls) == spans
        calls.clear()
        results = _table.scan(work, spans)
        first = [next(results), next(results)]
        results.close()
        assert first == want[:2] and len(calls) <= 2 + threads + 1


def _python(code: str, **env: str) -> str:
    base = {
        k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**base, **env})
    return proc.stdout.strip().splitlines()[-1]


BLAS = (
    "import json, os, sys\n"
    "import unitarium.cli.main\n"
    "from threadpoolctl import threadpool_info\n"
    "from unitarium.cli.search import blas_on_every_core\n"
    "def threads(): return sorted({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'})\n"
    "pinned = sys.modules['unitarium.cli.main'].BLAS_PINNED\n"
    "before = threads()\n"
    "with blas_on_every_core():\n"
    "    during = threads()\n"
    "env = [v for v in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS') if v in os.environ]\n"
    "print(json.dumps([pinned, before, during, threads(), env, len(os.sched_getaffinity(0))]))\n"
)


def test_command_line_runs_blas_on_one_thread_unless_the_user_chose():
    """numpy loads with BLAS on one thread (the environment restored for child processes);
    ``blas_on_every_core`` (``synth --approximate``) gives it every core for the block. A user's
    OPENBLAS_NUM_THREADS is kept, and then nothing is changed."""
    pinned, before, during, after, env, cores = json.loads(_python(BLAS))
    assert pinned is True and before == [1] and after == [1] and env == []
    assert during == [cores]
    pinned, before, during, after, env, _ = json.loads(_python(BLAS, OPENBLAS_NUM_THREADS="2"))
    assert pinned is False and before == during == after == [2] and env == ["OPENBLAS_NUM_THREADS"]


def test_command_line_import_leaves_the_collector_as_it_found_it():
    """The command line imports with the garbage collector off and turns it back on, unless it was off."""
    code = "import gc, sys\n{}\nimport unitarium.cli.main\nprint(gc.isenabled())"
    assert _python(code.format("")) == "True"
    assert _python(code.format("gc.disable()")) == "False"
