"""Cost models (``--cost``): unique enumeration by increasing cost then length, checked against
exact searches written here (their own gate matrices, their own up-to-phase keys); the refusals;
the default model leaving specs as they were; ``circuit_cost``."""

from __future__ import annotations

import collections
import heapq
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import unitarium
from unitarium._core.cost import check_free_closure, circuit_cost, circuit_costs, move_weights, split_level
from unitarium._errors import SpecError, SpecMismatchError

from conftest import cli, dataset_digest, kill_group, one_error_line, records_in, start_cli, wait_until

# -- an independent model of 2-qubit gates (qubit 0 least significant, as Qiskit) ---------------

I2 = np.eye(2)
H = np.array([[1, 1], [1, -1]]) / np.sqrt(2)
S = np.diag([1, 1j])
T = np.diag([1, np.exp(1j * np.pi / 4)])
X = np.array([[0, 1], [1, 0]])
Z = np.diag([1, -1])
Y = 1j * X @ Z


def on(gate: np.ndarray, qubit: int) -> np.ndarray:
    return np.kron(I2, gate) if qubit == 0 else np.kron(gate, I2)


def cx(control: int, target: int) -> np.ndarray:
    m = np.zeros((4, 4))
    for x in range(4):
        y = x ^ (1 << target) if x >> control & 1 else x
        m[y, x] = 1
    return m


def key(u: np.ndarray, decimals: int = 3) -> bytes:
    """An up-to-phase key: the matrix divided by the phase of its first entry of magnitude > 0.05
    (entries of these groups are 0 or at least ~0.19 in magnitude), rounded."""
    flat = np.asarray(u, dtype=np.complex128).reshape(-1)
    pivot = flat[np.argmax(np.abs(flat) > 0.05)]
    v = np.round(flat * np.conj(pivot) / abs(pivot), decimals) + 0.0  # + 0.0: no -0.0
    return v.tobytes()


def keys(us: np.ndarray, decimals: int = 3) -> list[bytes]:
    """:func:`key` of each of ``(n, d, d)`` matrices, vectorised."""
    flat = np.asarray(us, dtype=np.complex128).reshape(len(us), -1)
    pivot = flat[np.arange(len(flat)), np.argmax(np.abs(flat) > 0.05, axis=1)]
    v = np.round(flat * (np.conj(pivot) / np.abs(pivot))[:, None], decimals) + 0.0
    return [row.tobytes() for row in v]


def cost_levels(
    gens: list[tuple[np.ndarray, int]], max_cost: int, max_length: int = 10**9
) -> dict[bytes, tuple[int, int]]:
    """Dijkstra over unitaries up to phase: each reachable one's least ``(cost, length)`` with the
    generators ``(matrix, weight)``, up to ``max_cost`` (paths of at most ``max_length``)."""
    best: dict[bytes, tuple[int, int]] = {}
    heap: list[tuple[int, int, int, bytes]] = [(0, 0, 0, key(np.eye(4)))]
    mats = {key(np.eye(4)): np.eye(4, dtype=np.complex128)}
    counter = 1
    while heap:
        c, n, _, k = heapq.heappop(heap)
        if k in best:
            continue
        best[k] = (c, n)
        for g, w in gens:
            child = g @ mats[k]
            ck = key(child)
            if ck not in best and c + w <= max_cost and n + 1 <= max_length:
                mats.setdefault(ck, child)
                heapq.heappush(heap, (c + w, n + 1, counter, ck))
                counter += 1
    return best


CLIFFORD_GENS = [on(H, 0), on(H, 1), on(S, 0), on(S, 1), cx(0, 1), cx(1, 0)]


@pytest.fixture(scope="module")
def clifford() -> dict[bytes, np.ndarray]:
    """The 2-qubit Clifford group up to phase, by breadth-first closure of its generators."""
    group = {key(np.eye(4)): np.eye(4, dtype=np.complex128)}
    frontier = list(group.values())
    while frontier:
        nxt = []
        for u in frontier:
            for g in CLIFFORD_GENS:
                v = g @ u
                k = key(v)
                if k not in group:
                    group[k] = v
                    nxt.append(v)
        frontier = nxt
    return group


