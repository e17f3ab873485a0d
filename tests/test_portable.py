"""Kernel 6: a record's unitary is the same bits on every machine.

Kernel 5 multiplied with BLAS (whose kernels OpenBLAS picks by the CPU) and numpy's complex multiply (fused
multiply-adds where the CPU has them): the pinned digests came out other on an AVX-512 machine, and the
records of one spec differed between the nodes of a mixed cluster, or between generation and a
``--unitaries computed`` read on another machine. Here the other machines are simulated in this one: OpenBLAS
told to use its kernels for older CPUs (``OPENBLAS_CORETYPE``) and numpy its baseline loops only
(``NPY_DISABLE_CPU_FEATURES``: no AVX2, no FMA); both changed kernel 5's bits."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import unitarium
from unitarium._core.compiled import chain
from unitarium._core.kernels import KERNEL_VERSION, ProductTable, extend
from unitarium._core.portable import apply_moves, matmul_stack, product_one
from unitarium._read.single import product

from conftest import PINNED_DIGESTS, PINNED_SPECS, cli, dataset_digest, file_digests, one_error_line, stopped_after

TESTS = Path(__file__).parent

_DIGESTS = """
import json, os, sys, tempfile
sys.path.insert(0, {tests!r})
import numpy as np
import unitarium
from conftest import PINNED_SPECS, dataset_digest
out = {{}}
with tempfile.TemporaryDirectory() as d:
    for k, (name, kw) in enumerate(PINNED_SPECS.items()):
        path = os.path.join(d, f"{{k}}.db")
        unitarium.generate(path, unitarium.make_spec(**kw), workers=1)
        out[name] = dataset_digest(path)
        with unitarium.open(path) as ds:  # ds[i]: the single-record road (computed: a record's own product)
            ids = range(0, len(ds), 97)
            out[name + " [i]"] = [ds[i].unitary.tobytes().hex() for i in ids]
from unitarium._core import compiled
loops = (compiled._chain_kernel, compiled._moves_kernel)
out["compiled loop loaded"] = any(k.cache_info().currsize > 0 for k in loops) and compiled._numba() is not None
print(json.dumps(out))
"""


def _other_machine(env: dict[str, str]) -> dict[str, list[str] | str]:
    proc = subprocess.run(
        [sys.executable, "-c", _DIGESTS.format(tests=str(TESTS))],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(proc.stdout)


def _dispatched() -> str:
    """numpy's SIMD targets above its baseline that this CPU has (disabled: numpy on an older CPU)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__  # type: ignore[no-redef]
    return " ".join(f for f in __cpu_dispatch__ if __cpu_features__.get(f))


def _has_numba() -> bool:
    """Whether the compiled products can run here (the test extra installs numba: CI runs them)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize(
    "env",
    [
        {"OPENBLAS_CORETYPE": "Haswell"},
        {"OPENBLAS_CORETYPE": "Prescott", "NPY_DISABLE_CPU_FEATURES": _dispatched()},
        pytest.param({"UNITARIUM_JIT": "always"}, marks=pytest.mark.skipif(not _has_numba(), reason="numba")),
    ],
    ids=["avx2-blas", "baseline-simd-generic-blas", "compiled"],
)
def test_every_machine_computes_the_pinned_bits(made, env: dict[str, str]) -> None:
    """The pinned specs' digests, and ``ds[i]``'s unitaries, from a process computing as another machine would."""
    theirs = _other_machine(env)
    assert theirs["compiled loop loaded"] == (env.get("UNITARIUM_JIT") == "always")  # (3 qubits: products of d = 8)
    for name, digest in PINNED_DIGESTS.items():
        assert theirs[name] == digest, (name, env)
    for name, kw in PINNED_SPECS.items():
        with unitarium.open(made(unitarium.make_spec(**kw))) as ds:
            ours = [ds[i].unitary.tobytes().hex() for i in range(0, len(ds), 97)]
        assert theirs[name + " [i]"] == ours, (name, env)


def _reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` by the definition, one scalar operation at a time (numpy scalars of the planes' type)."""
    d = a.shape[0]
    out = np.zeros((d, d), dtype=a.dtype)
    for i in range(d):
        for k in range(d):
            re = im = None
            for j in range(d):
                ar, ai, br, bi = a[i, j].real, a[i, j].imag, b[j, k].real, b[j, k].imag
                tr, ti = ar * br - ai * bi, ar * bi + ai * br
                re, im = (tr, ti) if re is None else (re + tr, im + ti)
            out.real[i, k], out.imag[i, k] = re, im
    return out


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("d", [2, 4, 8])
def test_products_follow_the_definition(dtype, d: int) -> None:
    rng = np.random.default_rng(d)
    a = (rng.normal(size=(5, d, d)) + 1j * rng.normal(size=(5, d, d))).astype(dtype)
    b = (rng.normal(size=(5, d, d)) + 1j * rng.normal(size=(5, d, d))).astype(dtype)
    stack = matmul_stack(a, b)
    for n in range(5):
        want = _reference(a[n], b[n])
        assert stack[n].tobytes() == want.tobytes()
        assert product_one(a[n], b[n]).tobytes() == want.tobytes()
    np.testing.assert_allclose(stack, a @ b, rtol=0, atol=1e-5 if dtype == np.complex64 else 1e-12)


