"""The engine end to end: Qiskit as the oracle, determinism, golden pin, resume, kill -9, concurrent readers."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from qiskit.quantum_info import Operator

import unitarium
from unitarium import SpecMismatchError

from conftest import ALL_GATES, cli, content, kill_group, records_in, stopped_after, wait_until


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- Qiskit as the oracle -------------------------------------------------------------------


@pytest.mark.slow
def test_acceptance_every_stored_unitary_equals_qiskit_operator(tmp_path: Path) -> None:
    """3 qubits, every standard gate, lengths 1-24, 2 workers: each record against Operator(circuit.to_qiskit())."""
    spec = unitarium.make_spec(gates=ALL_GATES, qubits=3, count=3000, length="1:24", seed=11)
    assert len(spec.gateset.gates) == 25 and -(-3000 // spec.task_size) >= 3  # several tasks
    path = tmp_path / "all-gates.db"
    summary = unitarium.generate(path, spec, workers=2)
    assert summary.records == summary.new_records == 3000 and summary.complete
    ds = unitarium.open(path)
    assert len(ds) == 3000
    used = set()
    worst = 0.0
    for rec in ds:
        expected = Operator(rec.circuit.to_qiskit()).data
        worst = max(worst, float(np.abs(rec.unitary - expected).max()))
        used.update(ds.gateset.gates[ds.gateset.moves[int(c)].gate].name for c in rec.circuit.codes)
    assert worst < 1e-5, f"a stored unitary differs from Qiskit's Operator by {worst:.3g}"
    assert used == {g.name for g in spec.gateset.gates}
    assert set(ds.lengths().tolist()) == set(range(1, 25))


def test_complex128_records_equal_qiskit_operator(tmp_path: Path) -> None:
    spec = unitarium.make_spec(gates=ALL_GATES, qubits=3, count=300, length="0:16", dtype="complex128", seed=5)
    path = tmp_path / "c128.db"
    unitarium.generate(path, spec, workers=1)
    ds = unitarium.open(path)
    assert ds.unitaries().dtype == np.complex128
    for rec in ds:
        np.testing.assert_allclose(rec.unitary, Operator(rec.circuit.to_qiskit()).data, rtol=0, atol=1e-10)
    assert 0 in ds.lengths()


# -- determinism ------------------------------------------------------------------------------

DETERMINISM = ["--gates", ALL_GATES, "--qubits", "3", "--count", "4500", "--length", "0:24", "--seed", "9"]


def determinism_spec(dtype: str = "complex64") -> unitarium.Spec:
    return unitarium.make_spec(gates=ALL_GATES, qubits=3, count=4500, length="0:24", seed=9, dtype=dtype)


def test_same_content_for_one_and_two_workers_and_the_cli(tmp_path: Path) -> None:
    spec = determinism_spec()
    assert -(-4500 // spec.task_size) == 5
    one, two, by_cli = tmp_path / "one.db", tmp_path / "two.db", tmp_path / "cli.db"
    unitarium.generate(one, spec, workers=1)
    unitarium.generate(two, spec, workers=2)
    cli("generate", by_cli, *DETERMINISM, "--workers", "2", "--quiet")
    reference = content(one)
    assert len(reference) == 4500
    assert content(two) == reference
    assert content(by_cli) == reference
    assert unitarium.open(by_cli).spec.canonical_json() == spec.canonical_json()


def test_same_content_in_complex128_and_another_seed_differs(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "c.db"
    unitarium.generate(a, determinism_spec("complex128"), workers=2)
    unitarium.generate(b, determinism_spec("complex128"), workers=1)
    assert content(a) == content(b)
    other = unitarium.make_spec(gates=ALL_GATES, qubits=3, count=4500, length="0:24", seed=10, dtype="complex128")
    unitarium.generate(c, other, workers=1)
    assert [t for t, _ in content(c)] != [t for t, _ in content(a)]


def test_golden_record(tmp_path: Path) -> None:
    """Pins seed 7 to an exact circuit and unitary: fails on any change of the RNG stream, the
    move order or the kernels' bits. If such a change is intended, bump KERNEL_VERSION and re-pin."""
    path = tmp_path / "golden.db"
    spec = unitarium.make_spec(gates="clifford+t", qubits=2, count=100, length=12, seed=7)
    unitarium.generate(path, spec, workers=1)
    with unitarium.open(path) as ds:
        rec = ds[42]
        assert str(rec.circuit) == "tdg 1; cx 0 1; cx 0 1; h 0; t 1; h 1; t 1; tdg 1; h 0; tdg 0; t 1; cx 1 0"
        digest = hashlib.sha256(rec.unitary.astype("<c8").tobytes()).hexdigest()
        assert digest == "cbfa565dcb14008b415493976c607400c65c969e620e807899944b1ccac43a80"
        np.testing.assert_allclose(rec.unitary, Operator(rec.circuit.to_qiskit()).data, atol=1e-6)