def _keys_of(ds: unitarium.Dataset, ids: np.ndarray) -> list[bytes]:
    return keys(ds.unitaries(ids))


def _levels_by_key(ds: unitarium.Dataset) -> dict[bytes, tuple[int, int]]:
    levels = zip(ds.costs().tolist(), ds.lengths().tolist(), strict=True)
    return dict(zip(_keys_of(ds, np.arange(len(ds))), levels, strict=True))


def _by_level(ds: unitarium.Dataset) -> collections.Counter:
    off = ds.codes()[1]
    return collections.Counter(zip(ds.costs().tolist(), np.diff(off).tolist(), strict=True))


@pytest.fixture(scope="module")
def tcount(tmp_path_factory: pytest.TempPathFactory) -> unitarium.Dataset:
    path = tmp_path_factory.mktemp("tcount") / "t.db"
    spec = unitarium.make_spec(gates="h,s,t,cx", qubits=2, max_cost=1, unique=True, cost="t=1")
    unitarium.generate(path, spec, workers=1)
    return unitarium.open(path)


def test_tcount_zero_is_the_clifford_group(tcount: unitarium.Dataset, clifford: dict[bytes, np.ndarray]) -> None:
    assert len(clifford) == 11520
    costs = tcount.costs()
    zero = np.flatnonzero(costs == 0)
    assert len(zero) == 11520
    assert set(_keys_of(tcount, zero)) == set(clifford)
    # within cost 0, each circuit is a shortest Clifford circuit: lengths by breadth-first layer
    layers = cost_levels([(g, 0) for g in CLIFFORD_GENS], 0)
    want = collections.Counter(n for _, n in layers.values())
    assert {n: k for (c, n), k in _by_level(tcount).items() if c == 0} == dict(want)


def test_tcount_one_is_clifford_times_a_pauli_rotation(
    tcount: unitarium.Dataset, clifford: dict[bytes, np.ndarray]
) -> None:
    paulis = [np.kron(a, b) for a in (I2, X, Y, Z) for b in (I2, X, Y, Z)][1:]
    assert len(paulis) == 15
    # R_P(pi/4) = exp(-i pi/8 P), up to phase: (I + P)/2 + e^{i pi/4} (I - P)/2 ~ T for P = Z
    rotations = [(np.eye(4) + p) / 2 + np.exp(1j * np.pi / 4) * (np.eye(4) - p) / 2 for p in paulis]
    cliffords = np.stack(list(clifford.values()))
    one = {k for r in rotations for k in keys(cliffords @ r)} - set(clifford)
    costs = tcount.costs()
    ids = np.flatnonzero(costs == 1)
    assert len(one) == 11520 * 15  # each Clifford coset of a rotation is new and they are disjoint
    assert len(ids) == len(one)
    assert set(_keys_of(tcount, ids)) == one
    assert np.all(np.diff(costs) >= 0)  # records in cost order
    assert costs.max() == 1
    record = tcount[int(ids[0])]
    assert record.cost == 1 == circuit_cost(record.circuit, tcount.spec.cost)
    assert str(record.circuit).count("t ") == 1


def test_levels_and_task_list(tcount: unitarium.Dataset) -> None:
    levels = tcount._query("SELECT level, first_id, count FROM tasks ORDER BY task_id")
    seen = []
    for level, first, count in levels:
        cost, length = split_level(level)
        codes, off = tcount.codes(first, first + count)
        assert np.all(np.diff(off) == length)
        assert np.all(circuit_costs(codes, off, move_weights(tcount.gateset, tcount.spec.cost)) == cost)
        seen.append((cost, length))
    assert seen == sorted(seen)  # increasing cost, then length
    assert tcount.verify(sample=200).ok


