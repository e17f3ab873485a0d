"""unitarium.torch with real torch (CPU) and real DataLoader workers: coverage, order, contents, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import unitarium
from unitarium.torch import ShuffledBatches, UnitaryDataset


@pytest.fixture(scope="module")
def ds(made) -> unitarium.Dataset:
    return unitarium.open(made(gates="clifford+t", qubits=2, count=20_000, length="1:12", seed=1))


def ids_of(batches) -> np.ndarray:
    return np.concatenate([b["id"].numpy() for b in batches]) if batches else np.zeros(0, np.int64)


def check_batch(ds: unitarium.Dataset, batch: dict[str, torch.Tensor]) -> None:
    """Every field of a batch against the dataset, record by record."""
    ids = batch["id"].numpy()
    assert batch["unitary"].dtype == torch.complex64 and batch["tokens"].dtype == torch.int64
    assert batch["tokens"].shape == (len(ids), 12)
    assert np.array_equal(batch["unitary"].numpy(), ds.unitaries(ids))
    pad = len(ds.gateset.moves)
    for k, i in enumerate(ids.tolist()):
        codes = ds[i].circuit.codes
        assert batch["length"][k] == len(codes)
        assert np.array_equal(batch["tokens"][k, : len(codes)].numpy(), codes)
        assert np.all(batch["tokens"][k, len(codes) :].numpy() == pad)


def test_every_record_once_per_epoch_in_a_new_order(ds: unitarium.Dataset) -> None:
    sb = ShuffledBatches(ds, 256, seed=0, buffer_size=3000)
    first = list(sb)
    order = ids_of(first)
    assert np.array_equal(np.sort(order), np.arange(len(ds)))
    assert all(len(b["id"]) == 256 for b in first[:-1]) and len(first[-1]["id"]) == len(ds) % 256
    assert np.array_equal(ids_of(list(sb)), order)  # same epoch, same order
    sb.set_epoch(1)
    other = ids_of(list(sb))
    assert np.array_equal(np.sort(other), np.arange(len(ds))) and not np.array_equal(other, order)
    assert abs(np.corrcoef(order, np.arange(len(ds)))[0, 1]) < 0.1  # shuffled, not chunk-sorted
    check_batch(ds, first[3])


def test_drop_last_and_bad_arguments(ds: unitarium.Dataset) -> None:
    batches = list(ShuffledBatches(ds, 3000, drop_last=True))
    assert [len(b["id"]) for b in batches] == [3000] * (len(ds) // 3000)
    for kwargs, message in [
        ({"batch_size": 0}, "batch_size 0 must be a positive integer"),
        ({"batch_size": 8, "seed": -1}, "seed -1 must be a non-negative integer"),
        ({"batch_size": 8, "rank": 2, "world_size": 2}, "rank 2 must be an integer from 0 to world_size - 1 = 1"),
        ({"batch_size": 8, "buffer_size": 0}, "buffer_size 0 must be a positive integer"),
    ]:
        with pytest.raises(unitarium.SpecError, match=message):
            ShuffledBatches(ds, **kwargs)
    with pytest.raises(TypeError, match="expected a unitarium Dataset or DatasetView"):
        ShuffledBatches([1, 2, 3], 8)


def test_pieces_partition_the_records(ds: unitarium.Dataset) -> None:
    sb = ShuffledBatches(ds, 64)
    for shards in (1, 3, 8):
        pieces = sb.pieces(shards)
        sizes = [sum(b - a for a, b in p) for p in pieces]
        assert max(sizes) - min(sizes) <= 1
        covered = np.concatenate([np.arange(a, b) for p in pieces for a, b in p])
        assert np.array_equal(np.sort(covered), np.arange(len(ds)))


@pytest.mark.slow
def test_dataloader_workers_and_ranks_cover_each_record_once(ds: unitarium.Dataset) -> None:
    """2 ranks x 2 DataLoader worker processes: every record exactly once, no overlap."""
    seen = []
    for rank in (0, 1):
        sb = ShuffledBatches(ds, 500, seed=7, rank=rank, world_size=2)
        sb.set_epoch(2)
        loader = DataLoader(sb, batch_size=None, num_workers=2)
        seen.append(ids_of(list(loader)))
    both = np.concatenate(seen)
    assert len(both) == len(ds) and np.array_equal(np.sort(both), np.arange(len(ds)))
    assert abs(len(seen[0]) - len(seen[1])) <= 1
    assert not set(seen[0].tolist()) & set(seen[1].tolist())


@pytest.mark.slow
def test_split_views_through_dataloader_workers(ds: unitarium.Dataset) -> None:
    parts = ds.split({"train": 0.9, "val": 0.1}, seed=0)
    loader = DataLoader(ShuffledBatches(parts["val"], 128), batch_size=None, num_workers=2)
    batches = list(loader)
    assert np.array_equal(np.sort(ids_of(batches)), parts["val"].ids)
    check_batch(ds, batches[0])


def test_map_style_dataset(ds: unitarium.Dataset) -> None:
    view = ds.split({"train": 0.5, "test": 0.5}, seed=0)["test"]
    data = UnitaryDataset(view)
    assert len(data) == len(view)
    item = data[5]
    assert int(item["id"]) == view.ids[5] and item["tokens"].shape == (12,)
    fast = DataLoader(
        data, batch_size=64, shuffle=True, collate_fn=UnitaryDataset.collate, generator=torch.manual_seed(0)
    )
    batches = list(fast)
    assert np.array_equal(np.sort(ids_of(batches)), view.ids)
    check_batch(ds, batches[0])
    plain = next(iter(DataLoader(data, batch_size=16)))  # torch's default_collate
    assert np.array_equal(plain["id"].numpy(), view.ids[:16])
    check_batch(ds, plain)
    with pytest.raises(IndexError):
        data[len(data)]


def test_a_small_training_loop_learns(ds: unitarium.Dataset) -> None:
    """The docs' example: predict the circuit length from the unitary; the loss falls."""
    torch.manual_seed(0)
    train = ds.split({"train": 0.9, "val": 0.1}, seed=0)["train"]
    batches = ShuffledBatches(train, batch_size=256, seed=0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for epoch in range(4):
        batches.set_epoch(epoch)
        total = 0.0
        for batch in DataLoader(batches, batch_size=None):
            x = torch.view_as_real(batch["unitary"]).flatten(1)
            loss = torch.nn.functional.mse_loss(model(x).squeeze(1), batch["length"].float())
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch["id"])
        losses.append(total / len(train))
    assert losses[-1] < 0.5 * losses[0], losses
