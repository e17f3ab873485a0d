"""What opening a dataset costs: the task-structure check (issue #17) on manifests of many tasks.

    .venv/bin/python benchmarks/bench_open.py                 # 10k, 100k and 250k tasks, 5 rounds
    .venv/bin/python benchmarks/bench_open.py --tasks 250000

Builds a dataset file whose ``tasks`` table lists N tasks of 4096 records (no blocks: opening and
``info`` never read one) and times ``unitarium.open`` + ``info()`` (the structure check, one query over
the tasks, is most of it) and the check alone. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import unitarium
from unitarium._storage import schema as _schema
from unitarium._storage import sqlite as _sqlite

from _common import scratch_dir


def build(path: Path, tasks: int) -> None:
    spec = unitarium.make_spec(gates="h,t,cx", qubits=2, count=tasks * 4096, length=8)
    path.touch()
    conn = _sqlite.connect(path, readonly=False)
    summary = {"records": tasks * 4096, "tasks": tasks, "candidates": tasks * 4096, "lengths": {"8": tasks * 4096}}
    with _sqlite.atomic(conn):
        _schema.create_tables(conn, blocks=True, manifest=True)
        _schema.write_header(conn, spec, "file", _schema.block_format(spec, _schema.new_dataset_id()))
        conn.executemany("INSERT INTO tasks VALUES (?, 0, ?, 4096, 4096, 0)", ((t, t * 4096) for t in range(tasks)))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'summary'", (json.dumps(summary),))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def measure(path: Path, rounds: int) -> tuple[float, float]:
    opened, checked = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        with unitarium.open(path) as ds:
            ds.info()
        opened.append(time.perf_counter() - t0)
        conn = _sqlite.connect(path, readonly=True)
        t0 = time.perf_counter()
        _schema.check_structure(conn, path, directory=False)
        checked.append(time.perf_counter() - t0)
        conn.close()
    return statistics.median(opened), statistics.median(checked)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, nargs="*", default=[10_000, 100_000, 250_000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("| tasks | records | open + info (median) | structure check alone |\n|---|---|---|---|")
    with scratch_dir() as tmp:
        for tasks in args.tasks:
            path = Path(tmp) / f"m{tasks}.db"
            build(path, tasks)
            opened, checked = measure(path, args.rounds)
            print(f"| {tasks:,} | {tasks * 4096:,} | {opened * 1e3:,.0f} ms | {checked * 1e3:,.0f} ms |")


if __name__ == "__main__":
    main()
