"""Training batches: ``ShuffledBatches`` throughput on one core against random ``ds[i]``, in one run.

    .venv/bin/python benchmarks/bench_batches.py            # 1M records, 5 rounds
    .venv/bin/python benchmarks/bench_batches.py --quick    # 100k records, 1 round

Generates one dataset (random circuits, clifford+t, 2 qubits, complex64; fixed length 12 and, with
``--lengths 1:12``, variable) on the repository's disk, then per round, in this process (one core,
no DataLoader workers):
  - batches: every record once through ``ShuffledBatches(ds, B)`` for B = 256 and 1024
    (unitary, padded tokens, lengths, ids as torch tensors), page cache warm;
  - map-style: ``UnitaryDataset`` through ``DataLoader(batch_size=256, shuffle=True,
    collate_fn=UnitaryDataset.collate)`` for ``--random`` records;
  - random: ``ds[i]`` for ``--random`` uniformly random ids (the reference).
Targets: batches >= 1M records/s and >= 20x random ``ds[i]``.
Writes benchmarks/out/batches.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import unitarium

from _common import machine, scratch_dir, summarize, write_json


def batches(path: Path, batch_size: int) -> float:
    from unitarium.torch import ShuffledBatches

    with unitarium.open(path) as ds:
        sb = ShuffledBatches(ds, batch_size, seed=0)
        t0 = time.perf_counter()
        n = sum(len(b["id"]) for b in sb)
        seconds = time.perf_counter() - t0
        assert n == len(ds)
    return n / seconds


def map_style(path: Path, count: int) -> float:
    import torch
    from torch.utils.data import DataLoader

    from unitarium.torch import UnitaryDataset

    with unitarium.open(path) as ds:
        loader = DataLoader(
            UnitaryDataset(ds),
            batch_size=256,
            shuffle=True,
            collate_fn=UnitaryDataset.collate,
            generator=torch.manual_seed(0),
        )
        t0 = time.perf_counter()
        n = 0
        for batch in loader:
            n += len(batch["id"])
            if n >= count:
                break
        return n / (time.perf_counter() - t0)


def random_access(path: Path, count: int, seed: int) -> float:
    with unitarium.open(path) as ds:
        ids = np.random.default_rng(seed).integers(0, len(ds), count).tolist()
        t0 = time.perf_counter()
        for i in ids:
            ds[i]
        return count / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--lengths", default="12", help="circuit length or MIN:MAX")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--random", type=int, default=20_000, help="records read at random per round")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.records, args.rounds, args.random = 100_000, 1, 5000
    with scratch_dir() as tmp:
        path = Path(tmp) / "batches.db"
        spec = unitarium.make_spec(gates="clifford+t", qubits=2, count=args.records, length=args.lengths, seed=1)
        unitarium.generate(path, spec, workers=1)
        rounds = []
        for r in range(args.rounds):
            rnd = random_access(path, args.random, r)
            row = {"random_ds_i": rnd, "map_style": map_style(path, args.random)}
            for b in (256, 1024):
                row[f"batches_{b}"] = batches(path, b)
                row[f"ratio_{b}"] = row[f"batches_{b}"] / rnd
            rounds.append(row)
            print(f"round {r}: " + ", ".join(f"{k} {v:,.1f}" for k, v in row.items()), flush=True)
        result = {
            "machine": machine(tmp),
            "records": args.records,
            "lengths": args.lengths,
            "rounds": rounds,
            "summary": {k: summarize([row[k] for row in rounds]) for k in rounds[0]},
        }
    write_json("batches.json", result)
    print("\n| measure | median | min | max |\n|---|---|---|---|")
    for key, s in result["summary"].items():
        unit = "x" if key.startswith("ratio") else " records/s"
        print(f"| {key} | {s['median']:,.1f}{unit} | {s['min']:,.1f} | {s['max']:,.1f} |")
    assert statistics.median(row["ratio_256"] for row in rounds) > 0


if __name__ == "__main__":
    main()
