"""ShuffledBatches (issue #21): batches cross DataLoader workers as one buffer, and are well mixed
whatever the record order (an enumeration is sorted by length)."""

from __future__ import annotations

import copy
import itertools
import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data._utils.collate import default_convert

import unitarium
from unitarium.torch import Batch, ShuffledBatches


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> unitarium.Dataset:
    path = tmp_path_factory.mktemp("batches") / "ct.db"
    spec = unitarium.make_spec(gates="clifford+t", qubits=2, count=30_000, length="1:12", seed=3)
    unitarium.generate(path, spec, workers=1)
    return unitarium.open(path)


@pytest.fixture(scope="module")
def enumerated(tmp_path_factory: pytest.TempPathFactory) -> unitarium.Dataset:
    """Every h,t,cx circuit on 2 qubits to length 8 (355,410 records), in breadth-first order."""
    path = tmp_path_factory.mktemp("enum") / "enum.db"
    unitarium.generate(path, unitarium.make_spec(gates="h,t,cx", qubits=2, max_length=8), workers=1)
    return unitarium.open(path)


def one_buffer(batch: dict[str, torch.Tensor]) -> bool:
    """The fields lie one after the other in one allocation (16-byte aligned)."""
    spans = sorted((t.data_ptr(), t.numel() * t.element_size()) for t in batch.values())
    return all(0 <= b[0] - (a[0] + a[1]) < 16 for a, b in itertools.pairwise(spans))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


# -- one buffer per batch ---------------------------------------------------------------------------------


def test_a_batch_is_one_buffer_and_pickles_as_one_without_shared_memory_files(ds: unitarium.Dataset) -> None:
    batch = next(iter(ShuffledBatches(ds, 512, seed=1)))
    assert isinstance(batch, Batch) and isinstance(batch, dict)
    assert one_buffer(batch)
    stream = ForkingPickler.dumps(batch)  # what a DataLoader worker sends
    assert b"rebuild_storage" not in stream and b"rebuild_tensor" not in stream  # no per-tensor shm file
    field_bytes = sum(t.numel() * t.element_size() for t in batch.values())
    assert len(stream) < 0.7 * field_bytes  # move codes and lengths travel as bytes, not int64
    back = pickle.loads(stream)
    assert isinstance(back, Batch) and same(back, batch)
    assert one_buffer(back)
    back["unitary"][0, 0, 0] = 5  # writable, and its own copy
    assert batch["unitary"][0, 0, 0] != 5
    batch["tokens"][0, 0] = 300  # modified in place (and past a byte) after it was made: sent as it is now
    batch["length"] += 1
    again = pickle.loads(ForkingPickler.dumps(batch))
    assert same(again, batch) and int(again["tokens"][0, 0]) == 300
    # what DataLoader does with it: default_convert (batch_size=None) and pin_memory copy the mapping
    converted = default_convert(batch)
    assert isinstance(converted, Batch) and same(converted, batch)
    assert isinstance(copy.copy(batch), Batch) and same(copy.deepcopy(batch), batch)


def test_batches_of_any_tensors_round_trip(ds: unitarium.Dataset) -> None:
    cases = [
        Batch(a=torch.arange(-3, 300, dtype=torch.int64), b=torch.zeros((0, 4)), c=torch.tensor(2**40)),
        Batch(x=torch.ones(3, requires_grad=True)),  # autograd: pickled the ordinary way
        Batch(x=torch.ones(2, dtype=torch.bfloat16), y=torch.arange(4, dtype=torch.int16)),
        Batch(name="not a tensor", x=torch.arange(5)),
        Batch(x=torch.arange(12).reshape(3, 4).t()),  # not contiguous
    ]
    for batch in cases:
        back = pickle.loads(ForkingPickler.dumps(batch))
        assert back.keys() == batch.keys()
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                assert back[k].dtype == v.dtype and back[k].shape == v.shape and torch.equal(back[k], v.detach())
            else:
                assert back[k] == v


