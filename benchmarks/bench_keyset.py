"""Memory and speed of unique mode's in-memory key set as the number of unique unitaries grows, and
the cost of computing the keys: exact (tableau, channel) against today's grid keys on the same unitaries.

    .venv/bin/python benchmarks/bench_keyset.py              # 1M, 10M, 100M keys
    .venv/bin/python benchmarks/bench_keyset.py --quick      # 1M, 4M
    .venv/bin/python benchmarks/bench_keyset.py --key-cost   # key computation only: exact / grid ratios
    .venv/bin/python benchmarks/bench_keyset.py --store 4MiB --keys 2e6   # the on-disk store vs RAM

Feeds the writer's KeySet the way a unique run does (batches of 4096 candidates, membership
test then insert) and reports bytes per key (steady and peak, from tracemalloc, which sees
numpy allocations) and the per-candidate cost. ``--key-cost`` times, per gate set, the grid keys
(``DEDUP.wide_keys``) and the gate set's exact keys (``dedup_keys``) on the same batches of 4096
complex128 products of random circuits (length 20), each the median of 7 alternating runs.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

import unitarium
from unitarium._core.canonical import DEDUP
from unitarium._core.exact import dedup_keys
from unitarium._core.kernels import ProductTable
from unitarium._core.keyset import KeySet
from unitarium._core.ringmoves import RingMoves


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


def run_store(n: int, budget: int, batch: int = 4096) -> dict[str, float]:
    """The same feed into the key store under ``budget`` (runs spilled to a scratch directory) and into
    the in-RAM set, alternating, with a tenth of each batch drawn from keys already added (duplicates
    found on disk): ns per candidate of each, and the store's spills, merges and disk bytes."""
    import tempfile
    from pathlib import Path

    from unitarium._storage.keystore import KeyStore

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent / "out") as tmp:
        for name in ("ram", "store"):
            rng = np.random.default_rng(n)
            keys: KeySet | KeyStore = KeySet() if name == "ram" else KeyStore(Path(tmp) / "keys", b"", budget)
            added = np.zeros((0, 2), np.int64)
            t0 = time.perf_counter()
            for task in range(n // batch):
                cand = rng.integers(-(2**63), 2**63 - 1, size=(batch, 2), dtype=np.int64)
                if len(added):
                    cand[: batch // 10] = added[rng.integers(0, len(added), batch // 10)]
                keep = keys.select_new(cand, {})
                if isinstance(keys, KeyStore):
                    keys.add(cand[keep], through=task + 1)
                    keys.committed(task + 1)
                else:
                    keys.add(cand[keep])
                if task % 64 == 0:
                    added = np.concatenate([added, cand[keep][:64]])
            out[f"{name}_ns"] = (time.perf_counter() - t0) / (n // batch * batch) * 1e9
            if isinstance(keys, KeyStore):
                out.update(keys=len(keys), spills=keys.spills, merges=keys.merges, disk=keys.disk_bytes)
                keys.close()
    return out


KEY_CASES = [("h,s,cx", 2), ("h,s,cx", 3), ("h,t,tdg,cx", 2), ("h,t,tdg,cx", 3)]


def key_cost(gates: str, qubits: int, batch: int = 4096, runs: int = 7) -> dict[str, float]:
    """Microseconds per unitary of grid keys and of the gate set's exact keys, on the same products."""
    spec = unitarium.make_spec(gates=gates, qubits=qubits, count=1, length=1, unique=True, keys="auto")
    moves = spec.gateset.move_matrices
    rng = np.random.default_rng(qubits)
    seqs = rng.integers(0, len(moves), size=(batch, 20))
    u = ProductTable(moves, np.complex128).unitaries(seqs)
    offsets = np.arange(0, seqs.size + 1, 20, dtype=np.uint32)  # ring keys read the circuits too
    circuits = (RingMoves(spec.gateset), seqs.reshape(-1), offsets) if spec.keys == "ring" else None
    times: dict[str, list[float]] = {"grid": [], spec.keys: []}
    for _ in range(runs):
        for name in times:
            t0 = time.perf_counter()
            if name == "grid":
                DEDUP.wide_keys(u)
            else:
                dedup_keys(name, u, circuits)
            times[name].append((time.perf_counter() - t0) / batch * 1e6)
    out = {name: float(np.median(t)) for name, t in times.items()}
    out["ratio"] = out[spec.keys] / out["grid"]
    out["scheme"] = spec.keys  # type: ignore[assignment]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--key-cost", action="store_true", help="time key computation only")
    parser.add_argument("--store", help="the key store under this budget (e.g. 4MiB) against the in-RAM set")
    parser.add_argument("--keys", default="2e6", help="candidates fed with --store")
    args = parser.parse_args()
    if args.store:
        from unitarium._storage.keystore import memory_budget

        budget = memory_budget(args.store)
        r = run_store(int(float(args.keys)), budget)
        print(
            "| candidates | unique keys | keys / budget | RAM set ns/candidate | store ns/candidate | ratio "
            "| spills | merges | disk |\n|---|---|---|---|---|---|---|---|---|"
        )
        print(
            f"| {int(float(args.keys)):,} | {r['keys']:,.0f} | {16 * r['keys'] / budget:.1f}x | {r['ram_ns']:.0f} "
            f"| {r['store_ns']:.0f} | {r['store_ns'] / r['ram_ns']:.2f}x | {r['spills']:.0f} | {r['merges']:.0f} "
            f"| {r['disk'] / 2**20:.0f} MiB |"
        )
        return
    if args.key_cost:
        print("| gates | qubits | exact scheme | grid us/unitary | exact us/unitary | exact / grid |")
        print("|---|---|---|---|---|---|")
        for gates, qubits in KEY_CASES:
            r = key_cost(gates, qubits)
            print(
                f"| {gates} | {qubits} | {r['scheme']} | {r['grid']:.2f} | {r[str(r['scheme'])]:.2f} | "
                f"{r['ratio']:.2f}x |"
            )
        return
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
