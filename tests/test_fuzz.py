"""Fuzzing the edges (issue #11): random malformed gate files, matrices (``.npy`` of every dtype and shape,
NaN/inf/huge entries), paths (FIFO, directory, symlink loop, dangling link, device, not UTF-8, missing parent)
and record ids, through the API (Hypothesis, in-process) and the CLI (a table of cases, in process through
click's runner, every seventh case also as a real process). Every case either succeeds or fails as designed:
the API raises a unitarium error (ids: IndexError/TypeError), the CLI prints exactly one ``unitarium: error:``
line with a non-zero status, no traceback, nothing existing changes, and nothing hangs (real processes run
under a time limit, the rest under the test's)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unitarium
from unitarium import RecordIndexError, UnitariumError
from unitarium._core.gates import load_gate_file
from unitarium._core.inputs import load_matrix
from unitarium.interop import as_unitary

from conftest import cli, edit_sqlite

CASE_TIMEOUT_S = 60  # a hang guard: each case takes about a second
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A unique random dataset (lookup), a unique enumerated one (synth), a directory one (pack)."""
    root = tmp_path_factory.mktemp("fuzz")
    made = {"unique": root / "u.db", "enum": root / "e.db", "dir": root / "d"}
    unitarium.generate(
        made["unique"], unitarium.make_spec(gates="h,t,cx", qubits=2, count=500, length="1:6", unique=True), workers=1
    )
    unitarium.generate(
        made["enum"], unitarium.make_spec(gates="h,t,cx", qubits=2, max_length=2, unique=True), workers=1
    )
    unitarium.generate(f"{made['dir']}/", unitarium.make_spec(gates="h,t", qubits=1, count=50, length="1:4"), workers=1)
    return made


def digest(root: Path) -> dict[bytes, str]:
    """sha256 of every regular file under ``root`` (names as bytes), other entries by kind; -wal/-shm skipped."""
    out: dict[bytes, str] = {}
    for dirpath, dirs, names in os.walk(os.fsencode(root)):
        for name in [*names, *dirs]:
            full = os.path.join(dirpath, name)
            if name.endswith((b"-wal", b"-shm")):
                continue
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as f:
                    out[full] = hashlib.sha256(f.read()).hexdigest()
            else:
                out[full] = "link" if os.path.islink(full) else "dir" if os.path.isdir(full) else "other"
    return out


# -- the API (Hypothesis) -------------------------------------------------------------------------------------

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 1e-320, 0.0, 1.0, 0.7071067811865476]),
    st.integers(min_value=-(10**30), max_value=10**30),
)
entries = st.one_of(
    numbers,
    st.lists(numbers, min_size=2, max_size=2),
    st.builds(lambda a, b: f"{a}+{b}j", numbers, numbers),
    st.text(max_size=8),
    st.none(),
    st.booleans(),
)
matrices = st.one_of(
    st.lists(st.lists(entries, min_size=0, max_size=4), min_size=0, max_size=4),
    entries,
    st.dictionaries(st.text(max_size=3), entries, max_size=2),
)


@FUZZ
@given(
    name=st.one_of(st.sampled_from(["g", "big", "h", "1x", "a" * 40]), st.text(max_size=10)),
    matrix=matrices,
    shape=st.sampled_from(["gates", "flat", "nomatrix", "text"]),
    suffix=st.sampled_from([".json", ".toml"]),
)
def test_a_malformed_gate_file_raises_a_gate_file_error(
    name: str, matrix: object, shape: str, suffix: str, tmp_path: Path
) -> None:
    path = tmp_path / f"g{suffix}"
    body = {"gates": {name: {"matrix": matrix}}}
    if shape == "flat":
        body = {name: matrix}  # type: ignore[dict-item]
    elif shape == "nomatrix":
        body = {"gates": {name: matrix}}  # type: ignore[dict-item]
    if shape == "text" or suffix == ".toml":
        path.write_text(f"[gates.{name}]\nmatrix = {json.dumps(matrix, default=str)}\n")
    else:
        path.write_text(json.dumps(body, allow_nan=True, default=str))
    try:
        gates = load_gate_file(path)
    except UnitariumError:
        return
    for gate in gates.values():  # what is accepted is a finite unitary
        m = gate.matrix
        assert np.isfinite(m).all() and np.allclose(m.conj().T @ m, np.eye(len(m)), atol=1e-8)


dtypes = st.sampled_from(
    [
        "<f8",
        "<f4",
        "<f2",
        "<c8",
        "<c16",
        ">c16",
        "<i8",
        "|u1",
        "|b1",
        "<U3",
        "|S2",
        "|V8",
        "<M8[s]",
        "<m8[s]",
        "[('a','<f8'),('b','<i4')]",
    ]
)
shapes = st.sampled_from([(4, 4), (2, 2), (0,), (4,), (1, 4, 4), (4, 4, 1), (16, 16), (4, 3), ()])
fills = st.sampled_from(["eye", "nan", "inf", "huge", "zeros", "random"])


