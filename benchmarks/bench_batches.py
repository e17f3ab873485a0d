"""Training batches: ``ShuffledBatches`` in-process and through DataLoader workers, batch mixing, in one run.

    .venv/bin/python benchmarks/bench_batches.py                       # 1M records, 3 rounds
    .venv/bin/python benchmarks/bench_batches.py --records 3000000     # the issue's 3M-record file
    .venv/bin/python benchmarks/bench_batches.py --quick               # 200k records, 1 round

Speed (one dataset: random circuits, clifford+t, 2 qubits, complex64, lengths ``--lengths``, on the
repository's disk, page cache warm), per round, each a whole epoch:
  - ``ShuffledBatches(ds, B)`` iterated in this process, B = 256 and 1024;
  - ``DataLoader(ShuffledBatches(ds, 1024), batch_size=None, num_workers=k)`` for k = 0, 1, 2 (worker
    start-up included), with the CPU seconds of this process and of the reaped workers;
  - the ratio of 2 workers to ``num_workers=0`` (issue #21 target: >= 0.8 on 2 cores);
  - map-style ``UnitaryDataset`` and random ``ds[i]`` for ``--random`` records (references).
Mixing (an enumerated dataset: h,t,cx, 2 qubits, every circuit to ``--max-length``, records in BFS
order, i.e. sorted by length): the standard deviation of the batch-mean circuit lengths over an
epoch of ``ShuffledBatches`` (defaults, B = 256 and 1024, epochs 0-2) divided by that of a true
random permutation of the same lengths cut into the same batches (issue #21 target: <= 1.2).
``--mixing-only`` runs just that (e.g. with PYTHONPATH pointing at an older checkout, for a before);
``--loader-only`` just the DataLoader rounds, ``--dataset FILE`` over an existing file.
Writes benchmarks/out/batches.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

import unitarium

from _common import machine, scratch_dir, summarize, write_json


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def in_process(path: Path, batch_size: int) -> float:
    from unitarium.torch import ShuffledBatches

    with unitarium.open(path) as ds:
        sb = ShuffledBatches(ds, batch_size, seed=0)
        t0 = time.perf_counter()
        n = sum(len(b["id"]) for b in sb)
        seconds = time.perf_counter() - t0
        assert n == len(ds)
    return n / seconds


def loader(path: Path, workers: int, batch_size: int = 1024) -> dict[str, float]:
    """One epoch through a DataLoader with ``workers`` worker processes: rate and CPU per record."""
    from torch.utils.data import DataLoader

    from unitarium.torch import ShuffledBatches

    with unitarium.open(path) as ds:
        sb = ShuffledBatches(ds, batch_size, seed=0)
        c0, k0 = time.process_time(), _children_cpu()
        t0 = time.perf_counter()
        it = iter(DataLoader(sb, batch_size=None, num_workers=workers))
        n = sum(len(b["id"]) for b in it)
        seconds = time.perf_counter() - t0
        del it  # joins and reaps the workers: their CPU time is then counted
        main, children = time.process_time() - c0, _children_cpu() - k0
        assert n == len(ds)
    return {"rate": n / seconds, "cpu_us_main": main / n * 1e6, "cpu_us_workers": children / n * 1e6}


def map_style(path: Path, count: int) -> float:
    import torch
    from torch.utils.data import DataLoader

    from unitarium.torch import UnitaryDataset

    with unitarium.open(path) as ds:
        data = DataLoader(
            UnitaryDataset(ds),
            batch_size=256,
            shuffle=True,
            collate_fn=UnitaryDataset.collate,
            generator=torch.manual_seed(0),
        )
        t0 = time.perf_counter()
        n = 0
        for batch in data:
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


def spread_ratio(path: Path, batch_size: int, epochs: int = 3) -> dict[str, float]:
    """Std of batch-mean lengths of ShuffledBatches over ``epochs`` epochs / a true permutation's."""
    from unitarium.torch import ShuffledBatches

    with unitarium.open(path) as ds:
        lengths = ds.lengths().astype(np.float64)
        sb = ShuffledBatches(ds, batch_size, seed=0, drop_last=True)
        ours, true = [], []
        rng = np.random.default_rng(12345)
        full = len(lengths) // batch_size * batch_size
        for epoch in range(epochs):
            sb.set_epoch(epoch)
            ours.extend(float(b["length"].double().mean()) for b in sb)
            true.extend(lengths[rng.permutation(len(lengths))[:full]].reshape(-1, batch_size).mean(axis=1))
    return {"ratio": float(np.std(ours) / np.std(true)), "ours": float(np.std(ours)), "true": float(np.std(true))}


