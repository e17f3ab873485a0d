"""Tableau update rules (issue 19, item 4): unique runs of Clifford gate sets with tableau keys and
``--unitaries computed`` track stabilizer tableaux, not matrices (:mod:`unitarium._core.tableau`). The keys
are checked bit for bit against the matrix path (:func:`unitarium._core.exact.tableau_keys`) on random circuits
of 1 to 5 qubits over every Clifford gate unitarium knows, the tableaux against ``stim``'s (composed by stim
from each move's matrix, never through unitarium's reader), datasets made with the rules against those made
with them forced off (``UNITARIUM_TABLEAU_RULES=0``), and the 3-qubit h,s,cx enumeration's levels against a
breadth-first search on stim tableaux written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import unitarium
from unitarium._core.exact import tableau_keys
from unitarium._core.kernels import ProductTable
from unitarium._core.tableau import TableauRules
from unitarium._spec.sources import TABLEAU_RULES_ENV, TaskContext

from conftest import cli, dataset_digest

stim = pytest.importorskip("stim", reason="the test extra installs stim (the independent tableau oracle)")

ONE_QUBIT = "i,x,y,z,h,s,sdg,sx,sxdg,rz(pi/2),p(-pi/2),rx(pi)"
TWO_QUBIT = "cx,cy,cz,swap,iswap,ecr"
"""Every Clifford gate unitarium knows (fixed gates, and parametric ones at Clifford angles)."""


def _gateset(gates: str, n: int) -> unitarium.Spec:
    return unitarium.make_spec(gates=gates, qubits=n, count=1, length=1).gateset


def _words(t: stim.Tableau) -> int:
    """A stim tableau in the rules' packed layout (up to 3 qubits: one word, row k at bit 7k)."""
    n = len(t)
    x2x, x2z, z2x, z2z, x_signs, z_signs = t.to_numpy()
    weights = 1 << np.arange(n)
    word = 0
    for k, (xs, zs, s) in enumerate(
        [(x2x[q], x2z[q], x_signs[q]) for q in range(n)] + [(z2x[q], z2z[q], z_signs[q]) for q in range(n)]
    ):
        row = int(xs @ weights) | int(zs @ weights) << n | int(s) << 2 * n
        word |= row << k * (2 * n + 1)
    return word


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_rule_keys_are_the_matrix_keys_on_random_circuits(n: int) -> None:
    gates = ONE_QUBIT + ("," + TWO_QUBIT if n > 1 else "")
    gs = _gateset(gates, n)
    rules = TableauRules(gs.move_matrices)
    # both kinds of rule are exercised: bit rules (h, s, cx...) and the general action (sx, iswap, ecr...)
    assert "general" in rules.names and any(name.startswith("h ") for name in rules.names)
    if n > 1:
        assert any(name.startswith("cx ") for name in rules.names)
    m = len(gs.moves)
    rng = np.random.default_rng(n)
    seqs = rng.integers(0, m + 1, size=(400, 30))  # m: identity padding
    u = ProductTable(gs.move_matrices, np.complex128).unitaries(seqs)
    assert np.array_equal(rules.keys(rules.circuits(seqs)), tableau_keys(u))
    # one move at a time (enumeration's children), every move on every parent
    parents = rules.circuits(seqs[:50])
    allowed = rng.random((50, m)) < 0.7
    children = rules.keys(rules.extend(parents, allowed))
    p, k = np.nonzero(allowed)
    assert np.array_equal(children, tableau_keys(gs.move_matrices[k] @ u[:50][p]))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_rule_tableaux_agree_with_stim(n: int) -> None:
    gates = ONE_QUBIT + ("," + TWO_QUBIT if n > 1 else "")
    gs = _gateset(gates, n)
    rules = TableauRules(gs.move_matrices)
    moves = [stim.Tableau.from_unitary_matrix(mm, endian="little") for mm in gs.move_matrices]
    rng = np.random.default_rng(10 + n)
    seqs = rng.integers(0, len(moves), size=(200, 25))
    ours = rules.circuits(seqs)[:, 0].tolist()
    for row, word in zip(seqs, ours, strict=True):
        t = stim.Tableau(n)
        for code in row:
            t = t.then(moves[code])  # the circuit's moves in order: U = M[s_last] ... M[s_0]
        assert _words(t) == word


def test_rules_are_used_exactly_where_only_tableau_keys_are_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"gates": "h,s,cx", "qubits": 2, "max_length": 3}
    assert TaskContext(unitarium.make_spec(**base, unique=True, unitaries="computed", keys="exact")).rules
    assert TaskContext(unitarium.make_spec(**base, unique=True, unitaries="stored", keys="exact")).rules is None
    assert TaskContext(unitarium.make_spec(**base, unique=True, unitaries="computed")).rules is None  # grid keys
    assert TaskContext(unitarium.make_spec(**base, unitaries="computed")).rules is None  # not unique
    t_gates = {**base, "gates": "h,t,cx"}
    assert TaskContext(unitarium.make_spec(**t_gates, unique=True, unitaries="computed", keys="auto")).rules is None
    monkeypatch.setenv(TABLEAU_RULES_ENV, "0")
    assert TaskContext(unitarium.make_spec(**base, unique=True, unitaries="computed", keys="exact")).rules is None


