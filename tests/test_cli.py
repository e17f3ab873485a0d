"""The command line, run as a real process: generate, info, show, verify, exit codes, one-line errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import qiskit.qasm2
from qiskit.quantum_info import Operator

import unitarium

from conftest import cli, content

GOLDEN = ["--gates", "clifford+t", "--qubits", "2", "--count", "100", "--length", "12", "--seed", "7"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "golden.db"
    proc = cli("generate", path, *GOLDEN, "--workers", "1")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"{path}: 100 records (100 new) in ")
    assert "complete" in proc.stdout.splitlines()[0]
    assert "records:     100 (100 candidates, 1 tasks)" in proc.stdout  # the info summary follows
    return path


def assert_one_line_error(proc, *fragments: str, code: int = 2) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("unitarium: error: ")
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for fragment in fragments:
        assert fragment in proc.stderr


def test_generate_equals_the_library(dataset: Path, tmp_path: Path) -> None:
    path = tmp_path / "lib.db"
    unitarium.generate(path, unitarium.make_spec(gates="clifford+t", qubits=2, count=100, length=12, seed=7))
    assert content(dataset) == content(path)
    ds = unitarium.open(dataset)
    assert ds.complete and len(ds) == 100


def test_generate_quiet_prints_one_line(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    proc = cli("generate", path, "--gates", "h,cx", "--qubits", "3", "--count", "50", "--length", "0:4", "-q")
    assert proc.stdout.count("\n") == 1 and "50 records (50 new)" in proc.stdout
    assert proc.stderr == ""
    assert len(unitarium.open(path)) == 50


def test_info(dataset: Path) -> None:
    text = cli("info", dataset).stdout
    assert f"path:        {dataset}" in text
    assert "spec:        gates=h,s,t,tdg,cx qubits=2 coupling=full random count=100 length=12" in text
    assert "records:     100" in text and "complete:    yes" in text
    assert "moves:       10 (h 0, h 1, s 0, s 1, t 0, t 1, tdg 0, tdg 1, ...)" in text
    assert "lengths:     12: 100" in text


def test_info_json(dataset: Path) -> None:
    info = json.loads(cli("info", dataset, "--json").stdout)
    assert info == json.loads(json.dumps(unitarium.open(dataset).info()))
    assert info["records"] == 100 and info["complete"] is True and info["spec"]["seed"] == 7
    assert info["length_histogram"] == {"12": 100}


def test_show_text(dataset: Path) -> None:
    rec = unitarium.open(dataset)[42]
    text = cli("show", dataset, "42").stdout
    assert text.startswith("record 42 (12 gates)\n")
    assert f"circuit: {rec.circuit}\n" in text
    assert rec.circuit.to_qasm() in text
    assert "unitary (complex64, qubit 0 least significant):" in text
    matrix = text.split("least significant):\n", 1)[1]
    assert matrix.count("[") == 5 and "0.7071" in matrix


@pytest.mark.parametrize("record_id", ["42", "-1", "0"])
def test_show_json(dataset: Path, record_id: str) -> None:
    ds = unitarium.open(dataset)
    rec = ds[int(record_id)]
    shown = json.loads(cli("show", dataset, record_id, "--json").stdout)
    assert shown["id"] == rec.id and shown["circuit"] == str(rec.circuit) and shown["qasm"] == rec.circuit.to_qasm()
    u = np.array(shown["unitary"]["real"]) + 1j * np.array(shown["unitary"]["imag"])
    np.testing.assert_array_equal(u, rec.unitary)
    qc = qiskit.qasm2.loads(shown["qasm"], custom_instructions=qiskit.qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    np.testing.assert_allclose(Operator(qc).data, u, atol=1e-5)


def test_verify(dataset: Path) -> None:
    proc = cli("verify", dataset)
    assert proc.stdout.startswith("integrity_check: ok; recomputed 100 of 100 records, max error ")
    assert proc.stdout.endswith("ok\n") and proc.stderr == ""
    proc = cli("verify", dataset, "--all")
    assert "recomputed 100 of 100" in proc.stdout and proc.stdout.endswith("ok\n")
    assert "recomputed 10 of 100" in cli("verify", dataset, "--sample", "10").stdout


def test_verify_fails_on_a_corrupted_record(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    cli("generate", path, *GOLDEN, "-q")
    with sqlite3.connect(path) as conn:
        (blob,) = conn.execute("SELECT unitaries FROM blocks").fetchone()
        u = np.frombuffer(blob, dtype="<c8").copy()
        u[16 * 99] = 7
        conn.execute("UPDATE blocks SET unitaries = ?", (u.tobytes(),))
    conn.close()
    proc = cli("verify", path, "--all", check=False)
    assert proc.returncode == 1
    assert "integrity_check: ok" in proc.stdout and proc.stdout.splitlines()[-1] != "ok"
    assert proc.stderr.startswith("problem: ") and "damaged block (records 0..99)" in proc.stderr
    assert "checksum" in proc.stderr and "Traceback" not in proc.stderr
    shown = cli("show", path, "99", check=False)  # damage is never served
    assert shown.returncode == 2 and shown.stdout == "" and "checksum" in shown.stderr


def test_help_and_version() -> None:
    proc = cli("--help")
    for command in ("generate", "info", "show", "verify"):
        assert command in proc.stdout
    assert "--gates" in cli("generate", "--help").stdout
    assert cli("--version").stdout.strip().endswith(unitarium.__version__)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["info", "{missing}"], ["no dataset at", "missing.db"]),
        (["show", "{dataset}", "100"], ["record id 100 is out of range", "100 records"]),
        (["show", "{dataset}", "-101"], ["record id -101 is out of range"]),
        (["show", "{dataset}", "x"], ["not a valid integer"]),
        (["verify", "{text}"], ["not a unitarium dataset"]),
        (["frob"], ["No such command"]),
        (["generate", "{new}", "--gates", "nope", "--qubits", "2", "--count", "3", "--length", "2"], ["unknown gate"]),
        (["generate", "{new}", "--gates", "h", "--qubits", "2", "--count", "3", "--length", "3:1"], ["inverted"]),
        (["generate", "{new}", "--gates", "h", "--qubits", "2", "--count", "0", "--length", "3"], ["--count"]),
        (["generate", "{new}", "--gates", "h", "--qubits", "2", "--count", "3"], ["--length"]),
        (["generate", "{new}", "--gates", "h", "--count", "3", "--length", "3"], ["--qubits"]),
        (["generate", "{new}", "--gates", "rz(pi/)", "--qubits", "1", "--count", "3", "--length", "3"], ["angle"]),
        (["generate", "{new}", "--gates", "ccx", "--qubits", "2", "--count", "3", "--length", "3"], ["ccx"]),
        (
            [
                "generate",
                "{new}",
                "--gates",
                "cx",
                "--qubits",
                "3",
                "--coupling",
                "0-5",
                "--count",
                "3",
                "--length",
                "3",
            ],
            ["0-5"],
        ),
        (
            ["generate", "{new}", "--gates", "h", "--qubits", "1", "--count", "3", "--length", "3", "--workers", "0"],
            ["--workers"],
        ),
        (
            ["generate", "{new}", "--gate-file", "{text}", "--qubits", "1", "--count", "3", "--length", "3"],
            ["gate file"],
        ),
        (["generate", "{new}", *GOLDEN[:-2], "--task-size", "-1"], ["--task-size -1 is out of range"]),
        (["generate", "{new}", *GOLDEN[:-2], "--task-size", "2000000"], ["--task-size 2000000"]),
        (["generate", "{new}", *GOLDEN[:-2], "--task-size", "ten"], ["--task-size"]),
    ],
)
def test_errors_are_one_line_with_exit_2(dataset: Path, tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    text = tmp_path / "text.json"
    text.write_text("not json, not sqlite")
    values = {"dataset": dataset, "missing": tmp_path / "missing.db", "text": text, "new": tmp_path / "new.db"}
    proc = cli(*(a.format(**values) for a in args), check=False)
    assert_one_line_error(proc, *fragments)
    assert not (tmp_path / "new.db").exists()
    assert not (tmp_path / "missing.db").exists()
    assert text.read_text() == "not json, not sqlite"


def test_spec_mismatch_via_the_cli_changes_nothing(dataset: Path, tmp_path: Path) -> None:
    path = tmp_path / "data.db"
    cli("generate", path, *GOLDEN, "-q")
    before = path.read_bytes()
    proc = cli("generate", path, *GOLDEN[:-1], "8", "-q", check=False)
    assert_one_line_error(proc, "another spec", "seed", "new file")
    assert path.read_bytes() == before
    assert content(path) == content(dataset)


def test_task_size_is_part_of_the_spec(tmp_path: Path) -> None:
    """--task-size: recorded in the spec (a resume must ask for the same); random content depends on it, an
    enumeration's records do not (only how many tasks hold them)."""
    enum = [
        "--gates",
        "h,s,cx",
        "--qubits",
        "2",
        "--enumerate",
        "--max-length",
        "5",
        "--unique",
        "-q",
        "--workers",
        "1",
    ]
    small, large = tmp_path / "small.db", tmp_path / "large.db"
    cli("generate", small, *enum, "--task-size", "64")
    cli("generate", large, *enum, "--task-size", "4096")
    with unitarium.open(small) as a, unitarium.open(large) as b:
        assert a.meta["spec"]["task_size"] == 64 and b.meta["spec"]["task_size"] == 4096
        assert a.summary["tasks"] > b.summary["tasks"]
        assert len(a) == len(b) and np.array_equal(a.codes(0, len(a))[0], b.codes(0, len(b))[0])
    before = content(small)
    proc = cli("generate", small, *enum, check=False)  # the default task size: another spec
    assert_one_line_error(proc, "another spec", "task_size")
    assert content(small) == before
    one, other = tmp_path / "one.db", tmp_path / "other.db"
    cli("generate", one, *GOLDEN, "--task-size", "10", "-q")
    cli("generate", other, *GOLDEN, "--task-size", "30", "-q")
    assert content(one) != content(other) and len(content(one)) == len(content(other)) == 100
