"""Records by id on the fast road (issue 21, item 1): ``ds[i]`` reads through the map of the block's file
and checks each page on its first read by a handle (:mod:`unitarium._read.single`).

Every check here compares the fast road with the checked slow road (SQLite BLOB reads, every page
checked on every read) and with the bulk reads, bit for bit; damage is made with raw bytes on disk, as
bit rot would make it. The guarantee for a page damaged after a handle has checked it: that handle does
not hash it again (its later reads of the page are not re-checked); every handle opened afterwards, and
``verify`` on any handle, reads through SQLite and refuses it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import unitarium
from unitarium import DatasetDamagedError, RecordIndexError
from unitarium._read import bulk, single
from unitarium._storage import blocks, mapped
from unitarium._storage.filemap import FileMap
from unitarium._storage.mapped import MappedBlock

SPEC = {"gates": "h,t,cx", "qubits": 2, "count": 20_000, "length": 8}


def _make(factory: pytest.TempPathFactory, name: str, directory: bool = False, **spec: object) -> Path:
    path = factory.mktemp("single") / name
    unitarium.generate(f"{path}/" if directory else path, unitarium.make_spec(**{**SPEC, **spec}), workers=1)
    return path


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make(tmp_path_factory, "stored.db")


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory, stored: Path) -> dict[str, Path]:
    return {
        "stored file": stored,
        "computed file": _make(tmp_path_factory, "computed.db", unitaries="computed", length="1:12"),
        "stored directory": _make(tmp_path_factory, "dir", directory=True),
        "computed enumeration": _make(
            tmp_path_factory, "enum.db", count=None, length=None, max_length=5, unique=True, unitaries="computed"
        ),
        "complex128 unique": _make(tmp_path_factory, "c128.db", dtype="complex128", unique=True),
    }


def _mapped_blocks(ds: unitarium.Dataset) -> list[MappedBlock]:
    return [b for b in ds._store.maps._blocks.values() if b.row is not None]


@pytest.mark.parametrize(
    "kind", ["stored file", "computed file", "stored directory", "computed enumeration", "complex128 unique"]
)
def test_the_fast_road_reads_what_the_slow_road_and_the_bulk_read(kinds: dict[str, Path], kind: str) -> None:
    with unitarium.open(kinds[kind]) as ds:
        n = len(ds)
        ids = [*np.random.default_rng(0).integers(0, n, 600).tolist(), 0, n - 1, n // 2]
        fast = [ds[i] for i in ids]
        assert _mapped_blocks(ds), "files and directories alike take the mapped road"
        again = [ds[i] for i in ids]  # pages checked: served from the map
        listed = ds[ids]
        bulk_u = ds.unitaries(np.array(ids))
        bulk_codes, bulk_off = ds.codes(np.array(ids))
        for k, i in enumerate(ids):
            slow = bulk.slow_record(ds, i)
            for rec in (fast[k], again[k], listed[k]):
                assert rec.id == i
                assert rec.unitary.dtype == slow.unitary.dtype and rec.unitary.shape == slow.unitary.shape
                assert rec.unitary.tobytes() == slow.unitary.tobytes() == bulk_u[k].tobytes()
                assert rec.circuit.codes.dtype == np.int64
                assert rec.circuit.codes.tolist() == slow.circuit.codes.tolist()
                assert rec.circuit.codes.tolist() == bulk_codes[bulk_off[k] : bulk_off[k + 1]].tolist()
        assert ds[-1].id == n - 1 and ds[np.int64(3)].id == 3
        with pytest.raises(RecordIndexError):
            ds[n]


def test_computed_unitaries_match_qiskit(kinds: dict[str, Path]) -> None:
    """An independent oracle for the one-record product: Qiskit's Operator of the circuit."""
    from qiskit.quantum_info import Operator

    with unitarium.open(kinds["computed file"]) as ds:
        for i in np.random.default_rng(1).integers(0, len(ds), 25).tolist():
            rec = ds[i]
            want = Operator(rec.circuit.to_qiskit()).data
            assert np.allclose(rec.unitary, want, atol=1e-5)


