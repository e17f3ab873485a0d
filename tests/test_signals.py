"""Ctrl-C (SIGINT to the process group, as a terminal sends it) and SIGTERM (to the writer, or to the group as
``timeout``, systemd and ``docker stop`` do): the run stops within seconds, exits 130 with one line saying how
much is committed, everything committed is kept (a prefix of the uninterrupted run), no process is left
behind, and re-running the command completes the dataset."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import (
    Snapshot,
    cli,
    group_gone,
    integrity,
    kill_group,
    one_error_line,
    records_in,
    start_cli,
    uninterrupted,
    wait_until,
    worker_pids,
)

COUNT = 30_000
ARGS = ["--gates", "clifford+t", "--qubits", "3", "--count", str(COUNT), "--length", "1:30", "--seed", "12"]
STOP_TIMEOUT_S = 30  # a hang guard: stopping takes well under a second

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return Snapshot.of(uninterrupted(tmp_path_factory, "signals.db", ARGS))


def signal_run(path: Path, how: str, ready: Callable[[subprocess.Popen], object], delay: float) -> tuple[int, str]:
    """Start a two-worker run, wait until ``ready(proc)`` returns, ``delay`` later send the signal ``how``
    describes; return the exit status and stderr, after checking nothing of the run is left running."""
    proc = start_cli("generate", path, *ARGS, "--workers", "2", "--quiet")
    try:
        ready(proc)
        time.sleep(delay)
        send(proc.pid, how)
        _, stderr = proc.communicate(timeout=STOP_TIMEOUT_S)
        wait_until(lambda: group_gone(proc.pid), timeout=STOP_TIMEOUT_S, what="the workers to exit")
    finally:
        if proc.poll() is None:
            kill_group(proc)
    return proc.returncode, stderr


def interrupt(path: Path, how: str, *, threshold: int, delay: float = 0.0) -> tuple[int, str]:
    """Send the signal ``how`` describes once ``threshold`` records are committed (and ``delay`` later)."""

    def ready(proc: subprocess.Popen) -> None:
        wait_until(lambda: len(worker_pids(proc.pid)) == 2, timeout=60, what="two workers")
        wait_until(lambda: records_in(path) >= threshold, timeout=120, what=f"{threshold} committed records")

    return signal_run(path, how, ready, delay)


def send(pid: int, how: str) -> None:
    if how == "SIGINT to the group":
        os.killpg(pid, signal.SIGINT)
    elif how == "SIGTERM to the group":
        os.killpg(pid, signal.SIGTERM)
    elif how == "SIGTERM to the writer":
        os.kill(pid, signal.SIGTERM)
    else:  # a second Ctrl-C while the first is being handled
        os.killpg(pid, signal.SIGINT)
        time.sleep(0.005)
        os.killpg(pid, signal.SIGINT)


def check_kept_and_resume(path: Path, line: str, reference: Snapshot) -> None:
    assert integrity(path) == "ok"
    kept = Snapshot.of(path)
    assert kept.is_prefix_of(reference), "the interrupted file is not a prefix of the uninterrupted run"
    if "records are committed" in line:
        assert int(line.split("stopped by signal; ")[1].split(" ")[0]) == len(kept)
    cli("generate", path, *ARGS, "--workers", "2", "--quiet")
    assert Snapshot.of(path).equals(reference)


HOW = ["SIGINT to the group", "SIGTERM to the writer", "SIGTERM to the group"]


@pytest.mark.parametrize("how", HOW)
def test_signal_stops_the_run_keeps_committed_work_and_exits_130(tmp_path: Path, reference: Snapshot, how: str) -> None:
    rng = random.Random(HOW.index(how))
    path = tmp_path / "sig.db"
    status, stderr = interrupt(path, how, threshold=rng.randrange(1, COUNT // 2), delay=rng.uniform(0, 0.03))
    if status == 0:  # pragma: no cover - the run beat the signal: nothing to check but the content
        assert Snapshot.of(path).equals(reference)
        return
    assert status == 130
    line = one_error_line(stderr)
    assert "stopped by signal" in line and "re-run the same command to resume" in line
    check_kept_and_resume(path, line, reference)


def test_a_second_ctrl_c_still_exits_cleanly(tmp_path: Path, reference: Snapshot) -> None:
    path = tmp_path / "twice.db"
    status, stderr = interrupt(path, "SIGINT twice", threshold=COUNT // 4)
    assert status == 130
    line = one_error_line(stderr)
    assert "interrupted" in line or "stopped by signal" in line
    check_kept_and_resume(path, line, reference)


def ctrl_c_at_first_worker(path: Path, delay: float) -> tuple[int, str]:
    """Ctrl-C ``delay`` after the first worker appears (it is still importing numpy and unitarium)."""

    def ready(proc: subprocess.Popen) -> None:
        wait_until(lambda: worker_pids(proc.pid), timeout=60, what="a worker process", interval=0.001)

    return signal_run(path, "SIGINT to the group", ready, delay)


def test_ctrl_c_while_workers_are_still_starting(tmp_path: Path, reference: Snapshot) -> None:
    """Workers ignore SIGINT once initialised; before that (while they import numpy) they start with it
    blocked, so a Ctrl-C then prints no worker traceback either (it used to print one per worker)."""
    path = tmp_path / "early.db"
    for delay in (0.05, 0.1):
        status, stderr = ctrl_c_at_first_worker(path, delay)
        assert status == 130
        line = one_error_line(stderr)
        assert "stopped by signal" in line
    check_kept_and_resume(path, line, reference)


UNIQUE = ["--gates", "h,t,tdg,cx", "--qubits", "2", "--count", "200000", "--length", "20", "--unique"]
UNIQUE += ["--unitaries", "computed", "--seed", "4", "--partitions", "2", "--memory", "2MiB"]


def test_ctrl_c_while_the_run_waits_for_a_stopped_key_partition(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A key partition stopped (SIGSTOP, Ctrl-Z) blocks the run's next decision; the stall note says
    "interrupt the run", and one Ctrl-C does: exit 130 with the usual line while the partition is
    still stopped (it used to wait until the partition was continued), no process left behind (the
    stopped one continued and reaped), and the same command resumes to the content of a run never
    interrupted."""
    import queue
    import threading

    path = tmp_path / "u.db"
    proc = start_cli("generate", path, *UNIQUE, "--workers", "1")
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    stopped = None
    try:
        parts = wait_until(  # (partition 0 is the driver's own)
            lambda: len(w := worker_pids(proc.pid)) == 1 and w, timeout=300, what="partition 1's process"
        )
        wait_until(lambda: records_in(path) > 0, timeout=300, what="the first commit")
        stopped = parts[0]
        os.kill(stopped, signal.SIGSTOP)
        while "waiting" not in (note := lines.get(timeout=120)):  # the driver is blocked on it now
            pass
        assert f"process {stopped} is stopped" in note and "interrupt the run" in note, note
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=STOP_TIMEOUT_S) == 130
        wait_until(lambda: group_gone(proc.pid), timeout=STOP_TIMEOUT_S, what="the partitions to exit")
    finally:
        if proc.poll() is None or not group_gone(proc.pid):
            if stopped is not None:
                os.kill(stopped, signal.SIGCONT)
            kill_group(proc)
    reader.join(timeout=STOP_TIMEOUT_S)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    errors = [line for line in rest if line.startswith("unitarium: error:")]
    assert len(errors) == 1 and "stopped by signal" in errors[0] and "re-run the same command" in errors[0], rest
    assert not any("Traceback" in line for line in rest), rest
    assert integrity(path) == "ok"
    cli("generate", path, *UNIQUE, "--workers", "2", "--quiet")
    reference = uninterrupted(tmp_path_factory, "unique-reference.db", [*UNIQUE[:-4]])
    assert Snapshot.of(path).equals(Snapshot.of(reference))
