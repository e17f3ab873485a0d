"""Exhaustive enumeration, deduplication up to global phase, and reverse lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qiskit.quantum_info import Operator, random_unitary

import unitarium
from unitarium._core.canonical import DEDUP

from conftest import cli, content


def enumerate_unique(tmp_path: Path, gates: str, qubits: int, max_length: int, *, workers: int = 1, **kw) -> Path:
    path = tmp_path / f"{gates.replace(',', '_')}-{qubits}-{max_length}-{workers}-{kw}.db"
    spec = unitarium.make_spec(gates=gates, qubits=qubits, max_length=max_length, unique=True, **kw)
    unitarium.generate(path, spec, workers=workers)
    return path


def exact_unitaries(ds: unitarium.Dataset, stop: int | None = None) -> np.ndarray:
    """Unitaries of records ``0 .. stop-1`` recomputed in complex128 from their circuits."""
    return np.array([c.unitary() for c in ds.circuits(0, stop)])


def distinct(unitaries: np.ndarray) -> set[int]:
    """Distinct unitaries up to phase, as dedup keys (needs complex128 products)."""
    return set(DEDUP.primary(unitaries).tolist())


# Group orders up to global phase, from the literature:
#   1-qubit Clifford group: 24; 2-qubit Clifford group: 11520 (Ozols, "Clifford group");
#   CNOT circuits on n qubits: |GL(n, 2)| (168 for n = 3); with X added: |AGL(3, 2)| = 8 * 168;
#   Paulis on 2 qubits: 4**2; qubit permutations of 4 qubits: 4! ; real Clifford group of 1 qubit: 8.
GROUPS = [
    ("h,s", 1, 24),
    ("h,s,cx", 2, 11520),
    ("cx", 3, 168),
    ("x,cx", 3, 1344),
    ("x,y,z", 2, 16),
    ("swap", 4, 24),
    ("h,z", 1, 8),
]


@pytest.mark.parametrize(("gates", "qubits", "order"), GROUPS)
def test_unique_enumeration_reaches_the_group_order_and_stops(tmp_path: Path, gates: str, qubits: int, order: int):
    path = enumerate_unique(tmp_path, gates, qubits, 40)
    ds = unitarium.open(path)
    assert len(ds) == order
    assert ds.complete
    lengths = ds.lengths()
    assert lengths.max() < 40  # it stopped growing before the limit
    assert np.all(np.diff(lengths) >= 0)  # breadth-first: a shortest circuit for each
    assert len(distinct(exact_unitaries(ds))) == order


def test_two_qubit_clifford_from_the_cli_records_are_correct(tmp_path: Path):
    path = tmp_path / "cliff.db"
    cli(
        "generate",
        path,
        "--gates",
        "h,s,cx",
        "--qubits",
        2,
        "--enumerate",
        "--max-length",
        14,
        "--unique",
        "--workers",
        2,
        "-q",
    )
    ds = unitarium.open(path)
    assert len(ds) == 11520
    rng = np.random.default_rng(0)
    for i in rng.choice(len(ds), 300, replace=False):
        rec = ds[int(i)]
        assert np.allclose(Operator(rec.circuit.to_qiskit()).data, rec.unitary, atol=1e-5)


def test_unique_records_are_pairwise_distinct_and_shortest(tmp_path: Path):
    path = enumerate_unique(tmp_path, "h,t,cx", 2, 5, prune=False)
    ds = unitarium.open(path)
    u = exact_unitaries(ds)
    assert len(distinct(u)) == len(ds)
    # Brute force: the shortest length at which each unitary first appears.
    full = tmp_path / "full.db"
    unitarium.generate(full, unitarium.make_spec(gates="h,t,cx", qubits=2, max_length=5, prune=False), workers=1)
    every = unitarium.open(full)
    first_length: dict[int, int] = {}
    for key, length in zip(DEDUP.primary(exact_unitaries(every)).tolist(), every.lengths(), strict=True):
        first_length.setdefault(key, int(length))
    keys = DEDUP.primary(u).tolist()
    assert sorted(first_length) == sorted(keys)
    assert [first_length[k] for k in keys] == ds.lengths().tolist()


@pytest.mark.parametrize(
    ("gates", "qubits", "max_length"), [("h,s,cx", 2, 14), ("h,t,tdg,cx", 2, 5), ("h,t,ccx,cswap", 3, 3)]
)
def test_pruning_never_loses_a_unitary_in_unique_mode(tmp_path: Path, gates: str, qubits: int, max_length: int):
    pruned = unitarium.open(enumerate_unique(tmp_path, gates, qubits, max_length))
    full = unitarium.open(enumerate_unique(tmp_path, gates, qubits, max_length, prune=False))
    assert len(pruned) == len(full)
    assert pruned.lengths().tolist() == full.lengths().tolist()
    assert distinct(exact_unitaries(pruned)) == distinct(exact_unitaries(full))


@pytest.mark.parametrize(("gates", "qubits", "max_length"), [("h,t,tdg,cx", 2, 5), ("h,s,sdg,cz,swap", 3, 3)])
def test_pruning_keeps_every_unitary_up_to_each_length(tmp_path: Path, gates: str, qubits: int, max_length: int):
    paths = {}
    for prune in (True, False):
        paths[prune] = tmp_path / f"all-{prune}.db"
        spec = unitarium.make_spec(gates=gates, qubits=qubits, max_length=max_length, prune=prune)
        unitarium.generate(paths[prune], spec, workers=1)
    pruned, full = unitarium.open(paths[True]), unitarium.open(paths[False])
    assert len(pruned) < len(full)  # pruning does skip sequences
    spec = full.spec
    for length in range(max_length + 1):
        # recompute in complex128 from the circuits: keys must not depend on storage noise
        def upto(ds, length=length):
            return distinct(exact_unitaries(ds, int((ds.lengths() <= length).sum())))

        assert upto(pruned) == upto(full), f"pruning lost a unitary of length <= {length} ({spec.describe()})"


def test_worker_count_does_not_change_a_unique_dataset(tmp_path: Path):
    one = enumerate_unique(tmp_path, "h,s,cx", 2, 14, workers=1)
    two = enumerate_unique(tmp_path, "h,s,cx", 2, 14, workers=2)
    assert content(one) == content(two)
    spec = unitarium.make_spec(gates="clifford+t", qubits=2, count=30_000, length="1:10", unique=True, seed=5)
    a, b = tmp_path / "r1.db", tmp_path / "r2.db"
    unitarium.generate(a, spec, workers=1)
    unitarium.generate(b, spec, workers=2)
    assert content(a) == content(b)
    assert len(unitarium.open(a)) < 30_000  # short random circuits do repeat


@pytest.mark.parametrize("unique", [False, True])
def test_worker_count_does_not_change_a_5_qubit_enumeration(tmp_path: Path, unique: bool) -> None:
    """On 5 qubits each parent's extension is a BLAS product big enough for OpenBLAS to use
    threads in the writer process (1 worker), while workers run it single-threaded."""
    spec = unitarium.make_spec(gates="clifford+t", qubits=5, max_length=2, unique=unique)
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    unitarium.generate(one, spec, workers=1)
    unitarium.generate(two, spec, workers=2)
    with unitarium.open(one) as ds:
        assert len(ds) > 1000
    assert content(one) == content(two)


def test_a_reader_recomputes_5_qubit_unitaries_bit_for_bit_in_a_multithreaded_process(tmp_path: Path) -> None:
    """This test process keeps its BLAS threads; the workers that stored the unitaries ran one
    each. A product's bits must not depend on the thread count, so the recomputed unitaries of
    ``--unitaries computed`` equal the stored ones bit for bit."""
    stored, computed = tmp_path / "stored", tmp_path / "computed"
    unitarium.generate(stored, unitarium.make_spec(gates="clifford+t", qubits=5, max_length=2), workers=2)
    spec = unitarium.make_spec(gates="clifford+t", qubits=5, max_length=2, unitaries="computed")
    unitarium.generate(computed, spec, workers=2)
    with unitarium.open(stored) as a, unitarium.open(computed) as b:
        assert len(a) == len(b) > 1000
        assert a.unitaries(0, len(a)).tobytes() == b.unitaries(0, len(b)).tobytes()


def test_random_unique_keeps_first_occurrences(tmp_path: Path):
    spec_all = unitarium.make_spec(gates="h,s,cx", qubits=2, count=5_000, length="1:6", seed=9)
    spec_unique = unitarium.make_spec(gates="h,s,cx", qubits=2, count=5_000, length="1:6", seed=9, unique=True)
    every, unique = tmp_path / "every.db", tmp_path / "unique.db"
    unitarium.generate(every, spec_all, workers=1)
    unitarium.generate(unique, spec_unique, workers=1)
    keys = DEDUP.primary(np.array([c.unitary() for c in unitarium.open(every).circuits()]))
    _, first = np.unique(keys, return_index=True)
    expected = [str(c) for c in np.array(unitarium.open(every).circuits(), dtype=object)[np.sort(first)]]
    assert [str(c) for c in unitarium.open(unique).circuits()] == expected


def test_lookup_finds_every_stored_unitary_under_a_random_phase(tmp_path: Path):
    ds = unitarium.open(enumerate_unique(tmp_path, "h,s,cx", 2, 14))
    rng = np.random.default_rng(1)
    for i in rng.choice(len(ds), 400, replace=False):
        rec = ds[int(i)]
        u = rec.unitary * np.exp(2j * np.pi * rng.random())
        found = ds.lookup(u)
        assert [r.id for r in found] == [rec.id]
        assert np.allclose(Operator(found[0].circuit.to_qiskit()).data, u * np.vdot(u, rec.unitary) / 4, atol=1e-5)


def test_lookup_tolerates_noise_and_finds_nothing_for_haar_unitaries(tmp_path: Path):
    ds = unitarium.open(enumerate_unique(tmp_path, "h,s,cx", 2, 14))
    rng = np.random.default_rng(2)
    target = ds[5000].unitary.astype(np.complex128)
    noisy = target + 1e-6 * (rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4)))
    assert [r.id for r in ds.lookup(noisy)] == [5000]
    for seed in range(20):
        assert ds.lookup(random_unitary(4, seed=seed).data) == []


def test_lookup_from_the_cli(tmp_path: Path):
    path = enumerate_unique(tmp_path, "h,s,cx", 2, 14)
    ds = unitarium.open(path)
    rec = ds[777]
    np.save(tmp_path / "u.npy", rec.unitary * 1j)
    out = cli("lookup", path, "--matrix", tmp_path / "u.npy").stdout.split("\n")[0]
    assert out == f"777\t{rec.circuit}"
    out = cli("lookup", path, "--circuit", f"{rec.circuit}; h 0; h 0").stdout
    assert out.startswith("777\t")
    np.save(tmp_path / "haar.npy", random_unitary(4, seed=3).data)
    miss = cli("lookup", path, "--matrix", tmp_path / "haar.npy", check=False)
    assert miss.returncode == 1 and miss.stdout == ""


def test_lookup_uses_the_index(tmp_path: Path):
    import sqlite3

    path = enumerate_unique(tmp_path, "h,s", 1, 10)
    plan = (
        sqlite3.connect(path)
        .execute("EXPLAIN QUERY PLAN SELECT task_id, row FROM lookup WHERE key IN (?, ?)", (1, 2))
        .fetchall()
    )
    assert "SCAN" not in " ".join(str(row) for row in plan)


def test_interrupted_unique_enumeration_resumes_to_the_same_dataset(tmp_path: Path):
    spec = unitarium.make_spec(gates="h,s,cx", qubits=2, max_length=14, unique=True)
    reference = enumerate_unique(tmp_path, "h,s,cx", 2, 14)
    path = tmp_path / "partial.db"
    calls = []

    def stop_after_a_few(progress: unitarium.Progress) -> None:
        calls.append(progress)
        if len(calls) == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        unitarium.generate(path, spec, workers=1, progress=stop_after_a_few)
    partial = len(unitarium.open(path))
    assert 0 < partial < 11520
    unitarium.generate(path, spec, workers=2)
    assert content(path) == content(reference)


def test_non_unique_enumeration_counts(tmp_path: Path):
    path = tmp_path / "all.db"
    unitarium.generate(path, unitarium.make_spec(gates="h,t,tdg,cx", qubits=2, max_length=4, prune=False), workers=2)
    ds = unitarium.open(path)
    assert ds.lengths().tolist() == sorted(ds.lengths().tolist())
    assert np.bincount(ds.lengths()).tolist() == [8**k for k in range(5)]
    assert [str(c) for c in ds.circuits(1, 9)] == [m.text for m in ds.gateset.moves]
    with pytest.raises(unitarium.DatasetError, match="no lookup index"):
        ds.lookup(np.eye(4))


@pytest.mark.parametrize("depth", [6, 12])
def test_unique_counts_match_qiskit_solovay_kitaev_basic_approximations(tmp_path: Path, depth: int) -> None:
    """Qiskit's Solovay-Kitaev preprocessing runs the same search on one qubit (every sequence over h, t, tdg up
    to ``depth``, one kept per distinct SO(3) rotation, i.e. per unitary up to phase): an independent oracle
    for the count (its sequences expose no gates or matrices to compare further)."""
    import warnings

    from qiskit.synthesis import generate_basic_approximations

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = generate_basic_approximations(["h", "t", "tdg"], depth)
    with unitarium.open(enumerate_unique(tmp_path, "h,t,tdg", 1, depth)) as ds:
        assert len(ds) == len(theirs)


def test_generate_leaves_no_handle_on_the_file_open(tmp_path: Path) -> None:
    """Enumeration reads its parents back through a dataset handle; an in-process run must
    close it (a leaked handle kept the file mapped and slowed later runs in the process)."""
    path = tmp_path / "closed.db"
    unitarium.generate(path, unitarium.make_spec(gates="h,t,cx", qubits=2, max_length=4), workers=1)
    names = {str(path), f"{path}-wal", f"{path}-shm"}
    fds = {str(fd.resolve()) for fd in Path("/proc/self/fd").iterdir() if fd.exists()}
    mapped = {line.split(maxsplit=5)[-1].strip() for line in Path("/proc/self/maps").read_text().splitlines()}
    assert not names & (fds | mapped)