def test_cx_count_levels_match_dijkstra(tmp_path: Path) -> None:
    spec = unitarium.make_spec(gates="h,s,cx", qubits=2, max_cost=3, unique=True, cost="cx=1")
    unitarium.generate(tmp_path / "cx.db", spec, workers=1)
    ds = unitarium.open(tmp_path / "cx.db")
    gens = [(g, 1 if i >= 4 else 0) for i, g in enumerate(CLIFFORD_GENS)]
    best = cost_levels(gens, 3)
    want = collections.Counter(best.values())
    assert _by_level(ds) == want
    assert collections.Counter(c for c, _ in best.values()) == {0: 576, 1: 5184, 2: 5184, 3: 576}
    # every record at its least (cost, length)
    got = _levels_by_key(ds)
    assert got == best
    # pruning loses nothing under a cost model: the same levels without it
    unpruned = unitarium.make_spec(gates="h,s,cx", qubits=2, max_cost=3, unique=True, cost="cx=1", prune=False)
    unitarium.generate(tmp_path / "np.db", unpruned, workers=1)
    assert _by_level(unitarium.open(tmp_path / "np.db")) == want


def test_max_length_bounds_cost_enumeration(tmp_path: Path) -> None:
    spec = unitarium.make_spec(gates="h,s,cx", qubits=2, max_cost=2, max_length=4, unique=True, cost="cx=1")
    unitarium.generate(tmp_path / "b.db", spec, workers=2)
    ds = unitarium.open(tmp_path / "b.db")
    best = cost_levels([(g, 1 if i >= 4 else 0) for i, g in enumerate(CLIFFORD_GENS)], 2, max_length=4)
    got = _levels_by_key(ds)
    assert got == best
    assert max(n for _, n in got.values()) == 4


def test_default_cost_is_todays_spec(tmp_path: Path) -> None:
    plain = unitarium.make_spec(gates="h,s,cx", qubits=2, max_length=3, unique=True)
    ones = unitarium.make_spec(gates="h,s,cx", qubits=2, max_length=3, unique=True, cost="h=1,s=1,cx=1")
    by_cost = unitarium.make_spec(gates="h,s,cx", qubits=2, max_cost=3, unique=True)
    assert plain.canonical_json() == ones.canonical_json() == by_cost.canonical_json()
    assert "cost" not in plain.to_json() and "max_cost" not in plain.to_json()["source"]
    assert ones.cost is None
    unitarium.generate(tmp_path / "a.db", plain, workers=1)
    ds = unitarium.open(tmp_path / "a.db")
    assert np.array_equal(ds.costs(), ds.lengths())
    assert ds[5].cost == len(ds[5].circuit)


def test_spec_round_trip(tmp_path: Path) -> None:
    spec = unitarium.make_spec(gates="h,s,t,tdg,cx", qubits=2, max_cost=0, unique=True, cost={"t": 1, "tdg": 1})
    data = spec.to_json()
    assert data["cost"] == {"h": 0, "s": 0, "t": 1, "tdg": 1, "cx": 0}
    assert data["source"]["max_cost"] == 0
    again = unitarium.Spec.from_json(json.loads(json.dumps(data)))
    assert again.canonical_json() == spec.canonical_json()
    unitarium.generate(tmp_path / "c.db", spec, workers=1)
    assert len(unitarium.open(tmp_path / "c.db")) == 11520
    # same spec resumes (nothing to do); another cost model is refused
    unitarium.generate(tmp_path / "c.db", spec, workers=1)
    other = unitarium.make_spec(gates="h,s,t,tdg,cx", qubits=2, max_cost=0, unique=True, cost="t=2,tdg=1")
    with pytest.raises(SpecMismatchError, match="another spec"):
        unitarium.generate(tmp_path / "c.db", other, workers=1)


