"""Exact keys (issue 19, items 1 and 5): tableaux for Clifford gate sets against ``stim``'s, exact channel
forms for Clifford+T gate sets against exact arithmetic over Z[omega] written here (Python integers and
fractions), and unique runs, resumes, lookups, synthesis and the CLI with them.

Not here: two *distinct* ring unitaries closer than the grid's tolerance kept apart by exact keys. Within
the exponents floats determine (k <= CHANNEL_K) distinct ring unitaries lie about 2e-6 apart at least,
entrywise between representatives in Z[omega] / sqrt2^m (:mod:`unitarium._core.exact`, "What floats can
and cannot separate"); closer pairs need deeper exponents, which get grid keys. What is tested instead:
exact keys are equal exactly when the exact forms are (against exact arithmetic, up to k = CHANNEL_K), and
make the same decisions as grid keys where both apply."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import unitarium
from unitarium._core.canonical import DEDUP
from unitarium._core.exact import (
    CHANNEL_K,
    NotExact,
    channel_form,
    channel_keys,
    dedup_keys,
    is_clifford,
    is_clifford_t,
    lookup_probes,
    tableau,
    tableau_keys,
)
from unitarium._core.kernels import ProductTable

from conftest import cli, content, one_error_line

stim = pytest.importorskip("stim", reason="the test extra installs stim (the independent tableau oracle)")


def _phase(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.exp(2j * np.pi * rng.random(n))[:, None, None]


def _stim_tableau(u: np.ndarray) -> tuple[list[int], list[int], list[bool]]:
    """x, z masks and signs per generator (X_0..X_{n-1}, Z_0..Z_{n-1}) from stim, qubit q = bit q."""
    t = stim.Tableau.from_unitary_matrix(u, endian="little")
    n = len(t)
    xs, zs, ss = [], [], []
    for p in [t.x_output(q) for q in range(n)] + [t.z_output(q) for q in range(n)]:
        x, z = p.to_numpy()
        xs.append(sum(int(b) << j for j, b in enumerate(x)))
        zs.append(sum(int(b) << j for j, b in enumerate(z)))
        ss.append(p.sign == -1)
    return xs, zs, ss


# -- tableaux ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_tableau_agrees_with_stim_on_random_cliffords_with_random_phases(n: int) -> None:
    rng = np.random.default_rng(n)
    u = np.array([stim.Tableau.random(n).to_unitary_matrix(endian="little") for _ in range(60)])
    u = u * _phase(rng, len(u))
    for full in (False, True):
        x, z, s = tableau(u, full=full)
        for k in range(len(u)):
            assert (x[k].tolist(), z[k].tolist(), s[k].tolist()) == _stim_tableau(u[k])


def test_tableau_of_generated_products_agrees_with_stim() -> None:
    """Products as unique mode forms them (the product table, complex128) over every h,s,cx move."""
    gs = unitarium.make_spec(gates="h,s,sdg,cx,cz,swap", qubits=3, count=1, length=1).gateset
    rng = np.random.default_rng(7)
    u = ProductTable(gs.move_matrices, np.complex128).unitaries(rng.integers(0, len(gs.moves), size=(300, 40)))
    x, z, s = tableau(u)
    for k in range(len(u)):
        assert (x[k].tolist(), z[k].tolist(), s[k].tolist()) == _stim_tableau(u[k])


@pytest.mark.parametrize("n", [2, 3, 5, 6])
def test_tableau_keys_are_phase_free_and_equal_exactly_when_tableaux_are(n: int) -> None:
    """Up to 5 qubits the key is a bijection of the tableau bits; from 6 it is a 128-bit hash."""
    rng = np.random.default_rng(n)
    tabs = [stim.Tableau.random(n) for _ in range(40)]
    tabs += tabs[:10]  # repeats
    u = np.array([t.to_unitary_matrix(endian="little") for t in tabs])
    keys = tableau_keys(u)
    assert np.array_equal(keys, tableau_keys(u * _phase(rng, len(u))))
    by_key = {tuple(k) for k in keys.tolist()}
    assert len(by_key) == len({str(t) for t in tabs}) > 30
    assert keys.dtype == np.int64 and keys.shape == (50, 2)


def test_non_cliffords_are_refused_not_rounded() -> None:
    t = np.diag([1, np.exp(1j * np.pi / 4)])
    with pytest.raises(NotExact):
        tableau(t[None])
    near = np.array(stim.Tableau.random(2).to_unitary_matrix(endian="little"))
    herm = np.random.default_rng(5).normal(size=(4, 4))
    w, v = np.linalg.eigh(herm + herm.T)
    with pytest.raises(NotExact):  # a Clifford times a rotation of angle ~1e-4: off the lattice
        tableau((near @ v @ np.diag(np.exp(1e-4j * w)) @ v.T)[None])
    ccz = np.diag([1, 1, 1, 1, 1, 1, 1, -1]).astype(complex)
    assert not is_clifford(ccz[None])  # the full check sees every row
    assert not is_clifford(t[None]) and is_clifford_t(t[None])
    gates = {g: unitarium.parse_gate(g).matrix[None] for g in ("h", "s", "sdg", "sx", "cx", "cz", "swap", "x", "y")}
    assert all(is_clifford(m) for m in gates.values())
    assert not is_clifford_t(unitarium.parse_gate("rz(0.3)").matrix[None])
    assert is_clifford_t(unitarium.parse_gate("ccx").matrix[None]) and not is_clifford(
        unitarium.parse_gate("ccx").matrix[None]
    )


# -- exact arithmetic over Z[omega], omega = e^{i pi/4}: the oracle for channel forms ----------------

# An element is (c0, c1, c2, c3, m): (c0 + c1 w + c2 w^2 + c3 w^3) / sqrt2^m, with w^4 = -1.

ZERO = (0, 0, 0, 0, 0)


def _mul(a: tuple, b: tuple) -> tuple:
    out = [0, 0, 0, 0]
    for i in range(4):
        for j in range(4):
            sign = -1 if i + j >= 4 else 1
            out[(i + j) % 4] += sign * a[i] * b[j]
    return (*out, a[4] + b[4])


def _add(a: tuple, b: tuple) -> tuple:
    m = max(a[4], b[4])
    a, b = _lift(a, m), _lift(b, m)
    return (*(x + y for x, y in zip(a[:4], b[:4], strict=True)), m)


def _lift(a: tuple, m: int) -> tuple:
    """The same element over sqrt2^m (m >= a's): multiply the numerator by sqrt2 = w - w^3."""
    while a[4] < m:
        c0, c1, c2, c3, k = a
        # (c0 + c1 w + c2 w^2 + c3 w^3)(w - w^3) with w^4 = -1, w^5 = -w, w^6 = -w^2
        a = (c1 - c3, c0 + c2, c1 + c3, c2 - c0, k + 1)
    return a


def _conj(a: tuple) -> tuple:
    c0, c1, c2, c3, m = a  # conj(w) = w^7 = -w^3, conj(w^2) = -w^2, conj(w^3) = -w
    return (c0, -c3, -c2, -c1, m)


def _re_im(a: tuple) -> tuple[tuple[Fraction, Fraction], tuple[Fraction, Fraction]]:
    """Real and imaginary parts as (p, q): p + q sqrt2 with rational p, q."""
    c0, c1, c2, c3, m = a
    # w = (1 + i)/sqrt2: re = c0 + (c1 - c3)/sqrt2, im = c2 + (c1 + c3)/sqrt2; 1/sqrt2 = sqrt2/2
    re = (Fraction(c0), Fraction(c1 - c3, 2))
    im = (Fraction(c2), Fraction(c1 + c3, 2))
    out = []
    for p, q in (re, im):
        for _ in range(m):  # divide by sqrt2: (p + q sqrt2)/sqrt2 = q + (p/2) sqrt2
            p, q = q, p / 2
        out.append((p, q))
    return out[0], out[1]


def _exact_gate(matrix: np.ndarray) -> list[list[tuple]]:
    """A standard gate's matrix read exactly: each entry one of 0, w^j, w^j/sqrt2 (checked)."""
    table = {}
    for j in range(8):
        sign = -1 if j >= 4 else 1
        e = [0, 0, 0, 0]
        e[j % 4] = sign
        table[(j, 0)] = (*e, 0)
        table[(j, 1)] = (*e, 1)
    out = []
    for row in matrix:
        cells = []
        for v in row:
            if abs(v) < 1e-12:
                cells.append(ZERO)
                continue
            j = round(np.angle(v) / (np.pi / 4)) % 8
            m = 0 if abs(abs(v) - 1) < 1e-12 else 1
            assert abs(v - np.exp(1j * np.pi / 4 * j) / np.sqrt(2) ** m) < 1e-12
            cells.append(table[(j, m)])
        out.append(cells)
    return out


def _exact_product(mats: list[list[list[tuple]]]) -> list[list[tuple]]:
    d = len(mats[0])
    acc = [[(1, 0, 0, 0, 0) if i == j else ZERO for j in range(d)] for i in range(d)]
    for m in mats:  # the circuit's first move is applied first: U = M_L ... M_1
        new = []
        for i in range(d):
            row = []
            for j in range(d):
                s = ZERO
                for k in range(d):
                    s = _add(s, _mul(m[i][k], acc[k][j]))
                row.append(s)
            new.append(row)
        acc = new
    return acc


def _exact_channel_form(u: list[list[tuple]]) -> tuple[int, int, list[int], list[int]]:
    """(ref, k, a, b) of w = U conj(u_ref) by exact arithmetic, k the smallest common exponent."""
    flat = [e for row in u for e in row]
    ref = next(i for i, e in enumerate(flat) if any(e[:4]))
    w = [_mul(e, _conj(flat[ref])) for e in flat]
    parts = [_re_im(e) for e in w]
    values = [p[0] for p in parts] + [p[1] for p in parts]  # real parts, then imaginary parts
    k = 0
    while any((p * 2**k).denominator != 1 or (q * 2**k).denominator != 1 for p, q in values):
        k += 1
    a = [int(p * 2**k) for p, _ in values]
    b = [int(q * 2**k) for _, q in values]
    return ref, k, a, b


def _to_complex(u: list[list[tuple]]) -> np.ndarray:
    w = np.exp(1j * np.pi / 4)
    return np.array([[(e[0] + e[1] * w + e[2] * w**2 + e[3] * w**3) / np.sqrt(2) ** e[4] for e in row] for row in u])


def test_the_oracle_agrees_with_floats() -> None:
    h = _exact_gate(unitarium.parse_gate("h").matrix)
    t = _exact_gate(unitarium.parse_gate("t").matrix)
    u = _exact_product([h, t, h, t, t, h])
    assert np.allclose(
        _to_complex(u),
        (H := unitarium.parse_gate("h").matrix) @ np.diag([1, 1j]) @ H @ np.diag([1, np.exp(1j * np.pi / 4)]) @ H,
    )


@pytest.mark.parametrize("gates", ["h,t,tdg,cx", "h,s,t,cx,cz"])
def test_channel_form_agrees_with_exact_arithmetic(gates: str) -> None:
    gs = unitarium.make_spec(gates=gates, qubits=2, count=1, length=1).gateset
    exact_moves = [_exact_gate(m) for m in gs.move_matrices]
    rng = np.random.default_rng(len(gates))
    seqs = rng.integers(0, len(gs.moves), size=(120, 24))
    seqs[:40, 8:] = len(gs.moves)  # shorter circuits too (padding)
    u = ProductTable(gs.move_matrices, np.complex128).unitaries(seqs) * _phase(rng, len(seqs))
    ref, k, a, b, good = channel_form(u)
    assert good.all()
    for r in range(len(seqs)):
        want = _exact_channel_form(_exact_product([exact_moves[c] for c in seqs[r] if c < len(gs.moves)]))
        assert (int(ref[r]), int(k[r]), a[r].tolist(), b[r].tolist()) == want


def test_channel_form_agrees_with_exact_arithmetic_up_to_the_deepest_exponent() -> None:
    """h followed by t or tdg, 20 to 40 times: exponents up to CHANNEL_K read exactly, deeper ones refused."""
    gs = unitarium.make_spec(gates="h,t,tdg", qubits=1, count=1, length=1).gateset
    exact_moves = [_exact_gate(m) for m in gs.move_matrices]
    rng = np.random.default_rng(12)
    for m in range(20, 41, 2):
        seq = np.stack([np.zeros(m, int), rng.integers(1, 3, size=m)], axis=1).reshape(-1)
        u = ProductTable(gs.move_matrices, np.complex128).unitaries(seq[None])
        ref, k, a, b, good = channel_form(u)
        want = _exact_channel_form(_exact_product([exact_moves[c] for c in seq]))
        assert bool(good[0]) == (want[1] <= CHANNEL_K)
        if good[0]:
            assert (int(ref[0]), int(k[0]), a[0].tolist(), b[0].tolist()) == want


def test_channel_keys_are_phase_free_and_equal_exactly_when_forms_are() -> None:
    gs = unitarium.make_spec(gates="h,t,cx", qubits=2, count=1, length=1).gateset
    rng = np.random.default_rng(3)
    seqs = rng.integers(0, len(gs.moves), size=(3000, 7))
    u = ProductTable(gs.move_matrices, np.complex128).unitaries(seqs)
    keys, good = channel_keys(u)
    assert good.all()
    assert np.array_equal(keys, channel_keys(u * _phase(rng, len(u)))[0])
    ref, k, a, b, _ = channel_form(u)
    forms = [(int(ref[r]), int(k[r]), tuple(a[r]), tuple(b[r])) for r in range(len(u))]
    pairs = {(f, tuple(key)) for f, key in zip(forms, keys.tolist(), strict=True)}
    assert len(pairs) == len(set(forms)) == len({tuple(key) for key in keys.tolist()})
    assert 100 < len(set(forms)) < len(forms)  # distinct unitaries, and repeats


def test_non_ring_unitaries_have_no_exact_channel_form() -> None:
    rz = unitarium.parse_gate("rz(0.3)").matrix
    q, _ = np.linalg.qr(
        np.random.default_rng(1).normal(size=(2, 2)) + 1j * np.random.default_rng(2).normal(size=(2, 2))
    )
    _, _, _, _, good = channel_form(np.array([rz, q]))
    assert not good.any()


def test_deep_ring_unitaries_fall_back_to_grid_keys_consistently() -> None:
    """A ring unitary whose channel needs an exponent above CHANNEL_K gets grid keys (with alternates),
    every time it is computed: whether a unitary has an exact key depends on it alone."""
    gs = unitarium.make_spec(gates="h,t,tdg", qubits=1, count=1, length=1).gateset
    rng = np.random.default_rng(11)
    seqs = np.full((400, 90), 3)  # h, then t or tdg, 20 to 45 times: the exponent grows about half as fast
    for r, m in enumerate(rng.integers(20, 46, size=400)):
        seqs[r, : 2 * m] = np.stack([np.zeros(m, int), rng.integers(1, 3, size=m)], axis=1).reshape(-1)
    u = ProductTable(gs.move_matrices, np.complex128).unitaries(seqs)
    _, k, _, _, good = channel_form(u)
    assert (~good).any() and good.any() and k[good].max() <= CHANNEL_K
    keys, alternates, _ = dedup_keys("channel", u)
    grid, _ = DEDUP.wide_keys(u[~good])
    assert np.array_equal(keys[~good], grid)
    assert set(alternates) <= set(np.flatnonzero(~good).tolist())
    keys2, _, _ = dedup_keys("channel", u * _phase(rng, len(u)))
    assert np.array_equal(keys[good], keys2[good])


# -- unique runs --------------------------------------------------------------------------------


def _lengths(path: Path) -> dict[str, int]:
    with unitarium.open(path) as ds:
        return dict(ds.summary["lengths"])


@pytest.mark.parametrize(
    ("gates", "qubits", "max_length", "scheme"),
    [
        ("h,s,cx", 2, 7, "tableau"),
        ("h,s,cx", 3, 4, "tableau"),
        ("h,t,tdg,cx", 2, 5, "channel"),
        ("h,t", 1, 14, "channel"),
    ],
)
def test_exact_keys_keep_and_drop_what_grid_keys_do(
    tmp_path: Path, gates: str, qubits: int, max_length: int, scheme: str
) -> None:
    runs = {}
    for keys in ("exact", "grid"):
        spec = unitarium.make_spec(gates=gates, qubits=qubits, max_length=max_length, unique=True, keys=keys)
        assert spec.keys == (scheme if keys == "exact" else "grid")
        runs[keys] = tmp_path / f"{keys}.db"
        unitarium.generate(runs[keys], spec, workers=1)
    assert content(runs["exact"]) == content(runs["grid"])
    assert _lengths(runs["exact"]) == _lengths(runs["grid"])


def test_the_two_qubit_clifford_group_has_11520_elements_up_to_phase(tmp_path: Path) -> None:
    path = tmp_path / "cliff2/"
    spec = unitarium.make_spec(gates="h,s,cx", qubits=2, max_length=13, unique=True, keys="auto")
    assert spec.keys == "tableau"
    unitarium.generate(path, spec, workers=2)
    with unitarium.open(path) as ds:
        assert len(ds) == 11_520
        assert max(int(k) for k in ds.summary["lengths"]) == 11  # nothing new at lengths 12 and 13
        u = ds.unitaries(0, len(ds)).astype(np.complex128)
    assert len({tuple(k) for k in tableau_keys(u, eps=1e-4).tolist()}) == 11_520


def test_a_grid_key_dataset_resumes_with_grid_keys(tmp_path: Path) -> None:
    """A dataset whose stored spec has no "keys" (every dataset made before exact keys) resumes with grid keys
    when the same command runs again with the default --keys auto, to the same content."""
    args = dict(gates="h,s,cx", qubits=2, count=6000, length="1:9", seed=5, unique=True)
    reference, partial = tmp_path / "reference.db", tmp_path / "partial.db"
    unitarium.generate(reference, unitarium.make_spec(**args, keys="grid"), workers=1)
    seen: list[unitarium.Progress] = []

    def explode(p: unitarium.Progress) -> None:
        seen.append(p)
        if len(seen) == 2:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        unitarium.generate(partial, unitarium.make_spec(**args, keys="grid"), workers=1, progress=explode)
    with unitarium.open(partial) as ds:
        assert "keys" not in ds.meta["spec"] and ds.spec.keys == "grid" and not ds.complete
    auto = unitarium.make_spec(**args, keys="auto")
    assert auto.keys == "tableau"
    unitarium.generate(partial, auto, workers=2)
    with unitarium.open(partial) as ds:
        assert ds.complete and "keys" not in ds.meta["spec"]
        stored = ds.dedup_keys()
    assert content(partial) == content(reference)
    assert np.array_equal(stored, unitarium.open(reference).dedup_keys())  # grid keys, as made
    with pytest.raises(unitarium.SpecMismatchError, match="keys"):  # asked for explicitly: refused
        unitarium.generate(partial, unitarium.make_spec(**args, keys="exact"), workers=1)


def test_an_exact_key_dataset_resumes_with_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    spec = unitarium.make_spec(gates="h,t,cx", qubits=2, count=3000, length="1:8", unique=True, keys="auto")
    unitarium.generate(path, spec, workers=1)
    with unitarium.open(path) as ds:
        assert ds.meta["spec"]["keys"] == "channel" and ds.spec.keys == "channel"
    summary = unitarium.generate(
        path, unitarium.make_spec(gates="h,t,cx", qubits=2, count=3000, length="1:8", unique=True, keys="auto")
    )
    assert summary.new_records == 0
    with pytest.raises(unitarium.SpecMismatchError, match="keys"):
        unitarium.generate(
            path, unitarium.make_spec(gates="h,t,cx", qubits=2, count=3000, length="1:8", unique=True, keys="grid")
        )


def test_keys_enter_the_spec_only_when_exact() -> None:
    """(``grid`` is the default while exact keys cost more per candidate; ``auto`` chooses them.)"""
    plain = unitarium.make_spec(gates="h,s,cx", qubits=2, count=10, length=3)
    assert plain.keys == "grid" and "keys" not in plain.to_json()
    assert (
        unitarium.make_spec(gates="h,rz(0.1),cx", qubits=2, count=10, length=3, unique=True, keys="auto").keys == "grid"
    )
    assert (
        unitarium.make_spec(gates="h,s,ccx", qubits=3, count=10, length=3, unique=True, keys="auto").keys == "channel"
    )
    spec = unitarium.make_spec(gates="sx,cz", qubits=2, count=10, length=3, unique=True, keys="auto")
    assert spec.to_json()["keys"] == "tableau"
    assert unitarium.Spec.from_json(json.loads(spec.canonical_json())).keys == "tableau"
    with pytest.raises(unitarium.SpecError, match="no exact key"):
        unitarium.make_spec(gates="h,rz(0.1)", qubits=1, count=10, length=3, unique=True, keys="exact")
    with pytest.raises(unitarium.SpecError, match="goes with --unique"):
        unitarium.make_spec(gates="h,s", qubits=1, count=10, length=3, keys="exact")


# -- lookup -------------------------------------------------------------------------------------


def test_lookup_on_a_tableau_dataset_finds_members_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    unitarium.generate(
        path, unitarium.make_spec(gates="h,s,cx", qubits=2, max_length=6, unique=True, keys="auto"), workers=1
    )
    with unitarium.open(path) as ds:
        assert ds.spec.keys == "tableau"
        for i in (0, 5, 100, len(ds) - 1):
            rec = ds[i]
            assert [r.id for r in ds.lookup(rec.unitary * np.exp(0.7j))] == [i]
            assert [r.id for r in ds.lookup(rec.circuit.to_qiskit())] == [i]
        t_gate = unitarium.parse_gate("t").matrix
        query = np.kron(np.eye(2), t_gate) @ ds[5].unitary
        assert lookup_probes("tableau", query) == [] and ds.lookup(query, atol=0.5) == []
        assert ds.verify(sample=200).ok


def test_lookup_on_a_channel_dataset(tmp_path: Path) -> None:
    path = tmp_path / "ct.db"
    unitarium.generate(
        path, unitarium.make_spec(gates="h,t,cx", qubits=2, max_length=4, unique=True, keys="auto"), workers=1
    )
    with unitarium.open(path) as ds:
        assert ds.spec.keys == "channel"
        for i in (0, 7, len(ds) - 1):
            assert [r.id for r in ds.lookup(ds[i].unitary)] == [i]
        assert ds.lookup(np.kron(np.eye(2), unitarium.parse_gate("rz(0.3)").matrix)) == []
        assert ds.verify(sample=100).ok


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_keys_option(tmp_path: Path) -> None:
    base = ["--qubits", "2", "--count", "500", "--length", "1:6", "--unique", "--quiet"]
    cli("generate", tmp_path / "a.db", "--gates", "h,s,cx", *base, "--keys", "exact")
    cli("generate", tmp_path / "b.db", "--gates", "h,s,cx", *base, "--keys", "grid")
    assert unitarium.open(tmp_path / "a.db").spec.keys == "tableau"
    assert unitarium.open(tmp_path / "b.db").spec.keys == "grid"
    assert content(tmp_path / "a.db") == content(tmp_path / "b.db")
    bad = cli("generate", tmp_path / "c.db", "--gates", "h,rz(0.2),cx", *base, "--keys", "exact", check=False)
    assert bad.returncode == 2
    assert one_error_line(bad.stderr).startswith("unitarium: error: --keys exact: the gates h,rz(0.2),cx are not")
    assert not (tmp_path / "c.db").exists()
    bad = cli(
        "generate",
        tmp_path / "d.db",
        "--gates",
        "h,s",
        "--qubits",
        "1",
        "--count",
        "5",
        "--length",
        "2",
        "--keys",
        "exact",
        check=False,
    )
    assert bad.returncode == 2 and "goes with --unique" in one_error_line(bad.stderr)


# -- synthesis ----------------------------------------------------------------------------------


def test_synthesis_on_a_tableau_dataset_matches_the_grid_dataset_and_stim(tmp_path: Path) -> None:
    """Meet in the middle over a tableau-key dataset: every 2-qubit Clifford (length <= 11 <= 2 * 6) gets a
    shortest circuit, the same one as over the grid-key dataset; a non-Clifford gets none."""
    paths = {}
    for keys in ("exact", "grid"):
        paths[keys] = tmp_path / f"{keys}.db"
        spec = unitarium.make_spec(gates="h,s,cx", qubits=2, max_length=6, unique=True, keys=keys)
        unitarium.generate(paths[keys], spec, workers=1)
    rng = np.random.default_rng(4)
    targets = np.array([stim.Tableau.random(2).to_unitary_matrix(endian="little") for _ in range(25)])
    targets = targets * _phase(rng, len(targets))
    t_gate = unitarium.parse_gate("t").matrix
    targets = np.concatenate([targets, (np.kron(np.eye(2), t_gate) @ targets[0])[None]])
    found = {}
    for keys, path in paths.items():
        with unitarium.open(path) as ds:
            found[keys] = ds.synthesize_many(targets)
    assert [c is None for c in found["exact"]] == [False] * 25 + [True]
    for c, u in zip(found["exact"][:25], targets[:25], strict=True):
        assert c is not None
        assert _stim_tableau(c.unitary()) == _stim_tableau(u)
    assert [None if c is None else c.codes.tolist() for c in found["exact"]] == [
        None if c is None else c.codes.tolist() for c in found["grid"]
    ]


def test_custom_gates_are_judged_by_their_matrices(tmp_path: Path) -> None:
    """A custom gate named anything is Clifford, Clifford+T or neither by its matrix (with a phase)."""
    h, s_, t = (unitarium.parse_gate(g).matrix for g in ("h", "s", "t"))
    phase = np.exp(0.3j)
    gates = {"hs": phase * h @ s_, "ht": phase * h @ t, "odd": unitarium.parse_gate("ry(0.2)").matrix}
    body = {"gates": {k: {"matrix": [[[v.real, v.imag] for v in row] for row in m]} for k, m in gates.items()}}
    path = tmp_path / "gates.json"
    path.write_text(json.dumps(body))

    def scheme(names: str) -> str:
        spec = unitarium.make_spec(gates=names, qubits=2, count=10, length=3, unique=True, gate_file=path, keys="auto")
        return spec.keys

    assert (scheme("hs,cx"), scheme("hs,ht,cx"), scheme("hs,odd")) == ("tableau", "channel", "grid")
    runs = {}
    for keys in ("exact", "grid"):
        runs[keys] = tmp_path / f"{keys}.db"
        spec = unitarium.make_spec(gates="hs,ht,cx", qubits=2, max_length=4, unique=True, gate_file=path, keys=keys)
        unitarium.generate(runs[keys], spec, workers=1)
    assert content(runs["exact"]) == content(runs["grid"])
