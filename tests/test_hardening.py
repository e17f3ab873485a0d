"""Issue #11, "hardening": wrong data is never served, nothing hangs, every failure is one line.

One test (or a few) per item of the issue, each failing without its fix: overflowing gate and lookup
matrices, NaN in a stored unitary (with a forged checksum), truncated files and segments, FIFOs and
other irregular inputs, paths that are not UTF-8, string and structured ``.npy`` files, the --workers
bound, stale temporaries of killed creators, and the smaller items (damage seen by lookup, the record
count against the spec, missing segments named as such, dangling links, bad atol)."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import unitarium
from unitarium import DatasetDamagedError, DatasetMissingError, GateFileError, NotADatasetError, SpecError
from unitarium.interop import as_unitary, unitary_from_qasm_file

from conftest import cli, one_error_line

HANG_S = 60  # a hang guard for every CLI call below: each takes well under a second
OVERFLOW_GATE = {"gates": {"big": {"matrix": [["1e308+1e308j", 0], [0, 1]]}}}
NON_UTF8 = os.fsdecode(b"l\xe9gacy")


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (by relative path, as bytes: names need not be UTF-8), FIFOs by name."""
    out = {}
    for dirpath, _, names in os.walk(os.fsencode(root)):
        for name in names:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, os.fsencode(root)).decode("utf-8", "backslashreplace")
            if name.endswith((b"-shm", b"-wal")):
                continue  # come and go with readers' connections
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
            else:
                out[rel] = "not a file"
    return out


def fails_in_one_line(*args: str | os.PathLike[str], cwd: Path | None = None, real: bool = False) -> str:
    """Run the CLI; assert it exits non-zero with one ``unitarium: error:`` line; return the line. In this process
    (conftest's ``cli``), or in a process of its own where the test is about one: given ``cwd`` (paths that are not
    UTF-8, as the process's arguments and output, printed as they are) or ``real`` (a hang guard: ``HANG_S``)."""
    if cwd is None and not real:
        proc = cli(*args, check=False)
    else:
        proc = cli(*args, check=False, timeout=HANG_S, cwd=cwd, errors="surrogateescape")
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    return one_error_line(proc.stderr)


@pytest.fixture(scope="module")
def unique_file(made) -> Path:
    return made(gates="h,t,cx", qubits=2, count=3000, length="1:8", unique=True, seed=5)


def copy_of(src: Path, dst: Path) -> Path:
    if src.is_dir():
        import shutil

        shutil.copytree(src, dst)
    else:
        dst.write_bytes(src.read_bytes())
    return dst


# -- 1. overflow passes the unitarity check -------------------------------------------------------------


def test_an_overflowing_gate_file_entry_is_refused(tmp_path: Path) -> None:
    """|U^dag U - I| overflows to NaN, and NaN > atol is false: it must still be refused (no records of NaN)."""
    gates = tmp_path / "g.json"
    gates.write_text(json.dumps(OVERFLOW_GATE))
    with pytest.raises(GateFileError, match="'big' is not unitary"):
        unitarium.make_spec(gates="h,big", gate_file=gates, qubits=1, count=5, length="2")
    line = fails_in_one_line(
        "generate", tmp_path / "x.db", "--gates", "h,big", "--gate-file", gates, "--qubits", "1", "--count", "5",
        "--length", "2", "--quiet",
    )  # fmt: skip
    assert "not unitary" in line
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("entry", [complex(1e308, 1e308), complex(1e200, 0), complex(-1e308, 1e308)])
def test_an_overflowing_matrix_is_refused_by_lookup_as_unitary_and_synthesize(entry: complex, tmp_path: Path) -> None:
    u = np.eye(4, dtype=complex)
    u[0, 0] = entry
    spec = unitarium.make_spec(gates="h,t,cx", qubits=2, max_length=2, unique=True)
    path = tmp_path / "e.db"
    unitarium.generate(path, spec, workers=1)
    with pytest.raises(SpecError, match="not unitary"):
        as_unitary(u, 2)
    with unitarium.open(path) as ds:
        with pytest.raises(SpecError, match="not unitary"):
            ds.lookup(u)
        with pytest.raises(SpecError, match="unitary"):
            ds.synthesize(u)
    np.save(tmp_path / "u.npy", u)
    for command in ("lookup", "synth"):
        assert "unitary" in fails_in_one_line(command, path, "--matrix", tmp_path / "u.npy")


