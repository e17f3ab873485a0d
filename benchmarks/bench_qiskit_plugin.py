"""unitarium inside Qiskit (unitarium.qiskit): OptimalBlocks and the plugins against Qiskit's own
Clifford+T pipeline, on circuits nobody here wrote.

    .venv/bin/python benchmarks/bench_qiskit_plugin.py            # table L = 5, 3 circuits a workload, 3 rounds
    .venv/bin/python benchmarks/bench_qiskit_plugin.py --quick    # 2 circuits, 1 round

Needs the entry points registered (``pip install --no-deps -e .``) for the rows that go through
``transpile(..., optimization_method="unitarium")`` and ``unitary_synthesis_method="unitarium"``.

1. Workloads over h, s, t, tdg, cx: random gate sequences on 2, 3 and 4 qubits (seeded), and
   Qiskit library circuits put into Clifford+T by Qiskit's own discrete-basis pipeline
   (``transpile(optimization_level=3)``): QFT(3) (rotations approximated by Solovay-Kitaev /
   gridsynth), CDKMRippleCarryAdder(2) and a 3-controlled X (Toffoli ladders, exact).
2. For each: gates, T-count (t + tdg) and CX-count of the input, after
   ``transpile(optimization_level=3)``, after Qiskit's ``OptimizeCliffordT`` alone, after
   ``OptimalBlocks`` alone, ``OptimalBlocks`` after ``transpile``, and ``transpile`` with
   ``optimization_method="unitarium"`` (Qiskit's stage then OptimalBlocks); time of each
   (median of the rounds, whole workload; one round when a run takes more than 20 s). Every
   output is checked equal to its input (Qiskit ``Operator``, global phase included).
3. Survival: random 2-qubit Clifford+T unitaries (products of 4-16 random moves, only the ones
   the table synthesises) as ``UnitaryGate``\\ s through ``transpile`` with the synthesis plugin, by
   optimization level, with and without the stage: how many came back longer than the optimum.
Writes benchmarks/out/qiskit_plugin.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from qiskit import QuantumCircuit, transpile
from qiskit.circuit.library import CDKMRippleCarryAdder, MCXGate, UnitaryGate
from qiskit.quantum_info import Operator
from qiskit.transpiler import PassManager
from qiskit.transpiler.passes import OptimizeCliffordT
from qiskit.transpiler.passes.synthesis.plugin import unitary_synthesis_plugin_names

import unitarium
from unitarium.qiskit import OptimalBlocks

from _common import machine, scratch_dir, write_json

BASIS = ["h", "s", "t", "tdg", "cx"]
SLOW = 20.0
"""An optimiser whose run over a workload takes longer than this many seconds is timed once."""


def counts(qc: QuantumCircuit) -> dict[str, int]:
    ops = qc.count_ops()
    return {"gates": sum(ops.values()), "t": ops.get("t", 0) + ops.get("tdg", 0), "cx": ops.get("cx", 0)}


def random_sequence(n: int, size: int, rng: np.random.Generator) -> QuantumCircuit:
    qc = QuantumCircuit(n)
    for _ in range(size):
        name = BASIS[rng.integers(len(BASIS))]
        if name == "cx":
            qc.cx(*[int(q) for q in rng.choice(n, 2, replace=False)])
        else:
            getattr(qc, name)(int(rng.integers(n)))
    return qc


def library() -> dict[str, QuantumCircuit]:
    from qiskit.circuit.library import QFT

    adder = CDKMRippleCarryAdder(2)
    mcx = QuantumCircuit(5)
    mcx.append(MCXGate(3), [0, 1, 2, 3])
    out = {}
    for name, qc in (("QFT(3)", QFT(3)), ("CDKMRippleCarryAdder(2)", adder), ("MCX(3)", mcx)):
        out[name] = transpile(qc.decompose(), basis_gates=BASIS, optimization_level=3, seed_transpiler=1)
    return out


def workloads(rng: np.random.Generator, count: int) -> dict[str, list[QuantumCircuit]]:
    out = {
        "random 2q x 40 gates": [random_sequence(2, 40, rng) for _ in range(count)],
        "random 3q x 60 gates": [random_sequence(3, 60, rng) for _ in range(count)],
        "random 4q x 100 gates": [random_sequence(4, 100, rng) for _ in range(count)],
    }
    out.update({name: [qc] for name, qc in library().items()})
    return out


def optimisers(table: Path, blocks: OptimalBlocks, stage: bool) -> dict[str, Any]:
    common = {"basis_gates": BASIS, "optimization_level": 3, "seed_transpiler": 1}
    config = {"table": str(table)}
    pm_blocks = PassManager([blocks])
    pm_shallow = PassManager([OptimalBlocks(blocks.table, deep=False)])
    pm_t = PassManager([OptimizeCliffordT(basis_gates=BASIS)])
    out = {
        "transpile(opt=3)": lambda qc: transpile(qc, **common),
        "OptimizeCliffordT": pm_t.run,
        "OptimalBlocks": pm_blocks.run,
        "transpile, then OptimalBlocks(deep=False)": lambda qc: pm_shallow.run(transpile(qc, **common)),
        "transpile, then OptimalBlocks": lambda qc: pm_blocks.run(transpile(qc, **common)),
    }
    if stage:
        out["transpile(optimization_method='unitarium')"] = lambda qc: transpile(
            qc, optimization_method="unitarium", unitary_synthesis_plugin_config=config, **common
        )
    return out


def exact(a: QuantumCircuit, b: QuantumCircuit) -> bool:
    return bool(np.allclose(Operator(a).data, Operator(b).data, atol=1e-6))


def measure(work: dict[str, list[QuantumCircuit]], opts: dict[str, Any], rounds: int) -> list[dict[str, Any]]:
    rows = []
    for wname, circuits in work.items():
        rows.append({"workload": wname, "optimiser": "input", **_mean([counts(qc) for qc in circuits]), "seconds": 0.0})
        for oname, fn in opts.items():
            times: list[float] = []
            outs: list[QuantumCircuit] = []
            while len(times) < rounds and (not times or times[-1] < SLOW):
                t0 = time.perf_counter()
                outs = [fn(qc) for qc in circuits]
                times.append(time.perf_counter() - t0)
            check = (
                all(exact(o, qc) for o, qc in zip(outs, circuits, strict=True)) if circuits[0].num_qubits <= 6 else None
            )
            rows.append(
                {
                    "workload": wname,
                    "optimiser": oname,
                    **_mean([counts(o) for o in outs]),
                    "seconds": statistics.median(times),
                    "runs": len(times),
                    "exact": check,
                }
            )
            print(f"  {wname:28s} {oname:45s} {rows[-1]}", flush=True)
    return rows


def _mean(cs: list[dict[str, int]]) -> dict[str, float]:
    return {k: float(np.mean([c[k] for c in cs])) for k in cs[0]}


def survival(table: Path, count: int, stage: bool) -> list[dict[str, Any]]:
    ds = unitarium.open(table)
    gs = ds.gateset
    rng = np.random.default_rng(2026)
    targets = []
    while len(targets) < count:
        u = unitarium.Circuit(rng.integers(0, len(gs.moves), int(rng.integers(4, 17))), gs).unitary()
        c = ds.synthesize(u)
        if c is not None:
            targets.append((u, len(c)))
    config = {"table": str(table)}
    rows = []
    for level in (1, 2, 3):
        for with_stage in (False, True) if stage else (False,):
            extra = {"optimization_method": "unitarium"} if with_stage else {}
            longer = 0
            for u, best in targets:
                qc = QuantumCircuit(2)
                qc.append(UnitaryGate(u), [0, 1])
                out = transpile(
                    qc,
                    basis_gates=BASIS,
                    unitary_synthesis_method="unitarium",
                    unitary_synthesis_plugin_config=config,
                    optimization_level=level,
                    seed_transpiler=1,
                    **extra,
                )
                assert np.allclose(Operator(out).data, u, atol=1e-6)
                longer += counts(out)["gates"] > best
            rows.append({"level": level, "stage": with_stage, "targets": count, "longer": longer})
            print(f"  survival {rows[-1]}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--length", type=int, default=None, help="table max length L (default 5)")
    args = ap.parse_args()
    length = args.length or 5
    rounds, count = (1, 2) if args.quick else (3, 3)
    plugins = "unitarium" in unitary_synthesis_plugin_names()
    with scratch_dir() as tmp:
        table = Path(tmp) / f"ct{length}.db"
        t0 = time.perf_counter()
        unitarium.generate(table, unitarium.make_spec(gates="clifford+t", qubits=2, max_length=length, unique=True))
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        blocks = OptimalBlocks(table)
        load = time.perf_counter() - t0
        records = len(unitarium.open(table))
        print(f"table L={length}: {records:,} records, built in {build:.1f} s, loaded in {load:.2f} s", flush=True)
        work = workloads(np.random.default_rng(7), count)
        rows = measure(work, optimisers(table, blocks, plugins), rounds)
        surv = survival(table, 30, plugins) if plugins else []
    result = {
        "machine": machine(),
        "table": {"length": length, "records": records, "build_s": build, "load_s": load},
        "rounds": rounds,
        "rows": rows,
        "survival": surv,
    }
    write_json("qiskit_plugin.json", result)
    print("\n| workload | optimiser | gates | T | CX | seconds |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workload']} | {r['optimiser']} | {r['gates']:.1f} | {r['t']:.1f} | {r['cx']:.1f} | "
            f"{r['seconds']:.3f} |"
        )
    print("\n| level | stage | longer than optimal |\n|---|---|---|")
    for r in surv:
        print(f"| {r['level']} | {r['stage']} | {r['longer']} of {r['targets']} |")


if __name__ == "__main__":
    main()
