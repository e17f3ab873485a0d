"""The persistent search index (unitarium.search._index, ``unitarium index``): answers with it
equal answers without it (and Qiskit's Operator), a foreign, stale or damaged index is never
trusted, the CLI maps it, ``synth --matrix`` takes a stack, ``approximate`` says its cost."""

from __future__ import annotations

import itertools
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import xxhash
from qiskit.quantum_info import Operator, random_unitary

import unitarium
from unitarium.search import SearchIndexError, SearchIndexWarning, build_index, index_path
from unitarium.search._index import _PREFIX, open_index
from unitarium.search._table import table_of

from conftest import cli, file_digests, one_error_line

ATOL = 1e-5
SPEC = {"gates": "h,t,cx", "qubits": 2, "max_length": 4, "unique": True}


def _make(path: Path, **spec) -> unitarium.Dataset:
    path.parent.mkdir(parents=True, exist_ok=True)
    unitarium.generate(path, unitarium.make_spec(**(spec or SPEC)), workers=1)
    return unitarium.open(path)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("index")


@pytest.fixture(scope="module")
def plain(tmp) -> Path:
    """A unique enumeration with no index beside it (the reference)."""
    _make(tmp / "plain" / "t.db")
    return tmp / "plain" / "t.db"


@pytest.fixture(scope="module")
def indexed(tmp, plain) -> Path:
    """A byte-for-byte copy of ``plain`` (same dataset id) with its index built."""
    (tmp / "indexed").mkdir()
    shutil.copyfile(plain, tmp / "indexed" / "t.db")
    build_index(tmp / "indexed" / "t.db")
    return tmp / "indexed" / "t.db"