def test_one_worker_gives_the_in_process_batches(ds: unitarium.Dataset) -> None:
    """``num_workers=1`` reads the same single piece as in-process iteration: the same batches, bit for bit."""
    sb = ShuffledBatches(ds, 1000, seed=5, buffer_size=8000)
    sb.set_epoch(2)
    here = list(sb)
    there = list(DataLoader(sb, batch_size=None, num_workers=1))
    assert len(here) == len(there) == -(-len(ds) // 1000)
    assert all(isinstance(b, Batch) and same(a, b) for a, b in zip(here, there, strict=True))
    order = np.concatenate([b["id"].numpy() for b in here])
    assert np.array_equal(np.sort(order), np.arange(len(ds)))
    assert np.array_equal(here[0]["unitary"].numpy(), ds.unitaries(here[0]["id"].numpy()))


# -- mixing ------------------------------------------------------------------------------------------------


def batch_mean_spread(sb: ShuffledBatches, epochs: int) -> float:
    means = []
    for epoch in range(epochs):
        sb.set_epoch(epoch)
        means.extend(float(b["length"].double().mean()) for b in sb)
    return float(np.std(means))


def true_shuffle_spread(lengths: np.ndarray, batch: int) -> float:
    """The standard deviation of the mean of ``batch`` records drawn without replacement: a true shuffle's."""
    n = len(lengths)
    return float(lengths.std() / np.sqrt(batch) * np.sqrt((n - batch) / (n - 1)))


@pytest.mark.parametrize(("batch", "buffer"), [(256, None), (1024, None), (256, 32_768), (1024, 32_768)])
def test_batches_of_a_sorted_enumeration_are_as_mixed_as_a_true_shuffle(
    enumerated: unitarium.Dataset, batch: int, buffer: int | None
) -> None:
    """The spread (std) of batch-mean circuit lengths over 3 epochs, against a true shuffle's.

    Deterministic (fixed seeds). Measured 1.01-1.02x; the bound 1.2x is >7 standard errors of
    the measured spread (over >= 1,000 batches) away. The records are sorted by length: reading
    them in contiguous pieces of a window's size would give batch means spread far wider."""
    lengths = enumerated.lengths().astype(np.float64)
    assert np.all(np.diff(lengths) >= 0)  # breadth-first: sorted by length
    true = true_shuffle_spread(lengths, batch)
    full = len(lengths) // batch * batch
    sb = ShuffledBatches(enumerated, batch, seed=0, drop_last=True, buffer_size=buffer)
    window = sb.buffer_size
    contiguous = [
        lengths[a : a + window][np.random.default_rng(0).permutation(min(window, full - a))]
        for a in range(0, full, window)
    ]
    naive = np.concatenate(contiguous)[:full].reshape(-1, batch).mean(axis=1).std()
    assert naive > 3 * true  # the order the test is about
    ratio = batch_mean_spread(sb, epochs=3) / true
    assert ratio <= 1.2, ratio


# -- shared memory between DataLoader workers and the main process ------------------------------------


def _right(ds: unitarium.Dataset, batch: dict[str, torch.Tensor]) -> bool:
    ids = batch["id"].numpy()
    codes, offsets = ds.codes(ids)
    return bool(
        np.array_equal(batch["unitary"].numpy(), ds.unitaries(ids))
        and np.array_equal(batch["length"].numpy(), np.diff(offsets))
        and all(
            np.array_equal(batch["tokens"][b, : batch["length"][b]].numpy(), codes[offsets[b] : offsets[b + 1]])
            for b in range(0, len(ids), 97)
        )
    )


def test_worker_batches_arrive_in_shared_memory_slots_freed_when_dropped(ds: unitarium.Dataset) -> None:
    """Through workers, a batch is built in a shared-memory slot of its worker and handed to the main
    process as views of it; a slot is reused only once the batch that held it is garbage, so a
    worker streaming an epoch cycles through a few slots (prefetch + 2), every batch right."""
    import unitarium.torch.batch as ut

    ut._RECEIVED.clear()
    sb = ShuffledBatches(ds, 500, seed=1, buffer_size=4000)
    seen = []
    for batch in DataLoader(sb, batch_size=None, num_workers=2):
        assert isinstance(batch, Batch) and one_buffer(batch) and _right(ds, batch)
        seen.append(batch["id"].numpy().copy())
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(len(ds)))
    assert len(ut._RECEIVED) == 2  # one ring per worker...
    assert all(1 <= len(r.slots) <= 5 for r in ut._RECEIVED.values())  # ...cycling through a few slots


def test_batches_kept_by_the_main_process_stay_intact(ds: unitarium.Dataset) -> None:
    """Batches kept (here every batch of an epoch) hold their slots: the worker builds the next ones
    elsewhere (new slots, then ordinary memory sent by value), and none is overwritten."""
    import unitarium.torch.batch as ut

    sb = ShuffledBatches(ds, 500, seed=2, buffer_size=4000)
    kept = list(DataLoader(sb, batch_size=None, num_workers=2))
    assert len(kept) == 60 and all(_right(ds, b) for b in kept)
    assert np.array_equal(np.sort(np.concatenate([b["id"].numpy() for b in kept])), np.arange(len(ds)))
    assert max(len(r.slots) for r in ut._RECEIVED.values()) == ut._SLOTS  # all slots held, the rest by value


def test_a_field_kept_alone_holds_its_slot(ds: unitarium.Dataset) -> None:
    """Keeping one field of each batch (the rest dropped at once) keeps its whole slot: no later batch
    is built over it (every kept field still equals the dataset's records)."""
    sb = ShuffledBatches(ds, 500, seed=4, buffer_size=4000)
    kept = []
    for batch in DataLoader(sb, batch_size=None, num_workers=2):
        kept.append((batch["id"].numpy().copy(), batch["unitary"]))
        del batch
    assert len(kept) == 60
    for ids, u in kept:
        assert np.array_equal(u.numpy(), ds.unitaries(ids).astype(np.complex64))


class _Relabelled(ShuffledBatches):
    """Batches changed in the worker (a field that is not in the slot): they travel by value."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        for batch in super().__iter__():
            batch["double"] = batch["length"] * 2
            yield batch


def test_batches_changed_in_the_worker_travel_by_value(ds: unitarium.Dataset) -> None:
    sb = _Relabelled(ds, 500, seed=3, buffer_size=4000)
    got = list(DataLoader(sb, batch_size=None, num_workers=2))
    assert len(got) == 60 and all(_right(ds, b) and torch.equal(b["double"], b["length"] * 2) for b in got)