def test_each_page_is_hashed_once_per_handle(kinds: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A page is checked at its first read by a handle, with the unchecked pages of its group
    (single.GROUP_PAGES), never twice by one handle; a new handle checks again."""
    stored = kinds["stored directory"]
    calls: list[tuple[int, int, int]] = []
    real = mapped.read_rows

    def counting(fmt, task_id, count, lo, hi, read):  # type: ignore[no-untyped-def]
        calls.append((task_id, lo, hi))
        return real(fmt, task_id, count, lo, hi, read)

    monkeypatch.setattr(mapped, "read_rows", counting)
    monkeypatch.setattr(blocks, "read_rows", counting)
    with unitarium.open(stored) as ds:
        page = ds.format.page
        count = ds._query("SELECT count FROM tasks WHERE task_id = 0")[0][0]
        pages = -(-count // page)
        assert pages > 6
        for _ in range(3):
            for i in (0, 1, page - 1, page, 5 * page + 3):
                ds[i]
            assert len(calls) == 1  # one check for the group holding pages 0, 1 and 5, at the first read
        ((task, lo, hi),) = calls
        assert task == 0 and lo == 0 and hi == min(count, single.GROUP_PAGES * page)
        if pages > single.GROUP_PAGES:  # the next group: its own check, once
            ds[single.GROUP_PAGES * page + 1]
            ds[single.GROUP_PAGES * page]
            assert calls[1:] == [(0, single.GROUP_PAGES * page, min(count, 2 * single.GROUP_PAGES * page))]
    covered = [(t, k) for t, lo, hi in calls for k in range(lo // page, -(-hi // page))]
    assert len(covered) == len(set(covered))  # no page checked twice by one handle
    with unitarium.open(stored) as ds:
        ds[0]
    assert calls[-1] == (0, 0, min(count, single.GROUP_PAGES * page))  # a new handle checks again


def test_a_group_check_skips_pages_already_checked(kinds: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages checked alone (a group with a bad page is checked page by page) are not checked again
    when a neighbour's first read checks the rest of their group."""
    calls: list[tuple[int, int]] = []
    real = mapped.read_rows

    def counting(fmt, task_id, count, lo, hi, read):  # type: ignore[no-untyped-def]
        calls.append((lo, hi))
        return real(fmt, task_id, count, lo, hi, read)

    monkeypatch.setattr(mapped, "read_rows", counting)
    monkeypatch.setattr(single, "KEPT_BYTES", 0)  # (a kept page is served without asking whether it was checked)
    with unitarium.open(kinds["stored file"]) as ds:
        page = ds.format.page
        ds[0]  # pages 0 .. GROUP_PAGES - 1 of task 0
        (block,) = ds._single._blocks.values()
        block.checked[2:4] = bytes(2)  # as if pages 2 and 3 had not been read
        block.checked[5] = 0
        ds[2 * page]  # the unchecked run around page 2: pages 2 and 3 only
        ds[5 * page + 1]  # page 5 alone
        assert calls[1:] == [(2 * page, 4 * page), (5 * page, 6 * page)]


def test_a_bad_record_in_a_group_costs_only_its_own_page(stored: Path, tmp_path: Path) -> None:
    """A NaN written with a matching checksum (a forged page) in page 3 of task 0: the group check
    finds it and checks page by page, so the pages around it stay on the fast road and served, and
    its records are refused every time."""
    from unitarium._core.codec import page_checks

    path = tmp_path / "bad.db"
    shutil.copy(stored, path)
    with unitarium.open(path) as ds:
        fmt, page = ds.format, ds.format.page
        pristine = {j: ds[j].unitary.copy() for j in (2 * page, 4 * page + 1)}
    conn = sqlite3.connect(path)
    off, codes, blob = conn.execute("SELECT offsets, codes, unitaries FROM blocks WHERE task_id = 0").fetchone()
    u = np.frombuffer(blob, "<c8").copy()
    bad = 3 * page + 2
    u[16 * bad + 5] = complex("nan")
    checks = page_checks(fmt, 0, np.frombuffer(off, "<u4"), np.frombuffer(codes, fmt.code_dtype), u, None)
    with conn:
        conn.execute("UPDATE blocks SET unitaries = ?, checks = ? WHERE task_id = 0", (u.tobytes(), checks.tobytes()))
    conn.close()
    with unitarium.open(path) as ds:
        for _ in range(2):
            assert np.array_equal(ds[2 * page].unitary, pristine[2 * page])
            with pytest.raises(DatasetDamagedError, match="NaN"):
                ds[bad]
            assert np.array_equal(ds[4 * page + 1].unitary, pristine[4 * page + 1])
            assert np.isfinite(ds[bad + 1].unitary).all()  # the page's sound records: the slow road serves them
        (block,) = _mapped_blocks(ds)
        assert block.checked[2] == block.checked[4] == single._CHECKED and block.checked[3] == single._SLOW


def _flip_on_disk(ds: unitarium.Dataset, i: int) -> None:
    """Flip one byte of record ``i``'s stored unitary in its file, as bit rot would (found through the
    file's b-tree: :class:`unitarium._storage.filemap.FileMap`)."""
    task, shard, first = ds._query(
        "SELECT task_id, shard, first_id FROM tasks WHERE first_id <= ? AND count > 0 ORDER BY first_id DESC LIMIT 1",
        (i,),
    )[0]
    path = ds._store.manifest if shard == 0 else ds._store.segment_path(shard)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'blocks'").fetchone()
    conn.close()
    file = FileMap(path)
    row = file.row(root, task, ("task_id", "count", "offsets", "codes", "unitaries", "keys", "checks"))
    assert row is not None
    at = row.position("unitaries", (i - first) * ds.format.unitary_bytes + 5)
    file.close()
    assert at is not None
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0x10]))