SAME_SPECS = {
    "3q h,s,cx L5": ({"gates": "h,s,cx", "qubits": 3, "max_length": 5}, "dir/", 2),
    "2q every clifford L5": ({"gates": "h,s,sdg,sx,cx,cz,swap,iswap", "qubits": 2, "max_length": 5}, "e.db", 2),
    "2q random": ({"gates": "h,s,cx", "qubits": 2, "count": 3000, "length": "1:12", "seed": 5}, "r.db", 2),
    "1q cost": ({"gates": "h,s,x", "qubits": 1, "max_length": 8, "cost": "h=1,s=1"}, "c/", 1),
}


@pytest.mark.parametrize("name", list(SAME_SPECS))
def test_datasets_are_the_same_with_the_rules_and_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    args, where, workers = SAME_SPECS[name]
    spec = unitarium.make_spec(**args, unique=True, unitaries="computed", keys="exact")
    assert spec.keys == "tableau" and TaskContext(spec).rules is not None
    fast = tmp_path / "fast" / where
    unitarium.generate(fast, spec, workers=workers)
    monkeypatch.setenv(TABLEAU_RULES_ENV, "0")  # inherited by the worker processes
    slow = tmp_path / "slow" / where
    unitarium.generate(slow, spec, workers=workers)
    assert dataset_digest(fast) == dataset_digest(slow)
    with unitarium.open(fast) as ds:
        assert len(ds) > 10


def test_cli_run_with_the_rules_matches_one_without(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--max-length", "6", "--unique"]
    args += ["--unitaries", "computed", "--keys", "exact", "-q"]
    cli("generate", tmp_path / "fast/", *args)
    monkeypatch.setenv(TABLEAU_RULES_ENV, "0")
    cli("generate", tmp_path / "slow/", *args)
    assert dataset_digest(tmp_path / "fast") == dataset_digest(tmp_path / "slow")
    with unitarium.open(tmp_path / "fast") as ds:
        assert len(ds) > 1000


def _stim_levels(gates: list[stim.Tableau], n: int, depth: int) -> list[set[int]]:
    """Breadth-first search on stim tableaux: the distinct Cliffords first reached at each length."""
    start = stim.Tableau(n)
    levels = [{_words(start)}]
    seen = set(levels[0])
    frontier = [start]
    for _ in range(depth):
        nxt, found = [], set()
        for t in frontier:
            for g in gates:
                c = t.then(g)
                w = _words(c)
                if w not in seen:
                    seen.add(w)
                    found.add(w)
                    nxt.append(c)
        levels.append(found)
        frontier = nxt
    return levels


def test_three_qubit_clifford_levels_agree_with_a_stim_breadth_first_search(tmp_path: Path) -> None:
    depth = 5
    spec = unitarium.make_spec(
        gates="h,s,cx", qubits=3, max_length=depth, unique=True, unitaries="computed", keys="exact"
    )
    unitarium.generate(tmp_path / "c/", spec, workers=1)
    gs = spec.gateset
    levels = _stim_levels([stim.Tableau.from_unitary_matrix(m, endian="little") for m in gs.move_matrices], 3, depth)
    rules = TableauRules(gs.move_matrices)
    with unitarium.open(tmp_path / "c") as ds:
        lengths = ds.lengths()
        assert np.bincount(lengths).tolist() == [len(level) for level in levels]
        codes, _ = ds.codes(0, len(ds))
        seqs = np.full((len(ds), depth), len(gs.moves), dtype=np.int64)
        seqs[np.arange(depth)[None, :] < lengths[:, None]] = codes
        words = rules.circuits(seqs)[:, 0]
        for length, level in enumerate(levels):
            assert set(words[lengths == length].tolist()) == level


def test_rule_keys_beyond_128_bits_are_the_matrix_keys() -> None:
    """From 6 qubits a tableau (156 bits) is hashed with BLAKE2b, and its rows span several words."""
    gs = _gateset("h,s,sx,cx,iswap", 6)
    rules = TableauRules(gs.move_matrices)
    assert rules.words > 1
    seqs = np.random.default_rng(6).integers(0, len(gs.moves) + 1, size=(60, 20))
    u = ProductTable(gs.move_matrices, np.complex128).unitaries(seqs)
    assert np.array_equal(rules.keys(rules.circuits(seqs)), tableau_keys(u))
