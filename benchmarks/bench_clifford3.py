"""The 3-qubit Clifford group (issue 19, item 4): unique h,s,cx enumeration with tableau keys and
``--unitaries computed`` into a directory, to ``--max-length`` (a large one holds the whole group: the run
stops by itself at the first level that adds nothing).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_clifford3.py --max-length 9            # a few levels
    PYTHONPATH=src .venv/bin/python benchmarks/bench_clifford3.py --max-length 30           # the whole group
    PYTHONPATH=src .venv/bin/python benchmarks/bench_clifford3.py --max-length 7 --compare  # rules vs matrices
    PYTHONPATH=src .venv/bin/python benchmarks/bench_clifford3.py --max-length 10 --task-rates 10922  # one task

Each run is a child process (``unitarium.generate``, workers as given), timed from here: wall time, CPU of
the child and its workers, the run's peak RSS (``getrusage`` ``ru_maxrss`` of the child, taken when
``generate`` returns, and of its workers: the largest single process), the dataset's size on disk,
candidates, per-length counts and their sum (92,897,280 when the group is complete). ``--compare`` runs the
same spec again with the tableau rules forced off
(``UNITARIUM_TABLEAU_RULES=0``: keys read off the matrices) and checks the two datasets' digests agree.
The projection to the whole group scales the candidates (about the group's size times the candidates per
extended parent measured here) by the rate measured here: the rate falls as the key set grows, so it is a
lower bound on the time. Writes benchmarks/out/clifford3.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, scratch_dir, write_json

GROUP = 92_897_280
"""The 3-qubit Clifford group's order up to phase: 2^(n^2+2n) prod (4^j - 1), n = 3."""


def child(path: str, max_length: int, task_size: int, workers: int | None) -> None:
    import unitarium

    spec = unitarium.make_spec(
        gates="h,s,cx", qubits=3, max_length=max_length, unique=True, unitaries="computed", keys="exact"
    )
    spec = dataclasses.replace(spec, task_size=task_size)
    t0 = time.perf_counter()
    unitarium.generate(path + "/", spec, workers=workers)
    seconds = time.perf_counter() - t0
    # peak RSS of the run alone (this process: the driver, the writer and an in-process worker; its worker
    # processes), before the reads below
    peak_kib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    digest = hashlib.sha256()
    with unitarium.open(path) as ds:
        counts = np.bincount(ds.lengths()).tolist()
        candidates = int(ds.info()["candidates"])
        n = len(ds)
        for a in range(0, n, 1 << 20):
            codes, offsets = ds.codes(a, min(n, a + (1 << 20)))
            digest.update(codes.tobytes())
            digest.update(np.diff(offsets).astype("<u1").tobytes())
    facts = {"seconds": seconds, "records": n, "candidates": candidates, "counts": counts, "peak_kib": peak_kib}
    print(json.dumps(facts | {"digest": digest.hexdigest()}))


