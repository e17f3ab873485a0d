"""The cost of ring keys' exact evaluation against the float path, per record, on the same circuits.

    .venv/bin/python benchmarks/bench_ring.py            # 1 to 3 qubits, median of 5 alternating runs
    .venv/bin/python benchmarks/bench_ring.py --runs 3
    .venv/bin/python benchmarks/bench_ring.py --end-to-end 40   # and deep unique runs under each scheme

Per gate set, a batch of random circuits (length 20, and 40 on one qubit) is keyed two ways, alternately:
the **float path** (what a channel key costs: the complex128 products by the product table, then
``channel_keys``, which reads the form off the floats and hashes it), and the **exact path**
(``RingMoves.keys``: the same circuits' products over Z[omega] from their move codes, the exact channel
form and its key, what ring keys do for rows deeper than the floats decide). The two give the same keys
wherever the floats decide (checked here). Then an enumeration task's rows (every move after each of a
set of parents): the float path as ``_enumerate`` forms them (parents' products, then one move), the exact
path evaluating each distinct prefix once. Reported: microseconds per record and the ratio exact / float.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import unitarium
from unitarium._core.exact import CHANNEL_K, channel_keys
from unitarium._core.kernels import ProductTable, extend
from unitarium._core.ringmoves import RingMoves

CASES = [("h,t", 1, 40, 4096), ("h,t,tdg,cx", 2, 20, 4096), ("clifford+t", 3, 20, 1024)]
CHILD_CASES = [("h,t,tdg,cx", 2, 20, 512), ("clifford+t", 3, 20, 64)]


def measure(gates: str, qubits: int, length: int, batch: int, runs: int) -> dict[str, float]:
    spec = unitarium.make_spec(gates=gates, qubits=qubits, count=1, length=1, unique=True, keys="exact")
    table, moves = ProductTable(spec.gateset.move_matrices, np.complex128), RingMoves(spec.gateset)
    seqs = np.random.default_rng(qubits).integers(0, len(spec.gateset.moves), size=(batch, length))
    codes, offsets = seqs.reshape(-1), np.arange(0, seqs.size + 1, length, dtype=np.uint32)
    rows = np.arange(batch)
    times: dict[str, list[float]] = {"float": [], "exact": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        floats, good = channel_keys(table.unitaries(seqs))
        t1 = time.perf_counter()
        exact = moves.keys(codes, offsets, rows)
        t2 = time.perf_counter()
        times["float"].append((t1 - t0) / batch * 1e6)
        times["exact"].append((t2 - t1) / batch * 1e6)
    assert good.all() and np.array_equal(floats, exact), "exact and float keys differ where floats decide"
    out = {name: float(np.median(t)) for name, t in times.items()}
    out["ratio"] = out["exact"] / out["float"]
    return out


def measure_children(gates: str, qubits: int, length: int, parents: int, runs: int) -> dict[str, float]:
    """The same for an enumeration task's rows: every move after each parent (length ``length - 1``), the
    float path as ``_enumerate`` computes them (the parents' products, then ``extend``)."""
    spec = unitarium.make_spec(gates=gates, qubits=qubits, count=1, length=1, unique=True, keys="exact")
    table, moves = ProductTable(spec.gateset.move_matrices, np.complex128), RingMoves(spec.gateset)
    count = len(spec.gateset.moves)
    prefix = np.random.default_rng(qubits).integers(0, count, size=(parents, length - 1))
    seqs = np.concatenate([np.repeat(prefix, count, axis=0), np.tile(np.arange(count), parents)[:, None]], axis=1)
    codes, offsets = seqs.reshape(-1), np.arange(0, seqs.size + 1, length, dtype=np.uint32)
    allowed, matrices = np.ones((parents, count), dtype=bool), spec.gateset.move_matrices.astype(np.complex128)
    times: dict[str, list[float]] = {"float": [], "exact": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        floats, good = channel_keys(extend(table.unitaries(prefix), matrices, allowed))
        t1 = time.perf_counter()
        exact = moves.keys(codes, offsets, np.arange(len(seqs)))
        t2 = time.perf_counter()
        times["float"].append((t1 - t0) / len(seqs) * 1e6)
        times["exact"].append((t2 - t1) / len(seqs) * 1e6)
    assert good.all() and np.array_equal(floats, exact), "exact and float keys differ where floats decide"
    out = {name: float(np.median(t)) for name, t in times.items()}
    out["ratio"] = out["exact"] / out["float"]
    return out


def end_to_end(gates: str, max_length: int, runs: int) -> dict[str, float]:
    """Seconds of a unique enumeration of ``gates`` on 1 qubit under ring, channel and grid keys, median of
    ``runs`` alternating runs, in process with 1 worker (``ht,htdg``: custom gates ``t h`` and ``tdg h``,
    every circuit of length L with exponent L + 1 or so: the worst case, every deep row evaluated)."""
    times: dict[str, list[float]] = {"ring": [], "channel": [], "grid": []}
    records = {}
    with tempfile.TemporaryDirectory() as tmp:
        h, t = unitarium.parse_gate("h").matrix, unitarium.parse_gate("t").matrix
        custom = {"ht": t @ h, "htdg": t.conj() @ h}
        body = {"gates": {k: {"matrix": [[[v.real, v.imag] for v in row] for row in m]} for k, m in custom.items()}}
        gate_file = Path(tmp) / "gates.json"
        gate_file.write_text(json.dumps(body))
        for r in range(runs):
            for keys in times:
                spec = unitarium.make_spec(
                    gates=gates, qubits=1, max_length=max_length, unique=True, keys=keys, gate_file=gate_file
                )
                path = Path(tmp) / f"{keys}{r}.db"
                t0 = time.perf_counter()
                summary = unitarium.generate(path, spec, workers=1)
                times[keys].append(time.perf_counter() - t0)
                records[keys] = summary.records
                if keys == "ring" and r == 0:  # the records evaluated exactly (their candidates: about as many)
                    with unitarium.open(path) as ds:
                        codes, offsets = ds.codes(0, len(ds))
                        deep = float((RingMoves(ds.gateset).bound(codes, offsets) > CHANNEL_K).mean())
    out = {name: float(np.median(t)) for name, t in times.items()}
    out.update({f"{name} records": float(n) for name, n in records.items()})
    out["deep"] = deep
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--end-to-end", type=int, metavar="L", help="also a unique h,t enumeration to length L")
    args = parser.parse_args()
    print("| gates | qubits | length | batch | float us/record | exact us/record | exact / float |")
    print("|---|---|---|---|---|---|---|")
    for gates, qubits, length, batch in CASES:
        r = measure(gates, qubits, length, batch, args.runs)
        print(f"| {gates} | {qubits} | {length} | {batch} | {r['float']:.2f} | {r['exact']:.2f} | {r['ratio']:.1f}x |")
    for gates, qubits, length, parents in CHILD_CASES:
        r = measure_children(gates, qubits, length, parents, args.runs)
        what = f"{parents} parents x every move"
        print(f"| {gates} | {qubits} | {length} | {what} | {r['float']:.2f} | {r['exact']:.2f} | {r['ratio']:.1f}x |")
    if args.end_to_end:
        print(
            "\n| run | records (ring / channel / grid) | records evaluated exactly | ring s | channel s | grid s "
            "| ring / channel | ring / grid |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for gates, length in (("h,t", args.end_to_end), ("ht,htdg", 18)):
            e = end_to_end(gates, length, min(args.runs, 3))
            print(
                f"| {gates} 1q enumerate L={length} --unique | {e['ring records']:,.0f} / "
                f"{e['channel records']:,.0f} / {e['grid records']:,.0f} | {100 * e['deep']:.0f}% | {e['ring']:.2f} "
                f"| {e['channel']:.2f} | {e['grid']:.2f} | {e['ring'] / e['channel']:.2f}x | "
                f"{e['ring'] / e['grid']:.2f}x |"
            )


if __name__ == "__main__":
    main()
