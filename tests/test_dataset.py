"""The Dataset reader: records, batches, iteration, pickling, info, verify; gate files and couplings end to end."""

from __future__ import annotations

import json
import math
import multiprocessing
import pickle
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qiskit.quantum_info import Operator

import unitarium
from unitarium import Circuit, DatasetDamagedError, RecordIndexError

# -- records and batches ----------------------------------------------------------------------


def test_len_and_records(small_dataset: Path, small_spec: unitarium.Spec) -> None:
    ds = unitarium.open(small_dataset)
    assert len(ds) == 10_000
    assert ds.complete
    assert ds.spec.canonical_json() == small_spec.canonical_json()
    rec = ds[0]
    assert rec.id == 0 and isinstance(rec.circuit, Circuit)
    assert rec.unitary.shape == (4, 4) and rec.unitary.dtype == np.complex64
    np.testing.assert_allclose(rec.unitary, rec.circuit.unitary(), atol=1e-5)
    assert 1 <= len(rec.circuit) <= 12


def test_negative_and_numpy_ids(small_dataset: Path) -> None:
    ds = unitarium.open(small_dataset)
    last = ds[len(ds) - 1]
    assert ds[-1].id == last.id == 9_999
    assert str(ds[-1].circuit) == str(last.circuit)
    np.testing.assert_array_equal(ds[-1].unitary, last.unitary)
    assert ds[-10_000].id == 0
    assert ds[np.int64(5)].id == 5 and ds[np.int32(-2)].id == 9_998


@pytest.mark.parametrize("bad", [10_000, 10**12, -10_001])
def test_out_of_range_ids(small_dataset: Path, bad: int) -> None:
    ds = unitarium.open(small_dataset)
    with pytest.raises(RecordIndexError, match="out of range"):
        ds[bad]
    with pytest.raises(IndexError):  # the builtin it resembles
        ds[bad]


@pytest.mark.parametrize("bad", [1.0, "1", True, None])
def test_non_integer_ids(small_dataset: Path, bad: object) -> None:
    with pytest.raises(TypeError):
        unitarium.open(small_dataset)[bad]  # type: ignore[index]


