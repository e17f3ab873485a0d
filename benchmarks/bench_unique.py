"""Unique random against plain on the same candidates (issue #19's targets), alternating, in one run.

    .venv/bin/python benchmarks/bench_unique.py                      # 5M candidates, 5 rounds
    .venv/bin/python benchmarks/bench_unique.py --count 25000000 --rounds 3 --rev 6c1f742

The CLI on random h,t,tdg,cx circuits of length 12 on 2 qubits (seed 1) into a directory with ``--workers 2``:
plain, then the same command with ``--unique``, and with ``--rev`` the older commit's ``--unique`` (its CLI with
``PYTHONPATH=<worktree>/src``), alternating for ``--rounds`` rounds. Reports per mode the engine's candidates/s
(the CLI's summary line), the wall time and the CPU of the whole process tree (user + sys), medians (min-max),
and the ratios unique/plain by CPU and by wall (#19: at least 0.5x) and unique new/old by candidates/s
(#19: at least 2x the 0.47M/s of 6c1f742's era). ``--partitions P``: also the unique run with ``P`` key
partitions, and its CPU against the unique run's one (#19: at most 1.15x for 2). ``--settle``: every run
from the same page cache (sync, drop it where root may, a 20k-candidate warm-up of the same command).
Writes benchmarks/out/unique.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

from _common import ROOT, engine_seconds, machine, run_timed, scratch_dir, summarize, write_json

ARGS = ["--gates", "h,t,tdg,cx", "--qubits", "2", "--length", "12", "--seed", "1", "--workers", "2", "-q"]


def once(src: Path, tmp: Path, count: int, unique: bool | int, settle: bool) -> dict[str, float]:
    """One run (``unique``: False, True, or a partition count for a unique run)."""
    path = tmp / "u"
    cmd = [sys.executable, "-m", "unitarium", "generate", f"{path}/", *ARGS]
    cmd = [*cmd, "--unique"] if unique else cmd
    cmd = [*cmd, "--partitions", str(unique)] if unique is not True and unique else cmd
    env = {**os.environ, "PYTHONPATH": str(src)}
    if settle:
        _settle()
        run_timed([*cmd, "--count", "20000"], env=env)  # (the code's pages and numba's cache read again)
        shutil.rmtree(path)
    t = run_timed([*cmd, "--count", str(count)], env=env)
    shutil.rmtree(path)
    return {"rate": count / engine_seconds(t.stdout), "wall": t.wall, "cpu": t.user + t.sys}


def _settle() -> None:
    """Every run from the same state of the page cache: dirty pages written, the cache dropped (as root; else only
    written). A plain run writes 0.7 GB per 5M records: how much of the cache the kernel must first reclaim moved its
    system time by 60% between runs (4.8-7.6 s at 25M)."""
    os.sync()
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("1\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5_000_000, help="candidates per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rev", help="also the unique run of this older commit")
    parser.add_argument("--partitions", type=int, help="also the unique run with this many key partitions")
    parser.add_argument(
        "--settle", action="store_true", help="before each run: sync, drop the page cache (as root), a 20k warm-up run"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as wt, scratch_dir() as tmp:
        modes: dict[str, tuple[Path, bool | int]] = {"plain": (ROOT / "src", False), "unique": (ROOT / "src", True)}
        if args.partitions:
            modes[f"unique, {args.partitions} partitions"] = (ROOT / "src", args.partitions)
        git = ["git", "-C", str(ROOT), "worktree"]
        if args.rev:
            subprocess.run([*git, "add", "--detach", wt, args.rev], check=True, capture_output=True)
            modes[f"unique ({args.rev})"] = (Path(wt) / "src", True)
        try:
            runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
            for r in range(args.rounds):
                for mode, (src, unique) in modes.items():
                    runs[mode].append(once(src, Path(tmp), args.count, unique, args.settle))
                print(f"round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
            info = machine(tmp)
        finally:
            if args.rev:
                subprocess.run([*git, "remove", "--force", wt], check=False)
    agg = {m: {k: summarize([x[k] for x in v]) for k in ("rate", "wall", "cpu")} for m, v in runs.items()}
    by_round = [u["cpu"] / p["cpu"] for u, p in zip(runs["unique"], runs["plain"], strict=True)]
    ratios = {
        "unique/plain by CPU (median of the sums)": agg["plain"]["cpu"]["median"] / agg["unique"]["cpu"]["median"],
        "unique/plain by wall": agg["plain"]["wall"]["median"] / agg["unique"]["wall"]["median"],
        "unique/plain by CPU, per round (median)": 1 / median(by_round),
    }
    if args.partitions:
        mine = f"unique, {args.partitions} partitions"
        per = [p["cpu"] / u["cpu"] for p, u in zip(runs[mine], runs["unique"], strict=True)]
        ratios[f"{args.partitions} partitions/1 by CPU (median of the sums)"] = (
            agg[mine]["cpu"]["median"] / agg["unique"]["cpu"]["median"]
        )
        ratios[f"{args.partitions} partitions/1 by CPU, per round (median)"] = median(per)
    if args.rev:
        old = agg[f"unique ({args.rev})"]["rate"]["median"]
        ratios[f"unique candidates/s new/old ({args.rev})"] = agg["unique"]["rate"]["median"] / old
    out = write_json("unique.json", {"machine": info, "count": args.count, "rounds": args.rounds,
                                     "settle": args.settle, "runs": agg, "ratios": ratios})  # fmt: skip
    cpus = f"{info['nproc']} CPUs ({info['cpu_model']})"
    print(f"\n{args.count:,} candidates, medians (min-max) of {args.rounds}; {cpus}\n")
    print("| mode | candidates/s | wall s | CPU s |\n|---|---|---|---|")
    for mode, a in agg.items():
        cells = [f"{a[k]['median']:,.{p}f} ({a[k]['min']:,.{p}f}-{a[k]['max']:,.{p}f})" for k, p in
                 (("rate", 0), ("wall", 2), ("cpu", 2))]  # fmt: skip
        print(f"| {mode} | {' | '.join(cells)} |")
    print()
    for name, value in ratios.items():
        print(f"{name}: {value:.3f}")
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
