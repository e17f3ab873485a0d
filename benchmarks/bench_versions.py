"""Before/after: the same `generate` commands with this checkout and with an older commit, in one run.

    .venv/bin/python benchmarks/bench_versions.py --rev 78812e3     # the engine before pipelined commits
    .venv/bin/python benchmarks/bench_versions.py --rev 78812e3 --quick

Checks the older commit out into a temporary git worktree and runs its CLI with
``PYTHONPATH=<worktree>/src`` (same interpreter, same numpy), alternating old and new for
``--rounds`` rounds, each with 1 and 2 workers, on random length-12 circuits over h, t, tdg, cx
on 2 qubits (the headline workload) and clifford+t on 3 qubits at length 50.
Reports the engine's own rate (the CLI summary line), median (min-max).
Writes benchmarks/out/versions.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import HERE, ROOT, engine_seconds, machine, rm_dataset, run_timed, scratch_dir, summarize, write_json

WORKLOADS = {
    "2q h,t,tdg,cx L12": ["--gates", "h,t,tdg,cx", "--qubits", "2", "--length", "12"],
    "3q clifford+t L50": ["--gates", "clifford+t", "--qubits", "3", "--length", "50"],
}
COUNTS = {"2q h,t,tdg,cx L12": 4_000_000, "3q clifford+t L50": 400_000}


def run(src: Path, path: Path, workload: str, count: int, workers: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "unitarium", "generate", str(path), *WORKLOADS[workload], "--count", str(count)]
    t = run_timed([*cmd, "--seed", "1", "--workers", str(workers), "-q"], env=env)
    rm_dataset(path)
    return count / engine_seconds(t.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", required=True, help="the older commit")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    rounds = 1 if args.quick else args.rounds
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.rev], capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory() as wt, scratch_dir() as tmp:
        git = ["git", "-C", str(ROOT), "worktree"]
        subprocess.run([*git, "add", "--detach", wt, rev], check=True, capture_output=True)
        try:
            versions = {f"old ({rev})": Path(wt) / "src", "new (this checkout)": ROOT / "src"}
            rates: dict[str, list[float]] = {}
            for r in range(rounds):
                for workload, count in COUNTS.items():
                    for workers in (1, 2):
                        for name, src in versions.items():
                            key = f"{workload} | {workers} worker(s) | {name}"
                            rate = run(src, Path(tmp) / "v.db", workload, count // scale, workers)
                            rates.setdefault(key, []).append(rate)
                print(f"round {r + 1}/{rounds} done, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
            info = machine(tmp)
        finally:
            subprocess.run([*git, "remove", "--force", wt], check=False)
    agg = {k: summarize(v) for k, v in rates.items()}
    out = write_json("versions.json", {"machine": info, "rev": rev, "rounds": rounds, "rates": agg})
    print(f"\nengine records/s, median (min-max) of {rounds}; {info['nproc']} CPUs ({info['cpu_model']})\n")
    print("| workload | workers | version | records/s |\n|---|---|---|---|")
    for k, v in agg.items():
        workload, workers, name = k.split(" | ")
        print(f"| {workload} | {workers} | {name} | {v['median']:,.0f} ({v['min']:,.0f}-{v['max']:,.0f}) |")
    print(f"\nwrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