@pytest.mark.parametrize(
    ("a", "b"),
    [(0, 10_000), (0, 0), (100, 117), (4090, 4100), (4096, 8192), (4100, 8000), (8191, 8193), (9_999, 10_000)],
)
def test_unitaries_equal_stacked_records(small_dataset: Path, a: int, b: int) -> None:
    ds = unitarium.open(small_dataset)
    batch = ds.unitaries(a, b)
    assert batch.shape == (b - a, 4, 4) and batch.dtype == np.complex64
    ids = range(a, b) if b - a <= 20 else [a, a + 1, (a + b) // 2, b - 2, b - 1]
    for i in ids:
        np.testing.assert_array_equal(batch[i - a], ds[i].unitary)
    circuits = ds.circuits(a, b)
    lengths = ds.lengths(a, b)
    assert len(circuits) == len(lengths) == b - a
    assert [len(c) for c in circuits] == lengths.tolist()
    for i in ids:
        assert str(circuits[i - a]) == str(ds[i].circuit)


@pytest.mark.parametrize(
    ("column", "damage"),
    [("unitaries", "unitaries || x'00'"), ("offsets", "substr(offsets, 1, 8)"), ("codes", "substr(codes, 1, 8)")],
)
def test_a_partial_read_of_a_damaged_block_is_refused(small_dataset: Path, column: str, damage: str) -> None:
    """A range inside one block reads only its part of the BLOBs, yet what it reads is checked (unitaries and
    offsets: the whole BLOB's size; codes: the part must be there)."""
    with sqlite3.connect(small_dataset) as conn:
        conn.execute(f"UPDATE blocks SET {column} = {damage} WHERE task_id = 1")
    with unitarium.open(small_dataset) as ds:
        with pytest.raises(DatasetDamagedError, match=re.escape("damaged block (records 4096..")):
            ds.unitaries(4100, 4110) if column == "unitaries" else ds.circuits(4100, 4110)
        assert ds.unitaries(0, 10).shape == (10, 4, 4) and len(ds.circuits(0, 10)) == 10  # other blocks still read


def test_batches_default_to_everything(small_dataset: Path) -> None:
    ds = unitarium.open(small_dataset)
    assert ds.unitaries().shape == (10_000, 4, 4)
    assert len(ds.circuits()) == 10_000
    lengths = ds.lengths()
    assert lengths.shape == (10_000,) and lengths.min() == 1 and lengths.max() == 12
    assert set(np.unique(lengths).tolist()) == set(range(1, 13))


@pytest.mark.parametrize(("a", "b"), [(-1, 5), (5, 4), (0, 10_001), (10_001, 10_002)])
def test_bad_ranges(small_dataset: Path, a: int, b: int) -> None:
    ds = unitarium.open(small_dataset)
    with pytest.raises(RecordIndexError):
        ds.unitaries(a, b)
    with pytest.raises(RecordIndexError):
        ds.circuits(a, b)


def test_iteration_in_id_order(small_dataset: Path) -> None:
    ds = unitarium.open(small_dataset)
    records = list(ds)
    assert [r.id for r in records] == list(range(10_000))
    np.testing.assert_array_equal(np.array([r.unitary for r in records]), ds.unitaries())
    assert [str(r.circuit) for r in records] == [str(c) for c in ds.circuits()]
    for i in (0, 4095, 4096, 9_999):
        assert str(records[i].circuit) == str(ds[i].circuit)


def test_every_record_equals_its_reference_product(small_dataset: Path) -> None:
    ds = unitarium.open(small_dataset)
    reference = np.array([c.unitary() for c in ds.circuits()])
    np.testing.assert_allclose(ds.unitaries(), reference, rtol=0, atol=1e-5)


def test_stored_circuits_round_trip_through_text(small_dataset: Path) -> None:
    ds = unitarium.open(small_dataset)
    for c in ds.circuits(0, 500):
        again = Circuit.from_text(str(c), ds.gateset)
        np.testing.assert_array_equal(again.codes, c.codes)


# -- handles ----------------------------------------------------------------------------------


def _len_and_last(ds: unitarium.Dataset) -> tuple[int, str]:
    return len(ds), str(ds[-1].circuit)


def test_pickle_reopens_by_path(small_dataset: Path) -> None:
    ds = unitarium.open(small_dataset)
    ds[0]  # connected
    data = pickle.dumps(ds)
    assert len(data) < 500 and str(small_dataset).encode() in data  # the path, not the connection
    again = pickle.loads(data)
    assert isinstance(again, unitarium.Dataset) and again.path == ds.path
    assert len(again) == len(ds)
    np.testing.assert_array_equal(again[123].unitary, ds[123].unitary)


def test_a_dataset_handle_crosses_processes(small_dataset: Path) -> None:
    ds = unitarium.open(small_dataset)
    expected = _len_and_last(ds)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_len_and_last, (ds,)) == expected
    with multiprocessing.get_context("fork").Pool(1) as pool:  # the inherited connection is not reused
        assert pool.apply(_len_and_last, (ds,)) == expected
    assert _len_and_last(ds) == expected


def test_context_manager_and_repr(small_dataset: Path) -> None:
    with unitarium.open(small_dataset) as ds:
        assert len(ds) == 10_000
        assert "10000 records" in repr(ds) and "h,t,tdg,cx" in repr(ds)
    assert len(ds) == 10_000  # reconnects after close


def test_opening_what_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(unitarium.DatasetMissingError):
        unitarium.open(tmp_path / "missing.db")
    text = tmp_path / "text.db"
    text.write_text("hello")
    with pytest.raises(unitarium.NotADatasetError):
        unitarium.open(text)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(unitarium.NotADatasetError):
        unitarium.open(foreign)


# -- info & verify ---------------------------------------------------------------------------


