"""Concurrent access with real processes: readers during a run never fail and only ever see whole tasks of
the final content; a second ``generate`` on a file being written is refused at once with a clear message
(never "database is locked", never interleaved writes) and the first run completes intact."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import unitarium

from conftest import Snapshot, cli, kill_group, one_error_line, records_in, start_cli, uninterrupted, wait_until

COUNT = 40_000
ARGS = ["--gates", "clifford+t", "--qubits", "3", "--count", str(COUNT), "--length", "1:30", "--seed", "13"]
OTHER_SPEC = ["--gates", "h,cx", "--qubits", "2", "--count", "100", "--length", "3"]

pytestmark = pytest.mark.slow

READER = r"""
import hashlib, json, sys, time
import unitarium

path, expected = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)  # imported: the test starts the writer now (a slow start would miss the run)
seen, ds, deadline = [], None, time.monotonic() + 240
while time.monotonic() < deadline:
    if ds is None:
        try:
            ds = unitarium.open(path)
        except unitarium.DatasetMissingError:  # the run has not created the file yet
            time.sleep(0.002)
            continue
    n = len(ds)
    complete = ds.complete
    if n:
        rec = ds[n - 1]
        tail = ds.unitaries(max(0, n - 100), n)
        seen.append([n, str(rec.circuit), hashlib.sha256(tail.tobytes()).hexdigest()])
    if complete and n == expected:
        break
    if len(seen) % 2:  # every other look through a fresh handle
        ds.close()
        ds = None
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, Path]:
    path = uninterrupted(tmp_path_factory, "concurrency.db", ARGS)
    return Snapshot.of(path), path


def task_boundaries(path: Path) -> set[int]:
    """Record counts at which the file holds whole tasks only."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {0} | {int(end) for (end,) in conn.execute("SELECT first_id + count FROM tasks")}
    finally:
        conn.close()


def test_readers_in_other_processes_never_fail_and_never_see_a_partial_task(
    tmp_path: Path, reference: tuple[Snapshot, Path]
) -> None:
    ref, ref_path = reference
    path = tmp_path / "live.db"
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(path), str(COUNT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for reader in readers:  # both are looking before the run starts
        assert reader.stdout is not None and reader.stdout.readline() == b"ready\n"
    writer = start_cli("generate", path, *ARGS, "--workers", "2", "--quiet")
    try:
        _, writer_err = writer.communicate(timeout=240)
        outputs = [r.communicate(timeout=240) for r in readers]
    finally:
        for proc in (writer, *readers):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert writer.returncode == 0, writer_err
    boundaries = task_boundaries(ref_path)
    observed: list[int] = []
    with unitarium.open(ref_path) as ref_ds:
        for reader, (out, err) in zip(readers, outputs, strict=True):
            assert reader.returncode == 0 and err == b"", err.decode()
            seen = json.loads(out)
            counts = [n for n, _, _ in seen]
            assert counts == sorted(counts), "a reader saw the record count go down"
            for n, circuit, tail_digest in seen:
                assert n in boundaries, f"a reader saw {n} records: not a whole number of tasks"
                assert circuit == str(ref_ds[n - 1].circuit)
                tail = ref.unitaries[max(0, n - 100) : n]
                assert tail_digest == hashlib.sha256(tail.tobytes()).hexdigest()
            observed += counts
    assert observed and observed[-1] == COUNT
    assert any(n < COUNT for n in observed), "the readers never saw the run in progress"
    assert Snapshot.of(path).equals(ref)


def test_a_second_generate_is_refused_while_one_runs(tmp_path: Path, reference: tuple[Snapshot, Path]) -> None:
    """While a run holds the file (stopped mid-run by SIGSTOP), the same command and another spec are refused in one
    line, reading is fine; the run then completes. (A run that completed between its first commit being seen and
    the stop, as once on CI's busy cores, proves nothing: it is started again, on a new file, at most 3 times.)"""
    ref, _ = reference
    for attempt in range(3):
        path = tmp_path / f"busy-{attempt}.db"
        first = start_cli("generate", path, *ARGS, "--workers", "2", "--quiet")
        try:
            wait_until(lambda p=path: records_in(p) >= 1, timeout=120, what="the first run to commit")
            os.kill(first.pid, signal.SIGSTOP)  # keep it mid-run, holding the file, whatever the machine's speed
            try:
                info = cli("info", path, timeout=120)  # reading is fine meanwhile
                caught = "complete:    no" in info.stdout
                for args in (ARGS, OTHER_SPEC) if caught else ():  # the same command (a resume), and another spec
                    second = cli("generate", path, *args, "--workers", "1", "--quiet", check=False, timeout=120)
                    assert second.returncode == 2
                    line = one_error_line(second.stderr)
                    assert "another unitarium process is writing" in line and str(path) in line
            finally:
                os.kill(first.pid, signal.SIGCONT)
            _, err = first.communicate(timeout=240)
        finally:
            if first.poll() is None:
                kill_group(first)
        assert first.returncode == 0, err
        assert Snapshot.of(path).equals(ref)
        if caught:
            break
    else:
        pytest.fail("the first run completed before it could be stopped, 3 times")


def test_two_generates_started_together_on_a_new_file(tmp_path: Path, reference: tuple[Snapshot, Path]) -> None:
    """One creates the file and runs; the other is refused (or, arriving after the end, finds it complete)."""
    ref, _ = reference
    path = tmp_path / "race.db"
    procs = [start_cli("generate", path, *ARGS, "--workers", "1", "--quiet") for _ in range(2)]
    try:
        results = [(p.communicate(timeout=240)[1], p.returncode) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                kill_group(p)
    assert 0 in [code for _, code in results]
    for err, code in results:
        if code != 0:
            assert code == 2 and "another unitarium process is writing" in one_error_line(err)
    assert Snapshot.of(path).equals(ref)
    leftovers = [p.name for p in tmp_path.iterdir() if not p.name.startswith("race.db")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