# -- resume -----------------------------------------------------------------------------------


def test_rerun_on_a_complete_file_adds_nothing(tmp_path: Path) -> None:
    spec = determinism_spec()
    path = tmp_path / "done.db"
    unitarium.generate(path, spec, workers=2)
    before = content(path)
    summary = unitarium.generate(path, spec, workers=1)
    assert (summary.records, summary.new_records, summary.tasks, summary.complete) == (4500, 0, 0, True)
    assert content(path) == before
    proc = cli("generate", path, *DETERMINISM, "--workers", "2", "--quiet")
    assert "4,500 records (0 new)" in proc.stdout
    assert content(path) == before
    assert unitarium.open(path).verify().ok


def test_resume_after_a_failure_mid_run_with_another_worker_count(tmp_path: Path) -> None:
    """A run that dies after some commits (here: its progress callback raises) resumes to the same content."""
    spec = determinism_spec()
    reference, partial = tmp_path / "reference.db", tmp_path / "partial.db"
    unitarium.generate(reference, spec, workers=1)
    # Stopped at the first report: at the second, a loaded machine's committer had once taken every task
    # (CI, 2026-12-03: 4500 of 4500 committed, not complete).
    seen = stopped_after(partial, spec, reports=1, workers=1)
    ds = unitarium.open(partial)
    assert not ds.complete
    # Commits are pipelined: the group in flight when the callback raised is committed too.
    n = len(ds)
    assert 0 < seen[-1].records <= n < 4500 and n % spec.task_size == 0
    assert content(partial) == content(reference)[:n]
    summary = unitarium.generate(partial, spec, workers=2)
    assert summary.new_records == 4500 - n and summary.tasks == 5 - n // spec.task_size
    assert content(partial) == content(reference)
    assert unitarium.open(partial).complete


def test_progress_reports(tmp_path: Path) -> None:
    spec = determinism_spec()
    seen: list[unitarium.Progress] = []
    summary = unitarium.generate(tmp_path / "p.db", spec, workers=2, progress=seen.append)
    assert seen and seen[-1].records == seen[-1].candidates == 4500
    assert all(p.total == 4500 for p in seen)
    assert [p.records for p in seen] == sorted(p.records for p in seen)
    assert summary.path == str(tmp_path / "p.db") and summary.tasks == 5 and summary.seconds >= 0


