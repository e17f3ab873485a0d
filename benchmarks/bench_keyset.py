"""Memory and speed of unique mode's in-memory key set as the number of unique unitaries grows.

    .venv/bin/python benchmarks/bench_keyset.py              # 1M, 10M, 100M keys
    .venv/bin/python benchmarks/bench_keyset.py --quick      # 1M, 4M

Feeds the writer's KeySet the way a unique run does (batches of 4096 candidates, membership
test then insert) and reports bytes per key (steady and peak, from tracemalloc, which sees
numpy allocations) and the per-candidate cost.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from unitarium._core.keyset import KeySet


def run(n: int, batch: int = 4096) -> dict[str, float]:
    rng = np.random.default_rng(n)
    keys = KeySet()
    tracemalloc.start()
    t0 = time.perf_counter()
    for _ in range(n // batch):
        cand = rng.integers(-(2**63), 2**63 - 1, size=batch, dtype=np.int64)
        keep = keys.select_new(cand, {})
        keys.add(cand[keep])
    seconds = time.perf_counter() - t0
    steady, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "keys": len(keys),
        "seconds": seconds,
        "ns_per_key": seconds / len(keys) * 1e9,
        "steady_bytes_per_key": steady / len(keys),
        "peak_bytes_per_key": peak / len(keys),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = [1_000_000, 4_000_000] if args.quick else [1_000_000, 10_000_000, 100_000_000]
    print("| unique keys | seconds | ns/key | steady bytes/key | peak bytes/key | peak for this size |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        r = run(n)
        print(
            f"| {r['keys']:,} | {r['seconds']:.1f} | {r['ns_per_key']:.0f} | {r['steady_bytes_per_key']:.1f} | "
            f"{r['peak_bytes_per_key']:.1f} | {r['peak_bytes_per_key'] * r['keys'] / 2**30:.2f} GiB |"
        )


if __name__ == "__main__":
    main()