def array_of(dtype: str, shape: tuple[int, ...], fill: str) -> np.ndarray:
    dt = np.dtype(eval(dtype) if dtype.startswith("[") else dtype)
    if dt.kind in "USVMm" or dt.names is not None:
        return np.zeros(shape, dtype=dt)
    base = np.zeros(shape)
    if fill == "eye" and len(shape) >= 2:
        base = np.broadcast_to(np.eye(shape[-2], shape[-1]), shape).copy()
    elif fill in ("nan", "inf", "huge"):
        base = np.full(shape, {"nan": np.nan, "inf": np.inf, "huge": 1e308}[fill])
    elif fill == "random":
        base = np.random.default_rng(1).normal(size=shape) * 1e200
    with np.errstate(all="ignore"):
        return base.astype(dt)


@FUZZ
@given(dtype=dtypes, shape=shapes, fill=fills)
def test_a_matrix_of_any_dtype_and_shape_is_a_result_or_a_unitarium_error(
    dtype: str, shape: tuple[int, ...], fill: str, data: dict[str, Path], tmp_path: Path
) -> None:
    arr = array_of(dtype, shape, fill)
    np.save(tmp_path / "m.npy", arr)
    loaded = load_matrix(tmp_path / "m.npy") if arr.dtype.kind in "biufc" and arr.dtype.names is None else arr
    with unitarium.open(data["unique"]) as ds:
        for call in (lambda: ds.lookup(loaded), lambda: as_unitary(loaded, 2)):
            with contextlib.suppress(UnitariumError):
                call()
    with unitarium.open(data["enum"]) as ds, contextlib.suppress(UnitariumError):
        ds.synthesize(loaded)
    if arr.dtype.kind not in "biufc" or arr.dtype.names is not None:
        with pytest.raises(UnitariumError):
            load_matrix(tmp_path / "m.npy")


@FUZZ
@given(
    key=st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70),
        st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=5),
        st.floats(),
        st.text(max_size=3),
        st.none(),
        st.booleans(),
        st.slices(1000),
    )
)
def test_any_record_id_is_a_record_or_an_index_or_type_error(key: object, data: dict[str, Path]) -> None:
    with unitarium.open(data["unique"]) as ds:
        try:
            got = ds[key]  # type: ignore[index]
        except (RecordIndexError, IndexError, TypeError):
            return
        records = got if isinstance(got, list) else [got]
        assert all(np.isfinite(r.unitary).all() and 0 <= r.id < len(ds) for r in records)


# -- the CLI (a table of cases, in process; every seventh also as a real process) ------------------------------------


def make_paths(root: Path) -> dict[str, str]:
    """Hostile paths inside ``root``: what each one is, by name."""
    os.mkfifo(root / "fifo")
    (root / "dir").mkdir()
    (root / "dir" / "x").write_text("x")
    os.symlink(root / "loop_a", root / "loop_b")
    os.symlink(root / "loop_b", root / "loop_a")
    os.symlink(root / "nothing", root / "dangling")
    (root / "empty").write_bytes(b"")
    (root / "junk").write_bytes(np.random.default_rng(3).bytes(5000))
    return {
        "fifo": str(root / "fifo"),
        "dir": str(root / "dir"),
        "loop": str(root / "loop_a"),
        "dangling": str(root / "dangling"),
        "device": "/dev/zero",
        "not utf-8": os.fsdecode(bytes(root) + b"/n\xe9ant.db"),
        "missing parent": str(root / "no" / "such" / "x.db"),
        "empty": str(root / "empty"),
        "junk": str(root / "junk"),
    }


