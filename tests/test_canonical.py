"""Canonical phase, grid keys with alternates, and the numpy key set."""

from __future__ import annotations

import itertools
from itertools import combinations

import numpy as np
import pytest
from qiskit.quantum_info import random_unitary

from unitarium._core import keykernels, keyset
from unitarium._core.canonical import DEDUP, LOOKUP, KeyScheme, canonical_phase, equal_up_to_phase, grid_keys
from unitarium._core.keyset import MAX_LOAD, KeySet, first_occurrences, first_sorted, keep_mask


def haar(n: int, d: int, seed: int) -> np.ndarray:
    return np.array([random_unitary(d, seed=seed * 1000 + i).data for i in range(n)])


def phases(n: int, seed: int) -> np.ndarray:
    return np.exp(2j * np.pi * np.random.default_rng(seed).random(n))[:, None, None]


@pytest.mark.parametrize("d", [2, 4, 8])
def test_canonical_phase_removes_global_phase(d: int):
    u = haar(50, d, d)
    v = canonical_phase(u)
    w = canonical_phase(u * phases(50, d))
    assert np.abs(v - w).max() < 1e-12
    assert np.allclose(canonical_phase(v), v, atol=1e-13)  # idempotent


def test_canonical_phase_is_blind_to_negative_zero():
    u = np.eye(4, dtype=np.complex128)[None]
    flipped = u.copy()
    flipped[0, 0, 1] = complex(-0.0, -0.0)
    assert DEDUP.primary(u)[0] == DEDUP.primary(flipped)[0]
    assert LOOKUP.primary(u)[0] == LOOKUP.primary(flipped)[0]


@pytest.mark.parametrize("scheme", [DEDUP, LOOKUP], ids=lambda s: s.name)
def test_phase_and_noise_never_hide_a_duplicate(scheme: KeyScheme):
    """Two noisy copies of one unitary: one's primary is among the other's probes."""
    rng = np.random.default_rng(0)
    u = haar(400, 4, 1)
    noise = 1e-13 if scheme is DEDUP else 1e-6
    a = u * phases(400, 2)
    b = u * phases(400, 3) + noise * (rng.normal(size=u.shape) + 1j * rng.normal(size=u.shape))
    pa, alt_a = scheme.keys(a)
    pb, alt_b = scheme.keys(b)
    for i in range(len(u)):
        assert pa[i] == pb[i] or pa[i] in alt_b.get(i, []), i
        assert pb[i] == pa[i] or pb[i] in alt_a.get(i, []), i


@pytest.mark.parametrize("boundary", [0.5, -0.5, 1234.5, -77.5])
def test_coordinates_straddling_a_cell_boundary_know_each_other(boundary: float):
    scheme = DEDUP
    eps = 1e-3 * scheme.eta / scheme.delta  # noise far below eta, in grid units
    rng = np.random.default_rng(int(boundary * 2) % 1000)
    base = rng.normal(size=(1, scheme.dims)) * 1000
    base = np.floor(base) + 0.25  # every coordinate well inside its cell
    below, above = base.copy(), base.copy()
    below[0, 3] = boundary - eps
    above[0, 3] = boundary + eps
    (p0, alt0), (p1, alt1) = (scheme.keys_of_cells(*scheme.grid(y), 4) for y in (below, above))
    assert p0[0] != p1[0]  # the two copies fall in different cells...
    assert alt0 == {0: [int(p1[0])]} and alt1 == {0: [int(p0[0])]}  # ...and each knows the other's
    inside, _ = scheme.keys_of_cells(*scheme.grid(base), 4)
    assert scheme.keys_of_cells(*scheme.grid(base), 4)[1] == {}  # nothing near: no alternates
    two = below.copy()
    two[0, 5] = 0.5 + eps
    _, alts = scheme.keys_of_cells(*scheme.grid(two), 4)
    assert len(alts[0]) == 3  # two near coordinates: three alternates
    assert inside[0] not in alts[0]


def test_distinct_unitaries_get_distinct_keys():
    u = haar(2000, 4, 5)
    assert len(set(DEDUP.primary(u).tolist())) == 2000
    # Unitaries 1e-4 apart (far above complex128 noise) stay apart.
    close = u * np.exp(1e-4j * np.arange(4))[None, None, :]
    assert not set(DEDUP.primary(close).tolist()) & set(DEDUP.primary(u).tolist())


