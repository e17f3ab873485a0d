"""The key store of unique runs under a memory budget (``--memory``): keys spilled to sorted runs on disk
beside the dataset, resumed after kill -9, rebuilt (with one note) when deleted, damaged, foreign or stale,
and never a change of content: every dataset here is compared with the same spec run without a budget."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import unitarium
from unitarium._core.keyset import KeySet, first_sorted, keep_mask
from unitarium._run.authority import KeyAuthority
from unitarium._run.partition import partition_of, sorted_ranges
from unitarium._run.partitions import InProcess
from unitarium._storage import keyruns
from unitarium._storage.keyruns import RunStack
from unitarium._storage.keystore import MIN_BUDGET, KeyStore, StoreRejected, memory_budget
from unitarium._storage.layout import FileWriter

from conftest import (
    PINNED_DIGESTS,
    PINNED_SPECS,
    cached,
    cli,
    dataset_digest,
    file_digests,
    kill_group,
    one_error_line,
    records_in,
    start_cli,
    wait_until,
    worker_pids,
)

BUDGET = "1MiB"
SMALL = ["--gates", "h,t,tdg,cx", "--qubits", "2", "--count", "120000", "--length", "20", "--unique"]
SMALL += ["--unitaries", "computed", "--seed", "4"]
"""About 85,000 unique keys (1.4 MiB): several runs on disk under a 1 MiB budget, a few seconds per run."""
KILL = [*SMALL[:5], "200000", *SMALL[6:]]
"""About 142,000 unique keys (2.2 MiB): time to SIGKILL a real process once its store is listed."""
BIG = ["--gates", "h,t,tdg,cx", "--qubits", "2", "--count", "1000000", "--length", "20", "--unique"]
BIG += ["--unitaries", "computed", "--seed", "5"]
"""About 710,000 unique keys: 16 bytes each, more than 10x a 1 MiB budget."""


def store_of(path: Path | str) -> Path:
    """The key store's directory of the dataset at ``path``."""
    path = Path(path)
    return path / "keys" if path.is_dir() else path.with_name(path.name + ".keys")


def part_of(path: Path | str, index: int = 0, parts: int = 1) -> Path:
    """Partition ``index`` of ``parts`` of that store."""
    return store_of(path) / f"part-{index}-of-{parts}"


def reference(factory: pytest.TempPathFactory, args: list[str], layout: str = "file") -> str:
    """The digest of ``generate ARGS`` without a budget (the default: nothing spills), made once a session."""
    name = "ds" if layout == "directory" else "ds.db"

    def build(path: Path) -> None:
        cli("generate", f"{path}/" if layout == "directory" else path, *args, "--workers", "1", "--quiet")

    return dataset_digest(cached(factory, json.dumps(["keystore-reference", *args, layout]), build, name))


class _Stop(Exception):
    pass


def stopped_at(path: str | Path, args: list[str], records: int) -> None:
    """Run ``generate ARGS --memory 1MiB`` in this process and stop it once ``records`` are committed (an
    exception from the progress callback): a partial dataset with its key store beside it."""
    spec = spec_of(args)

    def progress(p: unitarium.Progress) -> None:
        if p.note is None and p.records >= records:
            raise _Stop

    with pytest.raises(_Stop):
        unitarium.generate(path, spec, workers=1, memory=BUDGET, progress=progress)


def stopped_listed(path: Path | str, args: list[str], records: int) -> None:
    """:func:`stopped_at`, resumed and stopped again 10,000 records later until the store lists its runs (a stop
    can fall after a spill and before the commit that lists it: unlisted runs, which a resume never trusts)."""
    for more in range(0, 100_000, 10_000):
        stopped_at(path, args, records + more)
        if (part_of(path) / "keys.json").exists():
            return
    raise AssertionError(f"{path}: no key store listing up to {records + more} records")


def spec_of(args: list[str]) -> unitarium.Spec:
    """The spec of ``SMALL``/``BIG``-shaped arguments (options with values, and the ``--unique`` flag)."""
    values = [a for a in args if a != "--unique"]
    opts = dict(zip(values[::2], values[1::2], strict=True))
    return unitarium.make_spec(
        gates=opts["--gates"],
        qubits=int(opts["--qubits"]),
        count=int(opts["--count"]),
        length=opts["--length"],
        unique=True,
        unitaries=opts["--unitaries"],
        seed=int(opts["--seed"]),
    )


def listing(path: Path | str, index: int = 0, parts: int = 1) -> dict:
    return json.loads((part_of(path, index, parts) / "keys.json").read_text())