def test_cli_cost_and_refusals(tmp_path: Path) -> None:
    out = tmp_path / "x.db"
    cli("generate", out, "--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--unique", "--cost", "cx=1",
        "--max-cost", "1", "-q")  # fmt: skip
    assert collections.Counter(unitarium.open(out).costs().tolist()) == {0: 576, 1: 5184}
    bad = {
        ("--cost", "cx=1", "--gates", "h,s,t,cx", "--max-cost", "1"): "infinite",
        ("--cost", "cz=1", "--gates", "h,s,cx", "--max-cost", "1"): "not a gate",
        ("--cost", "cx=-1", "--gates", "h,s,cx", "--max-cost", "1"): "whole number",
        ("--cost", "cx", "--gates", "h,s,cx", "--max-cost", "1"): "GATE=WEIGHT",
        ("--cost", "cx=0", "--gates", "h,s,cx", "--max-cost", "1"): "every gate 0",
        ("--cost", "cx=1", "--gates", "h,s,cx", "--max-length", "3"): "",  # bounded by length: fine
    }
    for args, words in bad.items():
        target = tmp_path / f"bad{len(words)}{args[1]}.db"
        proc = cli("generate", target, "--qubits", "2", "--enumerate", "--unique", "-q", *args, check=False)
        if not words:
            assert proc.returncode == 0, proc.stderr
            continue
        assert proc.returncode == 2, proc.stderr
        assert words in one_error_line(proc.stderr)
        assert not target.exists()
    proc = cli("generate", tmp_path / "r.db", "--qubits", "2", "--gates", "h,cx", "--count", "5", "--length", "3",
               "--cost", "cx=1", check=False)  # fmt: skip
    assert proc.returncode == 2 and "--enumerate --unique" in one_error_line(proc.stderr)
    proc = cli("generate", tmp_path / "n.db", "--qubits", "2", "--gates", "h,s,cx", "--enumerate", "--cost", "cx=1",
               "--max-cost", "1", check=False)  # fmt: skip
    assert proc.returncode == 2 and "--unique" in one_error_line(proc.stderr)


def test_free_closure_limits() -> None:
    gs = unitarium.make_spec(gates="h,s,t,cx", qubits=2, max_length=1).gateset
    assert check_free_closure(gs, {"h": 0, "s": 0, "t": 1, "cx": 0}) == 11520
    assert check_free_closure(gs, {"h": 1, "s": 1, "t": 0, "cx": 1}) == 64  # T^a (x) T^b: finite
    with pytest.raises(SpecError, match="more than 1,000 unitaries"):
        check_free_closure(gs, {"h": 0, "s": 0, "t": 1, "cx": 0}, limit=1000)
    with pytest.raises(SpecError, match="infinite"):
        check_free_closure(gs, {"h": 0, "s": 1, "t": 0, "cx": 1})
    one = unitarium.make_spec(gates="h,t", qubits=1, max_length=1).gateset
    with pytest.raises(SpecError, match="infinite"):
        check_free_closure(one, {"h": 0, "t": 0})


def test_circuit_cost_forms() -> None:
    from qiskit import QuantumCircuit

    gs = unitarium.make_spec(gates="h,s,t,tdg,cx", qubits=2, max_length=1).gateset
    circuit = unitarium.Circuit.from_text("h 0; t 0; cx 0 1; tdg 1; t 1; s 0", gs)
    assert circuit_cost(circuit, "t=1,tdg=1") == 3
    assert circuit_cost(circuit, {"cx": 1}) == 1
    assert circuit_cost(circuit, None) == 6
    assert circuit_cost(circuit.codes, "t=2,tdg=1,cx=10", gs) == 15
    qc = circuit.to_qiskit()
    assert isinstance(qc, QuantumCircuit)
    assert circuit_cost(qc, "t=1,tdg=1") == 3
    assert circuit_cost(qc, None) == 6
    codes = np.concatenate([circuit.codes, circuit.codes[:2]])
    weights = move_weights(gs, {"h": 0, "s": 0, "t": 1, "tdg": 1, "cx": 0})
    assert circuit_costs(codes, np.array([0, 6, 8]), weights).tolist() == [3, 1]


