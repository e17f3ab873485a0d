"""Splits (leakage-free by unitary), views, and ds.sample: on real datasets that repeat unitaries a lot."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

import unitarium
from unitarium._core.canonical import equal_up_to_phase
from unitarium._read.split import SPLIT_KEYS, DatasetView, group_keys_of

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


@pytest.fixture(scope="module")
def one_qubit(made) -> unitarium.Dataset:
    """h,s on 1 qubit, lengths 0..30: only 24 distinct unitaries among 3000 records."""
    return unitarium.open(made(gates="h,s", qubits=1, count=3000, length="0:30", seed=5))


@pytest.fixture(scope="module")
def clifford(made) -> unitarium.Dataset:
    """2-qubit Cliffords (h,s,cx), lengths 1..40: 11,520 classes, many records repeat one."""
    return unitarium.open(made(gates="clifford", qubits=2, count=30_000, length="1:40", seed=2))


def classes(u: np.ndarray) -> np.ndarray:
    """An independent class label up to global phase for Clifford unitaries (entries of modulus 0, 1/2,
    1/sqrt2 or 1: well apart): divide by the phase of the first entry of largest modulus, round."""
    flat = u.reshape(len(u), -1).astype(np.complex128)
    first = np.argmax(np.abs(flat).round(3), axis=1)
    pivot = flat[np.arange(len(u)), first]
    canon = np.round(flat * (np.abs(pivot) / pivot)[:, None], 3) + 0.0  # + 0.0: no -0.0
    _, label = np.unique(canon.view(np.float64), axis=0, return_inverse=True)
    return label.reshape(-1)


def part_of(parts: dict[str, DatasetView], n: int) -> np.ndarray:
    owner = np.full(n, -1)
    for k, view in enumerate(parts.values()):
        assert np.all(owner[view.ids] == -1), "a record is in two parts"
        owner[view.ids] = k
    assert np.all(owner >= 0), "a record is in no part"
    return owner


@pytest.mark.parametrize("name", ["one_qubit", "clifford"])
@pytest.mark.parametrize("stratify", [False, True])
def test_equal_unitaries_always_share_a_part(name: str, stratify: bool, request: pytest.FixtureRequest) -> None:
    ds = request.getfixturevalue(name)
    parts = ds.split(FRACTIONS, seed=3, stratify_by_length=stratify)
    owner = part_of(parts, len(ds))
    label = classes(ds.unitaries())
    assert len(np.unique(label)) < len(ds) / 2  # the data really repeats unitaries
    for c in np.unique(label):
        assert len(np.unique(owner[label == c])) == 1, f"class {c} is split across parts"


def test_classes_are_equal_up_to_phase(one_qubit: unitarium.Dataset) -> None:
    """The test's own class labels agree with equal_up_to_phase (so the test above checks the right thing)."""
    u = one_qubit.unitaries()
    label = classes(u)
    assert len(np.unique(label)) == 24
    reps = {c: u[np.flatnonzero(label == c)[0]] for c in np.unique(label)}
    for i in range(0, len(u), 37):
        assert equal_up_to_phase(u[i], reps[label[i]], atol=1e-5)
        assert not any(equal_up_to_phase(u[i], r, atol=1e-3) for c, r in reps.items() if c != label[i])


def test_noisy_copies_share_a_group_across_cell_boundaries() -> None:
    """Random unitaries and copies with float32-sized noise and a random phase: some copies land in another
    grid cell (their primary keys differ), yet every pair gets the same group key."""
    rng = np.random.default_rng(0)
    n = 20_000
    z = rng.normal(size=(n, 4, 4)) + 1j * rng.normal(size=(n, 4, 4))
    q, r = np.linalg.qr(z)
    u = q * (np.diagonal(r, axis1=1, axis2=2) / np.abs(np.diagonal(r, axis1=1, axis2=2)))[:, None, :]
    noisy = u * np.exp(1j * rng.uniform(0, 2 * np.pi, n))[:, None, None]
    noisy = noisy + 3e-6 * (rng.normal(size=u.shape) + 1j * rng.normal(size=u.shape))
    primary_differs = SPLIT_KEYS.primary(u) != SPLIT_KEYS.primary(noisy)
    assert primary_differs.sum() > 0, "no copy crossed a boundary: the test would not exercise alternates"
    groups = group_keys_of([u, noisy], 2 * n)
    assert np.array_equal(groups[:n], groups[n:])
    assert len(np.unique(groups[:n])) > 0.99 * n  # distinct unitaries stay (almost all) apart


def test_sizes_near_fractions_and_deterministic(clifford: unitarium.Dataset) -> None:
    n = len(clifford)
    parts = clifford.split(FRACTIONS, seed=0)
    assert list(parts) == ["train", "val", "test"]
    for name, view in parts.items():
        assert abs(len(view) - FRACTIONS[name] * n) < 0.02 * n, (name, len(view))
        assert np.all(np.diff(view.ids) > 0)
    again = clifford.split(FRACTIONS, seed=0)
    assert all(np.array_equal(parts[k].ids, again[k].ids) for k in parts)
    other = clifford.split(FRACTIONS, seed=1)
    assert not np.array_equal(parts["val"].ids, other["val"].ids)


