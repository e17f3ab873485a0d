"""Circuits in and out: conversions per second for 30-move circuits on 3 qubits (every standard gate).

    .venv/bin/python benchmarks/bench_interop.py            # 200 circuits, median of 5 runs
    .venv/bin/python benchmarks/bench_interop.py --quick    # 50 circuits, median of 3

One process, one core. The reference, measured in the same run, is ``Circuit.unitary()`` (the
gate-by-gate product); each row gives its rate and its ratio to the reference. Writes
benchmarks/out/interop.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import unitarium
from unitarium import Circuit
from unitarium.interop import as_unitary

from _common import machine, write_json

ALL_GATES = (
    "i,x,y,z,h,s,sdg,t,tdg,sx,sxdg,rx(pi/4),ry(pi/3),rz(pi/4),p(0.3),u(pi/2,0.1,-2pi/3),"
    "cx,cy,cz,ch,swap,iswap,ecr,ccx,cswap"
)


def rate(f: Callable[[Any], object], items: Sequence[Any], reps: int) -> float:
    """Items per second, median over ``reps`` passes."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for x in items:
            f(x)
        times.append(time.perf_counter() - t0)
    return len(items) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, reps = (50, 3) if args.quick else (200, 5)
    warnings.simplefilter("ignore")  # Cirq and the OpenQASM 3 importer warn on import
    gs = unitarium.make_spec(gates=ALL_GATES, qubits=3, count=1, length=1).gateset
    rng = np.random.default_rng(0)
    circuits = [Circuit(rng.integers(0, len(gs.moves), size=30), gs) for _ in range(n)]
    qasm2 = [c.to_qasm() for c in circuits]
    qasm3 = [c.to_qasm(3) for c in circuits]
    qiskit = [c.to_qiskit() for c in circuits]
    cirq = [c.to_cirq() for c in circuits]
    cases: list[tuple[str, Callable[[Any], object], Sequence[Any]]] = [
        ("Circuit.unitary() (reference)", lambda c: c.unitary(), circuits),
        ("to_qasm(2)", lambda c: c.to_qasm(), circuits),
        ("to_qasm(3)", lambda c: c.to_qasm(3), circuits),
        ("to_qiskit", lambda c: c.to_qiskit(), circuits),
        ("to_cirq", lambda c: c.to_cirq(), circuits),
        ("from_qasm (OpenQASM 2)", lambda t: Circuit.from_qasm(t, gs), qasm2),
        ("from_qasm (OpenQASM 3)", lambda t: Circuit.from_qasm(t, gs), qasm3),
        ("from_qiskit", lambda q: Circuit.from_qiskit(q, gs), qiskit),
        ("from_cirq", lambda q: Circuit.from_cirq(q, gs), cirq),
        ("as_unitary(OpenQASM 2 text)", lambda t: as_unitary(t, gs), qasm2),
        ("as_unitary(QuantumCircuit)", lambda q: as_unitary(q, gs), qiskit),
        ("as_unitary(cirq.Circuit)", lambda q: as_unitary(q, gs), cirq),
    ]
    rows = {name: rate(f, items, reps) for name, f, items in cases}
    reference = rows["Circuit.unitary() (reference)"]
    print("| conversion | circuits/s | vs Circuit.unitary() |\n|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r:,.0f} | {r / reference:.3f}x |")
    path = write_json("interop", {"machine": machine(), "circuits": n, "reps": reps, "rates": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
