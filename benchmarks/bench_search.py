"""Synthesis and nearest search over unique enumerated tables (unitarium.search).

    .venv/bin/python benchmarks/bench_search.py            # full: 1,000 targets, 3 rounds
    .venv/bin/python benchmarks/bench_search.py --quick    # 200 targets, 1 round

1. 2-qubit Clifford (h, s, cx) from a table of length <= 6: all 11,520 group elements (the
   records of a full enumeration to length 11) synthesised; every length must equal the full
   enumeration's; time per target (first call: table and index built; then warm), against
   the time of the full enumeration itself (reference, same run).
2. 1 qubit h, t, tdg, table of length <= D (default 14): ``nearest`` against Qiskit's
   ``SolovayKitaevDecomposition`` (depth D, recursion degree 0) and ``approximate`` at 2 D:
   distance reached and time per query over Haar-random targets (scipy ``unitary_group``,
   seeded).
3. 2-qubit Clifford+T: distance reached by ``approximate`` (budget 2 L) for Haar-random
   targets, by table length L.
Writes benchmarks/out/search.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import unitary_group

import unitarium

from _common import machine, scratch_dir, summarize, write_json


def table(path: Path, gates: str, qubits: int, length: int) -> tuple[unitarium.Dataset, float]:
    t0 = time.perf_counter()
    unitarium.generate(path, unitarium.make_spec(gates=gates, qubits=qubits, max_length=length, unique=True), workers=1)
    return unitarium.open(path), time.perf_counter() - t0


def distance(u: np.ndarray, v: np.ndarray) -> float:
    return float(np.sqrt(max(0.0, 2 * len(u) - 2 * abs(np.trace(u.conj().T @ v)))))


def stats(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "median": float(np.median(values)), "max": float(np.max(values))}


def clifford(tmp: Path, rounds: int) -> dict[str, Any]:
    full, full_s = table(tmp / "cliff11.db", "h,s,cx", 2, 11)
    targets = full.unitaries(0, len(full))
    want = full.lengths()
    cold, warm = [], []
    for r in range(rounds):
        ds = unitarium.open(table(tmp / f"cliff6_{r}.db", "h,s,cx", 2, 6)[0].path)
        t0 = time.perf_counter()
        got = ds.synthesize_many(targets)
        cold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        again = ds.synthesize_many(targets)
        warm.append(time.perf_counter() - t0)
        lengths = np.array([len(c) if c is not None else -1 for c in got])
        assert [str(c) for c in got] == [str(c) for c in again]
        optimal = int(np.sum(lengths == want))
    n = len(targets)
    return {
        "targets": n,
        "optimal": optimal,
        "table_records": len(ds),
        "full_enumeration_s": full_s,
        "first_call_s": summarize(cold),
        "warm_s": summarize(warm),
        "us_per_target_warm": statistics.median(warm) / n * 1e6,
        "ratio_full_enumeration_over_synthesis": full_s / statistics.median(warm),
    }


def one_qubit(tmp: Path, depth: int, count: int, rounds: int) -> dict[str, Any]:
    from qiskit.quantum_info import Operator
    from qiskit.synthesis import SolovayKitaevDecomposition

    ds, gen_s = table(tmp / f"ht{depth}.db", "h,t,tdg", 1, depth)
    targets = unitary_group.rvs(2, size=count, random_state=np.random.default_rng(7))
    t0 = time.perf_counter()
    sk = SolovayKitaevDecomposition(basis_gates=["h", "t", "tdg"], depth=depth)
    sk_build = time.perf_counter() - t0
    near_t, sk_t, approx_t = [], [], []
    for _ in range(rounds):
        fresh = unitarium.open(ds.path)
        t0 = time.perf_counter()
        near = fresh.nearest(targets, k=1)
        near_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sk_circuits = [sk.run(u, 0) for u in targets]
        sk_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        approx = fresh.approximate_many(targets, max_pairs=10**15)  # measured, not refused
        approx_t.append(time.perf_counter() - t0)
    sk_d = [distance(u, Operator(c).data) for u, c in zip(targets, sk_circuits, strict=True)]
    near_d = [m[0].distance for m in near]  # type: ignore[index]
    return {
        "depth": depth,
        "targets": count,
        "table_records": len(ds),
        "table_generate_s": gen_s,
        "sk_build_s": sk_build,
        "nearest": {"distance": stats(near_d), "us_per_query": statistics.median(near_t) / count * 1e6},
        "solovay_kitaev": {"distance": stats(sk_d), "us_per_query": statistics.median(sk_t) / count * 1e6},
        "nearest_equals_sk": int(np.sum(np.abs(np.array(near_d) - np.array(sk_d)) < 1e-9)),
        "approximate_2d": {
            "distance": stats([a.distance for a in approx]),
            "max_gates": max(len(a.circuit) for a in approx),
            "ms_per_query": statistics.median(approx_t) / count * 1e3,
        },
        "ratio_sk_over_nearest_time": statistics.median(sk_t) / statistics.median(near_t),
    }


def clifford_t(tmp: Path, lengths: list[int], count: int) -> list[dict[str, Any]]:
    out = []
    targets = unitary_group.rvs(4, size=count, random_state=np.random.default_rng(11))
    for length in lengths:
        ds, _ = table(tmp / f"ct{length}.db", "clifford+t", 2, length)
        n = count if length < 5 else max(3, count // 10)
        near = [m[0].distance for m in ds.nearest(targets[:n], k=1)]  # type: ignore[index]
        t0 = time.perf_counter()
        approx = ds.approximate_many(targets[:n], max_pairs=10**15)
        seconds = time.perf_counter() - t0
        out.append(
            {
                "table_length": length,
                "table_records": len(ds),
                "targets": n,
                "nearest_L": stats(near),
                "approximate_2L": stats([a.distance for a in approx]),
                "ms_per_query": seconds / n * 1e3,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--depth", type=int, default=14)
    args = parser.parse_args()
    rounds, count = (1, 200) if args.quick else (3, 1000)
    with scratch_dir() as tmp_name:
        tmp = Path(tmp_name)
        result = {
            "machine": machine(tmp_name),
            "clifford": clifford(tmp, rounds),
            "one_qubit": one_qubit(tmp, args.depth, count, rounds),
            "clifford_t": clifford_t(tmp, [2, 3, 4] if args.quick else [2, 3, 4, 5], 20 if args.quick else 50),
        }
    path = write_json("search.json", result)
    c, q = result["clifford"], result["one_qubit"]
    print(f"wrote {path}\n")
    print("| 2q Clifford, table <= 6 | value |\n|---|---|")
    print(f"| targets (whole group) | {c['targets']:,}, optimal length for {c['optimal']:,} |")
    print(f"| first call (table + index + all targets) | {c['first_call_s']['median']:.2f} s |")
    print(f"| warm, per target | {c['us_per_target_warm']:.0f} us |")
    print(f"| full enumeration to 11 (reference) | {c['full_enumeration_s']:.2f} s |")
    print(f"\n| 1q h,t,tdg, depth {q['depth']}, {q['targets']} Haar targets | mean D | max D | per query |")
    print("|---|---|---|---|")
    for name, key, unit in (("nearest", "nearest", "us"), ("Qiskit SK degree 0", "solovay_kitaev", "us")):
        r = q[key]
        print(f"| {name} | {r['distance']['mean']:.4f} | {r['distance']['max']:.4f} | {r['us_per_query']:.0f} {unit} |")
    a = q["approximate_2d"]
    print(f"| approximate (<= {2 * q['depth']}) | {a['distance']['mean']:.4f} | {a['distance']['max']:.4f} | ", end="")
    print(f"{a['ms_per_query']:.1f} ms |")
    print(f"nearest == SK distance for {q['nearest_equals_sk']}/{q['targets']}")
    print("\n| 2q Clifford+T table L | records | targets | nearest mean D | approximate 2L mean D (max) | per query |")
    print("|---|---|---|---|---|---|")
    for r in result["clifford_t"]:
        print(
            f"| {r['table_length']} | {r['table_records']:,} | {r['targets']} | {r['nearest_L']['mean']:.3f} | "
            f"{r['approximate_2L']['mean']:.3f} ({r['approximate_2L']['max']:.3f}) | {r['ms_per_query']:.0f} ms |"
        )


if __name__ == "__main__":
    main()