def speed_round(path: Path, args: argparse.Namespace, r: int) -> dict[str, float]:
    row: dict[str, float] = {}
    for b in (256, 1024) if not args.loader_only else ():
        row[f"in_process_{b}"] = in_process(path, b)
    for k in (0, 1, 2):
        got = loader(path, k)
        row[f"loader_{k}"] = got["rate"]
        row[f"cpu_us_{k}"] = got["cpu_us_main"] + got["cpu_us_workers"]
        row[f"cpu_us_main_{k}"] = got["cpu_us_main"]
    row["ratio_2_vs_0"] = row["loader_2"] / row["loader_0"]
    row["ratio_1_vs_0"] = row["loader_1"] / row["loader_0"]
    if args.loader_only:
        return row
    row["map_style"] = map_style(path, args.random)
    row["random_ds_i"] = random_access(path, args.random, r)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--lengths", default="1:12", help="circuit length or MIN:MAX")
    parser.add_argument("--max-length", type=int, default=9, help="enumeration depth of the mixing dataset")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--random", type=int, default=5000, help="records read at random per round")
    parser.add_argument("--mixing-only", action="store_true")
    parser.add_argument("--loader-only", action="store_true", help="only the DataLoader rounds (0, 1, 2 workers)")
    parser.add_argument("--dataset", type=Path, help="an existing dataset file for the speed rounds (else generated)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.records, args.rounds, args.random, args.max_length = 200_000, 1, 2000, 8
    result: dict[str, Any] = {"load_before": os.getloadavg()}
    with scratch_dir() as tmp:
        result["machine"] = machine(tmp)
        enum = Path(tmp) / "enumerated.db"
        mixing = {}
        if not args.loader_only:
            spec = unitarium.make_spec(gates="h,t,cx", qubits=2, max_length=args.max_length)
            unitarium.generate(enum, spec, workers=1)
            mixing = {f"batch_{b}": spread_ratio(enum, b) for b in (256, 1024)}
            result["mixing"] = {"max_length": args.max_length, "records": len(unitarium.open(enum)), **mixing}
        for key, m in mixing.items():
            print(
                f"mixing {key}: std of batch-mean lengths {m['ours']:.4f} vs true shuffle {m['true']:.4f}: "
                f"{m['ratio']:.2f}x",
                flush=True,
            )
        if not args.mixing_only:
            path = args.dataset or Path(tmp) / "batches.db"
            if args.dataset is None:
                spec = unitarium.make_spec(
                    gates="clifford+t", qubits=2, count=args.records, length=args.lengths, seed=1
                )
                unitarium.generate(path, spec, workers=1)
            args.records = len(unitarium.open(path))
            in_process(path, 1024)  # warm the page cache
            rounds = []
            for r in range(args.rounds):
                rounds.append(speed_round(path, args, r))
                print(f"round {r}: " + ", ".join(f"{k} {v:,.2f}" for k, v in rounds[-1].items()), flush=True)
            result.update(records=args.records, lengths=args.lengths, rounds=rounds)
            result["summary"] = {k: summarize([row[k] for row in rounds]) for k in rounds[0]}
    result["load_after"] = os.getloadavg()
    write_json("batches.json", result)
    print(f"\nload average before {result['load_before']}, after {result['load_after']}")
    print("\n| measure | median | min | max |\n|---|---|---|---|")
    for key, s in result.get("summary", {}).items():
        unit = "x" if key.startswith("ratio") else (" µs/record" if key.startswith("cpu") else " records/s")
        print(f"| {key} | {s['median']:,.2f}{unit} | {s['min']:,.2f} | {s['max']:,.2f} |")
    for key, m in result.get("mixing", {}).items():
        if isinstance(m, dict):
            print(f"| mixing {key} | {m['ratio']:.2f}x true shuffle | | |")


if __name__ == "__main__":
    main()
