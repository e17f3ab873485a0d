"""The one table mapping SQLite's errors to unitarium's (``_storage.sqlite.SQLITE_ERRORS``): a row each,
reached through real SQLite situations (a held write lock, a file that is not a database, a page with a
flipped type byte, a file-size limit, a read-only connection, a missing directory), and damage as its own
class, :class:`DatasetDamagedError`, through the API and the CLI (one line, exit status 2)."""

from __future__ import annotations

import ast
import resource
import sqlite3
from pathlib import Path

import pytest

import unitarium
from unitarium import DatasetBusyError, DatasetDamagedError, NotADatasetError, StorageError
from unitarium._storage.sqlite import SQLITE_ERRORS, connect, sqlite_errors

from conftest import cli, one_error_line

SRC = Path(unitarium.__file__).parent
SPEC = {"gates": "h,t,cx", "qubits": 2, "count": 2_000, "length": 6}


def plain_db(path: Path, rows: int = 2_000) -> Path:
    """An ordinary SQLite file (rollback journal) with a table ``t`` spread over several pages."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, y BLOB)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, b"y" * 100) for i in range(rows)])
    conn.close()
    return path


def flip_page_type(path: Path, table: str) -> None:
    """Overwrite the b-tree page type byte of ``table``'s root page: SQLite calls the file malformed."""
    conn = sqlite3.connect(path)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    conn.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    page = 65536 if page == 1 else page
    data[(root - 1) * page] = 0x77  # no b-tree page has this type
    path.write_bytes(bytes(data))


def test_the_table_ends_with_a_row_for_everything() -> None:
    assert SQLITE_ERRORS[-1][0]("SQLITE_ANYTHING_NEW", "reading")
    assert SQLITE_ERRORS[-1][0]("", "reading")  # an sqlite3.Error without a name (e.g. ProgrammingError)


def test_busy_is_dataset_busy(tmp_path: Path) -> None:
    path = plain_db(tmp_path / "p.db")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        with (
            pytest.raises(DatasetBusyError, match="stayed locked by another process while writing it"),
            sqlite_errors(path, "writing"),
        ):
            waiter.execute("BEGIN IMMEDIATE")
    finally:
        waiter.close()
        holder.execute("ROLLBACK")
        holder.close()


def test_not_a_database_is_not_a_dataset(tmp_path: Path) -> None:
    path = tmp_path / "text.db"
    path.write_bytes(b"not sqlite at all " * 512)
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(NotADatasetError, match="is not an SQLite database") as info, sqlite_errors(path, "reading"):
            conn.execute("SELECT * FROM sqlite_master").fetchall()
    finally:
        conn.close()
    assert not isinstance(info.value, DatasetDamagedError)


def test_a_malformed_page_is_damage(tmp_path: Path) -> None:
    path = plain_db(tmp_path / "p.db")
    flip_page_type(path, "t")
    conn = connect(path, readonly=True)
    try:
        with (
            pytest.raises(DatasetDamagedError, match="is damaged: SQLite finds it malformed while reading it") as info,
            sqlite_errors(path, "reading"),
        ):
            conn.execute("SELECT sum(length(y)) FROM t").fetchall()
    finally:
        conn.close()
    assert isinstance(info.value, ValueError) and not isinstance(info.value, NotADatasetError)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_a_file_size_limit_is_no_space(tmp_path: Path) -> None:
    """EFBIG (Python ignores SIGXFSZ) reaches SQLite as a write error: said as a full disk would be."""
    path = plain_db(tmp_path / "p.db", rows=10)
    conn = sqlite3.connect(path, isolation_level=None)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit = path.stat().st_size + 8192
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        try:
            with sqlite_errors(path, "writing"):
                conn.execute("INSERT INTO t VALUES (?, ?)", (10**6, b"z" * 1_000_000))
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    except StorageError as exc:
        error = exc
    else:
        pytest.fail("a write past the file size limit succeeded")
    finally:
        conn.close()
    text = str(error)
    assert "failed:" in text and ("no space" in text or "disk is full" in text), text
    assert f"file size limit {limit:,} bytes" in text and "everything committed is kept" in text


def test_a_read_only_connection_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = plain_db(tmp_path / "p.db")
    conn = connect(path, readonly=True)
    try:
        with (
            pytest.raises(StorageError, match=r"cannot open .* while writing it: .*permissions"),
            sqlite_errors(path, "writing"),
        ):
            conn.execute("INSERT INTO t VALUES (?, ?)", (-1, b""))
    finally:
        conn.close()


def test_cannot_open_says_what_the_os_says(tmp_path: Path) -> None:
    path = tmp_path / "no such directory" / "x.db"
    with (
        pytest.raises(StorageError, match=r"cannot open .* while opening it: No such file or directory"),
        sqlite_errors(path, "opening"),
    ):
        connect(path, readonly=True).execute("SELECT 1 FROM sqlite_master")


def test_anything_else_is_a_storage_error(tmp_path: Path) -> None:
    path = plain_db(tmp_path / "p.db")
    conn = connect(path, readonly=True)
    try:
        with (
            pytest.raises(StorageError, match=r"storage error while reading .*no such table"),
            sqlite_errors(path, "reading"),
        ):
            conn.execute("SELECT * FROM missing")
    finally:
        conn.close()


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_a_corrupt_manifest_page_is_damage_through_the_api_and_the_cli(tmp_path: Path, layout: str) -> None:
    """Base: a StorageError ("storage error while reading"); now the class says damage, one line, exit 2."""
    path = tmp_path / ("d.db" if layout == "file" else "d")
    unitarium.generate(f"{path}/" if layout == "directory" else path, unitarium.make_spec(**SPEC), workers=1)
    manifest = path / "manifest.db" if layout == "directory" else path
    flip_page_type(manifest, "tasks")
    with pytest.raises(DatasetDamagedError, match="is damaged"), unitarium.open(path) as ds:
        ds.info()
    for args in (("info", path), ("show", path, "0"), ("verify", path)):
        proc = cli(*args, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "is damaged" in one_error_line(proc.stderr)


def test_no_handler_matches_message_text_and_few_remain() -> None:
    """Every SQLite error goes through the table: the handlers left do something besides mapping
    (roll back, close, classify a block's damage, stop a runaway query), each named here."""
    remaining = []
    for file in sorted(SRC.rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            caught = ast.unparse(node.type) if isinstance(node, ast.ExceptHandler) and node.type else ""
            suppressed = (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) == "contextlib.suppress"
                and any("sqlite3" in ast.unparse(a) for a in node.args)
            )
            if "sqlite3" in caught or suppressed:
                remaining.append(f"{file.relative_to(SRC)}:{node.lineno}")
        assert "in str(exc)" not in file.read_text(encoding="utf-8"), f"{file}: an error told by its message text"
    by_file: dict[str, int] = {}
    for place in remaining:
        by_file[place.split(":")[0]] = by_file.get(place.split(":")[0], 0) + 1
    assert by_file == {
        "_storage/sqlite.py": 3,  # sqlite_errors itself, atomic's ROLLBACK, bounded's budget
        "_storage/manifest.py": 2,  # Manifest.close's checkpoint and WAL exit, leave_wal's journal switch
        "_storage/shards.py": 1,  # SegmentWriter.discard's close
        "_storage/blocks.py": 2,  # a blob read: damage of the block (with its records) or the table's error;
        # data_version once per ds[i]: a plain try, no context manager on that hot path
        "_read/dataset.py": 1,  # read_transaction's COMMIT
    }, remaining