def test_info(small_dataset: Path, small_spec: unitarium.Spec) -> None:
    info = unitarium.open(small_dataset).info()
    assert set(info) >= {
        "path",
        "spec",
        "description",
        "records",
        "tasks_done",
        "candidates",
        "complete",
        "moves",
        "length_histogram",
        "file_bytes",
        "bytes_per_record",
    }
    assert info["path"] == str(small_dataset)
    assert info["spec"] == small_spec.to_json()
    assert info["records"] == info["candidates"] == 10_000
    assert info["tasks_done"] == -(-10_000 // small_spec.task_size)
    assert info["complete"] is True
    assert info["moves"] == [m.text for m in small_spec.gateset.moves]
    assert sum(info["length_histogram"].values()) == 10_000
    assert sorted(info["length_histogram"]) == list(range(1, 13))
    assert info["file_bytes"] >= small_dataset.stat().st_size > 10_000 * 4 * 4 * 8
    assert info["bytes_per_record"] == pytest.approx(info["file_bytes"] / 10_000)
    assert "seed=3" in info["description"]
    json.dumps(info)  # serialisable as is


def test_verify_ok(small_dataset: Path) -> None:
    report = unitarium.open(small_dataset).verify()
    assert report.ok and report.problems == []
    assert report.integrity == "ok"
    assert report.records == 10_000 and report.checked == 1000
    assert report.max_error < 1e-5
    full = unitarium.open(small_dataset).verify(sample=None)
    assert full.ok and full.checked == 10_000


def test_verify_finds_a_corrupted_unitary(small_dataset: Path) -> None:
    with sqlite3.connect(small_dataset) as conn:
        (blob,) = conn.execute("SELECT unitaries FROM blocks WHERE task_id = 1").fetchone()
        u = np.frombuffer(blob, dtype="<c8").copy()
        u[16 * 7 + 5] += 0.01
        conn.execute("UPDATE blocks SET unitaries = ? WHERE task_id = 1", (u.tobytes(),))
    conn.close()
    report = unitarium.open(small_dataset).verify(sample=None)
    assert not report.ok
    page = unitarium.open(small_dataset).format.page  # records per checksummed page
    first, last = 4096 + (7 // page) * page, 4096 + (7 // page + 1) * page - 1
    assert any("checksum" in p and f"records {first}..{last}" in p for p in report.problems), report.problems
    with pytest.raises(DatasetDamagedError, match=rf"damaged block \(records {first}\.\.{last}\).*checksum"):
        unitarium.open(small_dataset).unitaries(4100, 4105)
    assert unitarium.open(small_dataset)[last + 1].id == last + 1  # the next page is intact


def test_verify_recomputes_a_unitary_whose_checksum_was_forged(small_dataset: Path) -> None:
    """A change made with the checksum updated to match (deliberate, not bit rot) is caught by recomputing."""
    from unitarium._core.codec import page_checks

    ds = unitarium.open(small_dataset)
    fmt = ds.format
    with sqlite3.connect(small_dataset) as conn:
        off, codes, blob = conn.execute("SELECT offsets, codes, unitaries FROM blocks WHERE task_id = 1").fetchone()
        u = np.frombuffer(blob, dtype="<c8").copy()
        u[16 * 7 + 5] += 0.01
        checks = page_checks(fmt, 1, np.frombuffer(off, "<u4"), np.frombuffer(codes, "<u1"), u, None)
        conn.execute("UPDATE blocks SET unitaries = ?, checks = ? WHERE task_id = 1", (u.tobytes(), checks.tobytes()))
    conn.close()
    report = unitarium.open(small_dataset).verify(sample=None)
    assert not report.ok
    assert report.max_error == pytest.approx(0.01, rel=1e-3)
    assert any("differs" in p for p in report.problems)


def test_verify_finds_a_missing_task(small_dataset: Path) -> None:
    with sqlite3.connect(small_dataset) as conn:
        conn.execute("DELETE FROM tasks WHERE task_id = 1")
    conn.close()
    with pytest.raises(unitarium.DatasetDamagedError, match="task list breaks at task 2"):  # refused on open
        unitarium.open(small_dataset).verify(sample=10)


def test_schema_is_readable_without_unitarium(small_dataset: Path) -> None:
    """The documented layout: little-endian blobs, offsets, codes, and the format in meta."""
    ds = unitarium.open(small_dataset)
    with sqlite3.connect(f"file:{small_dataset}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        fmt = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0])
        assert fmt["dim"] == 4 and fmt["unitary_dtype"] == "complex64" and fmt["byte_order"] == "little"
        moves = [t for (t,) in conn.execute("SELECT text FROM moves ORDER BY code")]
        first, count, offsets, codes, unitaries = conn.execute(
            "SELECT t.first_id, b.count, b.offsets, b.codes, b.unitaries FROM blocks b JOIN tasks t USING (task_id) "
            "ORDER BY t.first_id LIMIT 1 OFFSET 1"
        ).fetchone()
    conn.close()
    off = np.frombuffer(offsets, dtype="<u4")
    cod = np.frombuffer(codes, dtype=fmt["code_dtype"])
    us = np.frombuffer(unitaries, dtype="<c8").reshape(count, 4, 4)
    assert len(off) == count + 1 and off[0] == 0 and off[-1] == len(cod)
    for j in (0, 1, count - 1):
        rec = ds[first + j]
        assert "; ".join(moves[c] for c in cod[off[j] : off[j + 1]]) == str(rec.circuit)
        np.testing.assert_array_equal(us[j], rec.unitary)


# -- content end to end: gate files, couplings, dtypes, lengths ---------------------------------

S = 1 / math.sqrt(2)
GATE_TOML = (
    '[gates.v]\nmatrix = [["0.5+0.5j", "0.5-0.5j"], ["0.5-0.5j", "0.5+0.5j"]]\n'
    "[gates.cv]\n"
    "matrix = [[1, 0, 0, 0], [0, [0.5, 0.5], 0, [0.5, -0.5]], [0, 0, 1, 0], [0, [0.5, -0.5], 0, [0.5, 0.5]]]\n"
)
GATE_JSON = {
    "gates": {
        "v": {"matrix": [["0.5+0.5j", "0.5-0.5j"], ["0.5-0.5j", "0.5+0.5j"]]},
        "cv": {
            "matrix": [[1, 0, 0, 0], [0, [0.5, 0.5], 0, [0.5, -0.5]], [0, 0, 1, 0], [0, [0.5, -0.5], 0, [0.5, 0.5]]]
        },
    }
}


def check_against_qiskit(path: Path, *, atol: float) -> unitarium.Dataset:
    ds = unitarium.open(path)
    for rec in ds:
        np.testing.assert_allclose(rec.unitary, Operator(rec.circuit.to_qiskit()).data, rtol=0, atol=atol)
    return ds


@pytest.mark.parametrize("kind", ["toml", "json"])
def test_custom_gates_from_a_file(tmp_path: Path, kind: str) -> None:
    gate_file = tmp_path / f"gates.{kind}"
    gate_file.write_text(GATE_TOML if kind == "toml" else json.dumps(GATE_JSON))
    spec = unitarium.make_spec(gates="v,cv,h", gate_file=gate_file, qubits=3, count=300, length="0:10", seed=1)
    assert [g.name for g in spec.gateset.gates] == ["v", "cv", "h"]
    path = tmp_path / "custom.db"
    unitarium.generate(path, spec, workers=1)
    ds = check_against_qiskit(path, atol=1e-5)
    assert len(ds) == 300
    assert {g.name for g in ds.gateset.gates if g.custom} == {"v", "cv"}  # rebuilt from the file's spec alone
    assert any("cv 2 0" in str(c) for c in ds.circuits())  # cv is not symmetric: both directions are moves
    assert ds.spec.canonical_json() == spec.canonical_json()
    assert ds.verify(sample=None).ok


def test_only_custom_gates_when_gates_is_empty(tmp_path: Path) -> None:
    gate_file = tmp_path / "gates.toml"
    gate_file.write_text(GATE_TOML)
    spec = unitarium.make_spec(gates="", gate_file=gate_file, qubits=2, count=5, length=3)
    assert [g.name for g in spec.gateset.gates] == ["v", "cv"]


def test_linear_coupling(tmp_path: Path) -> None:
    spec = unitarium.make_spec(gates="h,cx,ccx", qubits=3, coupling="linear", count=400, length="1:8", seed=2)
    texts = [m.text for m in spec.gateset.moves]
    assert "cx 0 2" not in texts and "cx 2 0" not in texts
    assert {"cx 0 1", "cx 1 0", "cx 1 2", "cx 2 1"} <= set(texts)
    assert {"ccx 0 1 2", "ccx 0 2 1", "ccx 1 2 0"} <= set(texts)  # 3 connected qubits: any order
    path = tmp_path / "linear.db"
    unitarium.generate(path, spec, workers=1)
    ds = check_against_qiskit(path, atol=1e-5)
    used = {move for c in ds.circuits() for move in c}
    assert "cx 0 2" not in used and "cx 2 0" not in used
    assert {"cx 0 1", "cx 2 1"} <= used


def test_edge_list_and_ring_couplings() -> None:
    edges = unitarium.make_spec(gates="cz,swap", qubits=4, coupling="0-2, 3-2", count=1, length=1)
    assert edges.gateset.coupling == ((0, 2), (2, 3))
    assert [m.text for m in edges.gateset.moves] == ["cz 0 2", "cz 2 3", "swap 0 2", "swap 2 3"]
    ring = unitarium.make_spec(gates="cz", qubits=4, coupling="ring", count=1, length=1)
    assert [m.text for m in ring.gateset.moves] == ["cz 0 1", "cz 0 3", "cz 1 2", "cz 2 3"]
    linear3 = unitarium.make_spec(gates="ccx", qubits=4, coupling="linear", count=1, length=1)
    assert {m.qubits[2] for m in linear3.gateset.moves} == {0, 1, 2, 3}
    assert all(sorted(m.qubits) in ([0, 1, 2], [1, 2, 3]) for m in linear3.gateset.moves)
    for bad in ["0-0", "0-4", "0_1", "", "a-b"]:
        with pytest.raises(unitarium.SpecError):
            unitarium.make_spec(gates="cz", qubits=4, coupling=bad, count=1, length=1)
    with pytest.raises(unitarium.SpecError, match="no move"):
        unitarium.make_spec(gates="ccx", qubits=3, coupling="0-1", count=1, length=1)  # 0,1,2 not connected
    sparse = unitarium.make_spec(gates="h,cx,ccx", qubits=3, coupling="0-1", count=1, length=1)
    assert [m.text for m in sparse.gateset.moves] == ["h 0", "h 1", "h 2", "cx 0 1", "cx 1 0"]


def test_moves_with_equal_matrices_are_one_move() -> None:
    gs = unitarium.make_spec(gates="cz,swap,ccx,cswap,cx,i", qubits=3, count=1, length=1).gateset
    texts = [m.text for m in gs.moves]
    assert [t for t in texts if t.startswith("cz ")] == ["cz 0 1", "cz 0 2", "cz 1 2"]
    assert [t for t in texts if t.startswith("swap ")] == ["swap 0 1", "swap 0 2", "swap 1 2"]
    assert [t for t in texts if t.startswith("ccx ")] == ["ccx 0 1 2", "ccx 0 2 1", "ccx 1 2 0"]
    assert [t for t in texts if t.startswith("cswap ")] == ["cswap 0 1 2", "cswap 1 0 2", "cswap 2 0 1"]
    assert len([t for t in texts if t.startswith("cx ")]) == 6
    assert [t for t in texts if t.startswith("i ")] == ["i 0"]
    mats = gs.move_matrices.reshape(len(texts), -1)
    assert len({m.tobytes() for m in mats}) == len(texts)
    assert gs.move_index()["cz 0 1"] == texts.index("cz 0 1")
    assert str(Circuit.from_text("cz 1 0; cz 2 0", gs)) == "cz 0 1; cz 0 2"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    gates=st.sampled_from(["h,t,cx", "sx,rz(pi/8),cy", "x,ecr,iswap", "h,ccx,cswap"]),
    qubits=st.integers(1, 3),
    lo=st.integers(0, 6),
    extra=st.integers(0, 6),
    count=st.integers(1, 700),
    dtype=st.sampled_from(["complex64", "complex128"]),
    seed=st.integers(0, 2**63),
)
def test_storage_round_trip(tmp_path: Path, gates, qubits, lo, extra, count, dtype, seed) -> None:
    """Whatever is generated reads back as circuits whose products are the stored unitaries."""
    names = [g for g in gates.split(",") if unitarium.parse_gate(g).num_qubits <= qubits]
    spec = unitarium.make_spec(
        gates=names, qubits=qubits, count=count, length=f"{lo}:{lo + extra}", dtype=dtype, seed=seed
    )
    path = tmp_path / "round-trip.db"
    path.unlink(missing_ok=True)  # hypothesis reuses tmp_path across examples
    unitarium.generate(path, spec, workers=1)
    ds = unitarium.open(path)
    assert len(ds) == count
    lengths = ds.lengths()
    assert lengths.min() >= lo and lengths.max() <= lo + extra
    u = ds.unitaries()
    assert u.dtype == np.dtype(dtype) and u.shape == (count, 2**qubits, 2**qubits)
    reference = np.array([c.unitary() for c in ds.circuits()])
    np.testing.assert_allclose(u, reference, rtol=0, atol=1e-5 if dtype == "complex64" else 1e-10)
    for i in {0, count // 2, count - 1}:
        np.testing.assert_array_equal(ds[i].unitary, u[i])


def test_a_schema_1_file_gets_a_clear_upgrade_message(tmp_path: Path) -> None:
    """A file of unitarium 0.1 (schema 1, blocks without checksums) is refused with what to do, never misread."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1433299316")  # 0x556E6974, "Unit"
    conn.execute("PRAGMA user_version = 1")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.commit()
    conn.close()
    with pytest.raises(unitarium.SchemaVersionError, match=r"schema version 1 .*re-run its generate command"):
        unitarium.open(path)
