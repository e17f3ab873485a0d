"""unitarium inside Qiskit's compiler (unitarium.qiskit): the unitary synthesis plugin through
``transpile``, the ``OptimalBlocks`` pass and the optimization stage, against independent
references: Qiskit's ``Operator`` (exact equality, global phase included, for every output) and
a breadth-first search written here for optimality."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from qiskit import QuantumCircuit, transpile
from qiskit.circuit.library import UnitaryGate
from qiskit.converters import circuit_to_dag
from qiskit.dagcircuit import BlockCollector
from qiskit.quantum_info import Operator, random_clifford, random_unitary
from qiskit.transpiler import PassManager
from qiskit.transpiler.exceptions import TranspilerError

import unitarium
from unitarium.qiskit import OptimalBlocks

CLIFFORD_T = ["h", "s", "t", "tdg", "cx"]
SRC = Path(__file__).resolve().parents[1] / "src"


def _make(path: Path, **spec) -> Path:
    unitarium.generate(path, unitarium.make_spec(unique=True, **spec), workers=1)
    return path


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("qiskit_plugin")


@pytest.fixture(scope="module")
def cliff3(tmp) -> Path:
    """h, s, cx on 2 qubits, up to 3 moves: optimal up to 6."""
    return _make(tmp / "cliff3.db", gates="h,s,cx", qubits=2, max_length=3)


@pytest.fixture(scope="module")
def ct3(tmp) -> Path:
    """h, s, t, tdg, cx on 2 qubits, up to 3 moves: optimal up to 6."""
    return _make(tmp / "ct3.db", gates="clifford+t", qubits=2, max_length=3)


@pytest.fixture(scope="module")
def ht4(tmp) -> Path:
    """h, t, tdg on 1 qubit, up to 4 moves: optimal up to 8."""
    return _make(tmp / "ht4.db", gates="h,t,tdg", qubits=1, max_length=4)


# -- an independent reference: breadth-first search over Qiskit's own gate matrices ------------------


def _key(u: np.ndarray) -> bytes:
    """The unitary up to global phase: phase fixed on the first entry of magnitude > 0.1, rounded."""
    flat = u.reshape(-1)
    pivot = flat[np.flatnonzero(np.abs(flat) > 0.1)[0]]
    return (np.round(flat * abs(pivot) / pivot, 6) + 0.0).tobytes()


def _moves(names: list[str], n: int) -> list[np.ndarray]:
    """Every placement of every gate on ``n`` qubits, as Qiskit's Operator computes it."""
    out = []
    for name in names:
        placements = ([(0, 1), (1, 0)] if n == 2 else []) if name == "cx" else [(q,) for q in range(n)]
        for qubits in placements:
            qc = QuantumCircuit(n)
            getattr(qc, name)(*qubits)
            out.append(Operator(qc).data)
    return out


def _bfs(names: list[str], n: int, depth: int) -> dict[bytes, tuple[int, np.ndarray]]:
    """``key -> (shortest length, unitary)`` of everything within ``depth`` moves."""
    moves = _moves(names, n)
    start = np.eye(1 << n, dtype=complex)
    seen = {_key(start): (0, start)}
    queue = deque([(start, 0)])
    while queue:
        u, k = queue.popleft()
        if k == depth:
            continue
        for m in moves:
            v = m @ u
            key = _key(v)
            if key not in seen:
                seen[key] = (k + 1, v)
                queue.append((v, k + 1))
    return seen


@pytest.fixture(scope="module")
def clifford_bfs() -> dict[bytes, tuple[int, np.ndarray]]:
    return _bfs(["h", "s", "cx"], 2, 30)  # the whole 2-qubit Clifford group


@pytest.fixture(scope="module")
def clifford_t_bfs() -> dict[bytes, tuple[int, np.ndarray]]:
    return _bfs(CLIFFORD_T, 2, 6)


def _exact(out: QuantumCircuit, want: np.ndarray | QuantumCircuit) -> bool:
    """Operator equality, global phase included (and Qiskit's up-to-phase check too)."""
    a, b = Operator(out), Operator(want)
    return a.equiv(b) and np.allclose(a.data, b.data, atol=1e-7)