@pytest.mark.parametrize("directory", [False, True], ids=["file", "directory"])
def test_damage_is_caught_on_the_first_read_through_the_map(
    tmp_path_factory: pytest.TempPathFactory, directory: bool
) -> None:
    path = _make(tmp_path_factory, "d", directory=directory)
    with unitarium.open(path) as ds:
        page = ds.format.page
        i = 3 * page + 7  # task 0, page 3
        pristine = {j: ds[j].unitary.copy() for j in (i, i - page)}
        _flip_on_disk(ds, i)
    with unitarium.open(path) as ds:
        assert np.array_equal(ds[i - page].unitary, pristine[i - page])  # another page: served
        assert _mapped_blocks(ds), "the read takes the mapped road"
        with pytest.raises(DatasetDamagedError, match=r"checksum") as caught:
            ds[i]
        assert f"records {3 * page}..{4 * page - 1}" in str(caught.value)
        with pytest.raises(DatasetDamagedError, match=r"checksum"):
            ds[i + 1]  # the same page: refused again, never marked checked
        with pytest.raises(DatasetDamagedError, match=r"checksum"):
            ds[[i - page, i]]


def test_damage_after_a_pages_first_read_is_caught_by_the_next_handle_and_verify(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = _make(tmp_path_factory, "late.db")
    with unitarium.open(path) as ds:
        i = 2 * ds.format.page + 1
        ds[i]
        _flip_on_disk(ds, i)
        report = ds.verify(sample=None)
        assert not report.ok and any("checksum" in p for p in report.problems)
        with unitarium.open(path) as fresh, pytest.raises(DatasetDamagedError, match=r"checksum"):
            fresh[i]


def test_a_file_is_read_through_sqlite_even_where_its_newest_bytes_are_in_the_wal(stored: Path, tmp_path: Path) -> None:
    """A WAL-mode file whose last commit is not checkpointed: the main file holds older bytes at the
    block's place (here: damaged ones), SQLite reads the WAL's. The map disagrees with SQLite on that
    page, so the block is read through SQLite: what is served is the committed record."""
    path = tmp_path / "wal.db"
    shutil.copyfile(stored, path)
    with unitarium.open(stored) as ds:
        page = ds.format.page
        i = page + 2
        want = ds[i]
        task = int(
            ds._query("SELECT task_id FROM tasks WHERE first_id <= ? ORDER BY first_id DESC LIMIT 1", (i,))[0][0]
        )
    with unitarium.open(path) as copy:
        _flip_on_disk(copy, i)
    source = sqlite3.connect(stored)
    good = source.execute("SELECT unitaries FROM blocks WHERE task_id = ?", (task,)).fetchone()[0]
    source.close()
    hold = sqlite3.connect(path)  # open until the end: the WAL stays, not checkpointed
    try:
        hold.execute("PRAGMA journal_mode=WAL")  # (a complete dataset left WAL when its run ended)
        hold.execute("PRAGMA wal_autocheckpoint=0")
        with hold:
            hold.execute("UPDATE blocks SET unitaries = ? WHERE task_id = ?", (good, task))
        assert Path(f"{path}-wal").stat().st_size > 0
        with unitarium.open(path) as ds:
            got = ds[i]
            assert got.unitary.tobytes() == want.unitary.tobytes()
            assert got.circuit.codes.tolist() == want.circuit.codes.tolist()
            assert ds[i + 1].unitary.tobytes() == bulk.slow_record(ds, i + 1).unitary.tobytes()
            assert not _mapped_blocks(ds)
    finally:
        hold.close()


def test_a_growing_reader_follows_commits(stored: Path, tmp_path: Path) -> None:
    """The task list in memory is reloaded after another connection commits (data_version): the new
    records are read, and a task list edited meanwhile is refused as before."""
    path = tmp_path / "g.db"
    shutil.copyfile(stored, path)
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT * FROM tasks WHERE task_id >= 1 ORDER BY task_id").fetchall()
    summary = conn.execute("SELECT value FROM meta WHERE key = 'summary'").fetchone()[0]
    with conn:
        conn.execute("DELETE FROM tasks WHERE task_id >= 1")
        first_count = conn.execute("SELECT count FROM tasks WHERE task_id = 0").fetchone()[0]
        conn.execute(
            "UPDATE meta SET value = json_set(json_set(value, '$.records', ?), '$.tasks', 1) WHERE key = 'summary'",
            (first_count,),
        )
    with unitarium.open(path) as ds, unitarium.open(stored) as full:
        assert len(ds) == first_count
        assert ds[first_count - 1].unitary.tobytes() == full[first_count - 1].unitary.tobytes()
        with pytest.raises(RecordIndexError):
            ds[first_count]
        with conn:
            conn.executemany(f"INSERT INTO tasks VALUES ({','.join('?' * len(rows[0]))})", rows)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'summary'", (summary,))
        assert len(ds) == len(full)
        assert ds[first_count].unitary.tobytes() == full[first_count].unitary.tobytes()
        assert ds[-1].unitary.tobytes() == full[-1].unitary.tobytes()
        with conn:
            conn.execute("UPDATE tasks SET first_id = first_id + 1 WHERE task_id >= 2")
        second = rows[1][2]  # task 2's first id
        with pytest.raises(DatasetDamagedError, match="task 2 starts at id"):
            ds[second + 1]
    conn.close()


def test_a_snapshot_reads_its_prefix_only(stored: Path) -> None:
    with unitarium.open(stored) as ds:
        snap = ds.snapshot(100)
        assert snap[99].unitary.tobytes() == ds[99].unitary.tobytes()
        assert snap[-1].id == 99
        with pytest.raises(RecordIndexError):
            snap[100]
        with pytest.raises(RecordIndexError):
            snap[[5, 100]]


def test_product_is_the_batch_kernel_bit_for_bit(kinds: dict[str, Path]) -> None:
    """The one-record product against the batch kernel, over many lengths (padding chunks included)."""
    with unitarium.open(kinds["computed file"]) as ds:
        table = ds._context.table
        rng = np.random.default_rng(5)
        width = 12
        seqs = np.full((300, width), table.num_moves, dtype=np.int64)
        lengths = rng.integers(0, width + 1, 300)
        for k, length in enumerate(lengths):
            seqs[k, :length] = rng.integers(0, table.num_moves, length)
        batch = table.unitaries(seqs)
        for k, length in enumerate(lengths):
            one = single.product(table, seqs[k, :length].tolist(), width)
            assert one.tobytes() == batch[k].tobytes()


def test_records_of_the_fast_road_are_the_constructors(kinds: dict[str, Path]) -> None:
    """The fast road fills its records in place of the dataclasses' ``__init__``: every field the
    constructor sets, with the same values."""
    from dataclasses import fields

    from unitarium._core.circuit import Circuit, Record

    for kind in ("stored file", "computed file", "stored directory"):
        with unitarium.open(kinds[kind]) as ds:
            rec = ds[7]
            want = Record(7, Circuit(rec.circuit.codes, ds.gateset), rec.unitary, ds.spec.cost)
            assert vars(rec).keys() == vars(want).keys() == {f.name for f in fields(Record)}
            assert vars(rec.circuit).keys() == vars(want.circuit).keys() == {f.name for f in fields(Circuit)}
            assert all(getattr(rec, f.name) is getattr(want, f.name) for f in fields(Record) if f.name != "circuit")
            assert rec.circuit == want.circuit and repr(rec) == repr(want) and rec.cost == want.cost
            assert rec.unitary.flags.writeable and rec.unitary.flags.owndata is not None


@pytest.mark.parametrize("room", [single.KEPT_BYTES, 0], ids=["pages kept", "nothing kept"])
def test_records_kept_by_group_or_read_from_the_map_or_recomputed_alone(
    kinds: dict[str, Path], monkeypatch: pytest.MonkeyPatch, room: int
) -> None:
    """A group's records are kept at its first read while they fit (a computed group's unitaries
    computed for that); past that (here: no room at all) a stored record is read from the map, a
    computed one recomputed alone, and ``ds[ids]`` in one batch: the same bits, every record its own."""
    monkeypatch.setattr(single, "KEPT_BYTES", room)
    for kind in ("computed file", "computed enumeration", "stored file", "stored directory", "complex128 unique"):
        with unitarium.open(kinds[kind]) as ds:
            ids = np.random.default_rng(2).integers(0, len(ds), 300)
            want = ds.unitaries(ids)
            want_codes, want_offsets = ds.codes(ids)
            for _ in range(2):  # the first reads check (and keep), the second are served from what is kept
                got = [ds[int(i)] for i in ids]
                assert bool(ds._single._pages) == bool(room)
                listed = ds[ids]
                for k in range(len(ids)):
                    assert got[k].unitary.tobytes() == listed[k].unitary.tobytes() == want[k].tobytes()
                    codes = want_codes[want_offsets[k] : want_offsets[k + 1]]
                    assert got[k].circuit.codes.dtype == np.int64 and np.array_equal(got[k].circuit.codes, codes)
                    assert np.array_equal(listed[k].circuit.codes, codes)
            got[0].unitary[0, 0] = 7  # a record's unitary and codes are its own copies
            got[0].circuit.codes[0] = 1 - got[0].circuit.codes[0]
            again = ds[int(ids[0])]
            assert again.unitary.tobytes() == want[0].tobytes()
            assert np.array_equal(again.circuit.codes, want_codes[want_offsets[0] : want_offsets[1]])


_TRY_LEAVING_WAL = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0)
try:
    print(conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0])
