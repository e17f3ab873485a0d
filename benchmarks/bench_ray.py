"""The Ray engine (issue #12) against the local engine, same shape, same run; Ray's start-up apart;
per-task costs; and a projection of the rate against node count (8 and 64 nodes x 32 cores) with
what stops it first: the driver (Ray's per-task cost), the manifest commits, dedup keys/s (unique
mode), or the shared storage.

    python benchmarks/bench_ray.py [--count 20000000] [--rounds 3] [--unique-count 1000000]

Shape: 2-qubit h,t,tdg,cx, length 12, into a directory. The local engine runs as the CLI in a
subprocess (its own "in X s" figure: the engine, not Python's start-up); the Ray engine runs in this
process on a local Ray started once (``ray.init(num_cpus=cores)``, timed apart), so its figure is the
engine's too; rounds alternate the two. The CLI with ``--engine ray`` (start-up and shutdown of its
own Ray included) is timed once more for what a user sees.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import unitarium
from unitarium._core.keyset import KeySet
from unitarium._run.engine import drive
from unitarium._run.jobs import TARGET_SECONDS

from _common import engine_seconds, machine, run_timed, scratch_dir, summarize, unitarium_cmd, write_json

SHAPE = dict(gates="h,t,tdg,cx", qubits=2, length="12", seed=1)
CLI_SHAPE = ["--gates", "h,t,tdg,cx", "--qubits", "2", "--length", "12", "--seed", "1", "--quiet"]
CORES_PER_NODE = 32
NODES = (1, 8, 64)
STORAGE_BYTES_S = {"NFS server, 10 GbE (~1 GB/s)": 1e9, "parallel filesystem (~20 GB/s)": 20e9}


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def local_run(scratch: Path, count: int, cores: int) -> float:
    path = scratch / "local"
    timed = run_timed(
        [*unitarium_cmd(), "generate", f"{path}/", *CLI_SHAPE, "--count", str(count), "--workers", str(cores)]
    )
    shutil.rmtree(path)
    return engine_seconds(timed.stdout)


def ray_run(scratch: Path, spec: unitarium.Spec, cores: int) -> dict[str, Any]:
    path = scratch / "ray"
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    summary, stats = drive(f"{path}/", spec, "ray", workers=cores)
    records, tasks = summary.records, summary.tasks
    wall = time.perf_counter() - t0
    driver_cpu = time.process_time() - cpu0
    size = size_of(path)
    shutil.rmtree(path)
    worker = np.array(stats.worker_s)
    return {
        "seconds": wall,
        "records": records,
        "spec_tasks": tasks,
        "ray_tasks": stats.jobs,
        "driver_cpu_s": driver_cpu,
        "worker_s_total": float(worker.sum()),
        "worker_s_median": float(np.median(worker)),
        "worker_s_max": float(worker.max()),
        "share_of_work_in_ray_tasks_of_1s_or_more": float(worker[worker >= 1.0].sum() / worker.sum()),
        "commit_s": stats.commit_s,
        "commits": stats.commits,
        "decide_s": stats.decide_s,
        "keys": stats.keys,
        "get_s": stats.get_s,
        "bytes": size,
    }


def ray_overhead(ray: Any, cores: int, n: int = 3000) -> dict[str, float]:
    """Driver seconds (wall and CPU) per empty Ray task, with ``cores`` in flight as the engine keeps them."""

    def nothing() -> None:
        return None

    remote = ray.remote(num_cpus=1)(nothing)
    ray.get([remote.remote() for _ in range(cores)])  # workers started
    t0, cpu0 = time.perf_counter(), time.process_time()
    inflight: list[Any] = []
    done = submitted = 0
    while done < n:
        while len(inflight) < cores and submitted < n:
            inflight.append(remote.remote())
            submitted += 1
        ready, inflight = ray.wait(inflight, num_returns=1)
        ray.get(ready)
        done += len(ready)
    return {"wall_s": (time.perf_counter() - t0) / n, "driver_cpu_s": (time.process_time() - cpu0) / n}


def keyset_rate(total: int = 16_000_000, batch: int = 4096, seed: int = 0) -> dict[str, float]:
    """The driver's dedup alone: select_new + add of fresh 128-bit keys, ``batch`` per spec task, as the
    set grows to ``total`` keys (keys/s over the last quarter: the large-set rate)."""
    rng = np.random.default_rng(seed)
    keys = KeySet()
    times = []
    for _ in range(total // batch):
        primary = rng.integers(-(2**63), 2**63 - 1, size=(batch, 2), dtype=np.int64)
        t0 = time.perf_counter()
        keep = keys.select_new(primary, {})
        keys.add(primary[keep])
        times.append(time.perf_counter() - t0)
    quarter = times[-len(times) // 4 :]
    return {
        "keys": total,
        "keys_per_s_overall": total / sum(times),
        "keys_per_s_at_end": batch * len(quarter) / sum(quarter),
    }


def projection(per_record_core_s: float, bytes_per_record: float, costs: dict[str, float]) -> list[dict[str, Any]]:
    """Records/s against node count: the compute, and each ceiling the driver or storage puts on it."""
    records_per_ray_task = TARGET_SECONDS / per_record_core_s
    rows = []
    for nodes in NODES:
        cores = nodes * CORES_PER_NODE
        bounds = {
            "compute (cores / CPU s per record)": cores / per_record_core_s,
            "driver: all its work (one core / driver CPU s per record)": 1 / costs["driver_cpu_s_per_record"],
            "driver: Ray's per-task cost alone": records_per_ray_task / costs["ray_task_driver_s"],
            "driver: manifest commits alone": records_per_ray_task / costs["commit_per_ray_task_s"],
            "driver, unique mode only: all its work per candidate": 1 / costs["unique_driver_cpu_s_per_candidate"],
            "driver, unique mode only: dedup keys/s (KeySet at 16M keys)": costs["dedup_keys_per_s"],
            **{f"storage: {k}": v / bytes_per_record for k, v in STORAGE_BYTES_S.items()},
        }
        plain = {k: v for k, v in bounds.items() if "unique" not in k}
        rows.append(
            {
                "nodes": nodes,
                "cores": cores,
                "bounds_records_per_s": bounds,
                "rate_plain": min(plain.values()),
                "stops_first_plain": min(plain, key=plain.__getitem__),
                "rate_unique": min(bounds.values()),
                "stops_first_unique": min(bounds, key=bounds.__getitem__),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000_000)
    parser.add_argument("--unique-count", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scratch", default=None)
    args = parser.parse_args()
    import ray

    cores = len(os.sched_getaffinity(0))
    spec = unitarium.make_spec(**SHAPE, count=args.count)
    with scratch_dir(args.scratch) as tmp:
        scratch = Path(tmp)
        info = machine(tmp)
        t0 = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        startup = time.perf_counter() - t0
        local_s, ray_results = [], []
        try:
            ray_run(scratch, unitarium.make_spec(**SHAPE, count=cores * 40_000), cores)  # workers warm
            for _ in range(args.rounds):
                local_s.append(local_run(scratch, args.count, cores))
                ray_results.append(ray_run(scratch, spec, cores))
            unique = ray_run(scratch, unitarium.make_spec(**SHAPE, count=args.unique_count, unique=True), cores)
            overhead = ray_overhead(ray, cores)
        finally:
            t1 = time.perf_counter()
            ray.shutdown()
            shutdown = time.perf_counter() - t1
        cli = [*unitarium_cmd(), "generate", str(scratch / "cli") + "/", *CLI_SHAPE, "--count", str(args.count)]
        timed = run_timed([*cli, "--engine", "ray"])
        cli_engine = engine_seconds(timed.stdout)
        shutil.rmtree(scratch / "cli")
    ray_s = [r["seconds"] for r in ray_results]
    best = ray_results[ray_s.index(statistics.median(ray_s))]
    per_record_core_s = best["worker_s_total"] / best["records"]
    unique_candidates = args.unique_count
    costs = {
        "driver_cpu_s_per_record": best["driver_cpu_s"] / best["records"],
        "unique_driver_cpu_s_per_candidate": unique["driver_cpu_s"] / unique_candidates,
        "ray_task_driver_s": overhead["driver_cpu_s"],
        "commit_per_ray_task_s": best["commit_s"] / max(1, best["commits"]),
        "dedup_keys_per_s": keyset_rate()["keys_per_s_at_end"],
    }
    result = {
        "machine": info,
        "shape": {**SHAPE, "count": args.count, "layout": "directory"},
        "cores": cores,
        "local_rate": summarize([args.count / s for s in local_s]),
        "ray_rate": summarize([args.count / s for s in ray_s]),
        "ratio_ray_over_local": statistics.median(local_s) / statistics.median(ray_s),
        "ray_startup_s": startup,
        "ray_shutdown_s": shutdown,
        "cli_engine_ray": {"wall_s": timed.wall, "engine_s": cli_engine, "rate_incl_startup": args.count / cli_engine},
        "ray_run_median": best,
        "per_task_costs": {
            **costs,
            "ray_task_wall_s": overhead["wall_s"],
            "worker_cpu_s_per_record": per_record_core_s,
            "bytes_per_record": best["bytes"] / best["records"],
            "dedup_keys_per_s_in_run": unique["keys"] / max(unique["decide_s"], 1e-9),
            "unique_run": unique,
        },
        "projection": projection(per_record_core_s, best["bytes"] / best["records"], costs),
    }
    path = write_json("bench_ray.json", result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "projection")}, indent=2))
    for row in result["projection"]:
        print(
            f"{row['nodes']:3d} nodes x {CORES_PER_NODE} cores: plain {row['rate_plain']:.3g} rec/s "
            f"(stops: {row['stops_first_plain']}); unique {row['rate_unique']:.3g} rec/s "
            f"(stops: {row['stops_first_unique']})"
        )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
