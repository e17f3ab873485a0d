"""Read throughput: ``ds.unitaries(a, b)`` sequentially and ``ds[i]`` at random ids.

    .venv/bin/python benchmarks/bench_read.py            # 4M-record dataset, 5 rounds
    .venv/bin/python benchmarks/bench_read.py --quick    # 200k records, 1 round

Generates one dataset (random length-12 circuits, h,t,tdg,cx, 2 qubits, complex64) on the
repository's disk, then per round:
  - sequential: the whole dataset through ``ds.unitaries(a, a + chunk)`` for several chunk sizes,
    page cache warm (the file was just written and read), and once cold (the file's pages
    dropped from the page cache with ``posix_fadvise(DONTNEED)`` after an ``fsync``);
  - random: ``ds[i]`` for ``--random`` uniformly random ids (a fresh handle each round).
Targets: sequential >= 2M unitaries/s, random access >= 20k records/s.
Writes benchmarks/out/read.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import unitarium

from _common import HERE, machine, scratch_dir, summarize, write_json

CHUNKS = (4096, 65_536, 1 << 20)


def drop_cache(path: Path) -> None:
    """Evict the dataset's clean pages from the page cache (this file only)."""
    for p in (path, Path(f"{path}-wal")):
        if p.exists():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def sequential(path: Path, chunk: int) -> float:
    """Seconds to read every unitary in chunks of ``chunk`` records."""
    with unitarium.open(path) as ds:
        n = len(ds)
        t0 = time.perf_counter()
        total = 0
        for a in range(0, n, chunk):
            total += len(ds.unitaries(a, min(n, a + chunk)))
        seconds = time.perf_counter() - t0
    assert total == n
    return seconds


def random_access(path: Path, count: int, seed: int) -> float:
    with unitarium.open(path) as ds:
        ids = np.random.default_rng(seed).integers(0, len(ds), size=count).tolist()
        t0 = time.perf_counter()
        for i in ids:
            ds[i]
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--count", type=int, default=4_000_000)
    parser.add_argument("--random", type=int, default=50_000, help="random ids read per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tmpdir")
    args = parser.parse_args()
    if args.quick:
        args.count, args.random, args.rounds = 200_000, 5_000, 1
    with scratch_dir(args.tmpdir) as tmp:
        info = machine(tmp)
        path = Path(tmp) / "read.db"
        spec = unitarium.make_spec(gates="h,t,tdg,cx", qubits=2, count=args.count, length=12, seed=3)
        unitarium.generate(path, spec, workers=2)
        size = path.stat().st_size
        seq: dict[str, list[float]] = {f"warm, chunk {c:,}": [] for c in CHUNKS}
        seq[f"cold, chunk {CHUNKS[1]:,}"] = []
        rand: list[float] = []
        sequential(path, CHUNKS[1])  # warm the page cache
        for r in range(args.rounds):
            for c in CHUNKS:
                seq[f"warm, chunk {c:,}"].append(args.count / sequential(path, c))
            drop_cache(path)
            seq[f"cold, chunk {CHUNKS[1]:,}"].append(args.count / sequential(path, CHUNKS[1]))
            rand.append(args.random / random_access(path, args.random, seed=r))
            print(
                f"round {r + 1}/{args.rounds}: sequential {seq[f'warm, chunk {CHUNKS[1]:,}'][-1]:,.0f}/s, "
                f"random {rand[-1]:,.0f}/s, load {os.getloadavg()[0]:.2f}",
                file=sys.stderr,
            )
    results: dict[str, Any] = {
        "records": args.count,
        "file_bytes": size,
        "sequential_per_s": {k: summarize(v) for k, v in seq.items()},
        "random_per_s": summarize(rand),
        "random_reads_per_round": args.random,
    }
    headline = results["sequential_per_s"][f"warm, chunk {CHUNKS[1]:,}"]["median"]
    results["targets"] = {
        "sequential >= 2M/s": headline >= 2e6,
        "random >= 20k/s": results["random_per_s"]["median"] >= 2e4,
    }
    out = write_json("read.json", {"machine": info, "rounds": args.rounds, "results": results})
    print(
        f"\n{args.count:,} records ({size / 2**20:,.0f} MiB), {args.rounds} round(s), median (min-max); "
        f"{info['nproc']} CPUs ({info['cpu_model']}), {info['disk']}\n"
    )
    print("| read | unitaries/s |\n|---|---|")
    for k, v in results["sequential_per_s"].items():
        print(f"| ds.unitaries(a, a + chunk), {k} | {v['median']:,.0f} ({v['min']:,.0f}-{v['max']:,.0f}) |")
    v = results["random_per_s"]
    print(f"| ds[i], random i ({args.random:,} per round) | {v['median']:,.0f} ({v['min']:,.0f}-{v['max']:,.0f}) |")
    print(f"\ntargets: {results['targets']}\nwrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