def task_rates(parents: int, length: int, repeat: int) -> dict:
    """One enumeration task alone (``run_task``: children and their keys), with the tableau rules and with them
    forced off (products of matrices, tableaux read off them), on the same random parents, alternating."""
    import unitarium
    from unitarium._spec.sources import TABLEAU_RULES_ENV, Task, TaskContext, run_task

    spec = unitarium.make_spec(
        gates="h,s,cx", qubits=3, max_length=length, unique=True, unitaries="computed", keys="exact"
    )
    rng = np.random.default_rng(0)
    task = Task(1, length, 0, parents, rng.integers(0, len(spec.gateset.moves), size=(parents, length - 1)))
    contexts = {"rules": TaskContext(spec)}
    os.environ[TABLEAU_RULES_ENV] = "0"
    contexts["matrices"] = TaskContext(spec)
    contexts["matrices"].rules  # noqa: B018  (decided now, while the switch is set)
    del os.environ[TABLEAU_RULES_ENV]
    assert contexts["rules"].rules is not None and contexts["matrices"].rules is None
    times: dict[str, list[float]] = {name: [] for name in contexts}
    results = {}
    for _ in range(repeat):
        for name, ctx in contexts.items():
            t0 = time.perf_counter()
            results[name] = run_task(ctx, task)
            times[name].append(time.perf_counter() - t0)
    rules, matrices = results["rules"], results["matrices"]
    # the same keys: the rules' result drops children equal to an earlier child of the task (never kept)
    first = np.unique(matrices.dedup, axis=0, return_index=True)[1]
    assert np.array_equal(rules.dedup, matrices.dedup[np.sort(first)])
    out = {"parents": parents, "candidates": matrices.candidates, "kept_by_the_task": rules.count}
    for name, values in times.items():
        out[f"{name}_candidates_per_s"] = matrices.candidates / statistics.median(values)
    out["speedup"] = out["rules_candidates_per_s"] / out["matrices_candidates_per_s"]
    return out


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(path: Path, args: argparse.Namespace, rules: bool) -> dict:
    env = dict(os.environ)
    if not rules:
        env["UNITARIUM_TABLEAU_RULES"] = "0"
    cmd = [sys.executable, __file__, "--child", str(path), str(args.max_length), str(args.task_size)]
    cmd += [str(args.workers or 0)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"the run failed ({proc.returncode}):\n{proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    counts = out["counts"]
    extended = sum(counts[:-1]) if len(counts) > args.max_length else sum(counts)  # parents that were extended
    per_parent = out["candidates"] / max(1, extended)
    rate = out["candidates"] / out["seconds"]
    return {
        "rules": rules,
        "wall_s": wall,
        "generate_s": out["seconds"],
        "cpu_s": cpu,
        "peak_rss_mib": out["peak_kib"] / 1024,
        "disk_mib": disk_bytes(path) / 2**20,
        "records": out["records"],
        "candidates": out["candidates"],
        "candidates_per_s": rate,
        "candidates_per_cpu_s": out["candidates"] / max(1e-9, cpu),
        "per_length": counts,
        "sum": sum(counts),
        "complete_group": sum(counts) == GROUP,
        "candidates_per_extended_parent": per_parent,
        "projected_group_candidates": GROUP * per_parent,
        "projected_group_s_at_this_rate": GROUP * per_parent / rate,
        "bytes_per_record": disk_bytes(path) / max(1, out["records"]),
        "digest": out["digest"],
        "loadavg": os.getloadavg()[0],
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        path, max_length, task_size, workers = sys.argv[2:6]
        child(path, int(max_length), int(task_size), int(workers) or None)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-length", type=int, default=9)
    parser.add_argument("--task-size", type=int, default=131072, help="candidates per task (default 131072)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: the CLI's)")
    parser.add_argument("--compare", action="store_true", help="also run with the rules off; digests must agree")
    parser.add_argument("--dir", default=None, help="where the datasets go (default benchmarks/out)")
    parser.add_argument("--task-rates", type=int, default=0, metavar="PARENTS", help="only time one task, both ways")
    args = parser.parse_args()
    if args.task_rates:
        rates = task_rates(args.task_rates, args.max_length, 5)
        print(json.dumps(rates))
        print(write_json("clifford3_task.json", {"machine": machine(args.dir), "args": vars(args), "task": rates}))
        return
    rows = []
    for rules in [True, False] if args.compare else [True]:
        with scratch_dir(args.dir) as tmp:
            row = measure(Path(tmp) / "cliff3", args, rules)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "digest"}), flush=True)
    if args.compare:
        assert rows[0]["digest"] == rows[1]["digest"], "the datasets differ with and without the tableau rules"
        print(f"same dataset; rules off / on time: {rows[1]['generate_s'] / rows[0]['generate_s']:.2f}x")
    out = {"machine": machine(args.dir), "args": vars(args), "runs": rows}
    print(write_json("clifford3.json", out))


if __name__ == "__main__":
    main()