def cli_cases(data: dict[str, Path], paths: dict[str, str], root: Path) -> list[tuple[str, list[str]]]:
    gen = ["--gates", "h", "--qubits", "1", "--count", "2", "--length", "1", "--quiet"]
    cases: list[tuple[str, list[str]]] = []
    for what, p in paths.items():
        cases += [
            (f"info {what}", ["info", p]),
            (f"show {what}", ["show", p, "0"]),
            (f"verify {what}", ["verify", p]),
            (f"lookup --matrix {what}", ["lookup", str(data["unique"]), "--matrix", p]),
            (f"synth --matrix {what}", ["synth", str(data["enum"]), "--matrix", p]),
            (f"--gate-file {what}", ["generate", str(root / "new.db"), "--gate-file", p, *gen]),
        ]
        if what not in ("not utf-8", "missing parent"):  # legal targets: made (a new file at a non-UTF-8 path,
            # tested elsewhere; missing parents are created, as generate creates them)
            cases.append((f"pack into {what}", ["pack", str(data["dir"]), p]))
        if what != "not utf-8":
            cases.append((f"export into {what}", ["export", str(data["unique"]), p + "/sub" if what == "junk" else p]))
    rng = np.random.default_rng(11)
    for k in range(6):  # random malformed gate files
        m = rng.choice([1e308, np.nan, 0.5, -1, 1j * 1e200], size=(2, 2)).tolist()
        body = json.dumps({"gates": {f"g{k}": {"matrix": [[str(complex(x)) for x in row] for row in m]}}})
        (root / f"gate{k}.json").write_text(body)
        cases.append(
            (
                f"random gate file {k}",
                [
                    "generate",
                    str(root / "new.db"),
                    "--gate-file",
                    str(root / f"gate{k}.json"),
                    *gen[:0],
                    "--gates",
                    f"h,g{k}",
                    "--qubits",
                    "1",
                    "--count",
                    "2",
                    "--length",
                    "1",
                    "--quiet",
                ],
            )
        )
    for k, (dtype, shape, fill) in enumerate(
        [
            ("<U3", (4, 4), "zeros"),
            ("<c16", (4, 4), "nan"),
            ("<f8", (4, 4), "huge"),
            ("<c8", (2, 2), "eye"),
            ("|V8", (4, 4), "zeros"),
            ("<c16", (4, 4), "random"),
        ]
    ):
        np.save(root / f"m{k}.npy", array_of(dtype, shape, fill))
        cases.append(
            (f"npy {dtype} {shape} {fill}", ["lookup", str(data["unique"]), "--matrix", str(root / f"m{k}.npy")])
        )
    for rid in ("500", "-501", "99999999999999999999999", "1.5", "x", "--", "-0x1"):
        cases.append(
            (
                f"show id {rid}",
                ["show", str(data["unique"]), "--", rid] if rid.startswith("-") else ["show", str(data["unique"]), rid],
            )
        )
    for atol in ("nan", "-1", "inf", "1e999", "x"):
        cases.append((f"lookup atol {atol}", ["lookup", str(data["unique"]), "--circuit", "h 0", "--atol", atol]))
    return cases


def run_case(args: list[str], cwd: Path, real: bool = False) -> subprocess.CompletedProcess:
    """One CLI case: in this process (click's runner: the same commands and error handling, without a ~1 s
    interpreter start; the test's own time limit guards hangs), or with ``real`` as ``python -m unitarium`` in a
    process of its own under :data:`CASE_TIMEOUT_S`. Either way in ``cwd``."""
    if real:
        return subprocess.run(
            [sys.executable, "-m", "unitarium", *args],
            capture_output=True,
            text=True,
            errors="surrogateescape",
            timeout=CASE_TIMEOUT_S,
            cwd=cwd,
        )
    with contextlib.chdir(cwd):
        return cli(*args, check=False)


def run_cases(cases: list[tuple[str, list[str]]], cwd: Path) -> list[tuple[str, subprocess.CompletedProcess]]:
    """Every case in this process, one after the other; every seventh also as a real process (concurrently), so
    that the real entry point is held to the same line."""
    real = cases[::7]
    with ThreadPoolExecutor(2) as pool:
        procs = pool.map(lambda case: (f"{case[0]} (real process)", run_case(case[1], cwd, real=True)), real)
        outcomes = [(name, run_case(args, cwd)) for name, args in cases]
        return outcomes + list(procs)


def test_hostile_paths_files_ids_and_tolerances_through_the_cli(data: dict[str, Path], tmp_path: Path) -> None:
    paths = make_paths(tmp_path)
    cases = cli_cases(data, paths, tmp_path)
    watched = [tmp_path, *(p.parent for p in data.values())]
    before = {str(w): digest(w) for w in watched}
    outcomes = run_cases(cases, tmp_path)
    failures = []
    for name, proc in outcomes:
        lines = proc.stderr.splitlines()
        if proc.returncode == 0 or proc.returncode < 0:
            failures.append(f"{name}: exit {proc.returncode}\n{proc.stdout[-300:]}{proc.stderr[-300:]}")
        elif "Traceback" in proc.stderr or not lines or not lines[-1].startswith("unitarium: error: "):
            failures.append(f"{name}: not one error line:\n{proc.stderr[-600:]}")
        elif len([x for x in lines if x.strip()]) != 1 and not name.startswith("verify"):
            failures.append(f"{name}: {len(lines)} lines:\n{proc.stderr}")
    assert not failures, "\n\n".join(failures)
    after = {str(w): digest(w) for w in watched}
    assert after == before
    assert len(cases) > 90


# -- tampered directories (issue #17) ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(made) -> tuple[Path, Path]:
    """Two directory datasets of one gate set and another seed, two segments each, under the same names."""
    a, b = (
        made(gates="h,t,cx", qubits=2, count=12_000, length=6, seed=seed, layout="directory", workers=2)
        for seed in (1, 2)
    )
    return a, b