def test_synthesis_by_cx_count_against_dijkstra(tmp_path: Path, clifford: dict[bytes, np.ndarray]) -> None:
    spec = unitarium.make_spec(gates="h,s,cx", qubits=2, max_cost=1, unique=True, cost="cx=1")
    unitarium.generate(tmp_path / "cx1.db", spec, workers=1)
    ds = unitarium.open(tmp_path / "cx1.db")
    exact = cost_levels([(g, 1 if i >= 4 else 0) for i, g in enumerate(CLIFFORD_GENS)], 3)
    rng = np.random.default_rng(5)
    chosen = rng.choice(len(clifford), 400, replace=False)
    targets = np.stack(list(clifford.values()))[chosen]
    found = ds.synthesize_many(targets)
    reach = 2 * 1 - 1 + 1  # 2C - w_max + 1
    seen = collections.Counter()
    for u, circuit in zip(targets, found, strict=True):
        cost, length = exact[key(u)]
        if cost > reach:
            assert circuit is None
            continue
        assert circuit is not None
        assert key(circuit.unitary()) == key(u)
        assert (circuit_cost(circuit, ds.spec.cost), len(circuit)) == (cost, length)
        seen[cost] += 1
    assert set(seen) == {0, 1, 2}


def test_synthesis_by_t_count(tcount: unitarium.Dataset, clifford: dict[bytes, np.ndarray]) -> None:
    gs = tcount.gateset
    rng = np.random.default_rng(11)
    cliffords = list(clifford.values())
    one = set(_keys_of(tcount, np.flatnonzero(tcount.costs() == 1)))
    targets, want = [], []
    for _ in range(12):  # Clifford, T, Clifford, T, Clifford: T-count 2 unless it collapses
        t0, t1 = (unitarium.Circuit.from_text(f"t {q}", gs).unitary() for q in rng.integers(0, 2, 2))
        c0, c1, c2 = (cliffords[i] for i in rng.integers(0, len(cliffords), 3))
        u = c2 @ t1 @ c1 @ t0 @ c0
        k = key(u)
        targets.append(u)
        want.append(0 if k in clifford else 1 if k in one else 2)
    found = tcount.synthesize_many(np.stack(targets))
    assert 2 in want
    for u, circuit, tc in zip(targets, found, want, strict=True):
        assert circuit is not None and key(circuit.unitary()) == key(u)
        assert circuit_cost(circuit, tcount.spec.cost) == tc


def test_approximate_by_cx_count_against_brute_force(tmp_path: Path, clifford: dict[bytes, np.ndarray]) -> None:
    spec = unitarium.make_spec(gates="h,s,cx", qubits=2, max_cost=1, unique=True, cost="cx=1")
    unitarium.generate(tmp_path / "cx1.db", spec, workers=1)
    ds = unitarium.open(tmp_path / "cx1.db")
    exact = cost_levels([(g, 1 if i >= 4 else 0) for i, g in enumerate(CLIFFORD_GENS)], 2)
    group = np.stack([clifford[k] for k in exact])
    cx_counts = np.array([c for c, _ in exact.values()])
    rng = np.random.default_rng(3)
    for _ in range(3):
        z = rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4))
        u, _ = np.linalg.qr(z)
        for budget in (1, 2):
            found = ds.approximate(u, max_length=budget)
            inside = cx_counts <= budget
            scores = np.abs(np.einsum("nij,ij->n", np.conj(group[inside]), u))
            want = np.sqrt(max(0.0, 8 - 2 * scores.max()))
            assert abs(found.distance - want) < 1e-9
            assert circuit_cost(found.circuit, ds.spec.cost) == cx_counts[inside][np.argmax(scores)] <= budget
    with pytest.raises(SpecError, match="out of range"):
        ds.approximate(np.eye(4), max_length=3)