def test_stratified_sizes_per_length(clifford: unitarium.Dataset) -> None:
    lengths = clifford.lengths()
    parts = clifford.split({"a": 0.5, "b": 0.5}, seed=0, stratify_by_length=True)
    owner = part_of(parts, len(clifford))
    for length in (10, 25, 40):
        mask = lengths == length
        share = (owner[mask] == 0).mean()
        assert abs(share - 0.5) < 0.1, (length, share, mask.sum())


def test_zero_fraction_gives_an_empty_part(clifford: unitarium.Dataset) -> None:
    parts = clifford.split({"train": 1.0, "unused": 0.0})
    assert len(parts["train"]) == len(clifford) and len(parts["unused"]) == 0


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ({"train": 0.8, "val": 0.3}, "sum to 1.1, not 1"),
        ({"train": 1.2, "val": -0.2}, "val=-0.2 is negative"),
        ({}, "must be a non-empty mapping"),
        ({"train": "0.8", "test": 0.2}, "train='0.8' must be a finite number"),
        ({"train": float("nan"), "test": 0.2}, "must be a finite number"),
        ({"train": True}, "must be a finite number"),
        ({"": 1.0}, "must be a word"),
        ([0.8, 0.2], "must be a non-empty mapping"),
        ("train=0.8,val", "must be NAME=FRACTION"),
        ("train=0.5,train=0.5", "names part 'train' twice"),
    ],
)
def test_bad_fractions(one_qubit: unitarium.Dataset, fractions: object, message: str) -> None:
    with pytest.raises(unitarium.SpecError, match=message.replace("(", r"\(")) as info:
        one_qubit.split(fractions)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_text_fractions_equal_mapping(one_qubit: unitarium.Dataset) -> None:
    a = one_qubit.split("train=0.8,val=0.1,test=0.1", seed=4)
    b = one_qubit.split(FRACTIONS, seed=4)
    assert all(np.array_equal(a[k].ids, b[k].ids) for k in FRACTIONS)


def test_view_reads_like_a_dataset(clifford: unitarium.Dataset) -> None:
    view = clifford.split(FRACTIONS, seed=0)["val"]
    ids = view.ids
    assert len(view) == len(ids)
    assert view[3].id == ids[3] and view[-1].id == ids[-1]
    assert np.array_equal(view[3].unitary, clifford[int(ids[3])].unitary)
    assert np.array_equal(view.unitaries(), clifford.unitaries(ids))
    assert np.array_equal(view.unitaries(10, 20), clifford.unitaries(ids[10:20]))
    assert [str(c) for c in view.circuits(5, 9)] == [str(clifford[int(i)].circuit) for i in ids[5:9]]
    assert np.array_equal(view.lengths(), clifford.lengths()[ids])
    recs = list(view)
    assert [r.id for r in recs] == ids.tolist()
    assert str(recs[7].circuit) == str(clifford[int(ids[7])].circuit)
    assert np.array_equal(view[2:6].ids, ids[2:6])
    clone = pickle.loads(pickle.dumps(view))
    assert np.array_equal(clone.ids, ids) and clone.path == view.path
    with pytest.raises(unitarium.RecordIndexError, match="out of range"):
        view[len(view)]
    with pytest.raises(unitarium.RecordIndexError, match="outside"):
        view.unitaries(0, len(view) + 1)


def test_view_splits_again_without_leaks(clifford: unitarium.Dataset) -> None:
    train = clifford.split({"train": 0.9, "test": 0.1})["train"]
    inner = train.split({"fit": 0.5, "dev": 0.5}, seed=1)
    assert sorted(np.concatenate([v.ids for v in inner.values()]).tolist()) == train.ids.tolist()
    label = classes(clifford.unitaries())
    fit, dev = set(label[inner["fit"].ids].tolist()), set(label[inner["dev"].ids].tolist())
    assert not fit & dev


def test_sample_by_length(clifford: unitarium.Dataset) -> None:
    view = clifford.sample(50, length=17, seed=1)
    assert len(view) == 50 and len(set(view.ids.tolist())) == 50
    assert np.all(view.lengths() == 17)
    assert np.array_equal(view.ids, clifford.sample(50, length=17, seed=1).ids)
    assert np.array_equal(view.ids, clifford.sample(50, length=17, seed=np.random.default_rng(1)).ids)
    anywhere = clifford.sample(10, seed=2)
    assert len(anywhere) == 10
    count = int((clifford.lengths() == 17).sum())
    with pytest.raises(unitarium.SpecError, match=f"only {count} records of length 17"):
        clifford.sample(count + 1, length=17)
    assert len(clifford.sample(count + 1, length=17, replace=True)) == count + 1
    with pytest.raises(unitarium.SpecError, match="no record has length 99"):
        clifford.sample(1, length=99, replace=True)
    with pytest.raises(unitarium.SpecError, match="must be a non-negative integer"):
        clifford.sample(-1)


def test_sample_in_a_unique_enumeration_is_at_optimal_distance(tmp_path: Path) -> None:
    path = tmp_path / "enum.db"
    unitarium.generate(path, unitarium.make_spec(gates="h,s,cx", qubits=2, max_length=5, unique=True), workers=1)
    ds = unitarium.open(path)
    targets = ds.sample(30, length=4, seed=0)
    shorter = ds.unitaries(np.flatnonzero(ds.lengths() < 4))
    for u in targets.unitaries():
        assert not any(equal_up_to_phase(u, v, atol=1e-5) for v in shorter)