# -- 2. verify and show cannot be fooled by NaN -----------------------------------------------------------


def forge_nan(path: Path, task: int, row: int) -> None:
    """Write NaN into one stored unitary of a unique complex64 file and recompute the checksums to match."""
    from unitarium._core.codec import page_checks

    with unitarium.open(path) as ds:
        fmt = ds.format
    conn = sqlite3.connect(path)
    try:
        off, codes, blob, keys = conn.execute(
            "SELECT offsets, codes, unitaries, keys FROM blocks WHERE task_id = ?", (task,)
        ).fetchone()
        u = np.frombuffer(blob, dtype="<c8").copy()
        u[16 * row + 5] = complex("nan")
        key = np.frombuffer(keys, "<i8")
        checks = page_checks(fmt, task, np.frombuffer(off, "<u4"), np.frombuffer(codes, fmt.code_dtype), u, key)
        with conn:
            conn.execute(
                "UPDATE blocks SET unitaries = ?, checks = ? WHERE task_id = ?", (u.tobytes(), checks.tobytes(), task)
            )
    finally:
        conn.close()


def test_verify_and_show_refuse_a_nan_written_with_a_forged_checksum(unique_file: Path, tmp_path: Path) -> None:
    path = copy_of(unique_file, tmp_path / "nan.db")
    with unitarium.open(path) as ds:
        (first,) = ds._query("SELECT first_id FROM tasks WHERE task_id = 0")[0]
    forge_nan(path, 0, 3)
    rid = first + 3
    with unitarium.open(path) as ds:
        report = ds.verify(sample=None)
        assert not report.ok and math_isnan(report.max_error), report
        assert any("differs" in p and "nan" in p for p in report.problems), report.problems
        with pytest.raises(DatasetDamagedError, match=rf"records {rid}\.\.{rid}\).*NaN"):
            ds[rid]
        with pytest.raises(DatasetDamagedError, match="NaN"):
            ds[[rid - 1, rid]]
        assert np.isfinite(ds[rid + 1].unitary).all()  # its neighbours are served
    proc = cli("verify", path, "--all", check=False, timeout=HANG_S)
    assert proc.returncode == 1 and "ok" not in proc.stdout.split() and "problem:" in proc.stderr
    line = fails_in_one_line("show", path, str(rid))
    assert "NaN" in line and "nan" not in cli("show", path, str(rid + 1), timeout=HANG_S).stdout


def math_isnan(x: float) -> bool:
    return x != x


# -- 3. a truncated file or segment serves nothing --------------------------------------------------------


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_a_truncated_dataset_fails_every_read_in_one_line(layout: str, tmp_path: Path) -> None:
    path = tmp_path / ("t.db" if layout == "file" else "t")
    spec = unitarium.make_spec(gates="h,t,cx", qubits=3, count=20_000, length="1:8", seed=2)
    unitarium.generate(path if layout == "file" else f"{path}/", spec, workers=1)
    victim = path if layout == "file" else sorted((path / "shards").glob("*.db"))[0]
    os.truncate(victim, victim.stat().st_size - 1000)
    for args in (("info",), ("show", "0"), ("show", "-1"), ("verify",), ("verify", "--all")):
        proc = cli(args[0], path, *args[1:], check=False, timeout=HANG_S)
        assert proc.returncode != 0, (args, proc.stdout)
        assert "truncated" in proc.stderr and len(proc.stderr.splitlines()) == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    with pytest.raises(DatasetDamagedError, match="truncated"), unitarium.open(path) as ds:
        ds[len(ds) - 1]
    with pytest.raises(DatasetDamagedError, match="truncated"), unitarium.open(path) as ds:
        ds.unitaries()