def test_equal_up_to_phase():
    u = haar(1, 8, 9)[0]
    assert equal_up_to_phase(u, -1j * u)
    assert not equal_up_to_phase(u, haar(1, 8, 10)[0])
    assert not equal_up_to_phase(u, u[:4, :4])
    assert equal_up_to_phase(u, u + 1e-7, atol=1e-6)
    assert not equal_up_to_phase(u, u + 1e-3, atol=1e-6)


def test_keyset_membership_and_merging():
    rng = np.random.default_rng(3)
    keys = KeySet()
    seen: set[tuple[int, int]] = set()

    def pairs(n: int) -> np.ndarray:
        return rng.integers(-(2**63), 2**63 - 1, size=(n, 2), dtype=np.int64)

    for _ in range(40):
        batch = pairs(int(rng.integers(1, 500)))
        old = np.array(sorted(seen) or [(0, 0)], dtype=np.int64)
        batch = np.concatenate([batch, old[rng.integers(0, len(old), 20)]])
        new = np.unique(batch[~keys.contains(batch)], axis=0)
        keys.add(new)
        seen.update(map(tuple, new.tolist()))
        probe = np.concatenate([batch, pairs(50)])
        assert keys.contains(probe).tolist() == [tuple(k) in seen for k in probe.tolist()]
    assert len(keys) == len(seen)
    # a slot is 16 bytes (and a count byte per bucket of 8); the table grown to a load of at least a half
    assert 16 * len(seen) / MAX_LOAD <= keys.nbytes <= 16.125 * 2 * len(seen)
    hi, lo = keys.drain()
    assert len(keys) == 0 and sorted(zip(hi.tolist(), lo.tolist(), strict=True)) == sorted(seen)


@pytest.mark.parametrize("one_by_one", ["as set", "never", "always", "compiled", "compiled and not"])
@pytest.mark.parametrize("where", ["last buckets", "one bucket", "spread"])
def test_keyset_chains_of_full_buckets_and_the_wrap_around(where: str, one_by_one: str, monkeypatch):
    """Keys crowded into the last buckets (their chains of full buckets wrap around to bucket 0), or into one
    bucket with shared first words (a query's first word in several slots of a bucket), or spread: every key
    added is found, no other key is, and the set drains to exactly its keys, sorted, through its growth. The
    table's inserts and queries past their own bucket go one key at a time when few are left: that way
    ``always``, the array passes ``never``, and as the module sets it (both, by how many are left); or every
    insert and query by the compiled loops (:mod:`unitarium._core.keykernels`), or those and the numpy way
    in turn, call by call (a process switches in the middle of a run, its table half filled)."""
    if one_by_one in ("never", "always"):
        for name in ("_ONE_BY_ONE", "_ONE_BY_ONE_FIND"):
            monkeypatch.setattr(keyset, name, 0 if one_by_one == "never" else 1 << 30)
    elif one_by_one != "as set":
        pair = keykernels._kernels()
        assert pair is not None, "numba is one of the test extras"
        calls = itertools.count()
        every = one_by_one == "compiled"
        monkeypatch.setattr(keyset, "kernels", lambda: pair if every or next(calls) % 2 else None)
    rng = np.random.default_rng(11)
    keys, seen = KeySet(), set()
    for _ in range(30):
        n = int(rng.integers(1, 300))
        if where == "last buckets":
            hi = (2**63 - 1) - rng.integers(0, 2**40, n)
        elif where == "one bucket":
            hi = rng.integers(0, 6, n)
        else:
            hi = rng.integers(-(2**63), 2**63 - 1, n)
        batch = np.stack([hi, rng.integers(-(2**63), 2**63 - 1, n)], axis=1).astype(np.int64)
        batch = batch[np.unique(batch, axis=0, return_index=True)[1]]
        new = batch[~keys.contains(batch)]
        keys.add(new)
        seen.update(map(tuple, new.tolist()))
        absent = batch.copy()
        absent[:, 1] ^= 1  # the same first words, other second words
        probe = np.concatenate([batch, absent])
        assert keys.contains(probe).tolist() == [tuple(k) in seen for k in probe.tolist()]
    assert len(keys) == len(seen)
    hi, lo = keys.drain()
    assert np.all(np.diff(hi) >= 0) and sorted(zip(hi.tolist(), lo.tolist(), strict=True)) == sorted(seen)


