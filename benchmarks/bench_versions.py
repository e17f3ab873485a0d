"""Before/after: the same `generate` commands with this checkout and with an older commit, in one run.

    .venv/bin/python benchmarks/bench_versions.py --rev 78812e3     # the engine before pipelined commits
    .venv/bin/python benchmarks/bench_versions.py --rev 78812e3 --quick
    .venv/bin/python benchmarks/bench_versions.py --rev 6c1f742 --scale 5   # runs of ~10 s: the steady rate

Checks the older commit out into a temporary git worktree and runs its CLI with
``PYTHONPATH=<worktree>/src`` (same interpreter, same numpy), alternating old and new for
``--rounds`` rounds, each with 1 and 2 workers, on the headline workloads: random length-12
circuits over h, t, tdg, cx on 2 qubits into a file, into a directory, with ``--unitaries
computed``, and ``--unique``; clifford+t on 3 qubits at length 50; with ``--ray``, the
directory workload on a local Ray too (its start-up included).
``--scale`` multiplies the counts (the defaults are runs of 2-3 s on 2 cores, where a process's start-up,
such as loading compiled loops, is a visible part of the rate; at 5x the rate is the one a long run keeps).
Reports the engine's own rate (the CLI summary line), median (min-max), and new/old ratios.
Writes benchmarks/out/versions.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import HERE, ROOT, engine_seconds, machine, rm_dataset, run_timed, scratch_dir, summarize, write_json

L12 = ["--gates", "h,t,tdg,cx", "--qubits", "2", "--length", "12"]
WORKLOADS = {
    "2q h,t,tdg,cx L12 file": L12,
    "2q h,t,tdg,cx L12 directory": L12,
    "2q h,t,tdg,cx L12 computed": [*L12, "--unitaries", "computed"],
    "2q h,s,cx L1:12 unique": ["--gates", "h,s,cx", "--qubits", "2", "--length", "1:12", "--unique"],
    "3q clifford+t L50 file": ["--gates", "clifford+t", "--qubits", "3", "--length", "50"],
}
COUNTS = {
    "2q h,t,tdg,cx L12 file": 4_000_000,
    "2q h,t,tdg,cx L12 directory": 4_000_000,
    "2q h,t,tdg,cx L12 computed": 4_000_000,
    "2q h,s,cx L1:12 unique": 1_000_000,
    "3q clifford+t L50 file": 400_000,
}
RAY = "2q h,t,tdg,cx L12 directory, Ray"


def run(src: Path, tmp: Path, workload: str, count: int, workers: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    directory = "directory" in workload
    path = f"{tmp / 'v'}/" if directory else str(tmp / "v.db")
    args = [*WORKLOADS[workload.removesuffix(", Ray")], "--count", str(count)]
    if workload.endswith(", Ray"):
        args += ["--engine", "ray"]
    t = run_timed([sys.executable, "-m", "unitarium", "generate", path, *args, "--seed", "1", "--workers",
                   str(workers), "-q"], env=env)  # fmt: skip
    if directory:
        shutil.rmtree(tmp / "v")
    else:
        rm_dataset(tmp / "v.db")
    return count / engine_seconds(t.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", required=True, help="the older commit")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the record counts (default 1)")
    parser.add_argument("--ray", action="store_true", help="also the directory workload on a local Ray")
    parser.add_argument("--only", help="run only the workloads whose name contains this")
    args = parser.parse_args()
    scale = (10 if args.quick else 1) / args.scale
    rounds = 1 if args.quick else args.rounds
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.rev], capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory() as wt, scratch_dir() as tmp:
        git = ["git", "-C", str(ROOT), "worktree"]
        subprocess.run([*git, "add", "--detach", wt, rev], check=True, capture_output=True)
        try:
            versions = {f"old ({rev})": Path(wt) / "src", "new (this checkout)": ROOT / "src"}
            rates: dict[str, list[float]] = {}
            counts = {**COUNTS, RAY: COUNTS["2q h,t,tdg,cx L12 directory"]} if args.ray else dict(COUNTS)
            counts = {k: v for k, v in counts.items() if args.only is None or args.only in k}
            for r in range(rounds):
                for workload, count in counts.items():
                    for workers in (1, 2):
                        for name, src in versions.items():
                            key = f"{workload} | {workers} worker(s) | {name}"
                            rate = run(src, Path(tmp), workload, round(count / scale), workers)
                            rates.setdefault(key, []).append(rate)
                print(f"round {r + 1}/{rounds} done, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
            info = machine(tmp)
        finally:
            subprocess.run([*git, "remove", "--force", wt], check=False)
    agg = {k: summarize(v) for k, v in rates.items()}
    record = {"machine": info, "rev": rev, "rounds": rounds, "scale": args.scale, "rates": agg}
    out = write_json("versions.json", record)
    print(f"\nengine records/s, median (min-max) of {rounds}, counts x{1 / scale:g}; {info['nproc']} CPUs "
          f"({info['cpu_model']})\n")  # fmt: skip
    print("| workload | workers | version | records/s | new/old |\n|---|---|---|---|---|")
    for k, v in agg.items():
        workload, workers, name = k.split(" | ")
        old = next(a for key, a in agg.items() if key.startswith(f"{workload} | {workers} | old"))
        ratio = f"{v['median'] / old['median']:.3f}" if name.startswith("new") else ""
        print(f"| {workload} | {workers} | {name} | {v['median']:,.0f} ({v['min']:,.0f}-{v['max']:,.0f}) | {ratio} |")
    print(f"\nwrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