def _targets(ds: unitarium.Dataset, n: int, seed: int) -> np.ndarray:
    """Products of random pairs of records (circuits of up to 2L moves) and Haar-random unitaries."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(ds), n), rng.integers(0, len(ds), n)
    found = [ds[int(j)].circuit.unitary() @ ds[int(i)].circuit.unitary() for i, j in zip(a, b, strict=True)]
    haar = [random_unitary(4, seed=seed + k).data for k in range(3)]
    return np.stack(found + haar)


def _equiv(circuit: unitarium.Circuit, u: np.ndarray) -> bool:
    return Operator(circuit.to_qiskit()).equiv(Operator(u), atol=ATOL)


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


# -- answers -----------------------------------------------------------------------------------


def test_answers_with_the_index_equal_answers_without_it(plain, indexed):
    with_index, without = unitarium.open(indexed), unitarium.open(plain)
    assert table_of(with_index, "synthesize").stored is not None  # the index is mapped...
    assert table_of(without, "synthesize").stored is None  # ...and there is none to map here
    targets = _targets(without, 40, 1)
    got, want = with_index.synthesize_many(targets), without.synthesize_many(targets)
    assert [str(c) for c in got] == [str(c) for c in want]
    assert sum(c is not None for c in got) >= 40  # the products are all found
    for c, u in zip(got, targets, strict=True):
        assert c is None or (_equiv(c, u) and len(c) <= 2 * SPEC["max_length"])
    for c, u in zip(got[-3:], targets[-3:], strict=True):  # Haar-random: none, or really equal
        assert c is None or _equiv(c, u)
    near_i, near_o = with_index.nearest(targets[:8], k=3), without.nearest(targets[:8], k=3)
    assert [[(m.record.id, m.distance) for m in row] for row in near_i] == [
        [(m.record.id, m.distance) for m in row] for row in near_o
    ]
    app_i = with_index.approximate_many(targets[-3:], max_length=6)
    app_o = without.approximate_many(targets[-3:], max_length=6)
    assert [(str(a.circuit), a.distance) for a in app_i] == [(str(a.circuit), a.distance) for a in app_o]


def test_index_holds_what_the_table_loads(plain, indexed):
    """Every stored array equals the one the search computes from the dataset, bit for bit."""
    mapped = table_of(unitarium.open(indexed), "synthesize")
    loaded = table_of(unitarium.open(plain), "synthesize")
    assert loaded.cache is not None
    for name in ("lengths", "codes", "starts"):
        assert np.array_equal(getattr(mapped, name), getattr(loaded, name))
    assert np.array_equal(mapped.index.packed, loaded.index.packed)
    assert mapped.block(0, len(mapped)).tobytes() == loaded.cache.tobytes()


def test_index_of_a_dataset_that_is_not_an_enumeration_serves_nearest(tmp):
    path = tmp / "random" / "r.db"
    ds = _make(path, gates="h,t,cx", qubits=2, count=300, length="6", unique=True)
    want = ds.nearest(random_unitary(4, seed=5).data, k=4)
    build_index(path)
    again = unitarium.open(path)
    got = again.nearest(random_unitary(4, seed=5).data, k=4)
    assert again.__dict__["_search_index"] is not None
    assert [(m.record.id, m.distance) for m in got] == [(m.record.id, m.distance) for m in want]


def test_building_never_writes_the_dataset(tmp, plain):
    path = _copy(plain, tmp / "untouched" / "t.db")
    before = file_digests(path)
    build_index(path)
    assert file_digests(path) == before
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        "t.db",
        "t.db.index",
    ]


def test_index_of_an_unfinished_dataset_is_refused(tmp):
    from conftest import edit_sqlite

    path = _make(tmp / "unfinished.db").path
    edit_sqlite(path, "UPDATE meta SET value = '{\"complete\": false}' WHERE key = 'state'")
    with pytest.raises(unitarium.DatasetError, match="not complete"):
        build_index(path)
    assert not index_path(path).exists()


# -- never trusted blindly ----------------------------------------------------------------------


def _search_warns(path: Path, match: str) -> None:
    """The index beside ``path`` is refused with a warning naming why; the answers stay right."""
    ds = unitarium.open(path)
    targets = _targets(ds, 5, 7)
    with pytest.warns(SearchIndexWarning, match=match):
        got = ds.synthesize_many(targets)
    assert table_of(ds, "synthesize").stored is None  # loaded from the dataset instead
    for c, u in zip(got[:5], targets[:5], strict=True):
        assert c is not None and _equiv(c, u)


def test_foreign_index_is_refused(tmp, indexed):
    other = _make(tmp / "foreign" / "t.db")  # the same spec, another dataset (another id)
    shutil.copyfile(index_path(indexed), index_path(other.path))
    assert open_index(other)[1] == "belongs to another dataset"
    _search_warns(other.path, "belongs to another dataset")


def test_index_of_another_spec_is_refused(tmp, indexed):
    other = _make(tmp / "spec" / "t.db", gates="h,s,cx", qubits=2, max_length=4, unique=True)
    shutil.copyfile(index_path(indexed), index_path(other.path))
    assert "another dataset" in (open_index(other)[1] or "")


def _rewrite_header(path: Path, edit) -> None:
    """Edit the JSON header of the index at ``path`` and reseal it with a valid checksum (an index
    that is well formed but says something else)."""
    raw = bytearray(path.read_bytes())
    magic, version, zero, offset, length, _ = _PREFIX.unpack(raw[: _PREFIX.size])
    header = json.loads(raw[offset : offset + length])
    edit(header)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    head = _PREFIX.pack(magic, version, zero, offset, len(text), 0)[:-8]
    path.write_bytes(
        head + struct.pack("<Q", xxhash.xxh3_64_intdigest(head + text)) + raw[_PREFIX.size : offset] + text
    )


def test_stale_index_is_refused(tmp, indexed):
    """An index built when the dataset had fewer records (the dataset grew since)."""
    path = _copy(indexed, tmp / "stale" / "t.db")
    shutil.copyfile(index_path(indexed), index_path(path))
    assert open_index(unitarium.open(path))[0] is not None
    _rewrite_header(index_path(path), lambda h: h["identity"].update(records=h["identity"]["records"] - 7))
    n = len(unitarium.open(path))
    assert open_index(unitarium.open(path))[1] == f"is stale (built for {n - 7} records, the dataset has {n:,})"
    _search_warns(path, "is stale")
    cli("index", path)  # rebuilt: usable again
    assert cli("index", path, "--check").stdout.strip().endswith(f"ok ({n:,} records)")


def test_index_of_another_key_scheme_is_refused(tmp, indexed):
    path = _copy(indexed, tmp / "keys" / "t.db")
    shutil.copyfile(index_path(indexed), index_path(path))
    _rewrite_header(index_path(path), lambda h: h["identity"].update(keys="0" * 16))
    assert open_index(unitarium.open(path))[1] == "is stale (built with another key scheme)"


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda raw, at: raw[: len(raw) // 2], "truncated"),
        (lambda raw, at: raw[:10], "truncated to 10 bytes"),
        (lambda raw, at: raw + b"\0" * 100, "truncated or extended"),
        (lambda raw, at: _flip(raw, len(raw) - 20), "header fails its checksum"),
        (lambda raw, at: _flip(raw, at["keys"]), "array 'keys' fails its checksum"),
        (lambda raw, at: _flip(raw, at["codes"] + 3), "array 'codes' fails its checksum"),
        (lambda raw, at: b"NOTANIDX" + raw[8:], "not a unitarium search index"),
        (lambda raw, at: raw[:8] + struct.pack("<I", 99) + raw[12:], "format version 99"),
    ],
)
def test_damaged_index_is_refused(tmp, indexed, damage, why):
    path = _copy(indexed, tmp / f"damaged{abs(hash(why))}" / "t.db")
    target = index_path(path)
    raw = index_path(indexed).read_bytes()
    target.write_bytes(damage(raw, _offsets(raw)))
    index, reason = open_index(unitarium.open(path))
    assert index is None and why in reason
    _search_warns(path, "rebuild it with `unitarium index")
    proc = cli("synth", path, "--circuit", "h 0; t 1; cx 0 1; h 1; t 0; cx 1 0; h 0", "--json")
    assert "unitarium: warning: search index" in proc.stderr and why in proc.stderr
    assert json.loads(proc.stdout)["length"] == 7


def _flip(raw: bytes, at: int) -> bytes:
    return raw[:at] + bytes([raw[at] ^ 0x5A]) + raw[at + 1 :]


def _offsets(raw: bytes) -> dict[str, int]:
    _, _, _, offset, length, _ = _PREFIX.unpack(raw[: _PREFIX.size])
    return {k: v["offset"] for k, v in json.loads(raw[offset : offset + length])["arrays"].items()}


@pytest.mark.parametrize("array", ["unitaries", "coarse"])
def test_damaged_unitaries_stop_the_search_with_one_line(tmp, indexed, array):
    """The unitaries (complex128, and the complex64 copy that scans read) are checked a chunk at
    a time when first read: a flipped byte there is an error (exit 2, one line), never a wrong
    answer; ``unitarium index`` rebuilds the index."""
    path = _copy(indexed, tmp / f"flipped-{array}" / "t.db")
    raw = index_path(indexed).read_bytes()
    index_path(path).write_bytes(_flip(raw, _offsets(raw)[array] + 40))
    with pytest.raises(SearchIndexError, match="damaged"):
        unitarium.open(path).nearest(np.eye(4), k=2)
    # a Haar-random target: every prefix scanned (complex64), a record's unitary: found, verified
    target = random_unitary(4, seed=9).data if array == "coarse" else unitarium.open(path)[7].circuit.unitary()
    proc = cli("synth", path, "--matrix", _save(tmp / f"target-{array}.npy", target), check=False)
    assert proc.returncode == 2
    assert "search index" in one_error_line(proc.stderr) and "unitarium index" in proc.stderr
    check = cli("index", path, "--check", check=False)
    assert check.returncode == 2 and "damaged" in check.stderr
    cli("index", path)
    assert cli("index", path, "--check").returncode == 0
    assert unitarium.open(path).nearest(np.eye(4), k=1)[0].record.id == 0


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


# -- the command line ---------------------------------------------------------------------------


def test_cli_builds_and_reads_the_index(tmp, plain):
    path = _copy(plain, tmp / "cli" / "t.db")
    assert cli("index", path, "--check", check=False).returncode == 1
    out = cli("index", path).stdout
    assert str(index_path(path)) in out and "records" in out
    assert cli("index", path, "--check").returncode == 0
    ref = unitarium.open(plain)
    u = _targets(ref, 6, 3)
    for k in range(len(u)):
        proc = cli("synth", _path_of(path), "--matrix", _save(tmp / f"u{k}.npy", u[k]), "--json", check=False)
        want = ref.synthesize(u[k])
        if want is None:
            assert proc.returncode == 1 and json.loads(proc.stdout)["circuit"] is None
        else:
            got = json.loads(proc.stdout)
            assert got["circuit"] == str(want) and _equiv(
                unitarium.Circuit.from_text(got["circuit"], ref.gateset), u[k]
            )
        assert "warning" not in proc.stderr


def _path_of(path: Path) -> str:
    return str(path)


def test_cli_synth_takes_a_stack(tmp, indexed, plain):
    ref = unitarium.open(plain)
    u = _targets(ref, 7, 11)  # 7 products, then 3 Haar-random
    stack = _save(tmp / "stack.npy", u)
    want = ref.synthesize_many(u)
    proc = cli("synth", indexed, "--matrix", stack, "--json", check=False)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["target"] for line in lines] == list(range(len(u)))
    assert [line["circuit"] for line in lines] == [None if c is None else str(c) for c in want]
    for line, target in zip(lines, u, strict=True):
        if line["circuit"] is not None:
            assert _equiv(unitarium.Circuit.from_text(line["circuit"], ref.gateset), target)
    missing = sum(c is None for c in want)
    assert proc.returncode == (1 if missing else 0)
    if missing:
        assert f"{missing} of the {len(u)} targets" in proc.stderr
    text = cli("synth", indexed, "--matrix", stack, check=False).stdout.splitlines()
    assert len(text) == len(u) and all(row.split("\t")[0] == str(i) for i, row in enumerate(text))
    found = cli("synth", indexed, "--matrix", _save(tmp / "found.npy", u[:7])).stdout.splitlines()
    assert [row.split("\t")[2] for row in found] == [str(c) for c in want[:7]]


def test_cli_nearest(tmp, indexed, plain):
    ref = unitarium.open(plain)
    u = np.stack([random_unitary(4, seed=s).data for s in range(3)])
    want = ref.nearest(u, k=2)
    proc = cli("nearest", indexed, "--matrix", _save(tmp / "near.npy", u), "-k", "2", "--json")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [[(m["id"], m["distance"]) for m in r["matches"]] for r in rows] == [
        [(m.record.id, m.distance) for m in w] for w in want
    ]
    one = cli("nearest", indexed, "--circuit", "h 0; t 0; cx 0 1").stdout.split("\t")
    assert float(one[1]) == pytest.approx(0, abs=1e-6) and one[2].strip() == "h 0; t 0; cx 0 1"


def test_cli_approximate_says_its_cost_first(tmp, indexed):
    u = _save(tmp / "approx.npy", random_unitary(4, seed=2).data)
    est = cli("synth", indexed, "--matrix", u, "--approximate", "--max-length", "6", "--estimate", "--json")
    cost = json.loads(est.stdout)
    ds = unitarium.open(indexed)
    assert cost["pairs"] == ds.approximate_cost(max_length=6).pairs > 0 and cost["records"] == len(ds)
    proc = cli("synth", indexed, "--matrix", u, "--approximate", "--max-length", "6", "--json")
    assert proc.stderr.startswith("unitarium: approximate at max_length 6 over ")
    assert f"about {cost['pairs']:.2g} pairs" in proc.stderr
    want = ds.approximate(random_unitary(4, seed=2).data, max_length=6)
    assert json.loads(proc.stdout)["distance"] == want.distance
    assert json.loads(proc.stdout)["circuit"] == str(want.circuit)
    refused = cli("synth", indexed, "--matrix", u, "--approximate", "--max-pairs", "10", check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1  # the refusal alone
    assert cli("synth", indexed, "--matrix", u, "--estimate", check=False).returncode == 2


def test_generate_builds_the_index_of_a_unique_enumeration(tmp):
    path = tmp / "gen" / "t.db"
    path.parent.mkdir()
    out = cli(
        "generate", path, "--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--max-length", "3", "--unique", "-q"
    )
    assert "search index" in out.stdout and index_path(path).exists()
    assert open_index(unitarium.open(path))[0] is not None
    again = cli("generate", path, "--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--max-length", "3", "--unique")
    assert "search index" not in again.stdout  # still this dataset's: kept
    cli("generate", tmp / "gen" / "r.db", "--gates", "h,s,cx", "--qubits", "2", "--count", "50", "--length", "3", "-q")
    assert not index_path(tmp / "gen" / "r.db").exists()


def test_generate_builds_no_index_too_large_to_build_unasked(tmp, monkeypatch):
    """The 3-qubit Clifford group's index would take ~133 GiB: generate builds an index unasked only while it
    is small (AUTO_INDEX_BYTES, a quarter of the free disk), else says so in one note and leaves the dataset
    searchable without it; `unitarium index` builds it when asked."""
    import unitarium.cli.search as search_cli
    from unitarium.search._build import index_bytes

    path = tmp / "big-table" / "t.db"
    path.parent.mkdir()
    args = ["--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--max-length", "3", "--unique", "-q"]
    monkeypatch.setattr(search_cli, "AUTO_INDEX_BYTES", 1000)  # (this table's index: ~40 KiB)
    out = cli("generate", path, *args)
    assert not index_path(path).exists() and "search index" not in out.stdout
    note = out.stderr.strip().splitlines()
    assert len(note) == 1 and note[0].startswith("unitarium: note: no search index built for ")
    assert f"unitarium index {path}" in note[0]
    with unitarium.open(path) as ds:
        assert ds.synthesize(np.eye(4)) is not None  # searchable without it
        assert index_bytes(ds) == len(ds) * (24 * 16 + 3 + 31) > 1000
    assert "search index" in cli("index", path).stdout and index_path(path).exists()


def test_generate_index_options_ask_for_the_index_or_none(tmp, monkeypatch):
    """``--no-index``: no index and no note (a run whose index is not wanted, or built later); ``--index``: built
    however large (here past a lowered AUTO_INDEX_BYTES); ``--index`` where there is no search index to build: one
    note, the dataset made as asked."""
    import unitarium.cli.search as search_cli

    args = ["--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--max-length", "3", "--unique", "-q"]
    skipped, forced = tmp / "opt" / "none.db", tmp / "opt" / "forced.db"
    skipped.parent.mkdir()
    out = cli("generate", skipped, *args, "--no-index")
    assert not index_path(skipped).exists() and out.stderr == "" and "search index" not in out.stdout
    monkeypatch.setattr(search_cli, "AUTO_INDEX_BYTES", 1000)
    out = cli("generate", forced, *args, "--index")
    assert "search index" in out.stdout and open_index(unitarium.open(forced))[0] is not None
    random = tmp / "opt" / "r.db"
    out = cli("generate", random, "--gates", "h", "--qubits", "1", "--count", "5", "--length", "2", "-q", "--index")
    assert out.stderr.strip() == "unitarium: note: --index: only a unique enumeration has a search index (none built)"
    assert not index_path(random).exists() and len(unitarium.open(random)) == 5


def test_directory_dataset_gets_its_index_beside_it(tmp):
    path = tmp / "dirs" / "big"
    path.parent.mkdir()
    unitarium.generate(str(path) + "/", unitarium.make_spec(**SPEC), workers=1)
    out = cli("index", str(path) + "/").stdout
    assert index_path(str(path) + "/") == tmp / "dirs" / "big.index" and "big.index" in out
    ds = unitarium.open(str(path) + "/")
    assert table_of(ds, "synthesize").stored is not None
    assert ds.synthesize(np.eye(4)) is not None


def test_fast_query_keys_and_bucket_lookup_equal_the_plain_ones(plain, monkeypatch):
    """mitm forms the keys of ``U A^dag`` without the products and finds them through a bucket
    directory: same answers as forming every product and binary-searching the sorted keys."""
    from unitarium.search import mitm
    from unitarium.search._keys import primary_keys

    ds = unitarium.open(plain)
    table = table_of(ds, "synthesize")
    rng = np.random.default_rng(3)
    keys = np.concatenate(
        [
            primary_keys(table.block(0, len(table))),
            primary_keys(table.block(0, len(table)) @ table.block(9, 10)),
            rng.integers(-(2**63), 2**63 - 1, 500),
        ]
    )
    got, want = mitm.find(table, keys), table.index.find(keys)
    assert len(got[0]) > len(table) and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    targets = _targets(ds, 20, 5)
    fast = [str(c) for c in ds.synthesize_many(targets)]
    monkeypatch.setattr(mitm, "_linear_keys", lambda d: None)
    monkeypatch.setattr(mitm, "find", lambda table, keys: table.index.find(keys))
    assert [str(c) for c in unitarium.open(plain).synthesize_many(targets)] == fast


def test_nearest_in_two_passes_equals_exact_brute_force(plain):
    """nearest on a search table scores complex64 first, then rescores its candidates exactly:
    the same ids, distances and ties (lower id first) as scoring every record in complex128."""
    from unitarium.search.nearest import nearest_ids, nearest_in_table

    table = table_of(unitarium.open(plain), "nearest")
    rng = np.random.default_rng(8)
    # Haar-random targets, records (distance 0) and the identity: many records tie with it
    targets = np.concatenate([_targets(unitarium.open(plain), 4, 8), table.take(rng.integers(0, len(table), 3))])
    targets = np.concatenate([targets, np.eye(4, dtype=np.complex128)[None]])
    everything = np.abs(np.einsum("qij,nij->qn", np.conj(targets), table.block(0, len(table))))
    for k in (1, 5, 40):
        ids, dist = nearest_in_table(table, targets, k)
        want_ids, want_dist = nearest_ids(targets, table.blocks(), k)
        np.testing.assert_allclose(dist, want_dist, rtol=0, atol=1e-7)  # (distance = sqrt(rounding) near 0)
        for row in range(len(targets)):
            kth = np.sort(np.sqrt(np.maximum(0, 8 - 2 * everything[row])))[k - 1]
            assert dist[row, -1] == pytest.approx(kth, abs=1e-7)  # the k nearest distances...
            clear = dist[row] < kth - 1e-7  # ...the same records where no tie decides
            assert set(ids[row][clear]) == set(want_ids[row][want_dist[row] < kth - 1e-7])
            assert all(a <= b for a, b in itertools.pairwise(dist[row]))  # nearest first


def test_bloom_filter_never_rules_out_a_key_of_the_index(plain):
    """The Bloom filter before the bucket directory (no false negatives) rules out most absent keys."""
    from unitarium.search._keys import passes

    table = table_of(unitarium.open(plain), "synthesize")
    bits, nbits = table.bloom
    stored = (table.index.packed | np.uint64((1 << table.index.row_bits) - 1)).view(np.int64)
    assert passes(bits, nbits, stored).all()
    absent = np.random.default_rng(2).integers(-(2**63), 2**63 - 1, 20000)
    assert passes(bits, nbits, absent).mean() < 0.2


def test_cli_search_imports_no_engine_and_no_optional_library(tmp, indexed):
    """`unitarium synth`/`nearest` start fast: they import neither the engines nor torch, qiskit,
    scipy, pyarrow or cirq (python -X importtime shows what a command pays for)."""
    import subprocess
    import sys

    target = _save(tmp / "imports.npy", random_unitary(4, seed=4).data)
    code = (
        "import sys; from unitarium.cli.main import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(m for m in sys.modules)))"
    )
    for command in ("synth", "nearest"):
        argv = [sys.executable, "-c", code, command, str(indexed), "--matrix", str(target)]
        proc = subprocess.run(argv, capture_output=True, text=True, check=True)
        loaded = set(proc.stdout.split("\n")[-2].split())
        heavy = {"torch", "qiskit", "scipy", "pyarrow", "cirq", "ray", "unitarium._run.engine", "multiprocessing.pool"}
        assert not loaded & heavy, loaded & heavy