def test_a_different_spec_is_refused_and_the_file_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "data.db"
    unitarium.generate(path, determinism_spec(), workers=1)
    before = sha256(path)
    for other in [
        unitarium.make_spec(gates=ALL_GATES, qubits=3, count=4500, length="0:24", seed=8),
        unitarium.make_spec(gates=ALL_GATES, qubits=3, count=4501, length="0:24", seed=9),
        unitarium.make_spec(gates="h,cx", qubits=3, count=4500, length="0:24", seed=9),
        determinism_spec("complex128"),
    ]:
        with pytest.raises(SpecMismatchError, match="another spec"):
            unitarium.generate(path, other, workers=1)
        assert sha256(path) == before
    proc = cli("generate", path, *DETERMINISM[:-1], "10", "--quiet", check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("unitarium: error:") and proc.stderr.count("\n") == 1
    assert "another spec" in proc.stderr and "seed" in proc.stderr and "Traceback" not in proc.stderr
    assert sha256(path) == before
    wal = path.with_name(path.name + "-wal")  # readers may leave an empty WAL beside the file, never frames
    assert not wal.exists() or wal.stat().st_size == 0
    assert unitarium.open(path).verify().ok


def test_workers_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(unitarium.SpecError, match="workers"):
        unitarium.generate(tmp_path / "x.db", determinism_spec(), workers=0)
    assert not (tmp_path / "x.db").exists()


# -- kill -9 and concurrent readers ----------------------------------------------------------

# A run a kill lands in mid-run: 4 qubits, 256 records per task, 40 tasks; killed at most half way, it has 20 tasks
# (~1.5 s of 2 workers on this machine) left after the commit that triggers the kill. Lengths 60-100 (were 150-250:
# the same tasks at 2.5 times the cost of every run, verify and resume here).
KILL_COUNT = 10_000
KILL_MIN_LENGTH = 60
KILL_ARGS = ["--gates", "clifford+t", "--qubits", "4", "--count", str(KILL_COUNT), "--length", "60:100", "--seed", "4"]


def start_generate(path: Path, workers: int) -> subprocess.Popen:
    """``python -m unitarium generate`` in its own session (its workers share its process group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "unitarium", "generate", str(path), *KILL_ARGS, "--workers", str(workers), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def kill_reference(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    path = tmp_path_factory.mktemp("kill") / "reference.db"
    cli("generate", path, *KILL_ARGS, "--workers", "2", "--quiet")
    return content(path)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_acceptance_kill_9_then_resume_with_another_worker_count(
    tmp_path: Path, kill_reference: list[tuple[str, bytes]], trial: int
) -> None:
    rng = random.Random(trial)
    threshold = rng.randrange(1, KILL_COUNT // 2)  # kill once this much is committed (progress, not time)
    path = tmp_path / "killed.db"
    proc = start_generate(path, workers=2)
    try:
        wait_until(lambda: records_in(path) >= threshold, timeout=120, what=f"{threshold} committed records")
        time.sleep(rng.uniform(0, 0.02))  # anywhere between two commits
    finally:
        kill_group(proc)
    assert proc.returncode == -signal.SIGKILL

    ds = unitarium.open(path)
    n = len(ds)
    assert 0 < n < KILL_COUNT and not ds.complete, f"the kill (at {threshold} records) did not land mid-run: {n}"
    assert n % 256 == 0  # whole tasks only
    assert content(path) == kill_reference[:n]  # a prefix of the final content
    assert ds.verify(sample=200).ok
    ds.close()

    proc = cli("generate", path, *KILL_ARGS, "--workers", "1", "--quiet")
    assert f"{KILL_COUNT:,} records ({KILL_COUNT - n:,} new)" in proc.stdout
    assert content(path) == kill_reference
    report = unitarium.open(path).verify(sample=500)
    assert report.ok and report.integrity == "ok"
    assert unitarium.open(path).complete


READER = r"""
import json, sys, time
import unitarium

path, min_length = sys.argv[1], int(sys.argv[2])
ds = unitarium.open(path)
seen = []
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    complete = ds.complete
    n = len(ds)
    fresh = len(unitarium.open(path))
    assert fresh >= n, (fresh, n)
    if n:
        rec = ds[n - 1]
        assert rec.id == n - 1 and rec.unitary.shape == (16, 16), rec
        assert len(rec.circuit) >= min_length
    seen.append(n)
    if complete:
        break
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_acceptance_reader_during_a_run_sees_non_decreasing_lengths(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    writer = start_generate(path, workers=2)
    try:
        wait_until(lambda: _is_dataset(path), timeout=60, what="the dataset file")
        reader = subprocess.run(
            [sys.executable, "-c", READER, str(path), str(KILL_MIN_LENGTH)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert writer.wait(timeout=180) == 0, writer.stderr.read().decode() if writer.stderr else ""
    finally:
        if writer.poll() is None:
            kill_group(writer)
    assert reader.returncode == 0 and reader.stderr == "", reader.stderr
    seen = json.loads(reader.stdout)
    assert seen == sorted(seen), "a reader saw the record count decrease"
    assert seen[-1] == KILL_COUNT
    assert len(set(seen)) >= 3, f"the reader did not observe the run in progress: {sorted(set(seen))}"


def _is_dataset(path: Path) -> bool:
    try:
        unitarium.open(path).close()
    except unitarium.DatasetError:
        return False
    return True


def test_worker_messages_round_trip_and_a_cut_message_is_end_of_file() -> None:
    """Results travel from workers as pickle protocol 5 with the arrays out of band (_wire.send_message)."""
    import threading

    from unitarium._run.wire import recv_message, send_message
    from unitarium._spec.sources import TaskResult

    rng = np.random.default_rng(0)
    result = TaskResult(
        7, 2, 300, rng.integers(0, 9, 3000).astype(np.uint8), np.arange(0, 3001, 10, dtype=np.uint32),
        (rng.normal(size=(300, 8, 8)) + 1j).astype(np.complex64), rng.integers(-(2**62), 2**62, 300), {3: [1, 2]},
    )  # fmt: skip
    r, w = os.pipe()
    try:
        sender = threading.Thread(target=send_message, args=(w, (7, result, None)))
        sender.start()  # the message is larger than the pipe: send while receiving
        task_id, got, error = recv_message(r)
        sender.join()
        assert (task_id, error) == (7, None)
        assert (got.task_id, got.level, got.candidates, got.alternates) == (7, 2, 300, {3: [1, 2]})
        for name in ("codes", "offsets", "unitaries", "dedup"):
            a, b = getattr(result, name), getattr(got, name)
            assert a.dtype == b.dtype and np.array_equal(a, b), name
        os.write(w, b"\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" + b"partial")  # 16 bytes announced, 7 sent
        os.close(w)
        w = -1
        with pytest.raises(EOFError):
            recv_message(r)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_messages_of_many_arrays_small_and_large_round_trip_aligned() -> None:
    """A unique task's keys message (one large array, ~30 small alternates: those travel in the pickle), and
    more large arrays than one ``writev`` or ``readv`` takes (``_IOV_MAX``), of odd byte sizes between them: every
    array comes back equal, of its dtype, aligned, and writable; empty arrays too."""
    import threading

    from unitarium._run import wire

    rng = np.random.default_rng(1)
    alternates = {int(r): rng.integers(-(2**63), 2**63 - 1, (int(rng.integers(1, 4)), 2)) for r in range(0, 4000, 130)}
    large = [rng.integers(0, 2**62, 4096 // 8 + k) if k % 2 else rng.random(wire.IN_BAND_BYTES + k) < 0.5
             for k in range(wire._IOV_MAX + 40)]  # fmt: skip
    message = ("keys", 5, rng.integers(-(2**63), 2**63 - 1, (4096, 2)), alternates, large, np.zeros(0), np.ones((0, 2)))
    r, w = os.pipe()
    try:
        sender = threading.Thread(target=wire.send_message, args=(w, message))
        sender.start()
        got = wire.recv_message(r)
        sender.join()
    finally:
        os.close(r)
        os.close(w)
    assert got[:2] == ("keys", 5) and np.array_equal(got[2], message[2]) and got[3].keys() == alternates.keys()
    arrays = [got[2], *got[3].values(), *got[4], got[5], got[6]]
    sent = [message[2], *alternates.values(), *large, message[5], message[6]]
    for a, b in zip(arrays, sent, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
        assert a.flags.aligned and a.flags.writeable


def test_an_outbox_keeps_the_order_of_messages_written_at_once_and_by_its_thread() -> None:
    """``wire.Outbox``: a message that fits the pipe's room with nothing queued is written by ``put`` itself, one
    larger than the pipe goes to the thread, and later small ones queue behind it: the reader, slow on purpose,
    gets every message once, whole, in the order put."""
    import threading
    import time

    from unitarium._run import wire

    rng = np.random.default_rng(2)
    sizes = [10, 3000, 200_000, 5, 70_000, 8, 900_000, 1, 2, 40_000, 3]  # (the pipe: 64 KiB)
    messages = [(i, rng.integers(0, 2**62, n)) for i, n in enumerate(sizes)]
    r, w = os.pipe()
    got: list[tuple[int, np.ndarray]] = []

    def read() -> None:
        for _ in messages:
            time.sleep(0.01)
            got.append(wire.recv_message(r))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        outbox = wire.Outbox(w)
        for message in messages:
            assert outbox.put(message)
        assert outbox.close()
        reader.join(60)
    finally:
        os.close(w)
        os.close(r)
    assert [i for i, _ in got] == list(range(len(sizes)))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, messages, strict=True))


def test_workers_start_with_one_blas_thread(tmp_path: Path) -> None:
    """BLAS reads its thread count when numpy loads, so it must be in a worker's starting environment."""
    from conftest import start_cli, worker_pids

    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    proc = start_cli("generate", tmp_path / "b.db", *KILL_ARGS, "--workers", "2", "--quiet", env=env)
    try:
        workers = wait_until(lambda: len(w := worker_pids(proc.pid)) == 2 and w, timeout=60, what="two workers")
        for pid in workers:  # /proc/PID/environ: the environment the process started with
            assert b"OPENBLAS_NUM_THREADS=1" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    finally:
        kill_group(proc)


@pytest.mark.slow
def test_tasks_and_results_larger_than_the_pipes_do_not_deadlock(tmp_path: Path) -> None:
    """Tasks whose parents (~600 KB) and results (~2 MB of keys) overflow the 1 MiB pipes, two workers: the driver
    waiting to send a task must still take in results, else a worker blocked writing its result never reads its
    next task (this run hung for good before). 3-qubit h,s,cx to length 8: 2,038,309 Cliffords up to phase."""
    import dataclasses

    spec = unitarium.make_spec(gates="h,s,cx", qubits=3, max_length=8, unique=True, unitaries="computed", keys="exact")
    spec = dataclasses.replace(spec, task_size=131072)
    summary = unitarium.generate(tmp_path / "c.db", spec, workers=2)
    assert summary.complete and summary.records == 2_038_309
