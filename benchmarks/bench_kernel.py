"""Single-core kernel throughput: ``ProductTable.unitaries`` (kernel 6: the same bits on every
machine, :mod:`unitarium._core.portable`) against kernel 5 (BLAS and numpy complex multiplies, whose
bits depend on the CPU), against the first kernel (one ``np.matmul`` over the stack per chunk, i.e.
one BLAS call per tiny matrix) and against the naive per-circuit loop (``u = M[g] @ u`` gate by
gate), on the same sequences; and enumeration's one-move extensions (``extend``), kernel 6 vs 5.

    .venv/bin/python benchmarks/bench_kernel.py            # 7 shapes, 7 repeats
    .venv/bin/python benchmarks/bench_kernel.py --quick

Compute only (no RNG, no I/O), one task-sized batch at a time, one process. Reports
unitaries per CPU-second (``time.process_time``: robust to other load on a shared machine):
median and best of ``--repeat`` repeats. Writes benchmarks/out/kernel.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import unitarium
from unitarium._core.kernels import KERNEL_VERSION, ProductTable, extend

from _common import HERE, machine, write_json

SHAPES = [  # (gates, qubits, length, dtype)
    ("h,t,tdg", 1, 12, "complex64"),
    ("h,t,tdg,cx", 2, 12, "complex64"),
    ("h,t,tdg,cx", 2, 12, "complex128"),
    ("clifford+t", 2, 50, "complex64"),
    ("clifford+t", 3, 12, "complex64"),
    ("clifford+t", 3, 50, "complex64"),
    ("clifford+t", 4, 12, "complex64"),
]


def stack_matmul(table: ProductTable, seqs: np.ndarray) -> np.ndarray:
    """The kernel before batch-last products (KERNEL_VERSION 1): the same table and
    chunking, each chunk applied with one ``np.matmul`` over the whole stack."""
    index = table.chunk_index(seqs)
    out = table.table[index[:, 0]]
    for c in range(1, index.shape[1]):
        out = table.table[index[:, c]] @ out
    return out


def naive_loop(moves: np.ndarray, seqs: np.ndarray) -> np.ndarray:
    """What the naive script computes: per circuit, ``np.eye`` then one matrix product per gate."""
    d = moves.shape[1]
    out = np.empty((len(seqs), d, d), dtype=moves.dtype)
    for i, row in enumerate(seqs.tolist()):
        u = np.eye(d, dtype=moves.dtype)
        for g in row:
            u = moves[g] @ u
        out[i] = u
    return out


def cpu_rate(fn: Callable[[], Any], n: int, repeat: int, min_seconds: float = 0.2) -> dict[str, float]:
    fn()
    rates = []
    for _ in range(repeat):
        calls, t0 = 0, time.process_time()
        while True:
            fn()
            calls += 1
            elapsed = time.process_time() - t0
            if elapsed >= min_seconds:
                break
        rates.append(calls * n / elapsed)
    return {"median": statistics.median(rates), "best": max(rates)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    shapes = SHAPES[:2] if args.quick else SHAPES
    repeat = 2 if args.quick else args.repeat
    rows = []
    for gates, qubits, length, dtype in shapes:
        spec = unitarium.make_spec(gates=gates, qubits=qubits, count=1, length=length, dtype=dtype)
        moves = spec.gateset.move_matrices.astype(dtype)
        table = ProductTable(spec.gateset.move_matrices, dtype)
        table5 = ProductTable(spec.gateset.move_matrices, dtype, kernel=5)
        n = spec.task_size
        rng = np.random.default_rng(0)
        seqs = rng.integers(0, len(moves), size=(n, length))
        new, old = table.unitaries(seqs), stack_matmul(table, seqs)
        parents = new[: min(n, 4096)]
        allowed = rng.random((len(parents), len(moves))) < 0.6
        kids = int(allowed.sum())
        naive_n = min(n, 256)
        row = {
            "gates": gates,
            "qubits": qubits,
            "length": length,
            "dtype": dtype,
            "batch": n,
            "depth": table.depth,
            "max_abs_diff_vs_v1": float(np.abs(new - old).max()),
            "product_table": cpu_rate(lambda t=table, s=seqs: t.unitaries(s), n, repeat),
            "kernel5": cpu_rate(lambda t=table5, s=seqs: t.unitaries(s), n, repeat),
            "extend": cpu_rate(lambda p=parents, m=moves, a=allowed: extend(p, m, a), kids, repeat),
            "extend5": cpu_rate(lambda p=parents, m=moves, a=allowed: extend(p, m, a, 5), kids, repeat),
            "v1_stack_matmul": cpu_rate(lambda t=table, s=seqs: stack_matmul(t, s), n, repeat),
            "naive_loop": cpu_rate(lambda m=moves, s=seqs[:naive_n]: naive_loop(m, s), naive_n, max(1, repeat // 3)),
        }
        rows.append(row)
    out = write_json("kernel.json", {"machine": machine(), "kernel_version": KERNEL_VERSION, "results": rows})
    print(f"\nunitaries per CPU-second, one core, median (best) of {repeat}; KERNEL_VERSION {KERNEL_VERSION}\n")
    print(
        "| gates | qubits | length | dtype | depth | ProductTable | kernel 5 | 6 / 5 | v1 (np.matmul on the stack) | "
        "6 / v1 | naive loop | vs naive | extend (children/s) | extend, kernel 5 | 6 / 5 |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        p, k5, v, nv = r["product_table"], r["kernel5"], r["v1_stack_matmul"], r["naive_loop"]
        e, e5 = r["extend"], r["extend5"]
        print(
            f"| {r['gates']} | {r['qubits']} | {r['length']} | {r['dtype']} | {r['depth']} | "
            f"{p['median']:,.0f} ({p['best']:,.0f}) | {k5['median']:,.0f} | {p['median'] / k5['median']:.2f}x | "
            f"{v['median']:,.0f} ({v['best']:,.0f}) | "
            f"{p['median'] / v['median']:.2f}x | {nv['median']:,.0f} | {p['median'] / nv['median']:.0f}x | "
            f"{e['median']:,.0f} | {e5['median']:,.0f} | {e['median'] / e5['median']:.2f}x |"
        )
    print(f"\nwrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