# -- the store on its own ----------------------------------------------------------------------------------------


def test_store_answers_membership_like_a_set_across_spills_and_merges(tmp_path: Path) -> None:
    """Random keys fed in batches under the smallest budget: many runs written and merged; every answer agrees
    with a Python set (the oracle), including keys that share their first word."""
    rng = np.random.default_rng(1)
    store = KeyStore(tmp_path / "keys", b"id", MIN_BUDGET)
    seen: set[tuple[int, int]] = set()
    added = [np.zeros((0, 2), np.int64)]
    for task in range(60):
        batch = rng.integers(-(2**63), 2**63 - 1, size=(4096, 2), dtype=np.int64)
        batch[:300, 0] = batch[300:600, 0]  # equal first words, other second words
        batch[600:700] = batch[700:800]  # repeats within the batch
        if seen:
            old = np.concatenate(added)
            batch[800:1300] = old[rng.integers(0, len(old), 500)]  # keys already in the store
        expect = np.array([tuple(k) in seen for k in batch.tolist()])
        assert np.array_equal(store.contains(batch), expect)
        keep = store.select_new(batch, {})
        new = {tuple(k) for k in batch[keep].tolist()}
        assert new == {tuple(k) for k in batch.tolist()} - seen
        store.add(batch[keep], through=task + 1)
        store.committed(task + 1)
        seen |= new
        added.append(batch[keep])
    assert store.spills >= 10 and store.merges >= 5 and len(store) == len(seen)
    assert store.disk_bytes > 2 * MIN_BUDGET
    probe = rng.integers(-(2**63), 2**63 - 1, size=(2000, 2), dtype=np.int64)
    probe[:1000] = np.concatenate(added)[:1000]
    assert np.array_equal(store.contains(probe), np.array([tuple(k) in seen for k in probe.tolist()]))
    store.close()


