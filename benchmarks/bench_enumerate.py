"""Enumeration and deduplication throughput, and Qiskit's Solovay-Kitaev basic
approximations (the same breadth-first search with dedup, on one qubit) in one run.

    .venv/bin/python benchmarks/bench_enumerate.py            # full (a few minutes)
    .venv/bin/python benchmarks/bench_enumerate.py --quick    # smoke run

Reports medians of ``--repeat`` runs; writes benchmarks/out/enumerate.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import unitarium
from unitarium._spec.sources import TaskResult
from unitarium._storage.layout import FileWriter


def timed_generate(spec: unitarium.Spec, workers: int | None, repeat: int) -> tuple[float, unitarium.Summary, int]:
    times, summary, candidates = [], None, 0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
            t0 = time.perf_counter()
            summary = unitarium.generate(Path(tmp) / "e.db", spec, workers=workers)
            times.append(time.perf_counter() - t0)
            with unitarium.open(Path(tmp) / "e.db") as ds:  # closed: an open handle keeps the file's blocks
                candidates = ds.info()["candidates"]
    assert summary is not None
    return statistics.median(times), summary, candidates


def solovay_kitaev(depths: list[int], repeat: int) -> list[dict]:
    from qiskit.synthesis import generate_basic_approximations

    rows = []
    for depth in depths:
        qiskit_times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                found = generate_basic_approximations(["h", "t", "tdg"], depth)
            qiskit_times.append(time.perf_counter() - t0)
        spec = unitarium.make_spec(gates="h,t,tdg", qubits=1, max_length=depth, unique=True)
        ours, summary, _ = timed_generate(spec, None, repeat)  # default workers
        rows.append(
            {
                "depth": depth,
                "qiskit_sequences": len(found),
                "unitarium_records": summary.records,
                "qiskit_s": statistics.median(qiskit_times),
                "unitarium_s": ours,
                "speedup": statistics.median(qiskit_times) / ours,
            }
        )
    return rows


def store_absorb_rate(records: int, length: int, repeat: int) -> float:
    """Records/s the writer commits when the data is already computed: ``records`` 2-qubit
    records with circuits of ``length`` moves (the shape and volume of the enumeration
    measured beside it), committed as the engine does, 8 tasks of 4096 per transaction."""
    spec = unitarium.make_spec(gates="h,t,tdg,cx", qubits=2, count=records, length=length)
    rng = np.random.default_rng(0)
    n = spec.task_size
    block = TaskResult(
        0,
        0,
        n,
        rng.integers(0, 8, size=n * length).astype(np.uint8),
        np.arange(0, length * n + 1, length, dtype=np.uint32),
        rng.normal(size=(n, 4, 4)).astype(np.complex64),
    )
    tasks = -(-records // n)
    rates = []
    for _ in range(repeat):
        with (
            tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp,
            FileWriter(Path(tmp) / "s.db", spec) as writer,
        ):
            t0 = time.perf_counter()
            for t in range(0, tasks, 8):
                writer.commit(
                    [
                        TaskResult(k, 0, n, block.codes, block.offsets, block.unitaries)
                        for k in range(t, min(tasks, t + 8))
                    ]
                )
            writer.close()  # the final checkpoint, as at the end of a run
            rates.append(tasks * n / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    cases = [
        (
            "h,t,tdg,cx 2q, every pruned sequence <= 9",
            unitarium.make_spec(gates="h,t,tdg,cx", qubits=2, max_length=5 if args.quick else 9),
        ),
        (
            "h,s,cx 2q unique (Clifford group)",
            unitarium.make_spec(gates="h,s,cx", qubits=2, max_length=14, unique=True),
        ),
        (
            "clifford+t 2q unique <= 9",
            unitarium.make_spec(gates="clifford+t", qubits=2, max_length=6 if args.quick else 9, unique=True),
        ),
    ]
    rows = []
    for name, spec in cases:
        for workers in (1, 2):
            seconds, summary, candidates = timed_generate(spec, workers, repeat)
            rows.append(
                {
                    "case": name,
                    "workers": workers,
                    "records": summary.records,
                    "candidates": candidates,
                    "seconds": seconds,
                    "candidates_per_s": candidates / seconds,
                    "records_per_s": summary.records / seconds,
                }
            )
    headline = rows[0]["records"]  # the shape of the headline case: 2 qubits, circuits of max_length moves
    absorb = store_absorb_rate(headline, cases[0][1].source.max_length, repeat)  # type: ignore[union-attr]
    sk = solovay_kitaev([12, 16] if args.quick else [16, 20, 24, 28], repeat)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "enumerate.json").write_text(
        json.dumps({"enumeration": rows, "store_absorb_per_s": absorb, "sk": sk}, indent=2)
    )
    print(f"median of {repeat} run(s)\n")
    print(
        "| case | workers | records | candidates | seconds | candidates/s | records/s |\n|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['case']} | {r['workers']} | {r['records']:,} | {r['candidates']:,} | {r['seconds']:.2f} | "
            f"{r['candidates_per_s']:,.0f} | {r['records_per_s']:,.0f} |"
        )
    print(
        f"\nstore absorb rate (writer only, the same number of 2q records of the same length): {absorb:,.0f} records/s"
    )
    best = max(r["records_per_s"] for r in rows if r["case"] == cases[0][0])
    print(f"enumeration ({cases[0][0]}, best worker count) / store absorb rate: {best / absorb:.0%}")
    print(
        "\n| depth | Qiskit sequences | unitarium records | Qiskit s | unitarium s (default workers) | speedup |\n"
        "|---|---|---|---|---|---|"
    )
    for r in sk:
        print(
            f"| {r['depth']} | {r['qiskit_sequences']:,} | {r['unitarium_records']:,} | {r['qiskit_s']:.3f} | "
            f"{r['unitarium_s']:.3f} | {r['speedup']:.2f}x |"
        )


if __name__ == "__main__":
    main()
