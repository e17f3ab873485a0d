"""Sharded datasets (a directory of segments under a manifest): the same content as a file in every mode,
for any worker count and after kill -9 and resume; readers during a run; damage refused; two writers
refused; pack; records without stored unitaries."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from qiskit.quantum_info import Operator

import unitarium
from unitarium import DatasetBusyError, DatasetDamagedError

from conftest import (
    Snapshot,
    cli,
    integrity,
    kill_group,
    one_error_line,
    records_in,
    start_cli,
    uninterrupted,
    wait_until,
)

MODES = {
    "random": dict(gates="h,t,tdg,cx", qubits=2, count=20_000, length="1:12", seed=3),
    "enumerate": dict(gates="h,t,tdg,cx", qubits=2, max_length=5),
    "unique random": dict(gates="h,s,cx", qubits=2, count=12_000, length="1:9", seed=5, unique=True),
    "unique enumerate": dict(gates="h,s,cx", qubits=2, max_length=7, unique=True),
    "3 qubits complex128": dict(gates="clifford+t", qubits=3, count=3_000, length="0:20", seed=9, dtype="complex128"),
}


def generate(path: str | Path, spec: unitarium.Spec, workers: int) -> None:
    unitarium.generate(path, spec, workers=workers)


@pytest.fixture(scope="module", params=list(MODES))
def mode(request: pytest.FixtureRequest, made) -> tuple[str, Path, Snapshot]:
    """A mode, and its single-file dataset (the reference)."""
    path = made(unitarium.make_spec(**MODES[request.param]))
    return request.param, path, Snapshot.of(path)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("unitaries", ["stored", "computed"])
def test_a_directory_holds_exactly_the_records_of_the_file(
    made, mode: tuple[str, Path, Snapshot], workers: int, unitaries: str
) -> None:
    name, file, reference = mode
    spec = unitarium.make_spec(**MODES[name], unitaries=unitaries)
    path = made(spec, layout="directory", workers=workers)  # the same one test_digests pins
    assert Snapshot.of(path).equals(reference), "the directory's records differ from the file's"
    with unitarium.open(path) as ds, unitarium.open(file) as ref:
        assert ds.complete and len(ds) == len(ref)
        assert ds.info()["length_histogram"] == ref.info()["length_histogram"]
        assert ds.verify(sample=500).ok
        ids = np.random.default_rng(0).integers(0, len(ds), 50)
        np.testing.assert_array_equal(ds.unitaries(ids), ref.unitaries(ids))  # bit for bit, any ids
        assert [str(r.circuit) for r in ds[ids.tolist()]] == [str(r.circuit) for r in ref[ids.tolist()]]
        if spec.unique:  # the lookup index covers every segment
            for rec in ref[ids[:5].tolist()]:
                assert [r.id for r in ds.lookup(rec.unitary)] == [rec.id]
    assert integrity(path) == "ok"


def test_stored_records_equal_qiskit_and_computed_ones_take_under_20_bytes(tmp_path: Path) -> None:
    """2-qubit length-12 records without stored unitaries: <= 20 bytes each on disk, same bits."""
    args = dict(gates="h,t,tdg,cx", qubits=2, count=100_000, length=12, seed=1)
    stored, computed = f"{tmp_path / 's'}/", f"{tmp_path / 'c'}/"
    generate(stored, unitarium.make_spec(**args), 2)
    generate(computed, unitarium.make_spec(**args, unitaries="computed"), 2)
    with unitarium.open(stored) as s, unitarium.open(computed) as c:
        np.testing.assert_array_equal(s.unitaries(), c.unitaries())
        assert c.info()["bytes_per_record"] <= 20, c.info()
        assert s.info()["bytes_per_record"] > 128
        for rec in c[[0, 7, 99_999]]:
            np.testing.assert_allclose(rec.unitary, Operator(rec.circuit.to_qiskit()).data, atol=1e-5)


def test_one_dataset_to_every_command(tmp_path: Path) -> None:
    path = f"{tmp_path / 'cliff'}/"
    args = ["--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--max-length", "5", "--unique"]
    cli("generate", path, *args)
    cli("generate", tmp_path / "cliff.db", *args)
    info, file_info = (
        json.loads(cli("info", path, "--json").stdout),
        json.loads(cli("info", tmp_path / "cliff.db", "--json").stdout),
    )
    assert info["layout"] == "directory" and file_info["layout"] == "file"
    for key in ("records", "tasks_done", "candidates", "length_histogram", "spec", "complete"):
        assert info[key] == file_info[key], key
    assert "record 3 (" in cli("show", path, "3").stdout
    assert cli("verify", path, "--all").stdout.endswith("ok\n")
    found = cli("lookup", path, "--circuit", "h 0; s 0").stdout
    assert found.startswith("2\t") or "\th 0; s 0" in found


def test_pack_makes_one_equal_file(made, tmp_path: Path) -> None:
    path = made(unitarium.make_spec(**MODES["unique enumerate"]), layout="directory", workers=2)  # read only
    cli("pack", path, tmp_path / "one.db")
    assert Snapshot.of(tmp_path / "one.db").equals(Snapshot.of(path))
    with unitarium.open(tmp_path / "one.db") as ds:
        assert ds.complete and ds.verify(sample=None).ok and ds.info()["layout"] == "file"
        assert [r.id for r in ds.lookup(ds[100].unitary)] == [100]
    again = cli("pack", path, tmp_path / "one.db", check=False)  # never overwrites
    assert again.returncode == 2 and "exists" in one_error_line(again.stderr)


def test_pack_refuses_an_unfinished_directory(tmp_path: Path) -> None:
    spec = unitarium.make_spec(gates="h,t,cx", qubits=2, count=50_000, length=10)
    path = f"{tmp_path / 'd'}/"
    calls = []

    def stop_early(progress: unitarium.Progress) -> None:
        calls.append(progress)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        unitarium.generate(path, spec, workers=1, progress=stop_early)
    proc = cli("pack", path, tmp_path / "x.db", check=False)
    assert proc.returncode == 2 and "not finished" in one_error_line(proc.stderr)
    assert not (tmp_path / "x.db").exists()


def test_a_flipped_byte_in_a_segment_is_refused_on_read_and_by_verify(tmp_path: Path) -> None:
    path = tmp_path / "d"
    generate(f"{path}/", unitarium.make_spec(gates="h,t,tdg,cx", qubits=2, count=10_000, length=12), 2)
    segment = sorted((path / "shards").glob("*.db"))[0]
    conn = sqlite3.connect(segment)
    task_id, blob = conn.execute("SELECT task_id, unitaries FROM blocks ORDER BY task_id LIMIT 1").fetchone()
    flipped = bytearray(blob)
    flipped[1000] ^= 0x10  # a single bit, far below any tolerance
    conn.execute("UPDATE blocks SET unitaries = ? WHERE task_id = ?", (bytes(flipped), task_id))
    conn.commit()
    conn.close()
    first = task_id * 4096 + 1000 // 128  # task ids are in id order, 4096 records each here
    with unitarium.open(path) as ds:
        with pytest.raises(DatasetDamagedError, match=r"damaged block \(records \d+\.\.\d+\).*checksum"):
            ds[first]
        with pytest.raises(DatasetDamagedError, match="checksum"):
            ds.unitaries(0, len(ds))
        report = ds.verify(sample=None)
    assert not report.ok and any("checksum" in p for p in report.problems)
    proc = cli("verify", path, "--all", check=False)
    assert proc.returncode == 1 and "checksum" in proc.stderr
    shown = cli("show", path, str(first), check=False)
    assert shown.returncode == 2 and "checksum" in one_error_line(shown.stderr) and shown.stdout == ""


def test_two_writers_on_one_directory(tmp_path: Path) -> None:
    args = ["--gates", "h,t,cx", "--qubits", "3", "--count", "40000000", "--length", "20", "--quiet"]
    path = f"{tmp_path / 'd'}/"
    first = start_cli("generate", path, *args, "--workers", "2")
    try:
        wait_until(lambda: records_in(path) > 0 or first.poll() is not None, timeout=120, what="a first commit")
        assert first.poll() is None, first.stderr.read() if first.stderr else "the first run ended early"
        second = cli("generate", path, *args, "--workers", "1", check=False)
        assert second.returncode == 2
        assert "another unitarium process is writing" in one_error_line(second.stderr)
        with pytest.raises(DatasetBusyError):
            unitarium.generate(path, unitarium.make_spec(gates="h", qubits=1, count=1, length=1))
    finally:
        kill_group(first)


def test_a_reader_during_a_directory_run_sees_whole_tasks_only(tmp_path: Path) -> None:
    """Readers in another process see the record count grow by whole tasks (1024 records at 3 qubits), every
    record they can count readable and checked; the run is stopped after three commits were seen."""
    args = ["--gates", "clifford+t", "--qubits", "3", "--count", "30000000", "--length", "1:30", "--seed", "4"]
    path = f"{tmp_path / 'd'}/"
    proc = start_cli("generate", path, *args, "--workers", "2", "--quiet")
    seen = [0]
    try:
        while proc.poll() is None and len(seen) < 4:  # a segment is published every 2 s
            n = records_in(path)
            assert n >= seen[-1] and n % 1024 == 0, (n, seen)
            if n > seen[-1]:
                with unitarium.open(path) as ds:
                    part = ds.unitaries(seen[-1], n)
                    assert np.isfinite(part).all() and len(part) == n - seen[-1]
                    assert ds.verify(sample=50).ok
                seen.append(n)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "the run ended early"
    finally:
        kill_group(proc)
    assert len(seen) == 4, f"the reader saw too little growth: {seen}"


KILL_ARGS = ["--gates", "clifford+t", "--qubits", "2", "--count", "600000", "--length", "1:24", "--seed", "11"]
"""The faults' run: one reference (:func:`uninterrupted`) for the kills and the signals."""
KILL_ENV = {**os.environ, "UNITARIUM_SEGMENT_SECONDS": "0.1"}
"""The faults' run takes ~1 s on 2 workers, less than a segment's default age (2 s): its first commit was its
last, and the kills and signals came after the end (a signal then met the exiting interpreter: CI's exit -15).
Published every 0.1 s it commits ~10 times (measured), so they come mid-run."""