def _first_segment(d: Path) -> str:
    import sqlite3

    conn = sqlite3.connect(d / "manifest.db")
    try:
        (name,) = conn.execute("SELECT name FROM shards WHERE " + FIRST + "").fetchone()
    finally:
        conn.close()
    return f"{name}.db"


def _swap(a: Path, b: Path) -> None:
    a.rename(a.with_name("swap"))
    b.rename(a)
    a.with_name("swap").rename(b)


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


FIRST = "shard = (SELECT shard FROM tasks WHERE task_id = 0)"
RUNAWAY_VIEW = (
    "CREATE VIEW tasks AS SELECT * FROM tasks_real WHERE (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL "
    "SELECT n + 1 FROM c WHERE n < 400000000) SELECT max(n) FROM c) > 0"
)
TAMPERINGS = {
    "foreign segment": lambda d, b, s: shutil.copy(b / "shards" / s[0], d / "shards" / s[0]),
    "foreign symlink": lambda d, b, s: (
        (d / "shards" / s[0]).unlink(),
        (d / "shards" / s[0]).symlink_to(b / "shards" / s[0]),
    ),
    "swapped segments": lambda d, b, s: _swap(d / "shards" / s[0], d / "shards" / s[1]),
    "renamed segment": lambda d, b, s: (d / "shards" / s[0]).rename(d / "shards" / "r0009-w000-000000.db"),
    "truncated segment": lambda d, b, s: _truncate(d / "shards" / s[0]),
    "grown segment": lambda d, b, s: (d / "shards" / s[0]).open("ab").write(b"\0" * 65536),
    "manifest: task deleted": lambda d, b, s: edit_sqlite(d / "manifest.db", "DELETE FROM tasks WHERE task_id = 0"),
    "manifest: first ids shifted": lambda d, b, s: edit_sqlite(
        d / "manifest.db", "UPDATE tasks SET first_id = first_id + 7 WHERE task_id >= 1"
    ),
    "manifest: name ../..": lambda d, b, s: edit_sqlite(
        d / "manifest.db",
        "UPDATE shards SET name = '../../x' WHERE " + FIRST,
    ),
    "manifest: absolute name": lambda d, b, s: edit_sqlite(
        d / "manifest.db",
        f"UPDATE shards SET name = '{b / 'shards' / s[0][:-3]}' WHERE " + FIRST,
    ),
    "manifest: segment bytes": lambda d, b, s: edit_sqlite(d / "manifest.db", "UPDATE shards SET bytes = bytes + 1"),
    "manifest: shard of a task": lambda d, b, s: edit_sqlite(
        d / "manifest.db", "UPDATE tasks SET shard = 99 WHERE task_id = 0"
    ),
    "manifest: tasks view": lambda d, b, s: edit_sqlite(
        d / "manifest.db", "ALTER TABLE tasks RENAME TO tasks_real", RUNAWAY_VIEW
    ),
}


def test_tampered_directories_are_refused_by_every_command(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """A foreign, swapped, renamed, truncated or grown segment, or an edited manifest: info, show (of record
    0, in the first segment), verify (sampled and --all), pack and export each refuse with one error line on
    stderr, a non-zero status and no traceback, within the time limit; nothing is ever served."""
    cases = []
    for name, tamper in TAMPERINGS.items():
        d = tmp_path / name.replace(" ", "_").replace(":", "").replace(".", "")
        shutil.copytree(pair[0], d, symlinks=True)
        names = sorted(p.name for p in (d / "shards").iterdir())
        first = _first_segment(d)  # the one holding task 0, which show reads
        tamper(d, pair[1], [first, *[n for n in names if n != first]])
        for args in (
            ["info", d],
            ["show", d, "0"],
            ["verify", d],
            ["verify", d, "--all"],
            ["pack", d, tmp_path / f"{d.name}.db"],
            ["export", d, tmp_path / f"{d.name}-export"],
        ):
            cases.append((f"{name}: {args[0]} {' '.join(map(str, args[2:3]))}", [str(a) for a in args]))
    outcomes = run_cases(cases, tmp_path)
    failures = []
    for name, proc in outcomes:
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        if proc.returncode == 0 or proc.returncode < 0:
            failures.append(f"{name}: exit {proc.returncode}\n{proc.stdout[-300:]}{proc.stderr[-300:]}")
        elif "Traceback" in proc.stderr or len(lines) != 1 or not lines[0].startswith("unitarium: error: "):
            failures.append(f"{name}: not one error line:\n{proc.stderr[-600:]}")
    assert not failures, "\n\n".join(failures)
    assert not any(p.suffix == ".db" for p in tmp_path.iterdir()), "pack left a file"