def test_a_missing_segment_is_named_not_called_damage(tmp_path: Path) -> None:
    spec = unitarium.make_spec(gates="h,t,cx", qubits=2, count=2000, length="1:8", seed=2)
    unitarium.generate(f"{tmp_path}/d/", spec, workers=1)
    (segment,) = (tmp_path / "d" / "shards").glob("*.db")
    segment.unlink()
    for args in (("info",), ("show", "0"), ("verify",)):
        line = fails_in_one_line(args[0], tmp_path / "d", *args[1:])
        assert f"missing its segment file shards/{segment.name}" in line and "damaged" not in line, line
    with pytest.raises(DatasetMissingError, match="missing its segment"):
        unitarium.open(tmp_path / "d")[0]


# -- 5. FIFOs and other irregular files never hang a reader -------------------------------------------------


def test_fifos_are_refused_by_every_reader(unique_file: Path, tmp_path: Path) -> None:
    for name in ("f.db", "f.npy", "f.json", "f.qasm"):
        os.mkfifo(tmp_path / name)
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "d" / "manifest.db")
    enum = tmp_path / "e.db"
    unitarium.generate(enum, unitarium.make_spec(gates="h,t", qubits=1, max_length=3, unique=True), workers=1)
    before = tree_digest(tmp_path)
    cases = [
        ("info", tmp_path / "f.db"),
        ("show", tmp_path / "f.db", "0"),
        ("verify", tmp_path / "f.db"),
        ("info", tmp_path / "d"),
        ("lookup", unique_file, "--matrix", tmp_path / "f.npy"),
        ("lookup", unique_file, "--qasm", tmp_path / "f.qasm"),
        ("synth", enum, "--matrix", tmp_path / "f.npy"),
        ("generate", tmp_path / "f.db", "--gates", "h", "--qubits", "1", "--count", "1", "--length", "1"),
        *[
            (
                "generate",
                tmp_path / "x.db",
                "--gate-file",
                tmp_path / gate,
                "--gates",
                "h",
                "--qubits",
                "1",
                "--count",
                "1",
                "--length",
                "1",
            )
            for gate in ("f.json", "d", "/dev/zero")
        ],
        ("pack", tmp_path / "d", tmp_path / "p.db"),
        ("export", tmp_path / "f.db", tmp_path / "out"),
    ]
    for args in cases:
        line = fails_in_one_line(*args, real=True)  # a reader that hangs on a FIFO is stopped after HANG_S
        assert re.search(r"not a regular file|is a directory|FIFO|without a manifest", line), (args, line)
    assert tree_digest(tmp_path) == before
    with pytest.raises(NotADatasetError, match="not a regular file"):
        unitarium.open(tmp_path / "f.db")
    with pytest.raises(SpecError, match="not a regular file"):
        unitary_from_qasm_file(tmp_path / "f.qasm", 1)
    with pytest.raises(GateFileError, match="not a regular file"):
        unitarium.make_spec(gates="h", gate_file=tmp_path / "f.json", qubits=1, count=1, length="1")


def test_a_dangling_symbolic_link_says_so(tmp_path: Path) -> None:
    (tmp_path / "link.db").symlink_to(tmp_path / "gone.db")
    (tmp_path / "link.npy").symlink_to(tmp_path / "gone.npy")
    assert "symbolic link to nothing" in fails_in_one_line("info", tmp_path / "link.db")
    with pytest.raises(DatasetMissingError, match="symbolic link to nothing"):
        unitarium.open(tmp_path / "link.db")