@pytest.mark.slow
@pytest.mark.parametrize(("threshold", "resume_workers"), [(1, 3), (100_000, 1)])
def test_kill_9_of_the_group_then_resume_with_another_worker_count(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, threshold: int, resume_workers: int
) -> None:
    """kill -9 of the whole process group of a 2-worker directory run once ``threshold`` records are committed (the
    first commit: while only one worker has published, the run is mid-way; or a later one), then resume with
    another worker count (more, fewer): the same records as an uninterrupted single-file run. (Three seeded
    moments before: their thresholds, 30,000 to 125,000, were first seen at the full 600,000 records, and all
    three resumed with 1 worker.)"""
    args = KILL_ARGS
    reference = uninterrupted(tmp_path_factory, "ref.db", args)  # made once for the kills and the two signals
    path = f"{tmp_path / 'd'}/"
    proc = start_cli("generate", path, *args, "--workers", "2", "--quiet", env=KILL_ENV)
    try:
        wait_until(lambda: records_in(path) >= threshold or proc.poll() is not None, timeout=120, what="progress")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        kill_group(proc)
    ref = Snapshot.of(reference)
    partial = Snapshot.of(path) if records_in(path) else None
    if partial is not None:
        assert integrity(path) == "ok" and partial.is_prefix_of(ref)
    cli("generate", path, *args, "--workers", str(resume_workers), "--quiet")
    assert Snapshot.of(path).equals(ref)
    shards = Path(path) / "shards"
    listed = {Path(p).name for p in _listed_segments(Path(path))}
    assert {p.name for p in shards.iterdir()} == listed, "a segment the manifest does not list was kept"
    with unitarium.open(path) as ds:
        assert ds.verify(sample=None).ok


