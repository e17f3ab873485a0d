"""The Ray engine (``--engine ray``): the same records as the local engine's file in every mode; a re-run of a
Ray task writes the same segment; kill -9 of a Ray worker, of the driver, a node removed, Ctrl-C; Ray missing, an
unreachable cluster, a file path: one line each. One local Ray (2 CPUs) is shared by the module; the CLI tests
start their own, or a two-node ``ray.cluster_utils.Cluster``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import unitarium
from unitarium._run.actors import RayActors
from unitarium._run.jobs import write_chunk
from unitarium._run.partition import PartitionArgs
from unitarium._run.ray import check_nodes, probe_node
from unitarium._spec.sources import Task
from unitarium._storage.shards import range_segment_name

from conftest import (
    PINNED_DIGESTS,
    PINNED_SPECS,
    Snapshot,
    cached,
    cli,
    dataset_digest,
    group_gone,
    integrity,
    kill_group,
    one_error_line,
    records_in,
    start_cli,
    wait_until,
    worker_pids,
)

ray = pytest.importorskip("ray", reason="the Ray engine's tests need ray: pip install 'unitarium[ray]'")

MODES = {
    "random": dict(gates="h,t,tdg,cx", qubits=2, count=20_000, length="1:12", seed=3),
    "enumerate": dict(gates="h,t,tdg,cx", qubits=2, max_length=5),
    "unique random": dict(gates="h,s,cx", qubits=2, count=12_000, length="1:9", seed=5, unique=True),
    "unique enumerate": dict(gates="h,s,cx", qubits=2, max_length=7, unique=True),
    "3 qubits complex128 computed": dict(
        gates="clifford+t", qubits=3, count=3_000, length="0:20", seed=9, dtype="complex128", unitaries="computed"
    ),
}
CLI_ARGS = ["--gates", "h,t,tdg,cx", "--qubits", "2", "--count", "2000000", "--length", "1:24", "--seed", "7"]
"""A run of several seconds on 2 cores, 489 tasks (faults land mid-run)."""


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the module (start-up takes seconds); the engine uses it as it is."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def cli_reference(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """The single-file dataset of :data:`CLI_ARGS` by the local engine (made once a test run)."""

    def build(path: Path) -> None:
        cli("generate", path, *CLI_ARGS, "--quiet")

    return Snapshot.of(cached(tmp_path_factory, json.dumps(["ray reference", *CLI_ARGS]), build, "ref.db"))


def listed_segments(path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{path / 'manifest.db'}?mode=ro", uri=True)
    try:
        return {f"{name}.db" for (name,) in conn.execute("SELECT name FROM shards")}
    finally:
        conn.close()


def assert_clean(path: Path) -> None:
    """Only the segments the manifest lists are left, all named by their task range; integrity ok."""
    files = {p.name for p in (path / "shards").iterdir()}
    assert files == listed_segments(path), f"unlisted files left: {sorted(files - listed_segments(path))}"
    assert all(name.startswith("t") for name in files), sorted(files)
    assert integrity(path) == "ok"


@pytest.mark.parametrize("name", list(MODES))
def test_a_ray_run_holds_exactly_the_records_of_the_local_file(local_ray, made, tmp_path: Path, name: str) -> None:
    spec = unitarium.make_spec(**MODES[name])
    reference = Snapshot.of(made(spec))  # the local engine's file (made once a session)
    seen: list[unitarium.Progress] = []
    summary = unitarium.generate(f"{tmp_path / 'ray'}/", spec, engine="ray", workers=2, progress=seen.append)
    assert Snapshot.of(tmp_path / "ray").equals(reference)
    assert summary.complete and summary.new_records == summary.records == len(reference)
    assert [p.records for p in seen] == sorted(p.records for p in seen) and seen[-1].records == summary.records
    assert_clean(tmp_path / "ray")
    with unitarium.open(tmp_path / "ray") as ds:
        assert ds.complete and ds.verify(sample=None).ok


@pytest.mark.parametrize("name", list(PINNED_SPECS))
def test_the_ray_engine_keeps_the_pinned_content(local_ray, tmp_path: Path, name: str) -> None:
    """The digest pins of ``test_digests``, through the Ray engine (2 tasks in flight)."""
    unitarium.generate(f"{tmp_path / 'ray'}/", unitarium.make_spec(**PINNED_SPECS[name]), engine="ray", workers=2)
    assert dataset_digest(tmp_path / "ray") == PINNED_DIGESTS[name]


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_the_ray_engine_keeps_the_pinned_unique_content_whatever_the_partitions(
    local_ray, tmp_path: Path, parts: int
) -> None:
    """Unique mode through Ray with the key authority in 1, 2 or 3 partitions (one: the driver itself; more: Ray
    actors, seen serving while the run commits, none of them a process of this driver's, under a budget that
    spills): the content of main ``6c1f742``, bit for bit (the local engines' partitions: test_keystore)."""
    path = f"{tmp_path / 'ray'}/"
    spec = unitarium.make_spec(**PINNED_SPECS["unique random"])
    earlier = earlier_actors_gone()
    actors: set[int] = set()
    local: set[int] = set()

    def progress(_: unitarium.Progress) -> None:  # after each commit: the partitions live from the first decision
        actors.update(set(running_tasks("KeyPartition")) - earlier)
        local.update(worker_pids(os.getpid()))

    unitarium.generate(path, spec, engine="ray", workers=2, partitions=parts, memory=f"{parts}MiB", progress=progress)
    assert dataset_digest(tmp_path / "ray") == PINNED_DIGESTS["unique random"]
    assert len(actors) == (parts if parts > 1 else 0), actors
    assert not local, f"local partition processes {local} were started"
    assert not (tmp_path / "ray" / "keys").exists(), "the complete dataset's key store was left"


UNIQUE_KILLED = dict(gates="h,s,cx", qubits=2, count=200_000, length="1:9", seed=5, unique=True)
"""A unique run of about 50 tasks (a kill after the first commit lands before the last decision)."""


def test_a_killed_partition_actor_is_one_error_and_the_same_run_resumes(local_ray, made, tmp_path: Path) -> None:
    """kill -9 of a key partition's Ray actor after the run's first commit: the run stops with one line naming the
    partition and how to resume (as a dead local partition process does); the same call completes the content of
    the local engine's file."""
    spec = unitarium.make_spec(**UNIQUE_KILLED)
    reference = Snapshot.of(made(spec))
    path = f"{tmp_path / 'ray'}/"
    earlier = earlier_actors_gone()
    killed: list[int] = []

    def kill_one(_: unitarium.Progress) -> None:  # called by the driver after each commit
        if not killed:
            killed.extend([pid for pid in running_tasks("KeyPartition") if pid not in earlier][:1])
            if killed:
                os.kill(killed[0], signal.SIGKILL)
                wait_until(lambda: not Path(f"/proc/{killed[0]}").exists(), timeout=30, what="the actor to die")

    with pytest.raises(unitarium.WorkerError) as failed:
        unitarium.generate(path, spec, engine="ray", workers=2, partitions=2, memory="2MiB", progress=kill_one)
    assert killed, "no partition actor was running to kill"
    message = str(failed.value)
    assert "\n" not in message and "died" in message and "re-run the same command to resume" in message, message
    assert re.search(r"key partition [01] \(a Ray actor\)", message), message
    partial = Snapshot.of(tmp_path / "ray")
    assert 0 < len(partial) < len(reference) and partial.is_prefix_of(reference)

    unitarium.generate(path, spec, engine="ray", workers=2, partitions=2, memory="2MiB")
    assert Snapshot.of(tmp_path / "ray").equals(reference)
    assert_clean(tmp_path / "ray")


def test_a_partition_actor_answers_in_order_and_a_silent_failure_surfaces_at_the_next_reply(
    local_ray, tmp_path: Path
) -> None:
    """Messages without an answer are not waited for: an ``add`` that fails (keys of a wrong shape) is one line at
    the partition's next reply; the actor still answers every message in the order sent."""
    args = PartitionArgs(str(tmp_path / "d"), str(tmp_path / "part-0-of-2"), b"id", 1 << 22, 0, 2)
    actors = RayActors(unitarium.WorkerError, None)
    actors.start([args])
    try:
        keys = np.array([[5, 6], [-7, 8]], dtype=np.int64)
        actors.send(0, ("add", keys, 1))
        actors.send(0, ("query", np.array([[5, 6], [5, 7], [-7, 8]], dtype=np.int64)))
        assert actors.reply(0).tolist() == [True, False, True]
        actors.send(0, ("add", np.zeros((3, 3), dtype=np.int64), 2))
        actors.send(0, ("query", keys))
        with pytest.raises(unitarium.WorkerError) as failed:
            actors.reply(0)
        assert str(failed.value).startswith("key partition 0 failed: ValueError: cannot reshape"), failed.value
        assert "\n" not in str(failed.value)
    finally:
        actors.close()


def test_a_rerun_of_a_ray_task_writes_the_same_segment(tmp_path: Path) -> None:
    """What Ray re-runs after a lost worker: the same arguments give the same file under the same name."""
    spec = unitarium.make_spec(**MODES["unique random"])
    (tmp_path / "shards").mkdir()
    size = spec.task_size
    tasks = [Task(t, 0, t * size, min(spec.source.count, (t + 1) * size)) for t in (1, 2)]
    keep = [np.arange(t.stop - t.start) % 3 != 0 for t in tasks]
    text = json.dumps(spec.to_json())
    first, _ = write_chunk(text, tasks, keep, str(tmp_path), False, "ab" * 16)
    segment = tmp_path / "shards" / f"{range_segment_name(1, 2)}.db"
    before = segment.read_bytes()
    again, _ = write_chunk(text, tasks, keep, str(tmp_path), False, "ab" * 16)
    assert again == first and [p.count for p in first] == [int(k.sum()) for k in keep]
    assert segment.read_bytes() == before
    assert [p.name for p in (tmp_path / "shards").iterdir()] == [segment.name], "a temporary file was left"


def test_every_node_must_see_and_write_the_directory(local_ray, tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    check_nodes(ray, tmp_path)  # the local node sees the driver's probe file and writes its own
    assert list((tmp_path / "shards").iterdir()) == [], "probe files were left"
    problem = probe_node(str(tmp_path), "a-token-this-node-never-saw")  # what a node with its own disk answers
    assert problem is not None and "does not see" in problem and "every node mounts at the same path" in problem


@pytest.mark.slow
def test_kill_9_of_a_ray_worker_mid_task(local_ray, tmp_path: Path, cli_reference: Snapshot) -> None:
    """A Ray worker process killed while it runs a task: Ray re-runs the task, the content is identical."""
    spec = unitarium.make_spec(gates="h,t,tdg,cx", qubits=2, count=2_000_000, length="1:24", seed=7)  # CLI_ARGS
    killed: list[int] = []
    done = threading.Event()

    def killer() -> None:  # paced: polling without pause took a core (and this process's GIL) from the run
        while not done.is_set() and len(killed) < 2:
            began = time.perf_counter()
            if records_in(tmp_path / "ray") > len(killed) * 400_000:  # one mid-run, one later
                for pid in running_tasks("write_chunk"):
                    with contextlib.suppress(ProcessLookupError):  # (its task ended meanwhile: try the next poll)
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                    break
            done.wait(max(0.005, 3 * (time.perf_counter() - began)))

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        unitarium.generate(f"{tmp_path / 'ray'}/", spec, engine="ray", workers=2)
    finally:
        done.set()
        thread.join()
    assert killed, "no Ray worker was running a task to kill"
    assert Snapshot.of(tmp_path / "ray").equals(cli_reference)
    assert_clean(tmp_path / "ray")


def earlier_actors_gone() -> set[int]:
    """Wait (a while) for the partition actors of this module's earlier runs to end, and return those still
    there: Ray ends a killed actor's process in its own time, and CI's 2 busy cores once let the previous
    test's actor outlive that test and be taken (and killed) for the next run's own."""
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not running_tasks("KeyPartition"), timeout=30, what="earlier runs' actors to end")
    return set(running_tasks("KeyPartition"))


def running_tasks(function: str) -> list[int]:
    """Ray worker processes of this process's local Ray (its raylet's children) running ``function`` now."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            cmdline = (stat.parent / "cmdline").read_bytes()
            if not cmdline.startswith(f"ray::{function}".encode()):
                continue
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            grandparent = int((Path("/proc") / str(ppid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if grandparent == os.getpid():
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_kill_9_of_the_driver_then_ctrl_c_of_the_resumed_run_then_the_same_command_completes(
    tmp_path: Path, cli_reference: Snapshot
) -> None:
    """One dataset through both faults of the driver (one run each, to spare a local Ray's start-up): kill -9 of
    the driver after a first commit; the same command resumes, and Ctrl-C stops it cleanly after its own first
    commit, exit 130, no Ray process left; the same command again completes the content."""
    path = tmp_path / "d"
    command = ("generate", f"{path}/", *CLI_ARGS, "--engine", "ray", "--workers", "2", "--quiet")
    proc = start_cli(*command)
    try:
        wait_until(lambda: records_in(path) > 0 or proc.poll() is not None, timeout=120, what="a first commit")
        assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read() if proc.stderr else ''}"
        os.kill(proc.pid, signal.SIGKILL)  # the driver only; the local Ray it started is left to itself
        proc.wait(timeout=60)
    finally:
        kill_group(proc)  # what the dead driver's local Ray left (agents) goes with its process group
    partial = Snapshot.of(path)
    assert 0 < len(partial) < len(cli_reference) and partial.is_prefix_of(cli_reference)
    assert integrity(path) == "ok"

    again = start_cli(*command)
    try:
        more = lambda: records_in(path) > len(partial) or again.poll() is not None  # noqa: E731
        wait_until(more, timeout=120, what="a first commit of the resumed run")
        assert again.poll() is None, "the resumed run ended before Ctrl-C"
        os.killpg(again.pid, signal.SIGINT)  # as a terminal does: the whole foreground group
        _, err = again.communicate(timeout=120)
    finally:
        if again.poll() is None:
            kill_group(again)
    assert again.returncode == 130, err
    assert "stopped by signal" in one_error_line(err)
    wait_until(lambda: group_gone(again.pid), timeout=60, what="no Ray process left behind")
    stopped = Snapshot.of(path)
    assert len(partial) < len(stopped) < len(cli_reference) and stopped.is_prefix_of(cli_reference)
    assert_clean(path)

    cli(*command)
    assert Snapshot.of(path).equals(cli_reference)
    assert_clean(path)


@pytest.mark.slow
def test_a_node_removed_mid_run(tmp_path: Path, cli_reference: Snapshot) -> None:
    """A two-node cluster (the head runs no task) loses a node while the CLI runs on it: the run completes."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        doomed = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        path = tmp_path / "d"
        args = ["--engine", "ray", "--ray-address", cluster.address, "--quiet"]
        proc = start_cli("generate", f"{path}/", *CLI_ARGS, *args)
        try:
            wait_until(lambda: records_in(path) > 0 or proc.poll() is not None, timeout=120, what="a first commit")
            assert proc.poll() is None, "the run ended before the node was removed"
            cluster.remove_node(doomed)
            _, err = proc.communicate(timeout=240)
        finally:
            if proc.poll() is None:
                kill_group(proc)
        assert proc.returncode == 0, err
    finally:
        cluster.shutdown()
    assert Snapshot.of(path).equals(cli_reference)
    assert_clean(path)


def test_without_ray_one_line_with_the_install_hint(tmp_path: Path) -> None:
    """The real CLI in a Python where ``import ray`` fails (as without the package: sys.modules blocks it)."""
    blocked = "import sys; sys.modules['ray'] = None; from unitarium.cli.main import main; main()"
    args = ["generate", f"{tmp_path / 'd'}/", "--gates", "h", "--qubits", "1", "--count", "10", "--length", "2"]
    proc = subprocess.run(
        [sys.executable, "-c", blocked, *args, "--engine", "ray"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert one_error_line(proc.stderr).endswith(
        "--engine ray needs ray, which is not installed: pip install 'unitarium[ray]'"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("how", ["option", "RAY_ADDRESS"])
def test_an_unreachable_cluster_is_one_line(tmp_path: Path, how: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    args = ["--ray-address", address] if how == "option" else []
    env = {**os.environ, "RAY_ADDRESS": address} if how == "RAY_ADDRESS" else None
    proc = cli(
        "generate", f"{tmp_path / 'd'}/", "--gates", "h", "--qubits", "1", "--count", "10", "--length", "2",
        "--engine", "ray", *args, check=False, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert f"cannot reach the Ray cluster at {address}" in line and "ray start --head" in line
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data.db", "--engine", "ray"], "--engine ray writes a sharded dataset directory"),
        (["d/", "--ray-address", "127.0.0.1:6379"], "--ray-address goes with --engine ray"),
        (["d/", "--engine", "ray", "--ray-address", "nowhere"], "must be HOST:PORT"),
        (["d/", "--engine", "ray", "--workers", "0"], "--workers 0 must be at least 1"),
    ],
)
def test_bad_engine_options_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    spec = ["--gates", "h", "--qubits", "1", "--count", "10", "--length", "2"]
    proc = cli("generate", *args, *spec, check=False, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and message in one_error_line(proc.stderr)
    assert not (tmp_path / "data.db").exists()