def test_cli_synth_by_cost(tmp_path: Path) -> None:
    table = tmp_path / "cx1.db"
    cli("generate", table, "--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--unique", "--cost", "cx=1",
        "--max-cost", "1", "-q")  # fmt: skip
    proc = cli("synth", table, "--circuit", "h 0; cx 0 1; cx 1 0; s 1", "--json")  # cx-count 2
    out = json.loads(proc.stdout)
    assert out["cost"] == 2 and out["circuit"].count("cx") == 2
    swap = cli("synth", table, "--circuit", "cx 0 1; cx 1 0; cx 0 1", check=False)
    assert swap.returncode == 1 and "no circuit of cost at most 2" in swap.stderr
    near = json.loads(cli("synth", table, "--circuit", "cx 0 1; cx 1 0; cx 0 1", "--approximate", "--json").stdout)
    assert near["cost"] <= 2 and near["distance"] > 0.1


@pytest.mark.parametrize("target", ["t.db", "dir/"])
def test_kill_9_and_resume_gives_the_same_content(tmp_path: Path, tcount: unitarium.Dataset, target: str) -> None:
    """SIGKILL a T-count enumeration (file, or directory with two workers) partway through
    its cost-1 levels, resume it: the content equals the uninterrupted run's."""
    path = tmp_path / target
    args = ["generate", path, "--gates", "h,s,t,cx", "--qubits", "2", "--enumerate", "--unique",
            "--cost", "t=1", "--max-cost", "1", "-q", "--workers", "1" if target == "t.db" else "2"]  # fmt: skip
    proc = start_cli(*args)
    try:
        wait_until(lambda: records_in(path) > 40_000, timeout=300, what="records past the cost-0 levels")
    finally:
        kill_group(proc)
    assert 11520 < records_in(path) < len(tcount)
    cli(*args)
    assert dataset_digest(path) == dataset_digest(tcount.path)


# -- labels ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cx_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cxtable") / "cx1.db"
    cli("generate", path, "--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--unique", "--cost", "cx=1",
        "--max-cost", "1", "-q")  # fmt: skip
    return path


def test_labels_against_dijkstra(tmp_path: Path, cx_table: Path) -> None:
    data = tmp_path / "rnd.db"
    cli("generate", data, "--gates", "h,s,cx", "--qubits", "2", "--count", "600", "--length", "0:12", "-q")
    out = cli("label", data, "--table", cx_table, "-q").stdout
    assert "600 records labelled" in out
    ds = unitarium.open(data)
    labels = ds.labels()
    exact = cost_levels([(g, 1 if i >= 4 else 0) for i, g in enumerate(CLIFFORD_GENS)], 3)
    want = [c if c <= 2 else -3 for c in (exact[k][0] for k in _keys_of(ds, np.arange(len(ds))))]
    assert labels.tolist() == want
    assert set(want) >= {0, 1, 2, -3}
    assert ds.labels(100, 110).tolist() == want[100:110]
    # by a table of length (no --cost): the least number of moves within 2 L, else -(2 L + 1)
    table = tmp_path / "len3.db"
    cli("generate", table, "--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--max-length", "3", "--unique", "-q")
    other = tmp_path / "rnd2.db"
    cli("generate", other, "--gates", "h,s,cx", "--qubits", "2", "--count", "200", "--length", "0:9", "-q")
    ds2 = unitarium.open(other)
    ds2.label(table)
    lengths = cost_levels([(g, 1) for g in CLIFFORD_GENS], 7)
    want2 = [lengths[k][1] if k in lengths and lengths[k][1] <= 6 else -7 for k in _keys_of(ds2, np.arange(200))]
    assert ds2.labels().tolist() == want2


