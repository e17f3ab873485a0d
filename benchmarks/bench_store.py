"""The storage ceiling (issue #4): how many records per second one writer can make durable,
with the data already computed, against the per-record row layout and the raw disk.

    .venv/bin/python benchmarks/bench_store.py            # 4M records, 5 rounds
    .venv/bin/python benchmarks/bench_store.py --quick    # 400k records, 1 round

Three ways of making the same records (random length-12 circuits on 2 qubits, complex64
unitaries) durable, one after the other on the same disk, in one run:
  1. per-record rows, the best that layout allows: one ``(id, codes BLOB, unitary BLOB)``
     row per record, ``executemany`` in transactions of 4096 rows, WAL, ``synchronous=NORMAL``,
     64 KiB pages (the same settings as unitarium), one writer;
  2. unitarium's ``Writer``: one block row per task (4096 records), group commits of 8 tasks,
     the code path ``generate`` uses;
  3. the disk itself: the same bytes ``write`` + ``fdatasync`` every 32 MiB to a plain file.
The ratio 2/1 is what storing several records per row buys; 2/3 how close the writer is to
the disk; and 2 is the ceiling of one writer however many cores compute: see BENCHMARKS.md.
Writes benchmarks/out/store.json.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import unitarium
from unitarium._spec.sources import TaskResult
from unitarium._storage.layout import FileWriter

from _common import HERE, machine, rm_dataset, scratch_dir, summarize, write_json

LENGTH, TASK = 12, 4096


def make_records(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` circuits (uint8 codes, ``(n, LENGTH)``) and random complex64 4x4 unitaries."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 8, size=(n, LENGTH), dtype=np.uint8)
    u = (rng.normal(size=(n, 4, 4)) + 1j * rng.normal(size=(n, 4, 4))).astype(np.complex64)
    return codes, u


def per_row(path: Path, codes: np.ndarray, u: np.ndarray) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA page_size=65536")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE records (id INTEGER PRIMARY KEY, codes BLOB NOT NULL, unitary BLOB NOT NULL)")
    t0 = time.perf_counter()
    for a in range(0, len(u), TASK):
        rows = [(a + i, codes[a + i].tobytes(), u[a + i].tobytes()) for i in range(min(TASK, len(u) - a))]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO records VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    seconds = time.perf_counter() - t0
    conn.close()
    return seconds


def blocks(path: Path, codes: np.ndarray, u: np.ndarray) -> float:
    n = len(u)
    spec = unitarium.make_spec(gates="h,t,tdg,cx", qubits=2, count=n, length=LENGTH)
    assert spec.task_size == TASK, spec.task_size
    offsets = np.arange(0, LENGTH * TASK + 1, LENGTH, dtype=np.uint32)
    writer = FileWriter(path, spec)
    t0 = time.perf_counter()
    for g in range(0, n // TASK, 8):
        group = []
        for t in range(g, min(g + 8, n // TASK)):
            sl = slice(t * TASK, (t + 1) * TASK)
            group.append(TaskResult(t, 0, TASK, codes[sl].reshape(-1), offsets, u[sl]))
        writer.commit(group)
    writer.close()  # final checkpoint, as generate does
    return time.perf_counter() - t0


def raw_disk(path: Path, codes: np.ndarray, u: np.ndarray) -> float:
    chunk = 32 << 20
    data = memoryview(np.concatenate([codes.reshape(-1).view(np.uint8), u.reshape(-1).view(np.uint8)]))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        t0 = time.perf_counter()
        for a in range(0, len(data), chunk):
            os.write(fd, data[a : a + chunk])
            os.fdatasync(fd)
        return time.perf_counter() - t0
    finally:
        os.close(fd)
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--count", type=int, default=4_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tmpdir")
    args = parser.parse_args()
    if args.quick:
        args.count, args.rounds = 400_000, 1
    n = args.count // TASK * TASK
    codes, u = make_records(n)
    ways = {"per-record rows (executemany)": per_row, "unitarium blocks (Writer)": blocks, "raw disk": raw_disk}
    rates: dict[str, list[float]] = {name: [] for name in ways}
    sizes: dict[str, int] = {}
    with scratch_dir(args.tmpdir) as tmp:
        info = machine(tmp)
        for r in range(args.rounds):
            for name, fn in ways.items():
                path = Path(tmp) / "s.db"
                seconds = fn(path, codes, u)
                if path.exists():
                    sizes[name] = path.stat().st_size
                rm_dataset(path)
                rates[name].append(n / seconds)
            print(
                f"round {r + 1}/{args.rounds}: "
                + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items())
                + f", load {os.getloadavg()[0]:.2f}",
                file=sys.stderr,
            )
    med = {k: summarize(v) for k, v in rates.items()}
    payload = LENGTH + 128
    results: dict[str, Any] = {
        "records": n,
        "payload_bytes_per_record": payload,
        "rates": med,
        "file_bytes_per_record": {k: v / n for k, v in sizes.items()},
        "blocks_vs_rows": med["unitarium blocks (Writer)"]["median"] / med["per-record rows (executemany)"]["median"],
        "blocks_vs_disk": med["unitarium blocks (Writer)"]["median"] / med["raw disk"]["median"],
    }
    out = write_json("store.json", {"machine": info, "rounds": args.rounds, "results": results})
    print(f"\n{n:,} records ({payload} payload bytes each), {args.rounds} round(s), median (min-max); {info['disk']}\n")
    print("| how | records/s | MB/s of payload | file bytes/record |\n|---|---|---|---|")
    for k, v in med.items():
        fb = results["file_bytes_per_record"].get(k)
        print(
            f"| {k} | {v['median']:,.0f} ({v['min']:,.0f}-{v['max']:,.0f}) | {v['median'] * payload / 1e6:,.0f} | "
            f"{'' if fb is None else f'{fb:.0f}'} |"
        )
    ratios = f"blocks / per-record rows: {results['blocks_vs_rows']:.1f}x; blocks / raw disk: "
    print(f"\n{ratios}{results['blocks_vs_disk']:.2f}")
    print(f"wrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
