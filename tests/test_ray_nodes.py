"""A unique run's key partitions as Ray actors on several nodes: a ``ray.cluster_utils.Cluster`` with two task nodes
(each its own raylet, on this machine, so on one storage as docs/cluster.md asks of a real cluster). Each partition
lives on its own node; a node lost with its partition stops the run with one line, and the same call on what is left
of the cluster completes the local engine's content, bit for bit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import unitarium

from conftest import Snapshot, wait_until

ray = pytest.importorskip("ray", reason="the Ray engine's tests need ray: pip install 'unitarium[ray]'")

UNIQUE = dict(gates="h,s,cx", qubits=2, count=200_000, length="1:9", seed=5, unique=True)
"""A unique run of about 50 tasks (a node removed after the first commit goes before the last decision)."""


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def partition_actors_by_node(raylets: dict[int, int]) -> dict[int, list[int]]:
    """The live ``KeyPartition`` actor processes under each node's raylet: ``{node index: [pids]}``."""
    found: dict[int, list[int]] = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if not cmdline.read_bytes().startswith(b"ray::KeyPartition"):
                continue
        except OSError:
            continue
        pid = int(cmdline.parent.name)
        node = raylets.get(_ppid(pid) or -1)
        if node is not None:
            found.setdefault(node, []).append(pid)
    return found


@pytest.fixture
def two_nodes():
    """A head without CPUs (it runs no task) and two task nodes of one CPU each."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        yield cluster, nodes
    finally:
        cluster.shutdown()


@pytest.mark.slow
def test_partition_actors_on_two_nodes_then_a_node_lost_then_the_same_call_completes(
    made, two_nodes, tmp_path: Path
) -> None:
    cluster, nodes = two_nodes
    raylets = {node.all_processes["raylet"][0].process.pid: i for i, node in enumerate(nodes)}
    spec = unitarium.make_spec(**UNIQUE)
    reference = Snapshot.of(made(spec))
    path = f"{tmp_path / 'ray'}/"
    placed: dict[int, list[int]] = {}

    def remove_a_partitions_node(_: unitarium.Progress) -> None:  # the driver calls it after each commit
        if placed:
            return
        placed.update(partition_actors_by_node(raylets))
        if sorted(placed) == [0, 1]:  # one partition on each node: take the first node away, with its partition
            (pid,) = placed[0]
            cluster.remove_node(nodes[0])
            wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=60, what="the node's actor to end")

    options = dict(engine="ray", ray_address=cluster.address, workers=2, partitions=2, memory="2MiB")
    with pytest.raises(unitarium.WorkerError) as failed:
        unitarium.generate(path, spec, progress=remove_a_partitions_node, **options)
    assert {node: len(pids) for node, pids in placed.items()} == {0: 1, 1: 1}, placed
    message = str(failed.value)
    assert "\n" not in message and re.search(r"key partition [01] \(a Ray actor\) died", message), message
    assert "re-run the same command to resume" in message, message
    partial = Snapshot.of(tmp_path / "ray")
    assert 0 < len(partial) < len(reference) and partial.is_prefix_of(reference)

    unitarium.generate(path, spec, **options)  # the node left holds both partitions now
    assert Snapshot.of(tmp_path / "ray").equals(reference)
    assert not (tmp_path / "ray" / "keys").exists(), "the complete dataset's key store was left"
    wait_until(lambda: not partition_actors_by_node(raylets), timeout=60, what="the partition actors to end")