def _unitary_circuit(u: np.ndarray) -> QuantumCircuit:
    qc = QuantumCircuit(int(np.log2(len(u))))
    qc.append(UnitaryGate(u), list(range(qc.num_qubits)))
    return qc


def _gates(qc: QuantumCircuit) -> int:
    return sum(qc.count_ops().values())


def _sample(
    reach: dict[bytes, tuple[int, np.ndarray]], count: int, seed: int, most: int
) -> list[tuple[int, np.ndarray]]:
    rng = np.random.default_rng(seed)
    items = [v for v in reach.values() if v[0] <= most]
    return [items[i] for i in rng.choice(len(items), count, replace=False)]


# -- the unitary synthesis plugin through transpile ----------------------------------------------------


def test_the_entry_point_is_found_without_importing_unitarium(tmp, ct3, clifford_t_bfs):
    """A fresh process that imports only Qiskit: transpile finds the plugin by its name."""
    length, u = _sample(clifford_t_bfs, 1, seed=3, most=6)[0]
    np.save(tmp / "target.npy", u)
    code = f"""
import json, sys
import numpy as np
from qiskit import QuantumCircuit, transpile
from qiskit.circuit.library import UnitaryGate
from qiskit.quantum_info import Operator
assert not any(m == "unitarium" or m.startswith("unitarium.") for m in sys.modules)
u = np.load({str(tmp / "target.npy")!r})
qc = QuantumCircuit(2); qc.append(UnitaryGate(u), [0, 1])
out = transpile(qc, basis_gates={CLIFFORD_T!r}, unitary_synthesis_method="unitarium",
                optimization_method="unitarium", unitary_synthesis_plugin_config={{"table": {str(ct3)!r}}})
print(json.dumps({{"ops": dict(out.count_ops()), "exact": bool(np.allclose(Operator(out).data, u, atol=1e-7)),
                  "loaded": "unitarium.qiskit.plugin" in sys.modules}}))
"""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp, timeout=240)
    assert proc.returncode == 0, (
        f"{proc.stderr}\n(is the entry point registered? pip install --no-deps -e . after changing pyproject.toml)"
    )
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["exact"] and got["loaded"]
    assert sum(got["ops"].values()) == length


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_transpile_gives_the_optimal_clifford_circuit(cliff3, clifford_bfs, level):
    """h, s, cx basis (Qiskit's general pipeline): every target within 2 L comes back exact and
    exactly as long as the breadth-first distance."""
    cfg = {"table": str(cliff3), "strict": True}
    for length, u in _sample(clifford_bfs, 12, seed=level, most=6):
        out = transpile(
            _unitary_circuit(u),
            basis_gates=["h", "s", "cx"],
            unitary_synthesis_method="unitarium",
            unitary_synthesis_plugin_config=cfg,
            optimization_level=level,
            seed_transpiler=1,
        )
        assert _exact(out, u)
        assert _gates(out) == length


@pytest.mark.parametrize("level", [1, 3])
def test_transpile_clifford_t_with_the_stage_keeps_the_optimum(ct3, clifford_t_bfs, level):
    """Clifford+T basis: Qiskit runs its Clifford+T pipeline around the synthesis; with
    optimization_method='unitarium' the result is still exact and optimal (BFS distance)."""
    cfg = {"table": str(ct3)}
    for length, u in _sample(clifford_t_bfs, 25, seed=10 + level, most=6):
        out = transpile(
            _unitary_circuit(u),
            basis_gates=CLIFFORD_T,
            unitary_synthesis_method="unitarium",
            optimization_method="unitarium",
            unitary_synthesis_plugin_config=cfg,
            optimization_level=level,
            seed_transpiler=1,
        )
        assert _exact(out, u)
        assert _gates(out) == length
        assert set(out.count_ops()) <= set(CLIFFORD_T)


def test_one_qubit_unitaries_on_a_one_and_a_two_qubit_table(ht4, ct3):
    reach = _bfs(["h", "t", "tdg"], 1, 8)
    targets = _sample(reach, 10, seed=4, most=8)
    qc = QuantumCircuit(2)
    for _, u in targets:
        qc.append(UnitaryGate(u), [0])
        qc.append(UnitaryGate(u), [1])
    for table, basis in ((ht4, ["h", "t", "tdg"]), (ct3, CLIFFORD_T)):
        pm = PassManager([_synthesis(basis, {"table": str(table)})])
        out = pm.run(qc)
        assert _exact(out, qc)
        assert "unitary" not in out.count_ops()
    # each 1-qubit target alone, on the 1-qubit table: exactly its BFS length
    for length, u in targets:
        out = PassManager([_synthesis(["h", "t", "tdg"], {"table": str(ht4), "strict": True})]).run(_unitary_circuit(u))
        assert _exact(out, u) and _gates(out) == length