def _held_merges(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Background merges wait for the returned event before their first chunk."""
    gate = threading.Event()
    real = keyruns.merged

    def held(*args):
        gate.wait()
        yield from real(*args)

    monkeypatch.setattr(keyruns, "merged", held)
    return gate


def _two_runs_merging(stack: RunStack, rng: np.random.Generator) -> set[tuple[int, int]]:
    """Push two runs whose sizes start a merge (2 * 4000 >= 5000); every key pushed."""
    every = set()
    for tasks, n in (((0, 1), 5000), ((1, 2), 4000)):
        hi, lo = rng.integers(-(2**40), 2**40, size=(2, n), dtype=np.int64)
        hi[: n // 4] = hi[n // 4 : n // 2]  # equal first words
        order = np.argsort(hi, kind="stable")
        stack.push(tasks, hi[order], lo[order], set())
        every |= set(zip(hi.tolist(), lo.tolist(), strict=True))
    return every


@pytest.mark.parametrize("listed", [False, True])
def test_queries_go_on_while_a_merge_runs_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listed: bool
) -> None:
    """A merge under way (held back until the queries are done) leaves the runs as they are: every answer agrees
    with a set; once it is swapped in, one run holds both (its inputs' files go unless listed), same answers."""
    rng = np.random.default_rng(9)
    gate = _held_merges(monkeypatch)
    stack = RunStack(tmp_path, b"id", MIN_BUDGET)
    every = _two_runs_merging(stack, rng)
    inputs = [run.path for run in stack.runs]
    known = np.array(sorted(every)[::3], dtype=np.int64)
    probe = np.concatenate([known, rng.integers(-(2**40), 2**40, (3000, 2))])
    probe[-1000:, 0] = probe[:1000, 0]  # known first words, other second words
    probe = probe[np.argsort(probe[:, 0], kind="stable")]
    expect = np.array([(h, k) in every for h, k in probe.tolist()])

    def answers() -> np.ndarray:
        found = np.zeros(len(probe), dtype=bool)
        stack.find(probe[:, 0], probe[:, 1], found)
        return found

    assert stack._merging is not None and len(stack.runs) == 2
    assert np.array_equal(answers(), expect)
    gate.set()
    stack.settle({inputs[0].name} if listed else set(), wait=True)
    assert len(stack.runs) == 1 and stack.merges == 1 and stack.runs[0].tasks == (0, 2) and stack.runs[0].n == 9000
    assert [p.exists() for p in inputs] == [listed, False]
    assert np.array_equal(answers(), expect)
    stack.close()


def test_closing_gives_up_a_merge_under_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``close()`` during a merge cancels it (released here just after the close began): no merged run, no
    temporary file; the inputs stay, and a new stack takes them up."""
    gate = _held_merges(monkeypatch)
    stack = RunStack(tmp_path, b"id", MIN_BUDGET)
    _two_runs_merging(stack, np.random.default_rng(10))
    inputs = sorted(run.name for run in stack.runs)
    threading.Timer(0.05, gate.set).start()
    stack.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == inputs and len(inputs) == 2 and stack.runs == []


def test_store_resumes_what_it_listed_and_refuses_what_it_cannot_trust(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    store = KeyStore(tmp_path / "keys", b"dataset", MIN_BUDGET)
    keys = rng.integers(-(2**63), 2**63 - 1, size=(40 * 4096, 2), dtype=np.int64)
    for task in range(40):
        store.add(keys[task * 4096 : (task + 1) * 4096], through=task + 1)
        store.committed(min(task, 30))  # commits trail decisions; tasks 30.. are never committed: never listed
    listed = json.loads((tmp_path / "keys" / "keys.json").read_text())
    store.close()
    assert 0 < listed["tasks"] <= 30 and listed["keys"] == 4096 * listed["tasks"]

    again = KeyStore(tmp_path / "keys", b"dataset", MIN_BUDGET)
    assert again.open(committed=30, records_before=lambda t: 4096 * t) == listed["tasks"]
    covered = keys[: 4096 * listed["tasks"]]
    assert again.contains(covered).all() and not again.contains(keys[4096 * listed["tasks"] :]).any()
    again.close()

    with pytest.raises(StoreRejected, match="another dataset"):
        KeyStore(tmp_path / "keys", b"other", MIN_BUDGET).open(30, lambda t: 4096 * t)
    assert not (tmp_path / "keys" / "keys.json").exists()  # emptied: rebuilt from the dataset


def test_keyset_drain_is_every_key_sorted() -> None:
    rng = np.random.default_rng(3)
    ks = KeySet()
    parts = [rng.integers(-(2**63), 2**63 - 1, size=(n, 2), dtype=np.int64) for n in (5000, 100, 2500, 7)]
    for p in parts:
        ks.add(p)
    hi, lo = ks.drain()
    allkeys = np.concatenate(parts)
    assert len(ks) == 0 and np.all(np.diff(hi) >= 0)
    assert sorted(zip(hi.tolist(), lo.tolist(), strict=True)) == sorted(map(tuple, allkeys.tolist()))


# -- --memory: sizes, and bad input --------------------------------------------------------------------------


def test_memory_sizes() -> None:
    assert memory_budget("2MB") == 2_000_000
    assert memory_budget("500MiB") == 500 * 2**20
    assert memory_budget("1.5G") == int(1.5 * 2**30)
    assert memory_budget(" 3 mib ") == 3 * 2**20
    assert memory_budget(5 << 20) == 5 << 20
    assert memory_budget("10%") > MIN_BUDGET
    assert memory_budget(None) >= MIN_BUDGET


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("lots", "is not a size"),
        ("12 parsecs", "is not a size"),
        ("-5MB", "is not a size"),
        ("100KB", "below the key store's fixed minimum"),
        ("0", "below the key store's fixed minimum"),
        ("250%", "between 0% and 100%"),
        ("1000000TB", "more than this machine's"),
    ],
)
def test_bad_memory_is_one_line_and_changes_nothing(tmp_path: Path, value: str, says: str) -> None:
    path = tmp_path / "d.db"
    args = ["--gates", "h,s,cx", "--qubits", "2", "--count", "3000", "--length", "6", "--unique", "--quiet"]
    cli("generate", path, *args, "--count", "2000")
    before = file_digests(path)
    proc = cli("generate", path, *args, "--memory", value, check=False)
    assert proc.returncode == 2
    assert says in one_error_line(proc.stderr)
    assert file_digests(path) == before and sorted(os.listdir(tmp_path)) == ["d.db"]


# -- runs under a budget: the same content -------------------------------------------------------------------------


@pytest.mark.parametrize(("layout", "workers"), [("file", 1), ("file", 2), ("directory", 2)])
def test_budget_keeps_the_content(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, layout: str, workers: int
) -> None:
    path = f"{tmp_path / 'd'}/" if layout == "directory" else tmp_path / "d.db"
    cli("generate", path, *SMALL, "--memory", BUDGET, "--workers", str(workers), "--quiet")
    assert dataset_digest(path) == reference(tmp_path_factory, SMALL, layout)
    assert not store_of(Path(path)).exists()  # complete: the store is resumable state only, and goes


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_stopped_run_resumes_from_its_store(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, layout: str
) -> None:
    path = f"{tmp_path / 'd'}/" if layout == "directory" else tmp_path / "d.db"
    stopped_listed(path, SMALL, 50_000)
    store = listing(Path(path))
    assert store["tasks"] > 0 and store["keys"] >= 32_000  # spilled (at 16k keys each) and listed
    with unitarium.open(path) as ds:  # readers never need it
        assert ds.verify(sample=50).ok and len(ds) >= 50_000
    proc = cli("generate", path, *SMALL, "--memory", BUDGET, "--workers", "2", "--quiet")
    assert "key store" not in proc.stderr  # taken up, not rebuilt
    assert dataset_digest(path) == reference(tmp_path_factory, SMALL, layout)


def _damage_run(store: Path) -> None:
    run = store / json.loads((store / "keys.json").read_text())["runs"][0]["file"]
    with open(run, "r+b") as f:
        f.seek(os.path.getsize(run) - 100)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x40]))


def _truncate_run(store: Path) -> None:
    run = store / json.loads((store / "keys.json").read_text())["runs"][-1]["file"]
    os.truncate(run, os.path.getsize(run) - 16)


def _garble_listing(store: Path) -> None:
    (store / "keys.json").write_text('{"format": 1, "runs": [')


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (_damage_run, "checksum mismatch"),
        (_truncate_run, "wrong size"),
        (_garble_listing, "unreadable"),
        (lambda store: (store / "keys.json").unlink(), "keys.json is missing"),
    ],
)
def test_damaged_store_is_rebuilt_with_one_note(tmp_path_factory, tmp_path: Path, damage, says: str) -> None:
    path = tmp_path / "d.db"
    stopped_listed(path, SMALL, 50_000)
    damage(part_of(path))
    proc = cli("generate", path, *SMALL, "--memory", BUDGET, "--workers", "1", "--quiet")
    notes = [line for line in proc.stderr.splitlines() if "key store" in line]
    assert len(notes) == 1 and says in notes[0] and "rebuilt from the dataset" in notes[0], proc.stderr
    assert dataset_digest(path) == reference(tmp_path_factory, SMALL)


def test_deleted_store_is_rebuilt(tmp_path_factory, tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    stopped_at(path, SMALL, 50_000)
    shutil.rmtree(store_of(path))
    cli("generate", path, *SMALL, "--memory", BUDGET, "--workers", "1", "--quiet")
    assert dataset_digest(path) == reference(tmp_path_factory, SMALL)


def test_foreign_and_stale_stores_are_not_trusted(tmp_path_factory, tmp_path: Path) -> None:
    """A store of another dataset (another seed), and one of this dataset's later state (covering tasks the
    dataset does not have): each rebuilt from the dataset, with a note saying why."""
    other = [*SMALL[:-1], "6"]
    stopped_listed(tmp_path / "other.db", other, 50_000)
    path = tmp_path / "d.db"
    stopped_at(path, SMALL, 5_000)  # a few tasks: fewer than the store below lists (its first spill covers ~12)
    early = tmp_path / "early.db"
    shutil.copyfile(path, early)
    stopped_listed(path, SMALL, 70_000)  # resumed, stopped later: its store covers more
    shutil.copytree(store_of(path), store_of(early))
    assert listing(early)["tasks"] > unitarium.open(early).summary["tasks"]
    shutil.rmtree(store_of(path))
    shutil.copytree(store_of(tmp_path / "other.db"), store_of(path))
    for target, says in ((early, "and the dataset has"), (path, "another dataset")):
        proc = cli("generate", target, *SMALL, "--memory", BUDGET, "--workers", "1", "--quiet")
        notes = [line for line in proc.stderr.splitlines() if "key store" in line]
        assert len(notes) == 1 and says in notes[0], proc.stderr
        assert dataset_digest(target) == reference(tmp_path_factory, SMALL)


# -- kill -9: a real process, killed while its key set is many times its budget ---------------------------------------


def _kill_when_spilled(
    path: Path | str, args: list[str], workers: int, keys: int, *, parts: int = 1, budget: str = BUDGET
) -> None:
    """Start ``generate ARGS --memory BUDGET`` in a process of its own, SIGKILL it once its store (every
    partition's) lists ``keys``."""

    def listed() -> bool:
        try:
            return all(listing(path, i, parts)["keys"] >= keys for i in range(parts))
        except (OSError, ValueError):
            return False

    # a directory run lists its store when it publishes segments: every 0.1 s here, not every 2 s (a run of ~1 s
    # would list it only at its end, where a kill that lands after the last commit finds the store gone)
    env = {**os.environ, "UNITARIUM_SEGMENT_SECONDS": "0.1"}
    proc = start_cli("generate", path, *args, "--memory", budget, "--workers", str(workers), "--quiet", env=env)
    try:
        wait_until(listed, timeout=600, what=f"a key store listing {keys} keys")
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            kill_group(proc)


@pytest.mark.slow
def test_ten_times_the_budget_survives_kill_9(tmp_path_factory, tmp_path: Path) -> None:
    """The acceptance run: a key set over 10x the budget, killed with SIGKILL once its store holds 4x the budget,
    resumed with another worker count (the store taken up, not rebuilt): the content of a run without a budget."""
    path = tmp_path / "big.db"
    _kill_when_spilled(path, BIG, 1, 4 * 2**20 // 16)
    assert (part_of(path) / "keys.json").exists()
    proc = cli("generate", path, *BIG, "--memory", BUDGET, "--workers", "2", "--quiet")
    assert "key store" not in proc.stderr
    with unitarium.open(path) as ds:
        assert ds.complete and 16 * len(ds) > 10 * 2**20
    assert dataset_digest(path) == reference(tmp_path_factory, BIG)
    assert not store_of(path).exists()


@pytest.mark.slow
def test_directory_survives_kill_9_with_another_worker_count(tmp_path_factory, tmp_path: Path) -> None:
    path = f"{tmp_path / 'd'}/"
    _kill_when_spilled(path, KILL, 2, 2**20 // 16)
    proc = cli("generate", path, *KILL, "--memory", BUDGET, "--workers", "1", "--quiet")
    assert "key store" not in proc.stderr
    assert dataset_digest(path) == reference(tmp_path_factory, KILL, "directory")


# -- the key authority partitioned by key range (--partitions) ------------------------------------------------------


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("name", ["unique random", "unique enumerate"])
@pytest.mark.parametrize(("layout", "workers"), [("file", 1), ("directory", 2)])
def test_partitions_keep_the_pinned_content(tmp_path: Path, parts: int, name: str, layout: str, workers: int) -> None:
    """Grid keys with alternates (the rule is not per key: the driver decides from the partitions' answers), under
    a budget: the content of main ``6c1f742``, bit for bit, whatever P."""
    path = f"{tmp_path / 'd'}/" if layout == "directory" else tmp_path / "d.db"
    spec = unitarium.make_spec(**PINNED_SPECS[name])
    unitarium.generate(path, spec, workers=workers, partitions=parts, memory=f"{parts}MiB")
    assert dataset_digest(path) == PINNED_DIGESTS[name]
    assert not store_of(path).exists()


def test_partitions_spread_keys_by_range() -> None:
    hi = np.array([-(2**63), -1, 0, 2**62, 2**63 - 1], dtype=np.int64)  # unsigned: 2^63, 2^64-1, 0, 2^62, 2^63-1
    assert partition_of(hi, 1).tolist() == [0, 0, 0, 0, 0]
    assert partition_of(hi, 2).tolist() == [1, 1, 0, 0, 0]
    assert partition_of(hi, 4).tolist() == [2, 3, 0, 1, 1]
    keys = np.random.default_rng(5).integers(-(2**63), 2**63 - 1, size=100_000, dtype=np.int64)
    assert np.all(np.abs(np.bincount(partition_of(keys, 3)) / 100_000 - 1 / 3) < 0.01)


@pytest.mark.parametrize("parts", [1, 2, 3, 4, 5, 7, 64])
def test_sorted_ranges_are_the_partitions_of_sorted_keys(parts: int) -> None:
    """The driver hands each partition position ranges of the task's keys sorted by first word (signed): every
    key goes to :func:`partition_of`'s partition, each partition's keys in sorted order."""
    rng = np.random.default_rng(parts)
    for n in (0, 1, 2, 50, 3000):
        hi = np.sort(_edge_words(rng, n))
        seen = np.zeros(n, dtype=int)
        for i, spans in enumerate(sorted_ranges(hi, parts)):
            mine = np.concatenate([np.arange(a, b) for a, b in spans]) if spans else np.zeros(0, int)
            seen[mine] += 1
            assert np.all(partition_of(hi[mine], parts) == i)
            assert np.all(hi[mine][1:] >= hi[mine][:-1])
        assert np.all(seen == 1)


def _edge_words(rng: np.random.Generator, n: int, share: float = 0.3) -> np.ndarray:
    """First words at and beside the partitions' range boundaries for P = 2 and 3 (unsigned top 32 bits at
    ``ceil(i 2^32 / P)``; signed 0/-1 and the extremes), ``share`` of them, mixed with random ones."""
    edges = [0, 2**64 - 1, 2**63, 2**63 - 1]  # as unsigned: signed 0, -1, the least and the greatest
    for parts in (2, 3):
        for i in range(1, parts):
            start = (-(-i * 2**32 // parts)) << 32
            edges += [(start + d) % 2**64 for d in (-1, 0, 1)]
    edges = np.array(edges, dtype=np.uint64).view(np.int64)
    words = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
    near = np.flatnonzero(rng.random(n) < share)  # within 2^20 of a boundary (distinct first words, ~always)
    with np.errstate(over="ignore"):
        words[near] = edges[rng.integers(0, len(edges), len(near))] + rng.integers(-(2**20), 2**20, len(near))
    on = near[:2]  # on a boundary or beside it, exactly
    words[on] = edges[rng.integers(0, len(edges), len(on))]
    return words


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_sorted_decisions_equal_keep_mask_batch_after_batch(tmp_path: Path, parts: int) -> None:
    """The authority's one-sort path (the driver sorts a task's keys once; each partition gets its key range
    already sorted, answers a mask, holds its new keys while alternates are decided) against keep_mask on a
    plain KeySet, batch after batch: keys on the partitions' boundaries, repeated within and across batches,
    alternates that are stored, equal to earlier or later rows' keys or to each other, and batches where two
    different keys share a first word (the unsorted fallback). A 1 MiB budget per partition: the stores spill."""
    rng = np.random.default_rng(19 + parts)
    spec = unitarium.make_spec(gates="h,t,tdg,cx", qubits=2, count=10, length=3, unique=True)
    writer = FileWriter(tmp_path / "d.db", spec)

    def failed(what: str) -> Exception:
        raise AssertionError(what)

    authority = KeyAuthority(writer, parts * MIN_BUDGET, lambda _: None, failed, parts)  # type: ignore[arg-type]
    reference = KeySet()
    seen = np.zeros((0, 2), dtype=np.int64)
    fallbacks = 0
    try:
        for task in range(150):
            n = int(rng.integers(0, 900))
            # (a share of 0.05 at the boundaries: near words share a bucket of the key set's table, whose chains
            # of full buckets a query walks; real keys are spread evenly)
            keys = np.stack([_edge_words(rng, n, 0.05), rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)], 1)
            if n and len(seen):  # keys of earlier tasks again
                again = rng.random(n) < 0.2
                keys[again] = seen[rng.integers(0, len(seen), int(again.sum()))]
            if n > 1 and task % 3:  # repeats within the task (none in a third of them: the path without a gather)
                keys[rng.integers(0, n, n // 4)] = keys[rng.integers(0, n, n // 4)]
            if n > 1 and task % 10 == 9:  # two different keys with one first word: the fallback
                keys[1] = [keys[0, 0], keys[0, 1] ^ 1]
            alternates = {}
            for row in np.flatnonzero(rng.random(n) < 0.05):
                alts = rng.integers(-(2**63), 2**63 - 1, size=(int(rng.integers(1, 4)), 2), dtype=np.int64)
                for a in range(len(alts)):
                    source = rng.integers(0, 4)
                    if source == 0 and len(seen):
                        alts[a] = seen[rng.integers(0, len(seen))]
                    elif source in (1, 2):  # an earlier row's key (or any row's, itself and later ones too)
                        alts[a] = keys[rng.integers(0, row + 1 if source == 1 else n)]
                alternates[int(row)] = alts
            rows = sorted(alternates)
            alts_list = [alternates[r] for r in rows]
            asked = np.concatenate([keys, *alts_list]) if rows else keys
            found = reference.contains(asked)
            expected = keep_mask(keys, found[:n], rows, alts_list, found[n:] if rows else None)
            reference.add(keys[expected])
            order = np.argsort(keys[:, 0], kind="stable")
            fallbacks += first_sorted(keys[order, 0], keys[order, 1]) is None
            keep = authority.decide(task, (keys, alternates))
            assert keep.tolist() == expected.tolist(), f"task {task}"
            seen = np.concatenate([seen, keys])  # dropped ones too: they must not have been stored
            authority.committed(task + 1)
        assert 15 <= fallbacks <= 60  # the one-sort path, mostly
        if parts == 1:  # in this process
            one = authority.partitions
            assert isinstance(one, InProcess) and one.partition is not None and one.partition.store.spills > 0
    finally:
        authority.close()
        writer.close()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--partitions", "0"], "must be a whole number from 1 to 64"),
        (["--partitions", "65"], "must be a whole number from 1 to 64"),
        (["--partitions", "3", "--memory", "2MiB"], "leaves each partition less than"),
    ],
)
def test_bad_partitions_are_one_line_and_change_nothing(tmp_path: Path, args: list[str], says: str) -> None:
    path = tmp_path / "d.db"
    base = ["--gates", "h,s,cx", "--qubits", "2", "--count", "2000", "--length", "6", "--unique", "--quiet"]
    cli("generate", path, *base)
    before = file_digests(path)
    proc = cli("generate", path, *base, *args, check=False)
    assert proc.returncode == 2 and says in one_error_line(proc.stderr)
    assert file_digests(path) == before and sorted(os.listdir(tmp_path)) == ["d.db"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("layout", "before", "after"),
    [("file", (1, 3), (2, 3)), ("directory", (2, 2), (1, 3)), ("file", (2, 2), (1, 1))],
)
def test_partitioned_run_survives_kill_9(
    tmp_path_factory, tmp_path: Path, layout: str, before: tuple[int, int], after: tuple[int, int]
) -> None:
    """``(workers, partitions)`` before a SIGKILL and after: the same P takes its stores up (no note), another P
    rebuilds them (one note); the content is that of a run without a budget or partitions."""
    path = f"{tmp_path / 'd'}/" if layout == "directory" else tmp_path / "d.db"
    (w0, p0), (w1, p1) = before, after
    _kill_when_spilled(path, [*KILL, "--partitions", str(p0)], w0, 2**20 // 16 // p0, parts=p0, budget=f"{p0}MiB")
    assert len(list(store_of(path).glob(f"part-*-of-{p0}"))) == p0
    proc = cli("generate", path, *KILL, "--memory", f"{p1}MiB", "--partitions", str(p1), "--workers", str(w1), "-q")
    notes = [line for line in proc.stderr.splitlines() if "key store" in line]
    # another P: one note, when the resume has a task left to decide (a kill that lands after the last commit, as
    # on a loaded machine, leaves none: the store is only dropped); the same P: none
    assert len(notes) <= (p1 != p0), proc.stderr
    assert all("another number of partitions" in line for line in notes), notes
    assert dataset_digest(path) == reference(tmp_path_factory, KILL, layout)
    assert not store_of(path).exists()


@pytest.mark.slow
def test_a_killed_partition_is_one_error_line_and_the_run_resumes(tmp_path_factory, tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    args = [*KILL, "--memory", "2MiB", "--partitions", "2"]
    proc = start_cli("generate", path, *args, "--workers", "1", "--quiet")
    try:
        parts = wait_until(  # (partition 0 is the driver's own)
            lambda: len(w := worker_pids(proc.pid)) == 1 and w, timeout=300, what="partition 1's process"
        )
        wait_until(lambda: records_in(path) >= 20_000, timeout=300, what="20,000 committed records")
        os.kill(parts[0], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    if proc.returncode != 0:  # (0: the run had decided everything before the kill)
        assert proc.returncode == 2
        line = one_error_line(stderr)
        assert f"key partition process {parts[0]} died" in line and "re-run the same command to resume" in line
    cli("generate", path, *args, "--workers", "2", "--quiet")
    assert dataset_digest(path) == reference(tmp_path_factory, KILL)


def test_partitions_under_an_executor(tmp_path: Path) -> None:
    """Jobs on a concurrent.futures executor (the engine Ray shares): the same authority, the pinned content."""
    from concurrent.futures import ProcessPoolExecutor

    spec = unitarium.make_spec(**PINNED_SPECS["unique enumerate"])
    with ProcessPoolExecutor(2) as executor:
        unitarium.generate(f"{tmp_path / 'd'}/", spec, executor=executor, partitions=2, memory="2MiB")
    assert dataset_digest(tmp_path / "d") == PINNED_DIGESTS["unique enumerate"]


def test_a_stopped_partition_is_named_and_the_run_completes_once_continued(tmp_path_factory, tmp_path: Path) -> None:
    """issue #21's closing note: a partition stopped by SIGSTOP hung the driver without a word. Now the driver's
    wait for a partition's reply goes through the run's stall watch: after ``STOPPED_NOTE_S`` (2 s) stopped, a note
    on stderr (even with --quiet) names the partition's process; continued, the run completes, content unchanged."""
    import queue
    import threading

    path = tmp_path / "d.db"
    args = [*KILL, "--memory", "2MiB", "--partitions", "2"]
    proc = start_cli("generate", path, *args, "--workers", "1", "--quiet")
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    try:
        parts = wait_until(  # (partition 0 is the driver's own)
            lambda: len(w := worker_pids(proc.pid)) == 1 and w, timeout=300, what="partition 1's process"
        )
        wait_until(lambda: records_in(path) > 0, timeout=300, what="the first commit")
        os.kill(parts[0], signal.SIGSTOP)
        try:
            while "waiting" not in (note := lines.get(timeout=120)):
                pass
        finally:
            os.kill(parts[0], signal.SIGCONT)
        assert "key partition 1" in note and f"process {parts[0]} is stopped" in note, note
        assert f"kill -CONT {parts[0]}" in note, note
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert dataset_digest(path) == reference(tmp_path_factory, KILL)
    assert not store_of(path).exists()


def _lookup_rows(path: Path) -> list[tuple[int, int, int]]:
    files = sorted((path / "shards").glob("*.db")) if path.is_dir() else [path]
    rows: list[tuple[int, int, int]] = []
    for f in files:
        conn = sqlite3.connect(f"file:{f}?mode=ro", uri=True)
        rows += conn.execute("SELECT key, task_id, row FROM lookup").fetchall()
        conn.close()
    return sorted(rows)


def test_lookup_rows_written_per_commit_equal_those_written_per_task(tmp_path: Path) -> None:
    """A file's writer inserts the lookup rows of a whole commit (many tasks) sorted together; a directory's
    segments insert them task by task: the same rows ``(key, task, row)``, one per record."""
    spec = unitarium.make_spec(gates="h,t,tdg,cx", qubits=2, count=30_000, length=20, unique=True, seed=8)
    unitarium.generate(tmp_path / "f.db", spec, workers=1)
    unitarium.generate(f"{tmp_path / 'd'}/", spec, workers=2)
    rows = _lookup_rows(tmp_path / "f.db")
    with unitarium.open(tmp_path / "f.db") as ds:
        assert len(rows) == len(ds) and ds.summary["tasks"] > 3
    assert rows == _lookup_rows(tmp_path / "d")
    assert len({(t, r) for _, t, r in rows}) == len(rows)


@pytest.mark.parametrize("parts", [1, 2])
def test_the_compiled_key_table_decides_as_the_numpy_one(tmp_path: Path, parts: int) -> None:
    """Every decision through the compiled table (``UNITARIUM_JIT=always``: loaded at the first query, in the driver
    and in the partition's process) against the numpy way (``never``): the same dataset, grid keys with alternates,
    a directory with 2 workers, one partition (the driver) and two (one of them a process of its own). A run
    switches mid-way where it decides more than ``keykernels.SWITCH_AFTER`` tasks; the table half filled each way
    is the unit test's (test_canonical's chains test)."""
    base = ["--gates", "h,t,tdg,cx", "--qubits", "2", "--count", "30000", "--length", "12", "--seed", "3"]
    base += ["--unique", "--task-size", "256", "--workers", "2", "--partitions", str(parts), "--quiet"]
    digests = []
    for mode in ("never", "always"):
        path = f"{tmp_path / mode}/"
        cli("generate", path, *base, env={**os.environ, "UNITARIUM_JIT": mode})
        digests.append(dataset_digest(path))
    assert digests[0] == digests[1]


_SWITCH = """
import sys, threading
import unitarium
from unitarium._core import keykernels
spec = unitarium.make_spec(gates="h,s,cx", qubits=2, count=20000, length=8, seed=2, unique=True, task_size=64)
unitarium.generate(sys.argv[1], spec, workers=1, memory=sys.argv[2])
for thread in threading.enumerate():
    if thread.name == "unitarium-jit-keys":
        thread.join()
print("compiled" if keykernels._loaded else "numpy")
"""


@pytest.mark.parametrize(("memory", "table"), [("2GiB", "compiled"), ("64MiB", "numpy")])
def test_a_long_run_switches_to_the_compiled_table_where_its_budget_allows(tmp_path: Path, memory: str, table: str):
    """313 decisions (past SWITCH_AFTER) in the driver: with a key budget of at least MIN_SHARE it loads the compiled
    table (numba's ~110 MiB); under a smaller ``--memory`` it keeps the numpy way (its fixed overhead holds)."""
    from unitarium._core.keykernels import MIN_SHARE, SWITCH_AFTER

    assert SWITCH_AFTER < 20000 // 64 and (2 << 30) >= MIN_SHARE > (64 << 20)
    env = {key: value for key, value in os.environ.items() if key != "UNITARIUM_JIT"}
    proc = subprocess.run(
        [sys.executable, "-c", _SWITCH, str(tmp_path / "d.db"), memory], capture_output=True, text=True, env=env,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [table]