def _listed_segments(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path / 'manifest.db'}?mode=ro", uri=True)
    try:
        return [f"{name}.db" for (name,) in conn.execute("SELECT name FROM shards")]
    finally:
        conn.close()


def test_resume_cleans_what_the_manifest_does_not_list(tmp_path: Path) -> None:
    path = tmp_path / "d"
    spec = unitarium.make_spec(gates="h,t,cx", qubits=2, count=30_000, length=8)
    generate(f"{path}/", spec, 1)
    reference = Snapshot.of(path)
    shards = path / "shards"
    junk = [shards / ".r0009-w000-000000.12345.tmp", shards / "r0009-w001-000003.db"]
    for p in junk:
        p.write_bytes(b"left by a crash")
    conn = sqlite3.connect(path / "manifest.db")  # the last task was never listed: its block is an orphan
    conn.execute("DELETE FROM tasks WHERE task_id = (SELECT max(task_id) FROM tasks)")
    conn.execute("UPDATE meta SET value = json_set(value, '$.complete', json('false')) WHERE key = 'state'")
    conn.execute("UPDATE meta SET value = json_set(value, '$.clean_through_run', 0) WHERE key = 'state'")
    conn.commit()
    conn.close()
    _fix_summary(path)
    with unitarium.open(path) as ds:
        assert not ds.complete
    generate(f"{path}/", spec, 2)
    assert not any(p.exists() for p in junk)
    assert Snapshot.of(path).equals(reference)
    with unitarium.open(path) as ds:
        assert ds.verify(sample=None).ok