def _synthesis(basis, config):
    from qiskit.transpiler.passes import UnitarySynthesis

    return UnitarySynthesis(basis, method="unitarium", plugin_config=config)


def test_out_of_reach_falls_back_or_raises_when_strict(cliff3, clifford_bfs):
    far = [u for length, u in clifford_bfs.values() if length > 6][:3]  # Cliffords beyond 2 L
    assert far
    other = random_unitary(4, seed=2).data  # not a Clifford at all
    basis = ["h", "s", "cx", "rz", "sx"]  # the default synthesis can reach everything in it
    for u in [*far, other]:
        out = transpile(
            _unitary_circuit(u), basis_gates=basis, unitary_synthesis_method="unitarium",
            unitary_synthesis_plugin_config={"table": str(cliff3)},
        )  # fmt: skip
        assert _exact(out, u)
        # the synthesis pass alone (transpile may first split a product of 1-qubit unitaries)
        with pytest.raises(TranspilerError, match="no circuit of at most 6 moves"):
            PassManager([_synthesis(basis, {"table": str(cliff3), "strict": True})]).run(_unitary_circuit(u))


def test_a_basis_without_the_tables_gates_and_bad_configs(cliff3, ct3):
    u = Operator(random_clifford(2, seed=1)).data
    basis = ["h", "cx", "rz", "sx"]  # no s
    out = transpile(
        _unitary_circuit(u), basis_gates=basis, unitary_synthesis_method="unitarium",
        unitary_synthesis_plugin_config={"table": str(cliff3)},
    )  # fmt: skip
    assert _exact(out, u) and set(out.count_ops()) <= set(basis)
    with pytest.raises(TranspilerError, match=r"the basis lacks the table's gate\(s\) \['s'\]"):
        PassManager([_synthesis(basis, {"table": str(cliff3), "strict": True})]).run(_unitary_circuit(u))
    with pytest.raises(TranspilerError, match="needs unitary_synthesis_plugin_config"):
        PassManager([_synthesis(basis, None)]).run(_unitary_circuit(u))
    with pytest.raises(TranspilerError, match="unknown key"):
        PassManager([_synthesis(basis, {"table": str(cliff3), "tabel": 1})]).run(_unitary_circuit(u))
    with pytest.raises(unitarium.DatasetMissingError):
        PassManager([_synthesis(basis, {"table": str(cliff3) + ".nope"})]).run(_unitary_circuit(u))
    with pytest.raises(TranspilerError, match="lacks the table's gate"):
        transpile(_unitary_circuit(u), basis_gates=basis, optimization_method="unitarium",
                  unitary_synthesis_plugin_config={"table": str(ct3)})  # fmt: skip


def test_a_random_dataset_is_refused(tmp):
    path = tmp / "random.db"
    unitarium.generate(path, unitarium.make_spec(gates="h,s,cx", qubits=2, count=10, length=4), workers=1)
    with pytest.raises(unitarium.DatasetError, match="unique enumerated"):
        OptimalBlocks(path)


# -- OptimalBlocks -----------------------------------------------------------------------------------


def _random_circuit(names: list[str], n: int, size: int, seed: int, extra: bool = False) -> QuantumCircuit:
    """Random gates of ``names`` on ``n`` qubits; with ``extra``, also gates outside the table."""
    rng = np.random.default_rng(seed)
    qc = QuantumCircuit(n)
    for _ in range(size):
        if extra and rng.random() < 0.08:
            choice = rng.integers(3)
            if choice == 0:
                qc.rz(0.3, int(rng.integers(n)))
            elif choice == 1 and n >= 3:
                qc.ccx(*[int(q) for q in rng.choice(n, 3, replace=False)])
            else:
                qc.barrier()
            continue
        name = names[rng.integers(len(names))]
        if name == "cx":
            if n < 2:
                continue
            qc.cx(*[int(q) for q in rng.choice(n, 2, replace=False)])
        else:
            getattr(qc, name)(int(rng.integers(n)))
    return qc


