"""Fuzz: readers of a dataset that a real ``generate`` process is writing, in both layouts (issue 17).

A writer runs (a file with one worker, a directory with two) while seeded random readers take turns:
``ShuffledBatches`` through two DataLoader worker processes, ``UnitaryDataset``, a snapshot, ``split``,
``sample``, ``verify`` and ``export`` (Parquet or npz, with and without ``--allow-incomplete``). Each must
read one fixed prefix exactly: an epoch is every record of its count once, splits partition a prefix,
exported rows are the counts reported and written in the card, verify finds nothing wrong. The writer
is killed with -9 at the end if it has not finished (an interrupted run is one more incomplete dataset).
A failure prints its seed: ``UNITARIUM_FUZZ_SEED=<seed>`` replays the same choice of readers.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

import unitarium
from unitarium.interop.export import export
from unitarium.torch import ShuffledBatches, UnitaryDataset

from conftest import kill_group, records_in, start_cli, wait_until

SECONDS_PER_LAYOUT = 4
SEED = int(os.environ.get("UNITARIUM_FUZZ_SEED", random.SystemRandom().randrange(2**32)))


def _epoch(ds: unitarium.Dataset, rng: random.Random, *, loader: bool | None = None) -> str:
    sb = ShuffledBatches(ds, rng.choice([64, 500, 4096]), seed=rng.randrange(100), buffer_size=rng.choice([None, 3000]))
    n = sb.records
    if loader or (loader is None and rng.random() < 0.15):
        batches = DataLoader(sb, batch_size=None, num_workers=2)  # workers start after the count was fixed
        ids = np.concatenate([b["id"].numpy() for b in batches])
    else:
        sb.set_epoch(rng.randrange(1, 5))
        n = sb.records
        ids = np.concatenate([b["id"].numpy() for b in sb]) if n else np.zeros(0, np.int64)
    assert np.array_equal(np.sort(ids), np.arange(n)), (len(ids), len(np.unique(ids)), n)
    return f"epoch of {n}"


def _map_style(ds: unitarium.Dataset, rng: random.Random) -> str:
    ud = UnitaryDataset(ds)
    n = len(ud)
    time.sleep(rng.random() * 0.2)
    assert len(ud) == n
    if n:
        batch = UnitaryDataset.collate(ud.__getitems__([0, n - 1]))
        assert batch["id"].tolist() == [0, n - 1]
    return f"map-style {n}"


def _snapshot(ds: unitarium.Dataset, rng: random.Random) -> str:
    snap = ds.snapshot()
    n = len(snap)
    time.sleep(rng.random() * 0.2)
    assert len(snap) == n and len(snap.unitaries(0, n)) == n and len(snap.lengths()) == n
    return f"snapshot {n}"


def _split(ds: unitarium.Dataset, rng: random.Random) -> str:
    parts = ds.split({"a": 0.6, "b": 0.4}, seed=rng.randrange(2**70), stratify_by_length=rng.random() < 0.5)
    every = np.concatenate([v.ids for v in parts.values()])
    assert np.array_equal(np.sort(every), np.arange(len(every)))  # a partition of a prefix
    return f"split of {len(every)}"


def _sample(ds: unitarium.Dataset, rng: random.Random) -> str:
    length = rng.randrange(4, 25)
    view = ds.sample(20, length=length, seed=rng.randrange(1000), replace=True)
    assert np.all(ds.lengths(0, int(view.ids.max()) + 1)[view.ids] == length)
    return f"sample of length {length}"


def _verify(ds: unitarium.Dataset, rng: random.Random) -> str:
    report = ds.verify(sample=rng.choice([50, 300]), seed=rng.randrange(1000))
    assert report.ok, report.problems
    return f"verify of {report.records}"


def _export(ds: unitarium.Dataset, rng: random.Random, out: Path) -> str:
    fmt = rng.choice(["parquet", "npz"]) if len(ds) < 100_000 else "parquet"  # npz is slow (text circuits)
    split = rng.choice([None, "a=0.5,b=0.5"])
    allow = rng.random() < 0.8
    try:
        sizes = export(ds, out, format=fmt, split=split, allow_incomplete=allow)
    except unitarium.DatasetError as exc:
        assert not allow and "is not complete" in str(exc) and not out.exists()
        return "export refused"
    readme = (out / "README.md").read_text()
    total = sum(sizes.values())
    assert f"({total:,} records)" in readme
    ids = []
    for name, count in sizes.items():
        if fmt == "parquet":
            import pyarrow.parquet as pq

            got = np.concatenate(
                [pq.read_table(p, columns=["id"])["id"].to_numpy() for p in sorted((out / "data").glob(f"{name}-*"))]
            )
        else:
            with np.load(out / "data" / f"{name}.npz") as z:
                got = z["id"]
        assert len(got) == count and f"| {name} | {count:,} |" in readme
        ids.append(got)
    assert np.array_equal(np.sort(np.concatenate(ids)), np.arange(total))
    assert not [p for p in out.parent.iterdir() if ".unitarium-export-" in p.name]
    return f"export {fmt} of {total}"


@contextlib.contextmanager
def throttled(pgid: int, run_s: float = 0.04, pause_s: float = 0.2):
    """Let the writer's process group run ``run_s`` in every ``run_s + pause_s`` (SIGSTOP/SIGCONT), so the
    dataset grows all through the readers' turns without outgrowing them."""
    stop = threading.Event()

    def cycle() -> None:
        while not stop.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGCONT)
            time.sleep(run_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGSTOP)
            stop.wait(pause_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGCONT)

    thread = threading.Thread(target=cycle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


READERS = [_epoch, _map_style, _snapshot, _split, _sample, _verify]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["file", "directory"])
def test_readers_of_a_growing_dataset(layout: str, tmp_path: Path) -> None:
    rng = random.Random(f"{SEED}-{layout}")
    path = tmp_path / ("ds.db" if layout == "file" else "ds")
    count, workers = "3000000", ("1" if layout == "file" else "2")  # killed at the end
    args = ["generate", f"{path}{'/' if layout == 'directory' else ''}", "--gates", "h,s,t,cx", "--qubits", "2"]
    writer = start_cli(*args, "--count", count, "--length", "4:24", "--workers", workers)
    done: list[str] = []
    stack = contextlib.ExitStack()
    try:
        wait_until(lambda: records_in(path) > 0, timeout=120, what="the first commit")
        ds = unitarium.open(path)
        stack.enter_context(throttled(writer.pid, run_s=0.04 if layout == "file" else 0.015))
        deadline = time.monotonic() + SECONDS_PER_LAYOUT
        k = 0
        while time.monotonic() < deadline or len(done) < 3:  # at least three readers, however slow the machine
            k += 1
            reader = rng.choice([*READERS, "export"])
            began = time.monotonic()
            try:
                if k == 1 and layout == "file":  # one epoch through DataLoader workers while the file grows
                    done.append(_epoch(ds, rng, loader=True))
                elif reader == "export":
                    done.append(_export(ds, rng, tmp_path / f"out{k}"))
                else:
                    done.append(reader(ds, rng))  # type: ignore[operator]
            except BaseException as exc:
                raise AssertionError(f"UNITARIUM_FUZZ_SEED={SEED} ({layout}), after {done}: {exc!r}") from exc
            done[-1] += f" ({time.monotonic() - began:.1f} s)"
        grown = len(ds)
    finally:
        stack.close()
        kill_group(writer)
    assert grown > 0 and len(done) >= 3, done