# -- 6. paths that are not UTF-8 ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_paths_that_are_not_utf8_work_end_to_end(layout: str, tmp_path: Path) -> None:
    name = NON_UTF8 + (".db" if layout == "file" else "")
    target = name if layout == "file" else f"{name}/"
    missing = fails_in_one_line("info", name, cwd=tmp_path)
    assert "l\\xe9gacy" in missing, missing  # the byte shown escaped, once
    gen = ("generate", target, "--gates", "h,t,cx", "--qubits", "2", "--count", "300", "--length", "1:5", "--unique")
    for workers in ("1", "2"):
        proc = cli(*gen, "--workers", workers, "--quiet", cwd=tmp_path, timeout=HANG_S, errors="surrogateescape")
        assert "Traceback" not in proc.stderr
    for args in (("info",), ("show", "0"), ("verify", "--all"), ("lookup", "--circuit", "h 0")):
        cli(args[0], name, *args[1:], cwd=tmp_path, timeout=HANG_S, errors="surrogateescape")
    packed = NON_UTF8 + "-packed.db"
    if layout == "directory":
        cli("pack", name, packed, cwd=tmp_path, timeout=HANG_S, errors="surrogateescape")
        assert len(unitarium.open(tmp_path / packed)) == len(unitarium.open(tmp_path / name))
    proc = cli("export", name, NON_UTF8 + "-export", cwd=tmp_path, timeout=HANG_S, errors="surrogateescape")
    assert (tmp_path / (NON_UTF8 + "-export") / "README.md").read_text(encoding="utf-8")
    ds = unitarium.open(tmp_path / name)
    assert len(ds) > 0 and ds.verify(sample=None).ok and "\\udce9" in repr(ds)
    with pytest.raises(DatasetMissingError):
        unitarium.open(tmp_path / (NON_UTF8 + "-nothing.db"))


# -- 7. string and structured .npy files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.array([["1", "0", "0", "0"]] * 4),
        np.array([[b"1", b"0", b"0", b"0"]] * 4),
        np.zeros((4, 4), dtype=[("a", "f8"), ("b", "i4")]),
        np.zeros((4, 4), dtype="datetime64[s]"),
    ],
    ids=["str", "bytes", "structured", "datetime"],
)
def test_lookup_and_synth_refuse_npy_files_that_do_not_hold_numbers(
    array: np.ndarray, unique_file: Path, tmp_path: Path
) -> None:
    np.save(tmp_path / "m.npy", array)
    enum = tmp_path / "e.db"
    unitarium.generate(enum, unitarium.make_spec(gates="h,t,cx", qubits=2, max_length=2, unique=True), workers=1)
    assert "not of numbers" in fails_in_one_line("lookup", unique_file, "--matrix", tmp_path / "m.npy")
    assert "not of numbers" in fails_in_one_line("synth", enum, "--matrix", tmp_path / "m.npy")
    for ds_path in (unique_file, enum):
        with unitarium.open(ds_path) as ds, pytest.raises(SpecError, match=r"numbers|cannot use"):
            ds.lookup(array)
    with unitarium.open(enum) as ds, pytest.raises(SpecError, match="numbers"):
        ds.synthesize(array)
    with pytest.raises(SpecError):
        as_unitary(array, 2)


def test_a_npy_header_that_promises_more_than_the_file_holds(unique_file: Path, tmp_path: Path) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, np.eye(4, dtype=complex))
    (tmp_path / "lie.npy").write_bytes(buf.getvalue().replace(b"(4, 4)", b"(999999999999, 4)"))
    assert "truncated" in fails_in_one_line("lookup", unique_file, "--matrix", tmp_path / "lie.npy")


# -- 8. --workers has an upper bound ----------------------------------------------------------------------------


def test_workers_beyond_the_machine_are_refused_and_create_nothing(tmp_path: Path) -> None:
    args = ("--gates", "h", "--qubits", "1", "--count", "1", "--length", "1", "--workers", "100000")
    for target in ("x.db", "d/"):
        line = fails_in_one_line("generate", tmp_path / target, *args)
        assert "--workers 100000" in line and "at most" in line
    assert list(tmp_path.iterdir()) == []
    spec = unitarium.make_spec(gates="h", qubits=1, count=1, length="1")
    with pytest.raises(SpecError, match="at most"):
        unitarium.generate(tmp_path / "y.db", spec, workers=100_000)
    summary = unitarium.generate(tmp_path / "z.db", spec, workers=2)  # capped at the one task that exists
    assert summary.records == 1


