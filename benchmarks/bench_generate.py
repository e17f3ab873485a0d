"""End-to-end, durable `unitarium generate` against the naive approach (issues #2 and #4).

    .venv/bin/python benchmarks/bench_generate.py            # 4M records, 5 rounds (~1.5 min)
    .venv/bin/python benchmarks/bench_generate.py --quick    # smoke run

Each round runs, one after the other on the same machine and disk:
  1. ``unitarium generate`` (the CLI, a subprocess: interpreter start, imports, worker spawn,
     compute, commits, final checkpoint; the file is durable when it exits) with 2 workers,
  2. the same with 1 worker,
  3. the naive reference (benchmarks/naive.py: Pool, per-circuit numpy, one committed
     INSERT per record) with 2 workers, and with 1 worker,
all on random length-12 circuits over h, t, tdg, cx on 2 qubits. The naive runs use a smaller
count (its cost per record is constant: one commit each), so rates are compared.

Reported per approach: median (min-max) over the rounds of the command's wall time and rate,
the engine's own seconds (the CLI's summary line: without interpreter start-up and imports),
and CPU seconds (user+sys of the command and all its processes). Ratios are ratios of medians.
Writes benchmarks/out/generate.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import unitarium

from _common import (
    HERE,
    engine_seconds,
    machine,
    rm_dataset,
    run_timed,
    scratch_dir,
    summarize,
    unitarium_cmd,
    write_json,
)

GATES, QUBITS, LENGTH = "h,t,tdg,cx", 2, 12
TARGETS = {
    "issue #2: 2 workers vs naive": 10.0,
    "issue #4: 2 workers vs naive": 25.0,
    "issue #4 goal: 2 workers vs naive": 40.0,
    "issue #4: 2 workers vs 1 worker": 1.7,
}


def generate_cmd(path: Path, count: int, workers: int) -> list[str]:
    return [
        *unitarium_cmd(),
        "generate",
        str(path),
        "--gates",
        GATES,
        "--qubits",
        str(QUBITS),
        "--count",
        str(count),
        "--length",
        str(LENGTH),
        "--seed",
        "1",
        "--workers",
        str(workers),
        "-q",
    ]


def naive_cmd(path: Path, count: int, workers: int) -> list[str]:
    return [
        sys.executable,
        str(HERE / "naive.py"),
        str(path),
        "--count",
        str(count),
        "--workers",
        str(workers),
        "--length",
        str(LENGTH),
    ]


def run_unitarium(tmp: Path, count: int, workers: int) -> dict[str, Any]:
    path = tmp / f"u{workers}.db"
    t = run_timed(generate_cmd(path, count, workers))
    with unitarium.open(path) as ds:  # closed before the file is removed (see bench_enumerate)
        records = len(ds)
    if records != count:
        raise RuntimeError(f"{path}: {records} records, expected {count}")
    rm_dataset(path)
    return {
        "records": count,
        "wall": t.wall,
        "engine": engine_seconds(t.stdout),
        "cpu": t.cpu,
        "user": t.user,
        "sys": t.sys,
        "loadavg": t.loadavg,
    }


def run_naive(tmp: Path, count: int, workers: int) -> dict[str, Any]:
    path = tmp / f"n{workers}.db"
    t = run_timed(naive_cmd(path, count, workers))
    inner = json.loads(t.stdout.strip().splitlines()[-1])
    rm_dataset(path)
    return {
        "records": count,
        "wall": t.wall,
        "engine": inner["seconds"],
        "cpu": t.cpu,
        "user": t.user,
        "sys": t.sys,
        "loadavg": t.loadavg,
    }


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    n = runs[0]["records"]
    return {
        "records": n,
        "wall_s": summarize([r["wall"] for r in runs]),
        "engine_s": summarize([r["engine"] for r in runs]),
        "cpu_s": summarize([r["cpu"] for r in runs]),
        "rate_wall": summarize([n / r["wall"] for r in runs]),
        "rate_engine": summarize([n / r["engine"] for r in runs]),
        "cpu_us_per_record": summarize([r["cpu"] / n * 1e6 for r in runs]),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, 1 round")
    parser.add_argument("--count", type=int, default=4_000_000, help="unitarium records per run")
    parser.add_argument("--naive-count", type=int, default=40_000, help="naive records per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tmpdir", help="where the dataset files go (default: benchmarks/out/, same disk as the repo)")
    args = parser.parse_args()
    if args.quick:
        args.count, args.naive_count, args.rounds = 200_000, 4_000, 1
    approaches = {
        "unitarium 2 workers": ("u", 2),
        "unitarium 1 worker": ("u", 1),
        "naive 2 workers": ("n", 2),
        "naive 1 worker": ("n", 1),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in approaches}
    with scratch_dir(args.tmpdir) as tmp:
        info = machine(tmp)
        for r in range(args.rounds):
            for name, (kind, workers) in approaches.items():
                if kind == "u":
                    runs[name].append(run_unitarium(Path(tmp), args.count, workers))
                else:
                    runs[name].append(run_naive(Path(tmp), args.naive_count, workers))
                last = runs[name][-1]
                print(
                    f"round {r + 1}/{args.rounds} {name}: {last['records'] / last['wall']:,.0f}/s wall, "
                    f"{last['records'] / last['engine']:,.0f}/s engine, load {last['loadavg']:.2f}",
                    file=sys.stderr,
                )
    agg = {name: aggregate(rs) for name, rs in runs.items()}
    med = {name: a["rate_wall"]["median"] for name, a in agg.items()}
    eng = {name: a["rate_engine"]["median"] for name, a in agg.items()}
    ratios = {
        "2 workers vs naive 2 workers (command wall)": med["unitarium 2 workers"] / med["naive 2 workers"],
        "2 workers vs naive 2 workers (engine)": eng["unitarium 2 workers"] / eng["naive 2 workers"],
        "2 workers vs best naive (command wall)": med["unitarium 2 workers"]
        / max(med["naive 2 workers"], med["naive 1 worker"]),
        "2 workers vs 1 worker (command wall)": med["unitarium 2 workers"] / med["unitarium 1 worker"],
        "2 workers vs 1 worker (engine)": eng["unitarium 2 workers"] / eng["unitarium 1 worker"],
    }
    targets = {
        name: {
            "target": t,
            "measured": ratios[
                "2 workers vs 1 worker (command wall)"
                if "1 worker" in name
                else "2 workers vs naive 2 workers (command wall)"
            ],
        }
        for name, t in TARGETS.items()
    }
    for v in targets.values():
        v["met"] = v["measured"] >= v["target"]
    cmds = {
        "unitarium": " ".join(generate_cmd(Path("FILE.db"), args.count, 2)),
        "naive": " ".join(naive_cmd(Path("FILE.db"), args.naive_count, 2)),
    }
    path = write_json(
        "generate.json",
        {
            "machine": info,
            "commands": cmds,
            "rounds": args.rounds,
            "results": agg,
            "ratios": ratios,
            "targets": targets,
        },
    )
    print(f"\n{args.rounds} round(s); median (min-max); {info['nproc']} CPUs ({info['cpu_model']}), {info['disk']}\n")
    print("| approach | records | command wall s | unitaries/s (command) | unitaries/s (engine) | CPU us/record |")
    print("|---|---|---|---|---|---|")
    for name, a in agg.items():
        w, rw, re_, cpu = a["wall_s"], a["rate_wall"], a["rate_engine"], a["cpu_us_per_record"]
        print(
            f"| {name} | {a['records']:,} | {w['median']:.2f} ({w['min']:.2f}-{w['max']:.2f}) | "
            f"{rw['median']:,.0f} ({rw['min']:,.0f}-{rw['max']:,.0f}) | {re_['median']:,.0f} | {cpu['median']:.2f} |"
        )
    print("\n| ratio | value |\n|---|---|")
    for name, v in ratios.items():
        print(f"| {name} | {v:.2f}x |")
    print("\n| target | needed | measured | met |\n|---|---|---|---|")
    for name, v in targets.items():
        print(f"| {name} | >= {v['target']:g}x | {v['measured']:.2f}x | {'yes' if v['met'] else 'NO'} |")
    print(f"\nwrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
