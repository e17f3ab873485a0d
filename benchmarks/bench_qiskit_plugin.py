"""unitarium inside Qiskit (unitarium.qiskit): OptimalBlocks against Qiskit's and pyzx's optimisers,
on circuits nobody here wrote, and the T-count table's size and build time by level (issue #20, item 4).

    .venv/bin/python benchmarks/bench_qiskit_plugin.py                 # everything, medians of 3 rounds
    .venv/bin/python benchmarks/bench_qiskit_plugin.py --no-survival   # the compiler table and table sizes only
    .venv/bin/python benchmarks/bench_qiskit_plugin.py --quick         # 1 circuit a random workload, 1 round

Needs the entry points registered (``pip install --no-deps -e .``) for the rows that go through
``transpile(..., optimization_method="unitarium")`` and ``unitary_synthesis_method="unitarium"``, and
``pyzx`` (``pip install 'unitarium[bench]'``) for its rows (left out, and said so, without it).

1. Workloads over h, s, t, tdg, cx: seeded random gate sequences on 2, 3 and 4 qubits, and Qiskit
   library circuits put into Clifford+T by Qiskit's own discrete-basis pipeline
   (``transpile(qc.decompose(), basis_gates=[h,s,t,tdg,cx], optimization_level=3)``): QFT(2)
   (exact), QFT(3) (its pi/8 rotations approximated by Qiskit), CDKMRippleCarryAdder(1) and (2).
2. For each: gates, T-count (t + tdg) and CX-count of the input and after each optimiser:
   ``transpile(optimization_level=3)``, Qiskit's ``OptimizeCliffordT``, pyzx (``full_reduce``,
   ``extract_circuit``, ``basic_optimization``; in and out through OpenQASM 2, its ``rz(k pi/4)``
   and ``cz`` written back over h, s, t, tdg, cx exactly), ``OptimalBlocks`` alone (a table by
   length, L = 5, and the T-count table of cost 1) and ``OptimalBlocks`` after each of the three;
   the time of each (the whole chain, median of the rounds; one round when a run takes more than
   :data:`SLOW` s). Every output is compared with its input by ``Operator.equiv`` (up to global
   phase); an output that differs (an approximating optimiser) is marked with its distance.
3. The T-count table (h, s, t, tdg, cx on 2 qubits, ``--cost t=1,tdg=1 --unique``) built to each
   max cost 0, 1, 2, ...: records, file size and build time (2 workers), as far as
   ``--table-budget`` seconds allow (a level cut by the budget is reported with what it committed).
4. Survival (unless ``--no-survival``): random 2-qubit Clifford+T unitaries as ``UnitaryGate``\\ s
   through ``transpile`` with the synthesis plugin, by optimization level, with and without the
   stage: how many came back longer than the optimum.
Writes benchmarks/out/qiskit_plugin.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from qiskit import QuantumCircuit, qasm2, transpile
from qiskit.circuit.library import CDKMRippleCarryAdder, UnitaryGate
from qiskit.quantum_info import Operator
from qiskit.transpiler import PassManager
from qiskit.transpiler.passes import OptimizeCliffordT
from qiskit.transpiler.passes.synthesis.plugin import unitary_synthesis_plugin_names

import unitarium
from unitarium.qiskit import OptimalBlocks

from _common import machine, scratch_dir, write_json

BASIS = ["h", "s", "t", "tdg", "cx"]
SLOW = 5.0
"""An optimiser whose run over a workload takes longer than this many seconds is timed once."""
TCOST = "t=1,tdg=1"


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
    """Qiskit's library circuits as Qiskit's own discrete-basis pipeline writes them over h, s, t, tdg, cx."""
    from qiskit.circuit.library import QFT

    out = {}
    for name, qc in (
        ("QFT(2)", QFT(2)),
        ("QFT(3)", QFT(3)),
        ("CDKMRippleCarryAdder(1)", CDKMRippleCarryAdder(1)),
        ("CDKMRippleCarryAdder(2)", CDKMRippleCarryAdder(2)),
    ):
        out[name] = transpile(qc.decompose(), basis_gates=BASIS, optimization_level=3, seed_transpiler=1)
    return out


def workloads(rng: np.random.Generator, count: int) -> dict[str, list[QuantumCircuit]]:
    out = {
        "random 2q x 30 gates": [random_sequence(2, 30, rng) for _ in range(count)],
        "random 3q x 40 gates": [random_sequence(3, 40, rng) for _ in range(max(1, count - 1))],
        "random 4q x 60 gates": [random_sequence(4, 60, rng) for _ in range(max(1, count - 1))],
    }
    out.update({name: [qc] for name, qc in library().items()})
    return out


_STEPS = {1: ["t"], 2: ["s"], 3: ["s", "t"], 4: ["s", "s"], 5: ["s", "s", "t"], 6: ["s", "s", "s"], 7: ["tdg"]}
"""``rz(k pi/4)`` up to global phase, over s, t, tdg."""


def over_basis(qc: QuantumCircuit) -> QuantumCircuit:
    """pyzx's output (h, cx, cz, rz/u1 of multiples of pi/4, x, z...) over h, s, t, tdg, cx, exactly
    (up to global phase)."""
    out = QuantumCircuit(qc.num_qubits)
    for inst in qc.data:
        name, q = inst.operation.name, [qc.find_bit(b).index for b in inst.qubits]
        if name in BASIS:
            out.append(inst.operation, q)
        elif name in ("rz", "u1", "p", "z", "s", "sdg", "t", "tdg"):
            angle = {"z": math.pi, "sdg": -math.pi / 2}.get(name)
            angle = float(inst.operation.params[0]) if angle is None else angle
            k = angle / (math.pi / 4)
            if abs(k - round(k)) > 1e-9:
                raise ValueError(f"pyzx returned rz({angle}): not a multiple of pi/4")
            for g in _STEPS.get(round(k) % 8, []):
                getattr(out, g)(q[0])
        elif name == "x":
            out.h(q[0]), out.s(q[0]), out.s(q[0]), out.h(q[0])
        elif name == "cz":
            out.h(q[1]), out.cx(q[0], q[1]), out.h(q[1])
        elif name == "swap":
            out.cx(q[0], q[1]), out.cx(q[1], q[0]), out.cx(q[0], q[1])
        else:
            raise ValueError(f"pyzx returned a {name} gate, which this benchmark does not map")
    return out


def pyzx_optimise(qc: QuantumCircuit) -> QuantumCircuit:
    """pyzx: ``full_reduce`` of the ZX-diagram, ``extract_circuit``, ``basic_optimization``."""
    import pyzx as zx

    graph = zx.Circuit.from_qasm(qasm2.dumps(qc)).to_graph()
    zx.full_reduce(graph)
    circuit = zx.basic_optimization(zx.extract_circuit(graph.copy()).to_basic_gates())
    return over_basis(QuantumCircuit.from_qasm_str(circuit.to_qasm()))


def optimisers(table: Path, blocks: OptimalBlocks, tblocks: OptimalBlocks | None, stage: bool) -> dict[str, Any]:
    common = {"basis_gates": BASIS, "optimization_level": 3, "seed_transpiler": 1}
    config = {"table": str(table)}
    pm_blocks = PassManager([blocks])
    pm_t = PassManager([OptimizeCliffordT(basis_gates=BASIS)])
    out: dict[str, Any] = {
        "transpile(opt=3)": lambda qc: transpile(qc, **common),
        "OptimizeCliffordT": pm_t.run,
    }
    if _has_pyzx():
        out["pyzx"] = pyzx_optimise
    out["OptimalBlocks"] = pm_blocks.run
    if tblocks is not None:
        out["OptimalBlocks, T-count table"] = PassManager([tblocks]).run
    out["transpile, then OptimalBlocks"] = lambda qc: pm_blocks.run(transpile(qc, **common))
    out["OptimizeCliffordT, then OptimalBlocks"] = lambda qc: pm_blocks.run(pm_t.run(qc))
    if _has_pyzx():
        out["pyzx, then OptimalBlocks"] = lambda qc: pm_blocks.run(pyzx_optimise(qc))
        if tblocks is not None:
            pm_tblocks = PassManager([tblocks])
            out["pyzx, then OptimalBlocks, T-count table"] = lambda qc: pm_tblocks.run(pyzx_optimise(qc))
    if stage:
        out["transpile(optimization_method='unitarium')"] = lambda qc: transpile(
            qc, optimization_method="unitarium", unitary_synthesis_plugin_config=config, **common
        )
    return out


def _has_pyzx() -> bool:
    try:
        import pyzx  # noqa: F401
    except ImportError:
        return False
    return True


def distance(a: QuantumCircuit, b: QuantumCircuit) -> float | None:
    """None when ``Operator(a).equiv(Operator(b))`` (equal up to global phase), else their
    phase-invariant distance ``sqrt(2 d - 2 |tr(A^dag B)|)``."""
    oa, ob = Operator(a), Operator(b)
    if oa.equiv(ob):
        return None
    d = oa.dim[0]
    return float(np.sqrt(max(0.0, 2 * d - 2 * abs(np.trace(oa.data.conj().T @ ob.data)))))


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
            gaps = [distance(o, qc) for o, qc in zip(outs, circuits, strict=True)]
            worst = max((g for g in gaps if g is not None), default=None)
            rows.append(
                {
                    "workload": wname,
                    "optimiser": oname,
                    **_mean([counts(o) for o in outs]),
                    "seconds": statistics.median(times),
                    "runs": len(times),
                    "equiv": worst is None,
                    "distance": worst,
                }
            )
            print(f"  {wname:26s} {oname:40s} {rows[-1]}", flush=True)
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


def table_levels(tmp: Path, budget: float) -> list[dict[str, Any]]:
    """The T-count table (h, s, t, tdg, cx on 2 qubits, ``--cost t=1,tdg=1``) built to max cost 0, 1, 2, ...
    (``unitarium generate``, 2 workers, a process each), until ``budget`` seconds are spent: a build
    cut by the budget is killed and reported with what it committed."""
    import collections
    import os
    import signal

    rows: list[dict[str, Any]] = []
    spent, cost = 0.0, 0
    while spent < budget:
        path = tmp / f"tcount{cost}.db"
        cmd = [sys.executable, "-m", "unitarium", "generate", str(path), "--gates", "h,s,t,tdg,cx", "--qubits", "2",
               "--enumerate", "--unique", "--cost", TCOST, "--max-cost", str(cost), "--workers", "2", "-q"]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            proc.wait(timeout=budget - spent)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        seconds = time.perf_counter() - t0
        spent += seconds
        ds = unitarium.open(path)
        by_cost = collections.Counter(ds.costs().tolist()) if len(ds) else collections.Counter()
        rows.append(
            {
                "max_cost": cost,
                "complete": ds.complete,
                "records": len(ds),
                "by_cost": {int(k): v for k, v in sorted(by_cost.items())},
                "bytes": path.stat().st_size,
                "seconds": seconds,
            }
        )
        print(f"  T-count table {rows[-1]}", flush=True)
        ds.close()
        if not rows[-1]["complete"]:
            break
        cost += 1
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--length", type=int, default=None, help="table max length L (default 5)")
    ap.add_argument("--no-survival", action="store_true", help="skip the survival measurement (section 4)")
    ap.add_argument("--table-budget", type=float, default=150.0, help="seconds for the T-count table levels")
    args = ap.parse_args()
    length = args.length or 5
    rounds, count = (1, 1) if args.quick else (3, 3)
    plugins = "unitarium" in unitary_synthesis_plugin_names()
    with scratch_dir() as tmp:
        levels = table_levels(Path(tmp), args.table_budget)
        table = Path(tmp) / f"ct{length}.db"
        t0 = time.perf_counter()
        unitarium.generate(table, unitarium.make_spec(gates="clifford+t", qubits=2, max_length=length, unique=True))
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        blocks = OptimalBlocks(table)
        load = time.perf_counter() - t0
        records = len(unitarium.open(table))
        print(f"table L={length}: {records:,} records, built in {build:.1f} s, loaded in {load:.2f} s", flush=True)
        tcount = Path(tmp) / "tcount1.db"
        tblocks, tload = None, None
        if any(r["max_cost"] == 1 and r["complete"] for r in levels):
            t0 = time.perf_counter()
            tblocks = OptimalBlocks(tcount)
            tload = time.perf_counter() - t0
            print(f"T-count table (cost <= 1) loaded in {tload:.2f} s", flush=True)
        work = workloads(np.random.default_rng(7), count)
        rows = measure(work, optimisers(table, blocks, tblocks, plugins), rounds)
        surv = survival(table, 30, plugins) if plugins and not args.no_survival else []
    result = {
        "machine": machine(),
        "pyzx": _version("pyzx"),
        "qiskit": _version("qiskit"),
        "table": {"length": length, "records": records, "build_s": build, "load_s": load, "tcount_load_s": tload},
        "tcount_levels": levels,
        "rounds": rounds,
        "rows": rows,
        "survival": surv,
    }
    write_json("qiskit_plugin.json", result)
    print("\n| max cost | records (by T-count) | file | build s | complete |\n|---|---|---|---|---|")
    for r in levels:
        split = ", ".join(f"{k}: {v:,}" for k, v in r["by_cost"].items())
        print(
            f"| {r['max_cost']} | {r['records']:,} ({split}) | {r['bytes'] / 2**20:.1f} MiB | {r['seconds']:.1f} | "
            f"{r['complete']} |"
        )
    print("\n| workload | optimiser | gates | T | CX | seconds | equal |\n|---|---|---|---|---|---|---|")
    for r in rows:
        equal = "" if r["optimiser"] == "input" else "yes" if r.get("equiv") else f"no, D = {r['distance']:.2g}"
        print(
            f"| {r['workload']} | {r['optimiser']} | {r['gates']:.1f} | {r['t']:.1f} | {r['cx']:.1f} | "
            f"{r['seconds']:.3f}{'*' if r.get('runs', rounds) < rounds else ''} | {equal} |"
        )
    if surv:
        print("\n| level | stage | longer than optimal |\n|---|---|---|")
    for r in surv:
        print(f"| {r['level']} | {r['stage']} | {r['longer']} of {r['targets']} |")


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