# -- 9. stale temporaries of killed creators ----------------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_temporary_of_a_dead_creator_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    stale = tmp_path / f".x.db.{dead_pid()}.0123abcd.tmp"
    stale.write_bytes(b"\0" * 4096)
    other = tmp_path / f".y.db.{dead_pid()}.0123abcd.tmp"  # another dataset's: not ours to judge here
    other.write_bytes(b"")
    # a live creator: a process that holds its temporary's lock (as Writer._create does)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644); fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('locked', flush=True); time.sleep(120)", str(tmp_path / "holder")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        live = tmp_path / f".x.db.{holder.pid}.89abcdef.tmp"
        os.link(tmp_path / "holder", live)  # same file, so its lock is the live creator's
        locked_dead = tmp_path / f".x.db.{dead_pid()}.77777777.tmp"  # pid gone but the lock held (pid namespace)
        os.link(tmp_path / "holder", locked_dead)
        spec = unitarium.make_spec(gates="h", qubits=1, count=3, length="1")
        unitarium.generate(tmp_path / "x.db", spec, workers=1)
        assert not stale.exists()
        assert live.exists() and locked_dead.exists() and other.exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_creator_killed_with_sigkill_leaves_a_temporary_that_the_next_run_removes(tmp_path: Path) -> None:
    """A process that made and locked its temporary the way a creator does, then kill -9."""
    tmp = tmp_path / ".k.db.PID.0badf00d.tmp"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         "path = sys.argv[1].replace('PID', str(os.getpid()))\n"
         "fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644); fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.write(fd, bytes(1 << 19)); print(path, flush=True); time.sleep(120)", str(tmp)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    made = Path(holder.stdout.readline().strip())
    spec = unitarium.make_spec(gates="h", qubits=1, count=3, length="1")
    unitarium.generate(tmp_path / "other.db", spec, workers=1)  # another dataset's creation: not its business
    assert made.exists()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert made.exists()  # what kill -9 leaves
    unitarium.generate(tmp_path / "k.db", spec, workers=1)
    assert not made.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- 10. the smaller items ------------------------------------------------------------------------------------------


def test_lookup_on_a_damaged_unique_file_reports_the_damage(unique_file: Path, tmp_path: Path) -> None:
    path = copy_of(unique_file, tmp_path / "damaged.db")
    with unitarium.open(path) as ds:
        target = ds[5].unitary
        (task,) = ds._query("SELECT task_id FROM tasks WHERE first_id <= 5 AND count > 0 ORDER BY first_id DESC")[0]
    conn = sqlite3.connect(path)
    with conn:
        blob = bytearray(conn.execute("SELECT unitaries FROM blocks WHERE task_id = ?", (task,)).fetchone()[0])
        blob[8 * 16 * 5 + 3] ^= 0x40
        conn.execute("UPDATE blocks SET unitaries = ? WHERE task_id = ?", (bytes(blob), task))
    conn.close()
    with unitarium.open(path) as ds, pytest.raises(DatasetDamagedError, match="damaged block"):
        ds.lookup(target)
    np.save(tmp_path / "u.npy", target)
    line = fails_in_one_line("lookup", path, "--matrix", tmp_path / "u.npy")
    assert "damaged block" in line and "no record" not in line


def test_verify_checks_the_record_count_of_a_complete_dataset(unique_file: Path, tmp_path: Path) -> None:
    """The last task deleted and the summary made to agree: only the spec's count can tell."""
    path = copy_of(unique_file, tmp_path / "short.db")
    conn = sqlite3.connect(path)
    with conn:
        last, count, cand = conn.execute(
            "SELECT task_id, count, candidates FROM tasks ORDER BY task_id DESC LIMIT 1"
        ).fetchone()
        conn.execute("DELETE FROM tasks WHERE task_id = ?", (last,))
        summary = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'summary'").fetchone()[0])
        summary.update(records=summary["records"] - count, tasks=summary["tasks"] - 1)
        summary["candidates"] -= cand
        conn.execute("UPDATE meta SET value = ? WHERE key = 'summary'", (json.dumps(summary),))
    conn.close()
    report = unitarium.open(path).verify(sample=10)
    assert any("complete but holds" in p for p in report.problems), report.problems
    proc = cli("verify", path, check=False, timeout=HANG_S)
    assert proc.returncode == 1 and "complete but holds" in proc.stderr