def _blocks(qc: QuantumCircuit, names: set[str], width: int) -> list[QuantumCircuit]:
    """The blocks OptimalBlocks collects, as circuits on their own qubits (DAG order)."""
    dag = circuit_to_dag(qc)
    blocks = BlockCollector(dag).collect_all_matching_blocks(
        lambda node: node.op.name in names and not node.cargs,
        split_blocks=True, min_block_size=1, max_block_width=width,
    )  # fmt: skip
    out = []
    for block in blocks:
        qubits = sorted({q for node in block for q in node.qargs}, key=lambda q: dag.find_bit(q).index)
        sub = QuantumCircuit(len(qubits))
        for node in block:
            sub.append(node.op, [qubits.index(q) for q in node.qargs])
        out.append(sub)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_optimal_blocks_on_random_clifford_t_circuits(ct3, clifford_t_bfs, seed):
    n, size = [2, 3, 4][seed % 3], [30, 50, 80][seed % 3]
    qc = _random_circuit(CLIFFORD_T, n, size, seed)
    pm = PassManager([OptimalBlocks(ct3)])
    out = pm.run(qc)
    assert _exact(out, qc)
    assert _gates(out) <= _gates(qc)
    assert set(out.count_ops()) <= set(CLIFFORD_T)
    # a fixed point: every block of at most 2 L gates left is a shortest circuit of its unitary
    for block in _blocks(out, set(CLIFFORD_T), 2):
        if len(block.data) <= 6:
            u = Operator(block).data
            if block.num_qubits == 1:
                u = np.kron(np.eye(2), u)  # on qubit 0 of the 2-qubit reference
            assert clifford_t_bfs[_key(u)][0] == len(block.data), block
    assert pm.property_set["optimal_blocks"]["replaced"] > 0


def test_optimal_blocks_shrinks_long_random_sequences_and_keeps_other_gates(ct3):
    qc = _random_circuit(CLIFFORD_T, 4, 120, seed=42, extra=True)
    out = PassManager([OptimalBlocks(ct3)]).run(qc)
    assert _exact(out, qc)
    before, after = qc.count_ops(), out.count_ops()
    for other in ("rz", "ccx", "barrier"):
        assert after.get(other, 0) == before.get(other, 0)
    assert _gates(out) < _gates(qc)


def test_optimal_blocks_on_clifford_circuits_reaches_the_bfs_optimum(cliff3, clifford_bfs):
    """A 2-qubit circuit is one block: whenever its unitary is within 2 L, the output is a
    shortest circuit; the global phase is right whatever the phase of the input."""
    for seed in range(10):
        qc = _random_circuit(["h", "s", "cx"], 2, 25, seed)
        qc.global_phase = 0.7 * seed
        out = PassManager([OptimalBlocks(str(cliff3))]).run(qc)
        assert _exact(out, qc)
        length = clifford_bfs[_key(Operator(qc).data)][0]
        if length <= 6:
            assert _gates(out) == length
        else:
            assert _gates(out) >= length


def test_optimal_blocks_with_a_one_qubit_table(ht4):
    qc = _random_circuit(["h", "t", "tdg", "cx"], 3, 90, seed=5)
    out = PassManager([OptimalBlocks(unitarium.open(ht4))]).run(qc)
    assert _exact(out, qc)
    assert out.count_ops()["cx"] == qc.count_ops()["cx"]
    assert _gates(out) < _gates(qc)


def test_the_stage_never_costs_more_than_qiskits_own(ct3):
    for seed in range(4):
        qc = _random_circuit(CLIFFORD_T, 3, 40, seed)
        common = {"basis_gates": CLIFFORD_T, "optimization_level": 3, "seed_transpiler": 1}
        plain = transpile(qc, **common)
        ours = transpile(
            qc, optimization_method="unitarium", unitary_synthesis_plugin_config={"table": str(ct3)}, **common
        )
        assert _exact(ours, qc) and _exact(plain, qc)
        assert _gates(ours) <= _gates(plain)


def test_importing_unitarium_does_not_import_qiskit():
    code = "import sys, unitarium; assert not any(m.split('.')[0] == 'qiskit' for m in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
