"""Peak memory of `unitarium generate` (main process + workers) at 2M and 20M records; and unique runs
under a key budget (``--budget``).

    .venv/bin/python benchmarks/bench_memory.py            # 2M and 20M records, 3 rounds, 2 workers
    .venv/bin/python benchmarks/bench_memory.py --quick    # 200k and 2M, 1 round
    .venv/bin/python benchmarks/bench_memory.py --budget 2MiB --count 2e6 --rounds 1 --workers 1

Runs the CLI as a subprocess and samples, every 20 ms, ``/proc/<pid>/status`` of it and all
its descendants (workers, resource tracker): each process's ``VmHWM`` (its own peak RSS,
kept by the kernel, so nothing between samples is missed) and the sum of the current
``VmRSS`` over the tree. Reports the main process's peak, the largest worker peak, the sum
of all per-process peaks (an upper bound of the tree's peak), the largest sampled total,
and ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (largest single descendant) as a cross-check.
Memory must be bounded: the same at 20M as at 2M. Writes benchmarks/out/memory.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import HERE, machine, rm_dataset, scratch_dir, summarize, unitarium_cmd, write_json


def _status_kib(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return out


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                kids = []
            found += kids
            todo += kids
    return found


def measure(path: Path, count: int, workers: int, interval: float = 0.02) -> dict[str, Any]:
    cmd = [
        *unitarium_cmd(),
        "generate",
        str(path),
        "--gates",
        "h,t,tdg,cx",
        "--qubits",
        "2",
        "--count",
        str(count),
        "--length",
        "12",
        "--workers",
        str(workers),
        "-q",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hwm: dict[int, int] = {}
    max_total = 0
    while proc.poll() is None:
        total = 0
        for pid in [proc.pid, *_descendants(proc.pid)]:
            st = _status_kib(pid)
            if st:
                hwm[pid] = max(hwm.get(pid, 0), st.get("VmHWM", 0))
                total += st.get("VmRSS", 0)
        max_total = max(max_total, total)
        time.sleep(interval)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"generate failed: {out}\n{err}")
    rm_dataset(path)
    others = [v for pid, v in hwm.items() if pid != proc.pid]
    return {
        "records": count,
        "seconds": wall,
        "main_peak_mib": hwm.get(proc.pid, 0) / 1024,
        "largest_other_peak_mib": max(others, default=0) / 1024,
        "processes": len(hwm),
        "sum_of_peaks_mib": sum(hwm.values()) / 1024,
        "max_sampled_total_mib": max_total / 1024,
        "ru_maxrss_children_mib": max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024,
    }


_RUSAGE = (
    "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
    "r = resource.getrusage(resource.RUSAGE_CHILDREN); print(r.ru_maxrss, r.ru_utime + r.ru_stime); sys.exit(rc)"
)
"""A fresh parent per run, so RUSAGE_CHILDREN is that run's processes alone: the largest peak RSS of one of
them (``ru_maxrss``) and their CPU seconds."""

MODES = {
    "plain": [],
    "unique": ["--unique", "--partitions", "1"],
    "unique P=2": ["--unique", "--partitions", "2"],
    "unique, budget": ["--unique", "--partitions", "1", "--memory", "BUDGET"],
    "unique, exact keys": ["--unique", "--partitions", "1", "--keys", "exact"],
}


def budget_run(path: Path, count: int, mode: str, budget: str, workers: int) -> dict[str, Any]:
    """One ``generate`` of random Clifford+T, 2 qubits, length 20, stored unitaries (``mode``: plain, unique
    with 1 or 2 key partitions, unique under ``--memory budget``, or unique with exact keys): candidates/s, CPU
    seconds, and the largest peak RSS of its processes (``ru_maxrss``)."""
    args = ["--gates", "h,t,tdg,cx", "--qubits", "2", "--count", str(count), "--length", "20", "--seed", "11"]
    args += ["--workers", str(workers), "-q", *(budget if a == "BUDGET" else a for a in MODES[mode])]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _RUSAGE, *unitarium_cmd(), "generate", str(path), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"generate failed: {proc.stdout}\n{proc.stderr}")
    records = int(proc.stdout.split(": ", 1)[1].split(" records", 1)[0].replace(",", ""))
    maxrss, cpu = proc.stdout.strip().splitlines()[-1].split()
    rm_dataset(path)
    return {
        "mode": mode,
        "seconds": wall,
        "records": records,
        "candidates_per_s": count / wall,
        "cpu_us_per_candidate": float(cpu) / count * 1e6,
        "peak_rss_mib": int(maxrss) / 1024,
    }


def budget_main(args: argparse.Namespace) -> None:
    """The runs of :data:`MODES` on the same candidates, interleaved, ``rounds`` times."""
    from unitarium._storage.keystore import memory_budget

    budget = memory_budget(args.budget)
    count = int(float(args.count))
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with scratch_dir(args.tmpdir) as tmp:
        info = machine(tmp)
        for r in range(args.rounds):
            for mode in runs:
                res = budget_run(Path(tmp) / "b.db", count, mode, args.budget, args.workers)
                runs[mode].append(res)
                print(f"round {r + 1} {mode}: {res}, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    fields = ("candidates_per_s", "cpu_us_per_candidate", "peak_rss_mib", "seconds")
    med = {m: {k: summarize([x[k] for x in rs])["median"] for k in fields} for m, rs in runs.items()}
    keys = runs["unique"][0]["records"]
    out = write_json("memory_budget.json", {"machine": info, "budget": budget, "count": count, "runs": runs})
    print(
        f"\n{count:,} candidates, {keys:,} unique keys ({16 * keys / budget:.1f}x the budget of "
        f"{budget / 2**20:.1f} MiB); {args.workers} worker(s), {args.rounds} round(s), median; "
        f"{info['nproc']} CPUs, {info['disk']}\n"
    )
    print(
        "| run | candidates/s | vs plain | CPU µs/candidate | CPU vs unique P=1 | peak RSS (ru_maxrss) |\n"
        "|---|---|---|---|---|---|"
    )
    for mode, m in med.items():
        ratio = m["candidates_per_s"] / med["plain"]["candidates_per_s"]
        cpu = m["cpu_us_per_candidate"] / med["unique"]["cpu_us_per_candidate"]
        print(
            f"| {mode} | {m['candidates_per_s']:,.0f} | {ratio:.2f}x | {m['cpu_us_per_candidate']:.2f} "
            f"| {'' if mode == 'plain' else f'{cpu:.2f}x'} | {m['peak_rss_mib']:.0f} MiB |"
        )
    ratios = {
        mode: [r["cpu_us_per_candidate"] / u["cpu_us_per_candidate"] for r, u in zip(rs, runs["unique"], strict=True)]
        for mode, rs in runs.items()
        if mode != "plain"
    }
    rates = [u["candidates_per_s"] / p["candidates_per_s"] for u, p in zip(runs["unique"], runs["plain"], strict=True)]
    print(f"\nper round, unique vs plain (candidates/s): {', '.join(f'{x:.2f}x' for x in rates)}")
    for mode, rs in ratios.items():
        print(f"per round, {mode} CPU vs unique P=1: {', '.join(f'{x:.2f}x' for x in rs)}")
    print(f"\nwrote {out.relative_to(HERE.parent)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--budget", help="unique runs under this --memory against plain and unbudgeted ones")
    parser.add_argument("--count", default="2e6", help="candidates of the --budget runs")
    parser.add_argument("--counts", type=int, nargs="+", default=[2_000_000, 20_000_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tmpdir")
    args = parser.parse_args()
    if args.budget:
        budget_main(args)
        return
    if args.quick:
        args.counts, args.rounds = [200_000, 2_000_000], 1
    runs: dict[int, list[dict[str, Any]]] = {c: [] for c in args.counts}
    with scratch_dir(args.tmpdir) as tmp:
        info = machine(tmp)
        for r in range(args.rounds):
            for count in args.counts:
                res = measure(Path(tmp) / "m.db", count, args.workers)
                runs[count].append(res)
                print(
                    f"round {r + 1}/{args.rounds} {count:,}: sum of peaks {res['sum_of_peaks_mib']:.0f} MiB, "
                    f"{res['seconds']:.1f} s, load {os.getloadavg()[0]:.2f}",
                    file=sys.stderr,
                )
    keys = [
        "main_peak_mib",
        "largest_other_peak_mib",
        "sum_of_peaks_mib",
        "max_sampled_total_mib",
        "ru_maxrss_children_mib",
        "seconds",
    ]
    agg = {
        c: {k: summarize([r[k] for r in rs]) for k in keys} | {"processes": rs[0]["processes"]}
        for c, rs in runs.items()
    }
    small, big = min(args.counts), max(args.counts)
    growth = agg[big]["sum_of_peaks_mib"]["median"] / agg[small]["sum_of_peaks_mib"]["median"]
    out = write_json(
        "memory.json",
        {
            "machine": info,
            "workers": args.workers,
            "rounds": args.rounds,
            "results": {str(c): a for c, a in agg.items()},
            "runs": runs,
            "growth_big_vs_small": growth,
        },
    )
    print(f"\n{args.workers} workers, {args.rounds} round(s), median (max) MiB; {info['nproc']} CPUs, {info['disk']}\n")
    print(
        "| records | main process peak | largest worker peak | processes | sum of per-process peaks | "
        "max sampled total RSS | seconds |\n|---|---|---|---|---|---|---|"
    )
    for c, a in agg.items():

        def f(k: str, a: dict[str, Any] = a) -> str:
            return f"{a[k]['median']:.0f} ({a[k]['max']:.0f})"

        print(
            f"| {c:,} | {f('main_peak_mib')} | {f('largest_other_peak_mib')} | {a['processes']} | "
            f"{f('sum_of_peaks_mib')} | {f('max_sampled_total_mib')} | {a['seconds']['median']:.1f} |"
        )
    print(
        f"\npeak at {big:,} / peak at {small:,}: {growth:.2f}x (bounded means ~1.0x)\n"
        f"wrote {out.relative_to(HERE.parent)}"
    )


if __name__ == "__main__":
    main()