def test_verify_checks_the_lookup_index(unique_file: Path, tmp_path: Path) -> None:
    path = copy_of(unique_file, tmp_path / "noindex.db")
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DELETE FROM lookup")
    conn.close()
    report = unitarium.open(path).verify(sample=50)
    assert any("lookup index misses a record" in p for p in report.problems), report.problems
    assert all("damaged block" not in p for p in report.problems)


@pytest.mark.parametrize("atol", ["nan", "-1", "inf", "-inf"])
def test_a_tolerance_that_is_not_a_finite_non_negative_number_is_refused(
    atol: str, unique_file: Path, tmp_path: Path
) -> None:
    enum = tmp_path / "e.db"
    unitarium.generate(enum, unitarium.make_spec(gates="h,t,cx", qubits=2, max_length=2, unique=True), workers=1)
    assert "atol" in fails_in_one_line("lookup", unique_file, "--circuit", "h 0", "--atol", atol)
    assert "atol" in fails_in_one_line("synth", enum, "--circuit", "h 0", "--atol", atol)
    value = float(atol)
    with unitarium.open(unique_file) as ds, pytest.raises(SpecError, match="atol"):
        ds.lookup(np.eye(4), atol=value)
    with unitarium.open(enum) as ds, pytest.raises(SpecError, match="atol"):
        ds.synthesize(np.eye(4), atol=value)
    with pytest.raises(SpecError, match="atol"):
        as_unitary(np.eye(4), 2, atol=value)


# -- 4. a stopped worker: the run still hears SIGINT/SIGTERM, and says what it waits for ---------------------------


def test_a_message_that_stops_halfway_leaves_the_reader_responsive() -> None:
    """A real pipe whose writer (another process) sent half a message and then stopped sending: the reader's
    ``wait`` is called while it waits, and may abandon the message (what SIGINT does through check_stop)."""
    from unitarium._run.wire import recv_message, send_message

    r, w = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", "import os, sys, time, pickle, struct\n"
         "fd = int(sys.argv[1]); data = pickle.dumps(list(range(1000)))\n"
         "os.write(fd, struct.pack('<QI', len(data), 0) + data[:100]); time.sleep(120)", str(w)],
        pass_fds=(w,),
    )  # fmt: skip
    os.close(w)
    calls = []

    class GiveUp(Exception):
        pass

    def wait() -> None:
        calls.append(1)
        if len(calls) >= 3:
            raise GiveUp

    try:
        with pytest.raises(GiveUp):
            recv_message(r, wait=wait)
        assert len(calls) == 3
    finally:
        child.kill()
        child.wait()
        os.close(r)
    r, w = os.pipe()  # and a whole message still arrives whole, with or without wait
    try:
        send_message(w, {"a": np.arange(10)}, wait=wait)
        got = recv_message(r, wait=lambda: None)
        assert got["a"].tolist() == list(range(10))
    finally:
        os.close(r)
        os.close(w)


SIGNAL_ARGS = ("--gates", "clifford+t", "--qubits", "3", "--dtype", "complex128", "--count", "2000000")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_run_while_a_stopped_worker_is_halfway_through_a_result(how: str, tmp_path: Path) -> None:
    """Results of ~1 MiB and a 1 MiB pipe: the writer is stopped until the workers block halfway through
    sending, then the workers are stopped and the writer continued: it reads the first MiB and waits for
    the rest. It must say so, and a signal must still stop it (before the fix it stayed in readv)."""
    from conftest import group_gone, kill_group, records_in, start_cli, wait_until, worker_pids

    path = tmp_path / "s.db"
    proc = start_cli("generate", path, *SIGNAL_ARGS, "--length", "1:30", "--workers", "2", "--quiet")
    try:
        wait_until(lambda: records_in(path) > 0, timeout=HANG_S, what="the first commit")
        workers = wait_until(lambda: worker_pids(proc.pid), timeout=HANG_S, what="the workers")
        os.kill(proc.pid, signal.SIGSTOP)
        wait_until(lambda: all(_state(w) == "S" for w in workers), timeout=HANG_S, what="the workers to block in write")
        for w in workers:
            os.kill(w, signal.SIGSTOP)
        os.kill(proc.pid, signal.SIGCONT)
        lines = stderr_lines(proc)
        note = next_line_with(lines, "waiting")
        assert "is stopped" in note and "kill -CONT" in note, note
        os.kill(proc.pid, getattr(signal, how))
        proc.wait(timeout=HANG_S)
        lines_left = [lines.get(timeout=HANG_S) for _ in range(1)]
        rest = "".join(lines_left)
        assert proc.returncode == 130, (proc.returncode, rest)
        assert "stopped by signal" in one_error_line(rest.splitlines()[-1]), rest
        wait_until(lambda: group_gone(proc.pid), timeout=HANG_S, what="the workers to exit")
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert unitarium.open(path).verify(sample=100).ok