except sqlite3.OperationalError as exc:
    print("refused:", exc)
"""


def test_a_reader_in_the_writers_process_keeps_the_writers_locks(tmp_path: Path) -> None:
    """SQLite's POSIX locks belong to a process and a file: closing any descriptor of the file drops
    all of them. A dataset opened, read (through its map) and closed in the writer's own process, mid-run
    (here: in the run's progress callback; the file's map is taken and given back), must leave the
    writer's locks held: another process still
    cannot take the file out of WAL under the running writer."""
    import subprocess
    import sys

    path = tmp_path / "running.db"
    answers: list[str] = []

    def progress(_: object) -> None:
        if answers or not path.exists():
            return
        with unitarium.open(path) as ds:
            if len(ds) < 2:
                return
            first, last = ds[0], ds[len(ds) - 1]
            assert first.unitary.tobytes() == bulk.slow_record(ds, 0).unitary.tobytes()
            assert last.id == len(ds) - 1  # (its blocks may be in the -wal yet: read through SQLite)
        done = subprocess.run(
            [sys.executable, "-c", _TRY_LEAVING_WAL, str(path)], capture_output=True, text=True, timeout=120
        )
        answers.append(done.stdout.strip() or done.stderr.strip())

    unitarium.generate(path, unitarium.make_spec(**{**SPEC, "count": 40_000}), workers=1, progress=progress)
    assert answers == ["refused: database is locked"]
    with unitarium.open(path) as ds:
        assert ds.verify(sample=None).ok


def test_a_closed_handle_reused_after_its_file_was_replaced_never_serves_what_it_kept(tmp_path: Path) -> None:
    """Records kept by a handle belong to the file it read: once closed (or reconnected), they are
    dropped, so a handle used again after another dataset took its path refuses to read (the other
    dataset's checksums are not its own) rather than serving the first dataset's records."""
    first, other, path = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "x.db"
    for p, seed in ((first, 1), (other, 2)):
        unitarium.generate(p, unitarium.make_spec(**{**SPEC, "seed": seed}), workers=1)
    shutil.copy(first, path)
    ds = unitarium.open(path)
    kept = {i: ds[i].unitary.copy() for i in range(0, len(ds), 97)}
    assert ds._single._pages
    ds.close()
    assert not ds._single._pages
    os.replace(other, path)
    with pytest.raises(DatasetDamagedError):
        ds[5]
    ds.close()
    assert not any(np.array_equal(unitarium.open(path)[i].unitary, u) for i, u in kept.items())