@pytest.mark.parametrize("parts", [1, 2, 8])
def test_keyset_of_a_partitions_share_spreads_over_the_whole_table(parts: int):
    """A partition owns a range of first words (their top bits are its own): its keys still spread over every
    bucket, so chains of full buckets stay short (a bucket taken from the top bits would crowd a 1/parts share
    of the table and chain through the rest: a partition of a 2-partition run then spun for minutes)."""
    rng = np.random.default_rng(parts)
    keys = KeySet()
    for _ in range(20):
        hi = rng.integers(0, 2**63 // parts, 5000, dtype=np.int64) + (parts - 1) * (2**63 // parts)
        keys.add(np.stack([hi, rng.integers(-(2**63), 2**63 - 1, 5000)], axis=1))
    full = np.concatenate([[0], (keys._table.count == 8).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(full))
    longest = int((edges[1::2] - edges[::2]).max(initial=0))
    assert len(keys) == 100_000 and longest <= 40, longest


def test_a_keyset_under_a_limit_fills_its_last_table_before_it_refuses():
    """Under a byte limit (a key store's RAM share) the table's last growth goes to the limit, then it fills to
    FULL_LOAD: what it holds when it first refuses a batch is ~16 bytes a slot / 0.9, not the 21.5-32 of a table
    that stopped growing by half short of the limit; every key is still found."""
    rng = np.random.default_rng(4)
    limit = 3_000_000
    keys, added = KeySet(limit=limit), []
    while True:
        batch = rng.integers(-(2**63), 2**63 - 1, size=(int(rng.integers(100, 3000)), 2), dtype=np.int64)
        if not keys.fits(len(batch)):
            break
        keys.add(batch)
        added.append(batch)
        assert keys.nbytes <= limit
    every = np.concatenate(added)
    assert len(keys) == len(every) and keys.contains(every).all()
    assert keys.nbytes > limit - 2 * 129 and len(keys) >= 0.85 * keys.nbytes / 16.125, (len(keys), keys.nbytes)


def test_a_64_bit_collision_never_drops_a_distinct_unitary():
    """Keys equal in their first 64 bits but not the second word are different keys (128-bit keys)."""
    ks = KeySet(np.array([[7, 1], [7, 2], [8, 1]], dtype=np.int64))
    probe = np.array([[7, 1], [7, 2], [7, 3], [8, 2], [9, 1]], dtype=np.int64)
    assert ks.contains(probe).tolist() == [True, True, False, False, False]
    keep = ks.select_new(np.array([[7, 3], [7, 3], [7, 4]], dtype=np.int64), {})
    assert keep.tolist() == [True, False, True]


def test_select_new_keeps_first_occurrences_and_honours_alternates():
    def k(*values: int) -> np.ndarray:
        return np.array([[v, -v] for v in values], dtype=np.int64)

    ks = KeySet(k(10, 20))
    primary = k(10, 30, 30, 40, 50, 60)
    alternates = {3: k(20), 4: k(30), 5: k(99)}
    keep = ks.select_new(primary, alternates)
    # 10 stored; first 30 kept, second dropped; 40's alternate 20 stored; 50's alternate 30 kept earlier
    assert keep.tolist() == [False, True, False, False, False, True]


@pytest.mark.parametrize("spread", ["wide", "narrow"])
def test_first_occurrences_and_the_sorted_decisions_equal_numpy_unique(spread: str):
    """The driver's fast paths against numpy's own answer: first occurrences by one sort of the first word (with
    its fallback when different keys share a first word: "narrow" keys do, often), and the one-sort decision
    path (membership, first occurrences and insert from one order) against keep_mask, batch after batch."""
    rng = np.random.default_rng(7)
    fast, reference = KeySet(), KeySet()
    for _ in range(200):
        n = int(rng.integers(0, 60))
        if spread == "wide":
            keys = rng.integers(-(2**63), 2**63 - 1, size=(n, 2), dtype=np.int64)
            if n:
                keys[rng.integers(0, n, n // 2)] = keys[rng.integers(0, n, n // 2)]
        else:
            keys = rng.integers(0, 4, size=(n, 2)).astype(np.int64)
        first = np.zeros(n, dtype=bool)
        first[np.unique(keys, axis=0, return_index=True)[1] if n else []] = True
        assert first_occurrences(keys).tolist() == first.tolist()
        expected = keep_mask(keys, reference.contains(keys), [], [], None)
        reference.add(keys[expected])
        order = np.argsort(keys[:, 0], kind="stable")
        hi, lo = keys[order, 0], keys[order, 1]
        sorted_first = first_sorted(hi, lo)
        if sorted_first is None:  # different keys share a first word: the general path, as decide() falls back
            assert spread == "narrow"
            keep = keep_mask(keys, fast.contains(keys), [], [], None)
            fast.add(keys[keep])
        else:
            new = sorted_first & ~fast.contains_sorted(hi, lo)
            fast.add_sorted(hi[new], lo[new])
            keep = np.empty(n, dtype=bool)
            keep[order] = new
        assert keep.tolist() == expected.tolist()


@pytest.mark.parametrize("eta", [DEDUP.eta, 2.0**-23])
def test_wide_keys_equal_their_definition_row_by_row(eta: float):
    """The vectorised keys (both words from one integer product, every alternate at once, the phase fixed once
    for the dedup and lookup keys) against their definition written out row by row: each word is ``_mix`` of
    the cells, each alternate the cells with a non-empty subset of the (first 12) near coordinates moved to the
    neighbouring cell. A wide ``eta`` makes most rows near, many in several coordinates."""
    scheme = KeyScheme("dedup", dims=16, delta=DEDUP.delta, eta=eta)
    u = haar(300, 4, 11)
    cells, neighbour, near = scheme.cells(u)

    def words(c: np.ndarray) -> np.ndarray:
        return np.stack([scheme._mix(c, 4), scheme._mix(c, 4, 1)], axis=-1)

    primary, alternates = scheme.wide_keys(u)
    assert np.array_equal(primary, words(cells))
    assert sorted(alternates) == np.flatnonzero(near.any(axis=1)).tolist()
    assert eta == DEDUP.eta or sum(len(a) > 1 for a in alternates.values()) > 30
    for row, alts in alternates.items():
        idx = np.flatnonzero(near[row])[:12]
        expected = []
        for size in range(1, len(idx) + 1):
            for subset in combinations(idx, size):
                moved = cells[row].copy()
                moved[list(subset)] = neighbour[row, list(subset)]
                expected.append(words(moved))
        assert np.array_equal(alts, np.array(expected)), row
    dedup, alts, lookup = grid_keys(u)
    reference = DEDUP.wide_keys(u)
    assert np.array_equal(dedup, reference[0]) and np.array_equal(lookup, LOOKUP.primary(u))
    assert alts.keys() == reference[1].keys() and all(np.array_equal(alts[r], reference[1][r]) for r in alts)
    kept = [dedup.copy(), lookup.copy(), {r: a.copy() for r, a in alts.items()}]
    other = haar(300, 4, 12)
    again = grid_keys(other)  # (the same scratch arrays: what the first call returned is its own)
    assert np.array_equal(again[0], DEDUP.wide_keys(other)[0]) and np.array_equal(again[2], LOOKUP.primary(other))
    assert np.array_equal(dedup, kept[0]) and np.array_equal(lookup, kept[1])
    assert all(np.array_equal(alts[r], kept[2][r]) for r in alts)


def test_alternates_pickle_as_three_arrays_and_come_back_equal() -> None:
    """A task's alternates (``keyset.Alternates``, what ``wide_keys`` returns) cross a pipe as three arrays, not an
    array per row: the same rows in the same order, each with its keys, dtype and shape; none too."""
    import pickle

    from unitarium._core.keyset import Alternates

    u = haar(3000, 4, 5)
    _, alternates = KeyScheme("dedup", dims=16, delta=DEDUP.delta, eta=2.0**-23).wide_keys(u)
    assert isinstance(alternates, Alternates) and len(alternates) > 100
    assert any(len(a) > 1 for a in alternates.values())
    for value in (alternates, Alternates()):
        buffers: list[pickle.PickleBuffer] = []
        data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        assert len(buffers) <= 3  # (three arrays, not one a row: a dict of them gives one a row)
        back = pickle.loads(data, buffers=buffers)
        assert isinstance(back, Alternates) and list(back) == list(value)
        for row, keys in value.items():
            assert back[row].dtype == np.int64 and back[row].shape == keys.shape and np.array_equal(back[row], keys)