def stderr_lines(proc: subprocess.Popen) -> queue.Queue[str]:
    """The lines of ``proc``'s stderr as they come, read by a thread (a blocked readline would hide a hang)."""
    lines: queue.Queue[str] = queue.Queue()
    stream = proc.stderr
    assert stream is not None

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def next_line_with(lines: queue.Queue[str], text: str) -> str:
    """The next line holding ``text`` (others, such as the size announced at the start, are skipped)."""
    while text not in (line := lines.get(timeout=HANG_S)):
        pass
    return line


def _state(pid: int) -> str | None:
    """The state letter of ``pid`` (``S`` sleeping, ``T`` stopped...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.mark.slow
def test_a_stopped_worker_of_a_directory_run_is_named_and_a_signal_still_stops_the_run(tmp_path: Path) -> None:
    from conftest import group_gone, kill_group, records_in, start_cli, wait_until, worker_pids

    path = tmp_path / "d"
    proc = start_cli("generate", f"{path}/", *SIGNAL_ARGS, "--length", "1:30", "--workers", "2", "--quiet")
    try:
        wait_until(lambda: records_in(path) > 0, timeout=HANG_S, what="the first commit")
        workers = wait_until(lambda: worker_pids(proc.pid), timeout=HANG_S, what="the workers")
        for w in workers:
            os.kill(w, signal.SIGSTOP)
        lines = stderr_lines(proc)
        note = next_line_with(lines, "waiting")
        assert "is stopped" in note and "kill -CONT" in note, note
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=HANG_S)
        lines_left = [lines.get(timeout=HANG_S) for _ in range(1)]
        rest = "".join(lines_left)
        assert proc.returncode == 130, (proc.returncode, rest)
        wait_until(lambda: group_gone(proc.pid), timeout=HANG_S, what="the workers to exit")
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert unitarium.open(path).verify(sample=100).ok


# -- 10. the size a run will reach is said before it starts -------------------------------------------------------


def test_a_count_that_cannot_fit_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    args = ("--gates", "h,t,cx", "--qubits", "2", "--count", str(10**15), "--length", "1:8", "--quiet")
    for target in ("x.db", "d/"):
        line = fails_in_one_line("generate", tmp_path / target, *args)
        assert "1,000,000,000,000,000 records take about" in line and "GiB free" in line, line
    assert list(tmp_path.iterdir()) == []


def test_a_large_run_is_announced_with_its_size_before_it_starts(tmp_path: Path) -> None:
    """The note comes through the progress callback before the first task (here the callback stops the run)."""
    notes: list[str] = []

    class Seen(Exception):
        pass

    def progress(p: unitarium.Progress) -> None:
        if p.note is not None:
            notes.append(p.note)
            raise Seen

    spec = unitarium.make_spec(gates="h,t,cx", qubits=2, count=100_000_000, length="1:8")
    with pytest.raises(Seen):
        unitarium.generate(tmp_path / "big.db", spec, progress=progress)
    assert notes and "100,000,000 records take about" in notes[0] and "GiB free" in notes[0]
    assert len(unitarium.open(tmp_path / "big.db")) == 0
    small = unitarium.make_spec(gates="h,t,cx", qubits=2, count=1000, length="1:8")
    unitarium.generate(tmp_path / "small.db", small, progress=progress, workers=1)  # small: no note