def _fix_summary(path: Path) -> None:
    """Make meta.summary agree with the tasks left (as a crash before the commit would have left it)."""
    import json

    conn = sqlite3.connect(path / "manifest.db")
    (records,) = conn.execute("SELECT coalesce(sum(count), 0) FROM tasks").fetchone()
    (tasks,) = conn.execute("SELECT count(*) FROM tasks").fetchone()
    (candidates,) = conn.execute("SELECT coalesce(sum(candidates), 0) FROM tasks").fetchone()
    lengths = {"8": records}
    value = {"records": records, "tasks": tasks, "candidates": candidates, "lengths": lengths}
    conn.execute("UPDATE meta SET value = ? WHERE key = 'summary'", (json.dumps(value),))
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: (p / "notes.txt").write_text("mine"), "non-empty directory without a manifest.db"),
        (lambda p: None, None),
    ],
)
def test_a_foreign_directory_is_refused_and_left_alone(tmp_path: Path, setup, message: str | None) -> None:
    path = tmp_path / "d"
    path.mkdir()
    setup(path)
    before = sorted(p.name for p in path.iterdir())
    proc = cli("generate", f"{path}/", "--gates", "h", "--qubits", "1", "--count", "10", "--length", "2", check=False)
    if message is None:
        assert proc.returncode == 0  # an empty directory becomes a dataset
        return
    assert proc.returncode == 2 and message in one_error_line(proc.stderr)
    assert sorted(p.name for p in path.iterdir()) == before
    missing = cli("info", path, check=False)
    assert missing.returncode == 2 and "without a manifest.db" in one_error_line(missing.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_directory_run_and_keeps_what_is_committed(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, sig: signal.Signals
) -> None:
    args = KILL_ARGS  # 600,000 records: seconds of work after the first commit, when the signal is sent
    path = f"{tmp_path / 'd'}/"
    proc = start_cli("generate", path, *args, "--workers", "2", "--quiet", env=KILL_ENV)
    try:
        wait_until(lambda: records_in(path) > 0 or proc.poll() is not None, timeout=120, what="a first commit")
        os.killpg(proc.pid, sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    if records_in(path) == 600_000:  # the signal came after the last commit (exit 0, or the signal's own)
        return
    assert proc.returncode == 130, stderr
    line = one_error_line(stderr)
    committed = int(line.split(" records are committed")[0].rsplit(" ", 1)[1])
    assert "stopped by signal" in line and records_in(path) == committed > 0
    assert not [p for p in (Path(path) / "shards").iterdir() if p.name.endswith(".tmp")], "a temporary was left"
    cli("generate", path, *args, "--workers", "1", "--quiet", "--unitaries", "stored")
    reference = uninterrupted(tmp_path_factory, "ref.db", args)  # the kill tests' reference
    assert Snapshot.of(path).equals(Snapshot.of(reference))


def test_a_directory_under_a_missing_parent_is_created(tmp_path: Path) -> None:
    proc = cli(
        "generate",
        f"{tmp_path}/no/such/",
        "--gates",
        "h",
        "--qubits",
        "1",
        "--count",
        "5",
        "--length",
        "2",
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(unitarium.open(f"{tmp_path}/no/such/")) == 5


def test_a_level_barrier_publishes_every_decided_task(tmp_path: Path) -> None:
    """A unique enumeration's level barrier flushes each worker once its tasks are all decided, so a level's records
    lie in one segment per worker. Before, the flush could overtake the keep-masks still on their way: the rest
    of the level waited for its segment's age (2 s, SEGMENT_SECONDS) in a segment of its own, at every level."""
    import dataclasses

    spec = unitarium.make_spec(gates="h,s,cx", qubits=2, max_length=7, unique=True)
    generate(f"{tmp_path / 'd'}/", dataclasses.replace(spec, task_size=64), 2)  # 270 tasks, up to 150 a level
    conn = sqlite3.connect(f"file:{tmp_path / 'd' / 'manifest.db'}?mode=ro", uri=True)
    try:
        levels = conn.execute("SELECT level, count(*), count(DISTINCT shard) FROM tasks GROUP BY level").fetchall()
    finally:
        conn.close()
    assert len(levels) == 8 and sum(n for _, n, _ in levels) == 270, levels
    assert all(segments <= 2 for _, _, segments in levels), levels


@pytest.mark.parametrize("value", ["2s", "0", "-1", "nan", "1e9"])
def test_a_bad_segment_age_is_one_line_and_changes_nothing(tmp_path: Path, value: str) -> None:
    """``UNITARIUM_SEGMENT_SECONDS`` garbage: refused before anything is opened (an existing dataset keeps every
    byte, a new path is not made)."""
    args = ["--gates", "h,t", "--qubits", "1", "--count", "100", "--length", "4", "--quiet"]
    existing = tmp_path / "old"
    cli("generate", f"{existing}/", *args)
    before = {p.name: p.read_bytes() for p in existing.rglob("*") if p.is_file()}
    env = {**os.environ, "UNITARIUM_SEGMENT_SECONDS": value}
    for path in (existing, tmp_path / "new"):
        proc = cli("generate", f"{path}/", *args, "--workers", "2", check=False, env=env)
        assert proc.returncode == 2 and "UNITARIUM_SEGMENT_SECONDS" in one_error_line(proc.stderr), proc.stderr
    assert {p.name: p.read_bytes() for p in existing.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "new").exists()