def _awkward(rng: np.random.Generator, shape: tuple[int, ...], dtype, zeros: float) -> np.ndarray:
    """Complex entries with exact zeros of both signs in either part (a fraction ``zeros`` of them), subnormals,
    huge values and infinities."""
    real = np.dtype(dtype).type(0).real.dtype
    info = np.finfo(real)
    parts = []
    for _ in range(2):
        x = rng.normal(size=shape).astype(real)
        pick = rng.random(shape)
        x[pick < zeros] = 0
        x[(pick >= zeros) & (pick < zeros + 0.05)] = info.smallest_subnormal * 3
        x[(pick >= zeros + 0.05) & (pick < zeros + 0.07)] = info.max / 4
        x[(pick >= zeros + 0.07) & (pick < zeros + 0.08)] = np.inf
        parts.append(x * np.where(rng.random(shape) < 0.5, -1, 1).astype(real))
    out = np.empty(shape, dtype)
    out.real, out.imag = parts
    return out


@pytest.mark.skipif(not _has_numba(), reason="numba (the test extra installs it)")
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("d", [4, 8, 16])
def test_compiled_products_are_the_numpy_products_bit_for_bit(dtype, d: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled loop (a chain of two chunks over a table holding both sides: ``T[i1] @ T[i0]``) against the
    numpy path (each float operation one ufunc call): the same bits, signed zeros, subnormals, overflow to
    infinity and NaN included, with either side one matrix for the whole stack."""
    rng = np.random.default_rng(d + np.dtype(dtype).itemsize)
    monkeypatch.setenv("UNITARIUM_JIT", "always")
    n = np.arange(700)
    for zeros in (0.3, 0.9):  # (mostly zero, as gates are: results that are exact zeros of either sign)
        a, b = _awkward(rng, (700, d, d), dtype, zeros), _awkward(rng, (700, d, d), dtype, zeros)
        a[:5], b[:5] = complex(-0.0, 0.0), 1  # (-0 + 0j) @ ones: every term's real part is -0, so is the sum
        table = np.concatenate([a, b])  # a at 0.., b at 700..
        planes = np.ascontiguousarray(table.real), np.ascontiguousarray(table.imag)
        with np.errstate(all="ignore"):
            numpy_way = [matmul_stack(a, b), matmul_stack(a[:1], b), matmul_stack(a, b[:1])]
            compiled = [
                chain(*planes, np.stack([700 + n, n], axis=1)),
                chain(*planes, np.stack([700 + n, 0 * n], axis=1)),
                chain(*planes, np.stack([700 + 0 * n, n], axis=1)),
            ]
        for ours, theirs in zip(numpy_way, compiled, strict=True):
            assert ours.tobytes() == theirs.tobytes()
        made = numpy_way[0].real
        if zeros > 0.5:
            assert np.signbit(made[:5]).all() and (made[:5] == 0).all() and (~np.signbit(made[made == 0])).any()
        else:
            assert np.isnan(made).any() and np.isinf(made).any()


@pytest.mark.skipif(not _has_numba(), reason="numba (the test extra installs it)")
@pytest.mark.parametrize("scheme", ["dedup", "lookup"])
def test_compiled_grid_words_are_the_numpy_keys_bit_for_bit(scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Grid keys' cells, near rows and 128-bit words compiled (:func:`compiled.grid_words`): the numpy path's keys
    and alternates, bit for bit, on real coordinates with coordinates set near a boundary (one and several per row,
    either side, negative cells); a row of cells past int64 (or NaN) leaves the whole batch to the numpy path."""
    from unitarium._core import compiled
    from unitarium._core.canonical import DEDUP, LOOKUP, phased_flat

    keys = DEDUP if scheme == "dedup" else LOOKUP
    d = 4
    u = unitarium.make_spec(gates="h,t,cx", qubits=2, max_length=1).gateset.move_matrices
    rng = np.random.default_rng(11)
    mixed = np.linalg.qr(rng.normal(size=(3000, d, d)) + 1j * rng.normal(size=(3000, d, d)))[0]
    y = keys._project(phased_flat(np.concatenate([u, mixed])), d)
    eta = keys.eta / keys.delta
    y[::40, 3] = np.floor(y[::40, 3]) + 0.5 + eta / 2  # just above a boundary
    y[::70, 5] = np.floor(y[::70, 5]) + 0.5 - eta / 4  # just below one, and a second near coordinate
    y[::70, 0] = np.floor(y[::70, 0]) + 0.5 + eta / 3
    y[7, :] = -np.abs(y[7, :])  # negative cells
    y[::90, 1] = np.floor(y[::90, 1]) + 0.5 + eta  # exactly eta from a boundary: not near (eta is a power of 2)
    got, primary_of = {}, {}
    for mode in ("never", "always"):
        monkeypatch.setenv("UNITARIUM_JIT", mode)
        got[mode] = keys.wide_keys_of(y, d)
        primary_of[mode] = keys.primary_of(y, d)  # (one word, through the same loop)
    assert compiled._words_kernel.cache_info().currsize == 1  # (made: the compiled path ran)
    assert primary_of["always"].tobytes() == primary_of["never"].tobytes()
    assert primary_of["never"].tobytes() == keys._mix(np.floor(y + 0.5).astype(np.int64), d).tobytes()
    primary, alternates = got["never"]
    assert len(alternates) >= len(y) // 40
    assert got["always"][0].tobytes() == primary.tobytes()
    assert got["always"][1].keys() == alternates.keys()
    assert all(got["always"][1][r].tobytes() == a.tobytes() for r, a in alternates.items())
    for bad in (2.0**63, -(2.0**70), np.nan):
        far = y.copy()
        far[5, 2] = bad
        assert compiled.grid_words(far, eta, np.zeros((keys.dims, 2), np.uint64), (np.uint64(3), np.uint64(5))) is None
        with np.errstate(invalid="ignore"):  # (numpy's casts of such cells: whatever they are, on both paths)
            both = [keys.wide_keys_of(far, d)[0].tobytes()]
            monkeypatch.setenv("UNITARIUM_JIT", "never")
            both.append(keys.wide_keys_of(far, d)[0].tobytes())
        monkeypatch.setenv("UNITARIUM_JIT", "always")
        assert both[0] == both[1]


@pytest.mark.skipif(not _has_numba(), reason="numba (the test extra installs it)")
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("qubits", [2, 3, 4])
def test_compiled_chains_are_the_numpy_chains_bit_for_bit(dtype, qubits: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A product table's unitaries through the compiled chain (every chunk of a few hundred records at once)
    against the numpy path's products one chunk at a time: the same bits, over tables of awkward entries
    (signed zeros, subnormals, infinities), records of 0 to 7 chunks, batches not a multiple of the chain's."""
    spec = unitarium.make_spec(gates="h,t,cx", qubits=qubits, max_length=1)
    table = ProductTable(spec.gateset.move_matrices, dtype, depth=1)
    rng = np.random.default_rng(qubits)
    table.table = _awkward(rng, table.table.shape, dtype, 0.5)
    table.table[0] = complex(-0.0, 0.0)
    for chunks in (1, 2, 7):
        index = rng.integers(0, len(table.table), size=(700, chunks))
        got = {}
        for mode in ("never", "always"):
            monkeypatch.setenv("UNITARIUM_JIT", mode)
            vars(table).pop("_planes", None)
            with np.errstate(all="ignore"):
                got[mode] = table._portable(index)
        assert got["never"].shape == (700, 2**qubits, 2**qubits)
        assert got["never"].tobytes() == got["always"].tobytes(), chunks
    index[3, -1] = len(table.table)  # (the compiled loop checks no bounds: an entry past the table is refused first)
    with pytest.raises(IndexError):
        table._portable(index)


def test_a_process_switches_to_the_compiled_chain_once_its_numpy_products_passed_warm_after() -> None:
    """Rent or buy: without a preload, a process forms products the numpy way until they add up to ``WARM_AFTER``
    multiply-adds, then loads the chain (the same bits before and after)."""
    pytest.importorskip("numba")
    script = (
        "import numpy as np, unitarium\n"
        "from unitarium._core import compiled\n"
        "from unitarium._core.kernels import ProductTable\n"
        "compiled.WARM_AFTER = 1_000_000\n"
        "spec = unitarium.make_spec(gates='h,t,cx', qubits=2, max_length=1)\n"
        "table = ProductTable(spec.gateset.move_matrices, np.complex64)\n"
        "seqs = np.random.default_rng(3).integers(0, 7, size=(3000, 12))\n"
        "first = table.unitaries(seqs)\n"  # 3000 x 2 products x 64 = 384,000 multiply-adds: the numpy way
        "assert compiled._chain_kernel.cache_info().currsize == 0\n"
        "for _ in range(3):\n"
        "    again = table.unitaries(seqs)\n"
        "assert again.tobytes() == first.tobytes()\n"
        "print(compiled._chain_kernel.cache_info().currsize, compiled._done[0] >= compiled.WARM_AFTER)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "UNITARIUM_JIT"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "True"]


def test_a_run_process_loads_the_compiled_chain_only_for_a_share_that_pays() -> None:
    """A run's process that shares the run with others: it preloads only where its own share of the products passes
    ``PRELOAD_AFTER``; below, past ``WARM_AFTER`` it stays on the numpy way while its share's end is within
    ``WARM_AFTER``, and switches once it has formed more than its share (the estimate was wrong). Same bits."""
    pytest.importorskip("numba")
    script = (
        "import numpy as np, unitarium\n"
        "from unitarium._core import compiled\n"
        "from unitarium._core.kernels import table_depth\n"
        "from unitarium._spec.sources import TaskContext\n"
        "compiled.WARM_AFTER, compiled.PRELOAD_AFTER = 1_000_000, 2_000_000\n"
        "spec = unitarium.make_spec(gates='h,t,cx', qubits=2, count=100_000, length=12)\n"
        "depth = table_depth(len(spec.gateset.moves), spec.gateset.dim, spec.compute_dtype.itemsize)\n"
        "assert TaskContext(spec).product_work(depth) == 100_000 * 2 * 64\n"  # (two products of 4 x 4 a record)
        "ctx = TaskContext(spec, run=True, processes=10)\n"  # its share: 1,280,000 multiply-adds
        "assert not compiled._preloading.locked() and compiled._expected[0] == 1_280_000\n"
        "seqs = np.random.default_rng(3).integers(0, 7, size=(3000, 12))\n"  # 384,000 multiply-adds a call
        "first = ctx.table.unitaries(seqs)\n"
        "sizes = []\n"
        "for _ in range(4):\n"
        "    assert ctx.table.unitaries(seqs).tobytes() == first.tobytes()\n"
        "    sizes.append(compiled._chain_kernel.cache_info().currsize)\n"
        "print(*sizes, compiled._expected[0])\n"
        "TaskContext(spec, run=True, processes=1)\n"  # (the whole run: 12.8M, past PRELOAD_AFTER)
        "print(compiled._loaded.wait(60))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "UNITARIUM_JIT"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # calls 1-4 the numpy way (1,536,000 > WARM_AFTER, but the share's end within it); the fifth: past the share
    assert proc.stdout.split() == ["0", "0", "0", "1", "None", "True"]


def test_a_child_forked_during_a_load_does_not_wait_for_it() -> None:
    """A process forked while a preload's thread loads numba has no such thread: its products must not wait for a
    load that will never end (they would, for :data:`compiled._LOAD_WAIT` seconds each)."""
    script = (
        "import os, sys\n"
        "from unitarium._core import compiled\n"
        "compiled._preloading.acquire()\n"  # (a load under way, as preload() leaves it while its thread runs)
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if compiled._settled.is_set() and not compiled._loaded.is_set() else 1)\n"
        "assert not compiled._settled.is_set()\n"  # (the parent's load is still under way)
        "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_a_large_run_loads_the_compiled_products_in_the_background(tmp_path: Path) -> None:
    """A run whose products pay for loading the compiled loops starts loading them at once, in a thread, and
    its first products wait for them: the dataset is the one made without them. A reader of the same spec
    (its single records' products) never preloads."""
    pytest.importorskip("numba")
    script = (
        "import sys, numpy as np, unitarium\n"
        "from unitarium._core import compiled\n"
        "from unitarium._core.kernels import table_depth\n"
        "from unitarium._spec.sources import TaskContext\n"
        "spec = unitarium.make_spec(gates='clifford+t', qubits=3, count=100_000, length='48:50', seed=2)\n"
        "depth = table_depth(len(spec.gateset.moves), spec.gateset.dim, spec.compute_dtype.itemsize)\n"
        "assert TaskContext(spec).product_work(depth) >= compiled.PRELOAD_AFTER\n"
        "TaskContext(spec).table.unitaries(np.zeros((4, 50), np.int64))\n"  # (a reader's: never a preload)
        "assert not compiled._preloading.locked() and compiled._chain_kernel.cache_info().currsize == 0\n"
        "unitarium.generate(sys.argv[1], spec, workers=1)\n"
        "print(compiled._loaded.wait(float(sys.argv[2])), compiled._chain_kernel.cache_info().currsize)\n"
    )
    runs = {}
    for mode in ("auto", "never"):
        path = tmp_path / f"{mode}.db"
        env = {**os.environ, "UNITARIUM_JIT": mode}
        wait = "60" if mode == "auto" else "0"  # (a load under way by the end of the run is waited for)
        proc = subprocess.run([sys.executable, "-c", script, str(path), wait], env=env, capture_output=True, text=True,
                              timeout=300, check=True)  # fmt: skip
        runs[mode] = proc.stdout.split()
        runs[mode + " digest"] = dataset_digest(path)
    assert runs["auto"] == ["True", "1"]  # (loaded by the preload: 100,000 records of 16 products of d = 8)
    assert runs["never"] == ["False", "0"]
    assert runs["auto digest"] == runs["never digest"]


@pytest.mark.skipif(not _has_numba(), reason="numba (the test extra installs it)")
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize(
    ("gates", "qubits"), [("clifford+t", 2), ("clifford+t", 3), ("h,s,sdg,x,y,z,cx,cz,swap", 3), ("h,t,cx", 4)]
)
def test_compiled_extensions_are_the_numpy_extensions_bit_for_bit(
    gates: str, qubits: int, dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``apply_moves`` compiled against the numpy path over gate sets whose entries are real, imaginary or both
    (h, s, t, y...), on parents with exact zeros of both signs, subnormals and infinities: the same bits."""
    rng = np.random.default_rng(qubits)
    moves = unitarium.make_spec(gates=gates, qubits=qubits, max_length=1).gateset.move_matrices.astype(dtype)
    d = moves.shape[1]
    parents = _awkward(rng, (400, d, d), dtype, 0.5)
    parents[:3] = complex(-0.0, -0.0)
    allowed = rng.random((400, len(moves))) < 0.6
    got = {}
    for mode in ("never", "always"):
        monkeypatch.setenv("UNITARIUM_JIT", mode)
        with np.errstate(all="ignore"):
            got[mode] = apply_moves(parents, moves, allowed)
    assert got["never"].shape == (int(allowed.sum()), d, d)
    assert got["never"].tobytes() == got["always"].tobytes()


def test_extensions_follow_their_definition_and_the_table_its_products() -> None:
    """``apply_moves`` omits a move's zero parts; the product table chains the definition's products."""
    spec = unitarium.make_spec(gates="h,s,t,cx", qubits=2, count=10, length="0:9")
    moves = spec.gateset.move_matrices
    rng = np.random.default_rng(1)
    table = ProductTable(moves, np.complex128)
    seqs = rng.integers(0, len(moves) + 1, size=(40, 9))
    units = table.unitaries(seqs)
    allowed = rng.random((40, len(moves))) < 0.5
    kids = extend(units, moves, allowed)
    at = 0
    for p in range(40):
        want = np.eye(4, dtype=np.complex128)
        for m in seqs[p]:
            if m < len(moves):
                want = _reference(moves[m].astype(np.complex128), want)
        np.testing.assert_allclose(units[p], want, atol=1e-12)
        assert np.array_equal(product(table, seqs[p].tolist(), 9), units[p])
        for k in np.flatnonzero(allowed[p]):
            mv = moves[k]
            ref = np.zeros((4, 4), dtype=np.complex128)
            for i in range(4):
                for col in range(4):
                    re = im = None  # (a sum starts at its first term; none: +0)
                    for j in range(4):
                        c, x = mv[i, j], units[p][j, col]
                        if c == 0:
                            continue
                        tr = c.real * x.real if c.imag == 0 else -(c.imag * x.imag) if c.real == 0 else None
                        ti = c.real * x.imag if c.imag == 0 else c.imag * x.real if c.real == 0 else None
                        if tr is None:
                            tr, ti = c.real * x.real - c.imag * x.imag, c.real * x.imag + c.imag * x.real
                        re, im = (tr, ti) if re is None else (re + tr, im + ti)
                    ref.real[i, col], ref.imag[i, col] = (0.0, 0.0) if re is None else (re, im)
            assert kids[at].tobytes() == ref.tobytes()
            at += 1
    assert at == len(kids)
    assert np.array_equal(kids, apply_moves(units, moves, allowed))


def test_environment_settings_out_of_range_are_one_line_and_change_nothing(tmp_path: Path) -> None:
    """``UNITARIUM_JIT`` is auto, always or never: a typo is refused before the run opens anything (no file made,
    an existing dataset unchanged), not taken silently as the default; likewise ``UNITARIUM_SEGMENT_SECONDS``
    outside 0.01..3600 s or not a number (a directory run: no directory made)."""
    path = tmp_path / "j.db"
    args = ("generate", path, "--gates", "h,cx", "--qubits", "2", "--count", "80", "--length", "3")
    proc = cli(*args, check=False, env={**os.environ, "UNITARIUM_JIT": "nevr"})
    assert proc.returncode == 2 and not path.exists()
    line = one_error_line(proc.stderr)
    assert line.endswith("UNITARIUM_JIT='nevr' is not one of auto, always, never (the bits are the same either way)")
    cli(*args)
    before = file_digests(path)
    proc = cli(*args, "--count", "90", check=False, env={**os.environ, "UNITARIUM_JIT": "Always"})
    assert proc.returncode == 2 and "UNITARIUM_JIT='Always'" in one_error_line(proc.stderr)
    assert file_digests(path) == before
    directory = tmp_path / "d"  # (the other setting of the environment: a directory run's segment age)
    for bad in ("0", "ten", "nan", "1e9"):
        dir_args = ("generate", f"{directory}/", *args[2:])
        proc = cli(*dir_args, check=False, env={**os.environ, "UNITARIUM_SEGMENT_SECONDS": bad})
        assert proc.returncode == 2 and not directory.exists(), bad
        assert one_error_line(proc.stderr).endswith(
            f"UNITARIUM_SEGMENT_SECONDS={bad!r} is not a number of seconds from 0.01 to 3600"
        )


def _set_kernel(path: Path, version: int) -> None:
    """Edit the kernel version in the spec stored in dataset file ``path`` (the test's tampering tool)."""
    spec = json.loads(json.dumps(unitarium.open(path).meta["spec"]))
    spec["kernel_version"] = version
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'spec'", (json.dumps(spec),))
    conn.close()


SPEC = dict(gates="h,t,cx", qubits=3, count=20_000, length="0:14", seed=4, dtype="complex128", task_size=100)


def test_a_kernel_5_dataset_resumes_with_kernel_5_and_an_older_one_is_refused(tmp_path: Path) -> None:
    """A dataset keeps the arithmetic it was made with: a kernel-5 run stopped midway, resumed by today's
    command, ends as an uninterrupted kernel-5 run (on this machine); new datasets are kernel 6; a dataset of a
    kernel this code no longer computes is refused in one line, unchanged."""
    new = unitarium.make_spec(**SPEC)
    assert new.kernel == KERNEL_VERSION == 6
    old = dataclasses.replace(new, kernel=5)
    whole = tmp_path / "whole.db"
    unitarium.generate(whole, old, workers=1)
    resumed = tmp_path / "resumed.db"
    stopped_after(resumed, old, reports=1, workers=1)  # (the first report: at the second, a fast committer had all)
    assert 0 < len(unitarium.open(resumed)) < 20_000 and not unitarium.open(resumed).complete
    unitarium.generate(resumed, new, workers=2)
    assert unitarium.open(resumed).spec.kernel == 5
    assert dataset_digest(resumed) == dataset_digest(whole)
    fresh = tmp_path / "fresh.db"
    unitarium.generate(fresh, new, workers=1)
    assert unitarium.open(fresh).spec.kernel == 6

    older = tmp_path / "older.db"
    stopped_after(older, old, reports=1, workers=1)
    _set_kernel(older, 4)
    before = file_digests(older)
    args = ["generate", older, "--gates", "h,t,cx", "--qubits", "3", "--count", "20000", "--length", "0:14"]
    args += ["--seed", "4", "--dtype", "complex128", "--task-size", "100"]
    proc = cli(*args, check=False)
    line = one_error_line(proc.stderr)
    assert proc.returncode != 0 and "kernel version 4" in line and "new path" in line, line
    assert file_digests(older) == before


@pytest.mark.parametrize("command", [["show", "3"], ["verify"], ["export", "OUT"]])
def test_a_computed_dataset_of_a_kernel_not_computed_here_is_one_line(tmp_path: Path, command: list[str]) -> None:
    """A ``--unitaries computed`` dataset of a kernel this code does not compute (made by a later unitarium, or
    edited) cannot have its unitaries recomputed: one line, no traceback, the file unchanged."""
    path = tmp_path / "c.db"
    unitarium.generate(path, unitarium.make_spec(gates="h,t,cx", qubits=2, count=100, length=5, unitaries="computed"))
    _set_kernel(path, 99)
    before = file_digests(path)
    proc = cli(*[str(tmp_path / "out") if a == "OUT" else a for a in [command[0], path, *command[1:]]], check=False)
    line = one_error_line(proc.stderr)
    assert proc.returncode != 0 and "kernel version 99" in line, line
    assert file_digests(path) == before


_LOAD = """
import sys
import numpy as np
from unitarium._core import compiled
if sys.argv[1] == "own":
    compiled.own_process()
compiled._load(np.dtype(np.float64), 4, False)
assert compiled._loaded.is_set()
loaded = "scipy.linalg" in sys.modules
import scipy.linalg  # (importable afterwards either way)
table = np.random.default_rng(1).normal(size=(2, 3, 4, 4))
index = np.array([[0, 1, 2], [2, 2, 0]], dtype=np.intp)
got = compiled.chain(table[0], table[1], index)
print(loaded, got.tobytes().hex())
"""


@pytest.mark.skipif(not _has_numba(), reason="numba (the test extra installs it)")
def test_unitariums_own_processes_load_the_loops_without_scipys_blas() -> None:
    """The CLI and its workers (``compiled.own_process``) load numba's compiled loops without its probe for SciPy's
    BLAS (``scipy.linalg``, ~0.2 CPU-s of each worker's load); a user's process loads them as numba does. The
    loops' products are the same bits either way, and SciPy imports afterwards."""
    pytest.importorskip("scipy")
    runs = {}
    for mode in ("own", "user"):
        proc = subprocess.run([sys.executable, "-c", _LOAD, mode], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        runs[mode] = proc.stdout.split()
    assert runs["own"][0] == "False" and runs["user"][0] == "True"
    assert runs["own"][1] == runs["user"][1]


_OWN = """
import sys
from click.testing import CliRunner
from unitarium._core import compiled
from unitarium.cli.main import main
if sys.argv[1] == "runner":
    CliRunner().invoke(main, ["--version"])
else:
    sys.argv = ["unitarium", "--version"]
    try:
        main()
    except SystemExit:
        pass
print(compiled._own[0])
"""


def test_the_cli_program_says_its_process_is_its_own_and_a_cli_runner_does_not() -> None:
    """``unitarium`` run as the program marks its process (``compiled.own_process``); the same command invoked in
    another program's process (click's ``CliRunner``) leaves that process as numba makes it."""
    got = {}
    for how in ("program", "runner"):
        proc = subprocess.run([sys.executable, "-c", _OWN, how], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        got[how] = proc.stdout.split()[-1]
    assert got == {"program": "True", "runner": "False"}
