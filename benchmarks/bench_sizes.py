"""Generation rates for 3, 4 and 5 qubits at lengths 12, 50 and 100 (clifford+t), 1 and 2 workers.

    .venv/bin/python benchmarks/bench_sizes.py            # 9 shapes x {1, 2} workers, 3 rounds (~7 min)
    .venv/bin/python benchmarks/bench_sizes.py --quick    # 3 shapes, 1 round, short runs

Calls the library (``unitarium.generate`` in this process; workers are spawned as usual), timing
the call: worker start-up, compute, commits and the final checkpoint, without this
interpreter's start-up. Each shape's count is chosen from a short 1-worker pilot run so
that a run takes about ``--seconds``; 1 and 2 workers then generate the same count.
Writes benchmarks/out/sizes.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import unitarium

from _common import HERE, machine, rm_dataset, scratch_dir, summarize, write_json

SHAPES = [(q, length) for q in (3, 4, 5) for length in (12, 50, 100)]


def timed(path: Path, spec: unitarium.Spec, workers: int) -> float:
    t0 = time.perf_counter()
    unitarium.generate(path, spec, workers=workers)
    seconds = time.perf_counter() - t0
    rm_dataset(path)
    return seconds


def pick_count(tmp: Path, qubits: int, length: int, seconds: float) -> int:
    """A count (whole tasks) that takes about ``seconds`` on 2 workers, from a 1-worker pilot."""
    probe = unitarium.make_spec(gates="clifford+t", qubits=qubits, count=1, length=length)
    task = probe.task_size
    pilot = unitarium.make_spec(gates="clifford+t", qubits=qubits, count=4 * task, length=length)
    rate = 4 * task / timed(tmp / "pilot.db", pilot, 1)
    return max(8 * task, int(seconds * rate * 1.6) // task * task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="target duration of one 2-worker run")
    parser.add_argument("--tmpdir")
    args = parser.parse_args()
    shapes = [(3, 12), (4, 50), (5, 100)] if args.quick else SHAPES
    if args.quick:
        args.rounds, args.seconds = 1, 0.5
    rows: list[dict[str, Any]] = []
    with scratch_dir(args.tmpdir) as tmp_name:
        tmp = Path(tmp_name)
        info = machine(tmp_name)
        for qubits, length in shapes:
            count = pick_count(tmp, qubits, length, args.seconds)
            spec = unitarium.make_spec(gates="clifford+t", qubits=qubits, count=count, length=length)
            times: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(args.rounds):
                for workers in (1, 2):
                    times[workers].append(timed(tmp / "s.db", spec, workers))
            d = spec.gateset.dim
            row = {
                "qubits": qubits,
                "length": length,
                "moves": len(spec.gateset.moves),
                "task_size": spec.task_size,
                "records": count,
                "bytes_per_unitary": d * d * 8,
            }
            for workers in (1, 2):
                row[f"rate_{workers}w"] = summarize([count / s for s in times[workers]])
            row["speedup_2w_vs_1w"] = row["rate_2w"]["median"] / row["rate_1w"]["median"]
            rows.append(row)
            print(
                f"{qubits}q L={length}: {row['rate_1w']['median']:,.0f}/s (1w), {row['rate_2w']['median']:,.0f}/s "
                f"(2w), load {os.getloadavg()[0]:.2f}",
                file=sys.stderr,
            )
    out = write_json(
        "sizes.json",
        {"machine": info, "rounds": args.rounds, "gates": "clifford+t", "dtype": "complex64", "results": rows},
    )
    print(
        f"\nclifford+t, complex64, {args.rounds} round(s), median (min-max) unitaries/s; "
        f"{info['nproc']} CPUs ({info['cpu_model']})\n"
    )
    print("| qubits | length | moves | records | 1 worker | 2 workers | 2w / 1w | MB/s stored (2w) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["rate_1w"], r["rate_2w"]
        print(
            f"| {r['qubits']} | {r['length']} | {r['moves']} | {r['records']:,} | {a['median']:,.0f} "
            f"({a['min']:,.0f}-{a['max']:,.0f}) | {b['median']:,.0f} ({b['min']:,.0f}-{b['max']:,.0f}) | "
            f"{r['speedup_2w_vs_1w']:.2f}x | {b['median'] * r['bytes_per_unitary'] / 1e6:,.0f} |"
        )
    print(f"\nwrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
