"""Export rate: ``unitarium export --format parquet`` (in-process ``export()``) against a plain sequential
read of the same columns, in one run.

    .venv/bin/python benchmarks/bench_export.py            # 1M records, 3 rounds
    .venv/bin/python benchmarks/bench_export.py --quick    # 100k records, 1 round

Generates one dataset (random circuits, clifford+t, 2 qubits, complex64, length 12) on the repository's
disk, then per round: the reference (``ds.unitaries(a, b)`` and ``ds.codes(a, b)`` over every record in
chunks of 65,536), an export without split, and an export with ``--split train=0.8,val=0.1,test=0.1``
(grouping by unitary included), each timed from call to return (files fsynced). Target: >= 1M
records/s for 2 qubits. Writes benchmarks/out/export.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import unitarium
from unitarium.interop.export import export

from _common import machine, scratch_dir, summarize, write_json


def read_all(path: Path) -> float:
    with unitarium.open(path) as ds:
        n = len(ds)
        t0 = time.perf_counter()
        for a in range(0, n, 1 << 16):
            b = min(n, a + (1 << 16))
            ds.unitaries(a, b)
            ds.codes(a, b)
        return n / (time.perf_counter() - t0)


def export_rate(path: Path, out: Path, split: str | None) -> float:
    shutil.rmtree(out, ignore_errors=True)
    with unitarium.open(path) as ds:
        t0 = time.perf_counter()
        sizes = export(ds, out, format="parquet", split=split)
        seconds = time.perf_counter() - t0
    return sum(sizes.values()) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.records, args.rounds = 100_000, 1
    with scratch_dir() as tmp:
        path = Path(tmp) / "export.db"
        spec = unitarium.make_spec(gates="clifford+t", qubits=2, count=args.records, length=12, seed=1)
        unitarium.generate(path, spec, workers=1)
        rounds = []
        for r in range(args.rounds):
            row = {"read": read_all(path)}
            row["export"] = export_rate(path, Path(tmp) / "out", None)
            row["export_split"] = export_rate(path, Path(tmp) / "out", "train=0.8,val=0.1,test=0.1")
            row["export_vs_read"] = row["export"] / row["read"]
            rounds.append(row)
            print(f"round {r}: " + ", ".join(f"{k} {v:,.2f}" for k, v in row.items()), flush=True)
        size = sum(p.stat().st_size for p in (Path(tmp) / "out").rglob("*.parquet"))
        result = {
            "machine": machine(tmp),
            "records": args.records,
            "parquet_bytes": size,
            "rounds": rounds,
            "summary": {k: summarize([row[k] for row in rounds]) for k in rounds[0]},
        }
    write_json("export.json", result)
    print(f"\nparquet: {size / 2**20:,.1f} MiB ({size / args.records:.1f} bytes/record)")
    print("| measure | median | min | max |\n|---|---|---|---|")
    for key, s in result["summary"].items():
        unit = "x" if key.endswith("read") and key != "read" else " records/s"
        print(f"| {key} | {s['median']:,.2f}{unit} | {s['min']:,.2f} | {s['max']:,.2f} |")


if __name__ == "__main__":
    main()