def test_label_refusals(tmp_path: Path, cx_table: Path) -> None:
    data = tmp_path / "rnd.db"
    cli("generate", data, "--gates", "h,s,cx", "--qubits", "2", "--count", "50", "--length", "4", "-q")
    cli("label", data, "--table", cx_table, "-q")
    before = unitarium.open(data).labels()
    table = tmp_path / "len2.db"
    cli("generate", table, "--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--max-length", "2", "--unique", "-q")
    proc = cli("label", data, "--table", table, check=False)
    assert proc.returncode == 2 and "by another table" in one_error_line(proc.stderr)
    assert np.array_equal(unitarium.open(data).labels(), before)
    one = tmp_path / "one.db"
    cli("generate", one, "--gates", "h,t", "--qubits", "1", "--enumerate", "--max-length", "2", "--unique", "-q")
    proc = cli("label", data, "--table", one, check=False)
    assert proc.returncode == 2 and "qubits" in one_error_line(proc.stderr)
    proc = cli("label", table, "--table", data, check=False)
    assert proc.returncode == 2 and "unique enumerated" in one_error_line(proc.stderr)
    directory = tmp_path / "dir"
    cli("generate", f"{directory}/", "--gates", "h,s,cx", "--qubits", "2", "--count", "50", "--length", "4", "-q")
    cli("label", directory, "--table", cx_table, "-q")  # a directory: DATA.labels beside it
    assert np.array_equal(unitarium.open(directory).labels(), before)  # same seed, same records
    fresh = tmp_path / "fresh.db"
    cli("generate", fresh, "--gates", "h,s,cx", "--qubits", "2", "--count", "5", "--length", "4", "-q")
    with pytest.raises(unitarium.DatasetError, match="no labels"):
        unitarium.open(fresh).labels()


def test_export_and_torch_width_by_cost(tmp_path: Path, cx_table: Path) -> None:
    """A table by cost (--max-cost alone) pads to its longest circuit, not to the unbounded --max-length."""
    pytest.importorskip("torch")
    from unitarium.torch import UnitaryDataset

    ds = unitarium.open(cx_table)
    longest = int(ds.lengths().max())
    assert ds.spec.source.max_length == 10_000
    item = UnitaryDataset(ds)[len(ds) - 1]
    assert tuple(item["tokens"].shape) == (longest,)
    cli("export", cx_table, tmp_path / "hf", "--format", "parquet")
    assert list((tmp_path / "hf").rglob("*.parquet"))


def test_stored_cost_in_any_key_order() -> None:
    spec = unitarium.make_spec(gates="h,s,t,cx", qubits=2, max_cost=1, unique=True, cost="t=1")
    data = json.loads(spec.canonical_json())  # keys sorted: cx, h, s, t
    assert list(data["cost"]) == ["cx", "h", "s", "t"]
    again = unitarium.Spec.from_json(data)
    assert list(again.cost) == ["h", "s", "t", "cx"] and again.canonical_json() == spec.canonical_json()
    with pytest.raises(SpecError, match="not a weight for each gate"):
        unitarium.Spec.from_json({**data, "cost": {"h": 0, "t": 1}})


def test_labels_copied_beside_another_dataset_are_refused(tmp_path: Path, cx_table: Path) -> None:
    """Labels carry the labelled dataset's identity (spec and dataset id): copied beside another dataset,
    even one of the same spec (another id), they are refused, never served."""
    args = ("--gates", "h,s,cx", "--qubits", "2", "--count", "50", "--length", "4", "-q")
    data, twin, other = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "c.db"
    cli("generate", data, *args)
    cli("generate", twin, *args)  # the same spec: the same records, another dataset id
    cli("generate", other, *args[:-1], "--seed", "3", "-q")
    cli("label", data, "--table", cx_table, "-q")
    assert len(unitarium.open(data).labels()) == 50
    for target in (twin, other):
        shutil.copyfile(f"{data}.labels", f"{target}.labels")
        with pytest.raises(unitarium.DatasetError, match="another dataset"):
            unitarium.open(target).labels()
