"""Reading in bulk (issue #13, item 5): lists and slices of records, unitaries of any ids, move codes,
padded tokens for circuits of different lengths, and lookup --json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import unitarium
from unitarium import RecordIndexError, SpecError

from conftest import cli, one_error_line


@pytest.fixture(scope="module")
def mixed(made) -> Path:
    """Random circuits of lengths 0 to 9, over several blocks."""
    return made(gates="h,t,cx", qubits=2, count=9_000, length="0:9", seed=4)


def test_lists_and_slices_of_records_equal_single_reads(mixed: Path) -> None:
    with unitarium.open(mixed) as ds:
        ids = [8_999, 3, 4_100, 3, -1, 0]
        records = ds[ids]
        assert [r.id for r in records] == [8_999, 3, 4_100, 3, 8_999, 0]
        for rec, i in zip(records, ids, strict=True):
            single = ds[i]
            assert str(rec.circuit) == str(single.circuit)
            np.testing.assert_array_equal(rec.unitary, single.unitary)
        assert [r.id for r in ds[4_090:4_100]] == list(range(4_090, 4_100))  # across a block boundary
        assert [r.id for r in ds[10:0:-3]] == [10, 7, 4, 1]
        assert ds[5:5] == [] and [r.id for r in ds[np.array([2, 1])]] == [2, 1]


def test_unitaries_of_any_ids_equal_the_range_read(mixed: Path) -> None:
    with unitarium.open(mixed) as ds:
        everything = ds.unitaries()
        ids = np.random.default_rng(1).integers(0, len(ds), 500)
        np.testing.assert_array_equal(ds.unitaries(ids), everything[ids])
        np.testing.assert_array_equal(ds.unitaries([5, 5, 4]), everything[[5, 5, 4]])
        assert ds.unitaries([]).shape == (0, 4, 4)
        for bad in ([9_000], [1, -9_001]):
            with pytest.raises(RecordIndexError, match="out of range"):
                ds.unitaries(bad)
        with pytest.raises(RecordIndexError, match="1-D sequence of integers"):
            ds.unitaries(np.array([[1, 2]]))
        with pytest.raises(RecordIndexError, match="integers"):
            ds.unitaries([1.5])


def test_codes_tokens_and_lengths_of_circuits_of_different_lengths(mixed: Path) -> None:
    with unitarium.open(mixed) as ds:
        codes, offsets = ds.codes(100, 200)
        circuits = ds.circuits(100, 200)
        assert len(offsets) == 101 and offsets[0] == 0 and offsets[-1] == len(codes)
        tokens, lengths = ds.tokens(100, 200, pad=-1)
        np.testing.assert_array_equal(lengths, ds.lengths(100, 200))
        assert tokens.shape == (100, lengths.max())
        for k, circuit in enumerate(circuits):
            np.testing.assert_array_equal(codes[offsets[k] : offsets[k + 1]], circuit.codes)
            np.testing.assert_array_equal(tokens[k, : lengths[k]], circuit.codes)
            assert (tokens[k, lengths[k] :] == -1).all()
        with pytest.raises(SpecError, match="not all of length 3: use tokens"):
            ds.circuit_array(100, 200, 3)


def test_lookup_json(tmp_path: Path) -> None:
    path = tmp_path / "cliff.db"
    cli("generate", path, "--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--max-length", "4", "--unique")
    found = json.loads(cli("lookup", path, "--circuit", "s 0; s 0; h 1", "--json").stdout)
    assert len(found) == 1 and found[0]["circuit"] in ("h 1; s 0; s 0", "s 0; s 0; h 1", "s 0; h 1; s 0")
    assert found[0]["qasm"].startswith("OPENQASM 2.0;")
    with unitarium.open(path) as ds:
        assert ds[found[0]["id"]].circuit.to_qasm() == found[0]["qasm"]
    qasm = tmp_path / "c.qasm"
    qasm.write_text('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[1];\ns q[0];\ns q[0];\n')
    assert json.loads(cli("lookup", path, "--qasm", qasm, "--json").stdout) == found
    rng = np.random.default_rng(0)
    with unitarium.open(path) as ds:  # a Clifford beyond the table's 4 moves (most of the 11,520 are)
        texts = ["; ".join(rng.choice([m.text for m in ds.gateset.moves], 12)) for _ in range(20)]
        far = next(t for t in texts if not ds.lookup(unitarium.Circuit.from_text(t, ds.gateset).unitary()))
    missing = cli("lookup", path, "--circuit", far, "--json", check=False)
    assert missing.returncode == 1 and json.loads(missing.stdout) == []
    both = cli("lookup", path, "--circuit", "h 0", "--qasm", qasm, check=False)
    assert both.returncode == 2 and "exactly one of" in one_error_line(both.stderr)
