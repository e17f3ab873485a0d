"""Bring your own executor: ``unitarium.generate(..., executor=...)`` with the standard library's
``ProcessPoolExecutor`` and ``ThreadPoolExecutor`` and Dask's ``Client.get_executor()`` writes the
pinned content (the same as the CLI and every other engine); a worker killed mid-run is one resumable
line, and the resume (with another executor) completes the same content; misuse is one line each."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

import unitarium
from unitarium import SpecError, WorkerError

from conftest import PINNED_DIGESTS, PINNED_SPECS, cli, dataset_digest


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    """Two spawned worker processes for the module (the caller owns the executor and shuts it down)."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as executor:
        yield executor


# Four of the seven pins (each mode, stored and computed, 2 and 3 qubits): the jobs are the Ray engine's too,
# and test_ray runs all seven through them.
@pytest.mark.parametrize(
    "name", ["random computed", "enumerate", "unique random", "unique enumerate 3 qubits computed"]
)
def test_a_process_pool_writes_the_pinned_content(pool: ProcessPoolExecutor, tmp_path: Path, name: str) -> None:
    summary = unitarium.generate(f"{tmp_path / 'ds'}/", unitarium.make_spec(**PINNED_SPECS[name]), executor=pool)
    assert summary.complete
    assert dataset_digest(tmp_path / "ds") == PINNED_DIGESTS[name]


def test_the_cli_and_a_process_pool_write_the_same_dataset(pool: ProcessPoolExecutor, tmp_path: Path) -> None:
    cli("generate", f"{tmp_path / 'cli'}/", "--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--max-length", "6",
        "--unique", "--quiet")  # fmt: skip
    spec = unitarium.make_spec(gates="h,s,cx", qubits=2, max_length=6, unique=True)
    unitarium.generate(f"{tmp_path / 'pool'}/", spec, executor=pool, workers=3)
    assert dataset_digest(tmp_path / "pool") == dataset_digest(tmp_path / "cli")


def test_a_thread_pool_writes_the_pinned_content(tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as threads:
        spec = unitarium.make_spec(**PINNED_SPECS["unique random"])
        unitarium.generate(f"{tmp_path / 'ds'}/", spec, executor=threads)
    assert dataset_digest(tmp_path / "ds") == PINNED_DIGESTS["unique random"]


@pytest.mark.slow
def test_dask_writes_the_pinned_content(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="Dask's test needs dask[distributed] (the test extra)")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        for name in ("enumerate", "unique random"):
            path = tmp_path / name.replace(" ", "-")
            unitarium.generate(f"{path}/", unitarium.make_spec(**PINNED_SPECS[name]), executor=client.get_executor())
            assert dataset_digest(path) == PINNED_DIGESTS[name]


@pytest.mark.slow
def test_a_killed_pool_worker_is_one_resumable_error_and_the_resume_completes_the_content(tmp_path: Path) -> None:
    """kill -9 of a worker of the caller's ProcessPoolExecutor breaks the pool: one WorkerError saying
    what is committed; the same call with another executor resumes to the local engine's content."""
    spec = unitarium.make_spec(gates="h,t,tdg,cx", qubits=2, count=500_000, length="1:30", seed=4)
    unitarium.generate(f"{tmp_path / 'ref'}/", spec, workers=2)
    path = f"{tmp_path / 'ds'}/"
    killed: list[int] = []
    others = {p.pid for p in multiprocessing.active_children()}  # e.g. the module's pool: not ours to kill

    def kill_a_worker(progress: unitarium.Progress) -> None:
        if not killed and progress.records > 0:
            victim = next(p.pid for p in multiprocessing.active_children() if p.pid not in others)
            assert victim is not None
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    lost = r"executor jobs \d+\.\.\d+ were lost .*records are committed: re-run"
    with (
        ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as broken,
        pytest.raises(WorkerError, match=lost),
    ):
        unitarium.generate(path, spec, executor=broken, progress=kill_a_worker)
    assert killed
    with unitarium.open(path) as ds:
        assert 0 < len(ds) < spec.source.count  # a prefix is committed
    with ThreadPoolExecutor(2) as threads:
        assert unitarium.generate(path, spec, executor=threads).complete
    assert dataset_digest(tmp_path / "ds") == dataset_digest(tmp_path / "ref")


def test_misuse_is_one_line(pool: ProcessPoolExecutor, tmp_path: Path) -> None:
    spec = unitarium.make_spec(gates="h,cx", qubits=2, max_length=3)
    with pytest.raises(SpecError, match=r"executor= writes a sharded dataset directory.*end it with /"):
        unitarium.generate(tmp_path / "x.db", spec, executor=pool)
    with pytest.raises(SpecError, match="leave engine and ray_address out"):
        unitarium.generate(f"{tmp_path / 'y'}/", spec, executor=pool, engine="ray")
    with pytest.raises(SpecError, match=r"takes a concurrent\.futures\.Executor"):
        unitarium.generate(f"{tmp_path / 'z'}/", spec, executor=object())  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="--workers 0 must be at least 1"):
        unitarium.generate(f"{tmp_path / 'w'}/", spec, executor=pool, workers=0)
    assert not (tmp_path / "x.db").exists()
