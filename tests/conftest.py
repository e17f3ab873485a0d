"""Shared fixtures: temp datasets, and running the CLI (in this process through click's runner, or in a
process of its own where a test is about the process)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import unitarium

REPO = Path(__file__).resolve().parents[1]

with contextlib.suppress(ImportError):  # pytest-xdist's hook, where xdist is installed (the test extra)
    from _xdist_order import pytest_xdist_make_scheduler  # noqa: F401


def _utf8(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Reports naming paths that are not UTF-8 (test_hardening makes such paths) in text pytest-xdist can send."""
    outcome = yield
    report = outcome.get_result()
    report.sections = [(_utf8(name), _utf8(text)) for name, text in report.sections]
    if report.longrepr is not None:
        try:
            str(report.longrepr).encode("utf-8")
        except UnicodeEncodeError:
            report.longrepr = _utf8(str(report.longrepr))


REAL_CLI = os.environ.get("UNITARIUM_TEST_REAL_CLI", "") not in ("", "0")
"""``UNITARIUM_TEST_REAL_CLI=1``: every :func:`cli` call runs ``python -m unitarium`` in a process of its own."""


def cli(
    *args: str | os.PathLike[str], check: bool = True, timeout: float = 300, real: bool = False, **kwargs
) -> subprocess.CompletedProcess:
    """Run the ``unitarium`` command with ARGS; its exit status, stdout and stderr as a CompletedProcess.

    In this process through click's ``CliRunner`` (the same command objects and error handling as
    ``python -m unitarium``, without a ~1 s interpreter start), unless ``real`` (or subprocess options
    such as ``env``/``cwd``/``input`` are given, or ``UNITARIUM_TEST_REAL_CLI=1``): then
    ``python -m unitarium ARGS`` in its own process. An exception escaping the command in process is
    rendered as the traceback a real process would print, with exit status 1."""
    if real or kwargs or REAL_CLI:
        proc = subprocess.run(
            [sys.executable, "-m", "unitarium", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )
    else:
        proc = _cli_in_process([str(a) for a in args])
    if check and proc.returncode != 0:
        raise AssertionError(f"unitarium {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def _cli_in_process(args: list[str]) -> subprocess.CompletedProcess:
    from click.testing import CliRunner

    from unitarium.cli.main import main

    result = CliRunner().invoke(main, args, prog_name="unitarium", catch_exceptions=True)
    code, stderr = result.exit_code, result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        code, stderr = 1, stderr + "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["unitarium", *args], code, result.stdout, stderr)


def content(path: str | os.PathLike[str]) -> list[tuple[str, bytes]]:
    """A dataset's content in id order: (circuit text, unitary bytes) per record."""
    ds = unitarium.open(path)
    try:
        return [(str(r.circuit), r.unitary.tobytes()) for r in ds]
    finally:
        ds.close()


@pytest.fixture
def small_spec() -> unitarium.Spec:
    return unitarium.make_spec(gates="h,t,tdg,cx", qubits=2, count=10_000, length="1:12", seed=3)


@pytest.fixture
def small_dataset(tmp_path: Path, small_spec: unitarium.Spec, made: Callable[..., Path]) -> Path:
    """The dataset of :func:`small_spec` in this test's own file (a copy of the one made once per session)."""
    return copy_dataset(made(small_spec), tmp_path / "small.db")


ALL_GATES = (
    "i,x,y,z,h,s,sdg,t,tdg,sx,sxdg,rx(pi/4),ry(pi/3),rz(pi/4),p(0.3),u(pi/2,0.1,-2pi/3),"
    "cx,cy,cz,ch,swap,iswap,ecr,ccx,cswap"
)
"""Every standard gate (parametric ones with fixed angles), as a --gates value."""


# -- helpers for the reliability tests (crash, signals, concurrency, disk full, bad input) --------------------

IS_ROOT = os.geteuid() == 0
DROP_ROOT_POWERS = [
    *("setpriv", "--bounding-set", "-dac_override,-dac_read_search"),
    *("--inh-caps", "-dac_override,-dac_read_search", "--"),
]
"""As root, file modes are not enforced (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH): prefix a command with this to
run it without those capabilities, so modes apply to it as to any user (util-linux's setpriv, in every Debian)."""


def start_cli(*args: str | os.PathLike[str], **kwargs) -> subprocess.Popen:
    """Start ``python -m unitarium ARGS`` in its own session (so ``os.killpg(proc.pid, ...)`` reaches it and its
    workers, like Ctrl-C in a terminal), stdout discarded, stderr captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "unitarium", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )


def wait_until(predicate, *, timeout: float, what: str, interval: float | None = None):
    """Poll ``predicate`` until it returns something truthy; a hang guard, not a timing assertion.

    Between polls it sleeps ``interval`` where given, else 5 ms or three times the predicate's own time, whichever
    is longer: a costly predicate (:func:`records_in` opens the dataset, ~5 ms of CPU; :func:`group_gone` reads every
    process's stat) polled every 5 ms took half a core, on 2 cores, from the very run it waits for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        start = time.monotonic()
        value = predicate()
        if value:
            return value
        time.sleep(interval if interval is not None else max(0.005, 3 * (time.monotonic() - start)))
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def records_in(path: str | os.PathLike[str]) -> int:
    """Records committed in ``path`` so far (0 while there is no dataset there yet)."""
    try:
        with unitarium.open(path) as ds:
            return len(ds)
    except unitarium.DatasetMissingError:
        return 0


def worker_pids(pid: int) -> list[int]:
    """The worker processes (multiprocessing ``spawn`` children) of process ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                found.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def group_gone(pgid: int) -> bool:
    """Whether no live process is left in process group ``pgid`` (orphaned zombies do not count)."""
    return not group_members(pgid)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a process started by :func:`start_cli` and everything in its group; reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    wait_until(lambda: group_gone(proc.pid), timeout=60, what=f"process group {proc.pid} to disappear")


def edit_sqlite(path: Path, *statements: str) -> None:
    """Run SQL ``statements`` on the SQLite file ``path`` in one transaction (a tampering tool for tests)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        conn.close()


def one_error_line(stderr: str) -> str:
    """Assert ``stderr`` is exactly one ``unitarium: error: ...`` line (no traceback) and return it."""
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("unitarium: error: "), f"not one error line:\n{stderr}"
    assert "Traceback" not in stderr and "database is locked" not in stderr, stderr
    return lines[0]


def file_digests(path: str | os.PathLike[str]) -> dict[str, str]:
    """sha256 of a dataset file and of its ``-wal`` when that holds anything: equal before and after means
    unchanged (an empty ``-wal`` comes and goes with connections and holds nothing)."""
    out = {}
    for p in (Path(path), Path(f"{path}-wal")):
        if p.exists() and (p == Path(path) or p.stat().st_size):
            out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def label_rows(path: str | os.PathLike[str]) -> int:
    """How many label chunks ``PATH.labels`` has committed (0 while it is missing or has no table yet)."""
    where = Path(f"{path}.labels")
    if not where.exists():
        return 0
    conn = sqlite3.connect(f"file:{where}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM labels").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def integrity(path: str | os.PathLike[str]) -> str:
    """``PRAGMA integrity_check`` through plain read-only sqlite3 connections: of a dataset file, or of a
    directory's manifest and every segment file in it ("ok" when all are). A file with a non-empty ``-journal``
    (perhaps hot: a writer killed mid-commit in rollback-journal mode) is checked through a plain read-write
    connection, which rolls a hot journal back first, as any SQLite reader that may write does (a read-only one
    refuses such a file)."""
    path = Path(path)
    files = [path / "manifest.db", *sorted((path / "shards").glob("*.db"))] if path.is_dir() else [path]
    results = []
    for file in files:
        journal = Path(f"{file}-journal")
        hot = journal.exists() and journal.stat().st_size > 0
        conn = sqlite3.connect(f"file:{file.absolute()}?mode={'rw' if hot else 'ro'}", uri=True)
        try:
            results.append("; ".join(row[0] for row in conn.execute("PRAGMA integrity_check")))
        finally:
            conn.close()
    bad = [r for r in results if r != "ok"]
    return "; ".join(bad) if bad else "ok"


def uninterrupted(factory: pytest.TempPathFactory, name: str, args: list[str]) -> Path:
    """The dataset of an uninterrupted one-worker ``generate ARGS`` (any worker count gives the same content),
    made once per test session (:func:`cached`): read it, never change it."""

    def build(path: Path) -> None:
        cli("generate", path, *args, "--workers", "1", "--quiet")

    return cached(factory, json.dumps(["generate", *map(str, args)]), build, name)


# -- a session cache of generated datasets, keyed by spec ----------------------------------------------------


def _cache_root(factory: pytest.TempPathFactory) -> Path:
    """Where :func:`cached` keeps its datasets: this session's base temporary directory, or under pytest-xdist the
    one its workers share (each worker's own is ``.../popen-gwN`` under it), so each dataset is made once per run."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / "dataset-cache"
    root.mkdir(exist_ok=True)
    return root


def cached(factory: pytest.TempPathFactory, key: str, build: Callable[[Path], object], name: str = "ds.db") -> Path:
    """``ENTRY/NAME`` after ``build(ENTRY/NAME)``, run once per test session for each ``key`` (a file lock makes
    the other xdist workers wait for it, then take the same one). Shared: read it, never change it; a test that
    changes a dataset works on :func:`copy_dataset` of it."""
    root = _cache_root(factory)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    entry, done = root / digest, root / f"{digest}.done"
    with open(root / f"{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            if entry.exists():  # a build that failed part way
                shutil.rmtree(entry)
            entry.mkdir()
            build(entry / name)
            done.write_text(key)
    return entry / name


@pytest.fixture(scope="session")
def made(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``made(spec, layout="file", workers=1)`` (or ``made(**make_spec kwargs)``): the path of the dataset
    ``unitarium.generate`` makes of ``spec``, made once per test session and shared by every test that asks for the
    same spec, layout and worker count. Read it, never change it: a test that changes it takes
    :func:`copy_dataset` of it."""

    def make(spec: unitarium.Spec | None = None, /, *, layout: str = "file", workers: int = 1, **kwargs) -> Path:
        if spec is None:
            spec = unitarium.make_spec(**kwargs)
        elif kwargs:
            raise TypeError("made() takes a spec or make_spec keyword arguments, not both")
        if layout not in ("file", "directory"):
            raise ValueError(f"layout must be 'file' or 'directory', not {layout!r}")
        key = json.dumps(["made", spec.canonical_json(), layout, workers])

        def build(path: Path) -> None:
            unitarium.generate(f"{path}/" if layout == "directory" else path, spec, workers=workers)

        return cached(tmp_path_factory, key, build, "ds" if layout == "directory" else "ds.db")

    return make


def copy_dataset(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """A copy of dataset ``src`` at ``dst`` (a file with its ``-wal`` if it has one, or a directory tree) for a
    test that changes it."""
    src, dst = Path(src), Path(dst)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copyfile(src, dst)
        wal = Path(f"{src}-wal")
        if wal.exists() and wal.stat().st_size:
            shutil.copyfile(wal, f"{dst}-wal")
    return dst


@dataclasses.dataclass
class Snapshot:
    """A dataset's records through the public API: unitaries ``(n, d, d)``, circuit lengths, all codes."""

    unitaries: np.ndarray
    lengths: np.ndarray
    codes: np.ndarray

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> Snapshot:
        """The records as ``Dataset.codes`` serves them (what ``circuits()`` wraps one Circuit a record: 1.2 s for
        600,000 records, where the arrays take 0.2 s)."""
        with unitarium.open(path) as ds:
            codes, offsets = ds.codes(0, len(ds))
            return cls(ds.unitaries(), np.diff(offsets).astype(np.int64), codes.astype(np.int64))

    def __len__(self) -> int:
        return len(self.lengths)

    def is_prefix_of(self, other: Snapshot) -> bool:
        """Whether these records are the first ``len(self)`` records of ``other``, bit for bit."""
        n = len(self)
        return (
            n <= len(other)
            and np.array_equal(self.lengths, other.lengths[:n])
            and np.array_equal(self.codes, other.codes[: len(self.codes)])
            and self.unitaries.tobytes() == other.unitaries[:n].tobytes()
        )

    def equals(self, other: Snapshot) -> bool:
        return len(self) == len(other) and self.is_prefix_of(other)


# -- digest pins: the content of a fixed set of specs, bit for bit ---------------------------------------------------

PINNED_SPECS: dict[str, dict] = {
    "random": dict(gates="h,t,tdg,cx", qubits=2, count=20_000, length="1:12", seed=3),
    "random computed": dict(gates="h,t,tdg,cx", qubits=2, count=20_000, length="1:12", seed=3, unitaries="computed"),
    "enumerate": dict(gates="h,t,tdg,cx", qubits=2, max_length=5),
    "unique random": dict(gates="h,s,cx", qubits=2, count=12_000, length="1:9", seed=5, unique=True),
    "unique enumerate": dict(gates="h,s,cx", qubits=2, max_length=7, unique=True),
    "unique enumerate 3 qubits computed": dict(
        gates="h,s,cx", qubits=3, max_length=4, unique=True, unitaries="computed"
    ),
    "3 qubits complex128": dict(gates="clifford+t", qubits=3, count=3_000, length="0:20", seed=9, dtype="complex128"),
}
"""Specs whose content :data:`PINNED_DIGESTS` pins in every layout and engine (``test_digests``, ``test_ray``)."""

PINNED_DIGESTS: dict[str, str] = {
    "random": "bab82fcefc89bb923ee3795f216c4403a64929fc456e9b26a1a2a91d8b829f1a",  # 20,000 records
    "random computed": "bab82fcefc89bb923ee3795f216c4403a64929fc456e9b26a1a2a91d8b829f1a",  # the same bits, recomputed
    "enumerate": "0fe62604250311e477b65c5ef448e7200ede74ccfcc51615a3db6ebf3869e23d",  # 11,244 records
    "unique random": "db840be46114a6ad97cdeb35f38de542d55900ff682e2b32c35aaa502cfb2af5",  # 2,541 records
    "unique enumerate": "38c7a85b95f6690108a901adfc08e957c8dfa86caaf565f151679fd2b1459478",  # 5,097 records
    "unique enumerate 3 qubits computed": "8da33b4159418357e6d73e05d23e488b95e7613404951f3490f8bfc652ffa50a",  # 4,710
    "3 qubits complex128": "349750628fc68e1a5f32f20ec9b16b3380a8117fdb6a49e1298ba6baafa454e5",  # 3,000 records
}
"""sha256 of :func:`dataset_digest` per spec: kernel version 6 (re-pinned once: kernel 5's products depended on the
machine's BLAS kernel and SIMD level; 6's are the same on every machine, ``test_portable`` checks that). The third
wave's refactor kept every byte of these specs' content under kernel 5 (pinned on main ``6c1f742``). A change here
means the content changed: only an intended change of the RNG stream, move order or kernels (with a KERNEL_VERSION
bump) may re-pin, and says so in its commit."""


def dataset_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a dataset's content: its record count, its committed summary (records, tasks, candidates, length
    histogram), every record's move codes and offsets, and every unitary's bytes as served, in id order."""
    h = hashlib.sha256()
    with unitarium.open(path) as ds:
        n = len(ds)
        summary = {k: ds.summary.get(k) for k in ("records", "tasks", "candidates", "lengths")}
        h.update(repr((n, sorted(summary.items()))).encode())
        codes, offsets = ds.codes(0, n)
        h.update(codes.astype("<i8").tobytes())
        h.update(offsets.astype("<i8").tobytes())
        for a in range(0, n, 1 << 15):
            u = ds.unitaries(a, min(n, a + (1 << 15)))
            h.update(u.astype(u.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def stopped_after(path: str | os.PathLike[str], spec: unitarium.Spec, reports: int = 2, **kwargs) -> list:
    """``unitarium.generate(path, spec, **kwargs)`` stopped by its progress callback raising at its ``reports``-th
    report (a run that dies after some commits; the commits in flight are kept); returns the reports seen."""
    seen: list[unitarium.Progress] = []

    def explode(p: unitarium.Progress) -> None:
        seen.append(p)
        if len(seen) == reports:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        unitarium.generate(path, spec, progress=explode, **kwargs)
    return seen
