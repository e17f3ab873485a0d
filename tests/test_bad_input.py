"""Bad input through the CLI: each case ends with exactly one ``unitarium: error: ...`` line on stderr naming
the problem, a non-zero exit status, no traceback, and not one byte changed in the files around it (existing
datasets, their ``-wal``, and no new file). Each case runs in its own directory: in this process through click's
runner, or as a real ``python -m unitarium`` (those that need a process of their own, and every seventh)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import DROP_ROOT_POWERS, IS_ROOT, cli, one_error_line

RANDOM = ("--count", "10", "--length", "3")


@dataclass(frozen=True)
class Case:
    """``args`` may name ``{dir}`` (the case's directory) and fixtures made in it on demand: ``{ds}`` a
    unique-mode dataset, ``{rnd}`` a random-mode one, ``{junk}`` random bytes, ``{empty}`` an empty file,
    ``{foreign}`` an SQLite file that is not a dataset, ``{newer}`` a dataset of schema version 99, ``{ro}``
    a directory we may not write, ``{secret}`` one we may not enter, ``{rods}`` a read-only dataset in
    ``{ro}``. ``files`` are written into the directory first."""

    id: str
    args: tuple[str, ...]
    expect: tuple[str, ...]
    files: tuple[tuple[str, str | bytes], ...] = ()
    unprivileged: bool = False  # run where permissions apply (as root: without the capabilities that skip them)
    address_space: int | None = None


def gen(*args: str) -> tuple[str, ...]:
    return ("generate", "{ds}", *args, "--quiet")


def gate_file(name: str, body: object, *, raw: str | None = None) -> tuple[tuple[str, str], ...]:
    return ((name, raw if raw is not None else json.dumps({"gates": body})),)


GF = ("--gate-file", "{dir}/g.json", "--qubits", "1", *RANDOM)
U2 = [[0.0, 1.0], [1.0, 0.0]]

CASES = [
    # -- the spec ------------------------------------------------------------------------------------------
    Case("unknown gate", gen("--gates", "h,foo", "--qubits", "2", *RANDOM), ("unknown gate 'foo'", "known gates")),
    Case("gate wider than the register", gen("--gates", "ccx", "--qubits", "2", *RANDOM), ("acts on 3 qubits",)),
    Case("zero qubits", gen("--gates", "h", "--qubits", "0", *RANDOM), ("--qubits 0",)),
    Case("negative qubits", gen("--gates", "h", "--qubits", "-3", *RANDOM), ("--qubits -3",)),
    Case("too many qubits", gen("--gates", "h", "--qubits", "13", *RANDOM), ("--qubits 13", "1 to 12")),
    Case(
        "more qubits than memory allows",
        ("generate", "{dir}/big.db", "--gates", "h,cx", "--qubits", "12", *RANDOM),
        ("12 qubits need about", "GiB per worker", "use fewer qubits"),
        address_space=64 << 30,  # whatever this machine's RAM, the limit makes the refusal certain
    ),
    Case("zero count", gen("--gates", "h", "--qubits", "1", "--count", "0", "--length", "3"), ("--count 0",)),
    Case("negative count", gen("--gates", "h", "--qubits", "1", "--count", "-5", "--length", "3"), ("--count -5",)),
    Case("negative length", gen("--gates", "h", "--qubits", "1", "--count", "5", "--length", "-1"), ("out of range",)),
    Case("huge length", gen("--gates", "h", "--qubits", "1", "--count", "5", "--length", "100000"), ("out of range",)),
    Case("wordy length", gen("--gates", "h", "--qubits", "1", "--count", "5", "--length", "ten"), ("whole numbers",)),
    Case("three-part length", gen("--gates", "h", "--qubits", "1", "--count", "5", "--length", "1:2:3"), ("MIN:MAX",)),
    Case("inverted lengths", gen("--gates", "h", "--qubits", "1", "--count", "5", "--length", "9:3"), ("inverted",)),
    Case("negative max length", gen("--gates", "h", "--qubits", "1", "--enumerate", "--max-length", "-1"), ("range",)),
    Case("enumerate alone", gen("--gates", "h", "--qubits", "1", "--enumerate"), ("go together",)),
    Case(
        "count with enumerate",
        gen("--gates", "h", "--qubits", "1", "--enumerate", "--max-length", "2", "--count", "5"),
        ("--enumerate takes --max-length only",),
    ),
    Case("random without count", gen("--gates", "h", "--qubits", "1", "--length", "3"), ("need --count and --length",)),
    Case("malformed angle", gen("--gates", "rz(pi/)", "--qubits", "1", *RANDOM), ("malformed angle 'pi/'",)),
    Case("angle as code", gen("--gates", "rz(__import__('os').getcwd())", "--qubits", "1", *RANDOM), ("malformed",)),
    Case("nan angle", gen("--gates", "rz(nan)", "--qubits", "1", *RANDOM), ("malformed angle 'nan'",)),
    Case("infinite angle", gen("--gates", "rz(1e999)", "--qubits", "1", *RANDOM), ("not a finite number",)),
    Case("400-digit angle", gen("--gates", f"rz(1{'0' * 400})", "--qubits", "1", *RANDOM), ("malformed angle",)),
    Case("division by zero", gen("--gates", "rz(pi/0)", "--qubits", "1", *RANDOM), ("malformed angle 'pi/0'",)),
    Case("too few angles", gen("--gates", "u(pi)", "--qubits", "1", *RANDOM), ("takes 3 angle(s), got 1",)),
    Case("angle missing", gen("--gates", "rz", "--qubits", "1", *RANDOM), ("needs fixed angle",)),
    Case("empty gate set", gen("--gates", ",", "--qubits", "1", *RANDOM), ("gate set is empty",)),
    Case("negative seed", gen("--gates", "h", "--qubits", "1", *RANDOM, "--seed", "-1"), ("--seed -1",)),
    Case("zero workers", gen("--gates", "h", "--qubits", "1", *RANDOM, "--workers", "0"), ("at least 1",)),
    Case("unknown dtype", gen("--gates", "h", "--qubits", "1", *RANDOM, "--dtype", "float32"), ("'--dtype'",)),
    Case("bad coupling", gen("--gates", "h,cx", "--qubits", "2", *RANDOM, "--coupling", "star"), ("bad coupling",)),
    Case("edge off the register", gen("--gates", "cx", "--qubits", "2", *RANDOM, "--coupling", "0-5"), ("0-5",)),
    Case("no allowed move", gen("--gates", "ccx", "--qubits", "3", *RANDOM, "--coupling", "0-1"), ("no move allowed",)),
    # -- custom gate files ---------------------------------------------------------------------------------
    Case(
        "non-unitary matrix",
        gen(*GF),
        ("'g' is not unitary",),
        gate_file("g.json", {"g": {"matrix": [[1, 1], [0, 1]]}}),
    ),
    Case("3x3 matrix", gen(*GF), ("size 2, 4, 8",), gate_file("g.json", {"g": {"matrix": np.eye(3).tolist()}})),
    Case("1x1 matrix", gen(*GF), ("size 2, 4, 8",), gate_file("g.json", {"g": {"matrix": [[1]]}})),
    Case("ragged matrix", gen(*GF), ("gate 'g'",), gate_file("g.json", {"g": {"matrix": [[1, 0], [0]]}})),
    Case(
        "NaN in a matrix",
        gen(*GF),
        ("NaN",),
        gate_file("g.json", None, raw='{"gates": {"g": {"matrix": [[NaN, 0], [0, 1]]}}}'),
    ),
    Case("'nan' in a matrix", gen(*GF), ("NaN",), gate_file("g.json", {"g": {"matrix": [["nan", 0], [0, 1]]}})),
    Case(
        "text in a matrix", gen(*GF), ("must be numbers",), gate_file("g.json", {"g": {"matrix": [["a", 0], [0, 1]]}})
    ),
    Case(
        "booleans in a matrix",
        gen(*GF),
        ("must be numbers",),
        gate_file("g.json", {"g": {"matrix": [[True, False], [False, True]]}}),
    ),
    Case("no matrix", gen(*GF), ("needs a 'matrix' entry",), gate_file("g.json", {"g": {"unitary": U2}})),
    Case("no gates table", gen(*GF), ("non-empty table 'gates'",), gate_file("g.json", {})),
    Case(
        "gate named like SQL",
        gen(*GF),
        ("must be an identifier",),
        gate_file("g.json", {"x'); DROP TABLE meta;--": {"matrix": U2}}),
    ),
    Case("gate shadowing h", gen(*GF), ("shadows a standard gate",), gate_file("g.json", {"H": {"matrix": U2}})),
    Case(
        "two-qubit gate, one qubit",
        gen(*GF),
        ("acts on 2 qubits",),
        gate_file("g.json", {"g": {"matrix": np.eye(4).tolist()}}),
    ),
    Case("invalid JSON", gen(*GF), ("is not valid",), gate_file("g.json", None, raw='{"gates": {')),
    Case(
        "invalid TOML",
        gen("--gate-file", "{dir}/g.toml", "--qubits", "1", *RANDOM),
        ("is not valid toml",),
        (("g.toml", "[gates.g\nmatrix = 1"),),
    ),
    Case(
        "missing gate file", gen("--gate-file", "{dir}/none.json", "--qubits", "1", *RANDOM), ("cannot read gate file",)
    ),
    Case("gate file is a directory", gen("--gate-file", "{dir}", "--qubits", "1", *RANDOM), ("is a directory",)),
    # -- files that are not (our) datasets -----------------------------------------------------------------
    Case(
        "resume with another spec",
        gen("--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--max-length", "5", "--unique"),
        ("another spec", "max_length"),
    ),
    *[
        Case(f"{what}: {cmd[0]}", (cmd[0], target, *cmd[1:]), expect)
        for what, target, expect in [
            ("not SQLite", "{junk}", ("not a unitarium dataset (not an SQLite file)",)),
            ("empty file", "{empty}", ("not an SQLite file",)),
            ("SQLite, not ours", "{foreign}", ("SQLite database but not a unitarium dataset",)),
            ("newer schema", "{newer}", ("schema version 99", "upgrade unitarium")),
            ("missing file", "{dir}/missing.db", ("no dataset at", "missing.db")),
        ]
        for cmd in [("info",), ("show", "0"), ("verify",), ("lookup", "--circuit", "h 0")]
    ],
    *[
        Case(f"{what}: generate", ("generate", target, "--gates", "h", "--qubits", "1", *RANDOM), expect)
        for what, target, expect in [
            ("not SQLite", "{junk}", ("not an SQLite file",)),
            ("empty file", "{empty}", ("not an SQLite file",)),
            ("SQLite, not ours", "{foreign}", ("not a unitarium dataset",)),
            ("newer schema", "{newer}", ("schema version 99",)),
        ]
    ],
    Case("a directory as dataset", ("info", "{dir}"), ("is a directory",)),
    # -- reading -------------------------------------------------------------------------------------------
    Case("id past the end", ("show", "{ds}", "100000"), ("record id 100000 is out of range",)),
    Case("id before the start", ("show", "{ds}", "-100000"), ("record id -100000 is out of range",)),
    Case("id not a number", ("show", "{ds}", "abc"), ("'abc' is not a valid integer",)),
    Case("negative sample", ("verify", "{ds}", "--sample", "-1"), ("--sample",)),
    Case("lookup NaN matrix", ("lookup", "{ds}", "--matrix", "{dir}/nan.npy"), ("NaN or infinite",)),
    Case("lookup 3x3 matrix", ("lookup", "{ds}", "--matrix", "{dir}/three.npy"), ("4x4 matrix, got shape (3, 3)",)),
    Case(
        "lookup text as .npy",
        ("lookup", "{ds}", "--matrix", "{dir}/g.json"),
        ("as a .npy matrix",),
        gate_file("g.json", {}),
    ),
    Case("lookup neither", ("lookup", "{ds}"), ("exactly one of --matrix",)),
    Case("lookup unknown gate", ("lookup", "{ds}", "--circuit", "foo 0"), ("unknown gate 'foo'",)),
    Case("lookup qubit off the register", ("lookup", "{ds}", "--circuit", "h 7"), ("distinct qubits below 2",)),
    Case("lookup gate not in the set", ("lookup", "{ds}", "--circuit", "t 0"), ("not in this dataset's gate set",)),
    Case("lookup without an index", ("lookup", "{rnd}", "--circuit", "h 0"), ("no lookup index",)),
    # -- where the file would go ---------------------------------------------------------------------------
    # (a missing directory is created: test_layouts)
    Case(
        "parent is a file",
        ("generate", "{junk}/x.db", "--gates", "h", "--qubits", "1", *RANDOM),
        ("is not a directory",),
    ),
    Case(
        "unwritable directory",
        ("generate", "{ro}/x.db", "--gates", "h", "--qubits", "1", *RANDOM),
        ("cannot create", "Permission denied"),
        unprivileged=True,
    ),
    Case(
        "directory we may not enter",
        ("generate", "{secret}/x.db", "--gates", "h", "--qubits", "1", *RANDOM),
        ("cannot access", "Permission denied"),
        unprivileged=True,
    ),
    Case(
        "read-only dataset",
        ("generate", "{rods}", "--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--max-length", "4", "--unique"),
        ("for writing: Permission denied",),
        unprivileged=True,
    ),
    Case(
        "read-only WAL dataset, read",
        ("info", "{rods}"),
        ("readers of a WAL dataset", "--journal delete"),
        unprivileged=True,
    ),
]
UNIQUE_SPEC = ("--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--max-length", "4", "--unique")


@dataclass
class Outcome:
    proc: subprocess.CompletedProcess
    before: dict[str, str]
    after: dict[str, str]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    sources = tmp_path_factory.mktemp("sources")
    cli("generate", sources / "ds.db", *UNIQUE_SPEC, "--workers", "1", "--quiet")
    cli("generate", sources / "rnd.db", "--gates", "h,cx", "--qubits", "2", *RANDOM, "--workers", "1", "--quiet")
    root = Path(tempfile.mkdtemp(prefix="unitarium-bad-input-"))
    root.chmod(0o755)
    try:
        dirs = {case.id: _prepare(case, root / f"case{i}", sources) for i, case in enumerate(CASES)}
        real = [c for i, c in enumerate(CASES) if _real(c, i)]
        with ThreadPoolExecutor(2) as pool:  # the real processes run while this one runs the rest, in turn
            procs = pool.map(lambda c: (c.id, _run(c, dirs[c.id], real=True)), real)
            done = {c.id: _run(c, dirs[c.id]) for i, c in enumerate(CASES) if not _real(c, i)}
            done |= dict(procs)
        yield {c.id: done[c.id] for c in CASES}
    finally:
        for path in root.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(root)


def _prepare(case: Case, d: Path, sources: Path) -> Path:
    d.mkdir()
    d.chmod(0o755)
    for name, content in case.files:
        (d / name).write_bytes(content.encode() if isinstance(content, str) else content)
    text = " ".join(case.args)
    makers: dict[str, Callable[[], None]] = {
        "{ds}": lambda: shutil.copy(sources / "ds.db", d / "ds.db"),
        "{rnd}": lambda: shutil.copy(sources / "rnd.db", d / "rnd.db"),
        "{junk}": lambda: (d / "junk.db").write_bytes(np.random.default_rng(0).bytes(70_000)),
        "{empty}": lambda: (d / "empty.db").write_bytes(b""),
        "{foreign}": lambda: _sqlite(d / "foreign.db", "CREATE TABLE t (x); INSERT INTO t VALUES (1);"),
        "{newer}": lambda: (
            shutil.copy(sources / "ds.db", d / "newer.db"),
            _sqlite(d / "newer.db", "PRAGMA user_version=99;"),
        ),
        "{ro}": lambda: (d / "ro").mkdir(mode=0o555),
        "{secret}": lambda: (d / "secret").mkdir(mode=0o000),
        "{rods}": lambda: _read_only_dataset(d / "rod", sources),
    }
    for key, make in makers.items():
        if key in text:
            make()
    np.save(d / "nan.npy", np.full((4, 4), np.nan))
    np.save(d / "three.npy", np.eye(3))
    return d


def _sqlite(path: Path, script: str) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.close()


def _read_only_dataset(d: Path, sources: Path) -> None:
    """A dataset in WAL mode (one still being written, or made before complete datasets left WAL) in a
    read-only directory (a complete one reads there: it leaves WAL when it completes, test_layouts)."""
    d.mkdir()
    shutil.copy(sources / "ds.db", d / "ds.db")
    _sqlite(d / "ds.db", "PRAGMA journal_mode=WAL;")
    (d / "ds.db").chmod(0o444)
    d.chmod(0o555)


def _argv(case: Case, d: Path) -> list[str]:
    names = {"{ds}": "ds.db", "{rnd}": "rnd.db", "{junk}": "junk.db", "{empty}": "empty.db", "{foreign}": "foreign.db"}
    names |= {"{newer}": "newer.db", "{ro}": "ro", "{secret}": "secret", "{rods}": "rod/ds.db"}
    out = []
    for arg in case.args:
        for key, name in names.items():
            arg = arg.replace(key, str(d / name))
        out.append(arg.replace("{dir}", str(d)))
    return out


def _real(case: Case, index: int) -> bool:
    """Whether a case runs as ``python -m unitarium`` in a process of its own: when it needs one (dropped root
    powers, an address-space limit), and every seventh case, so that the real entry point is held to the same
    line; the rest run in this process through click's runner (the same commands and error handling)."""
    return case.unprivileged or case.address_space is not None or index % 7 == 0


def _run(case: Case, d: Path, real: bool = False) -> Outcome:
    def limits() -> None:  # in the child, before exec
        if case.address_space:
            resource.setrlimit(resource.RLIMIT_AS, (case.address_space, case.address_space))

    before = _tree(d)
    if not real:
        with contextlib.chdir("/"):
            return Outcome(cli(*_argv(case, d), check=False), before, _tree(d))
    prefix = DROP_ROOT_POWERS if case.unprivileged and IS_ROOT else []
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "unitarium", *_argv(case, d)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
        preexec_fn=limits,
    )
    return Outcome(proc, before, _tree(d))


def _tree(d: Path) -> dict[str, str]:
    """sha256 of every file under ``d``, except what SQLite's readers may create and remove (the ``-shm``
    index, an empty ``-wal``): equal trees mean no file was changed, created or removed."""
    out = {}
    for path in sorted(d.rglob("*")):
        if (
            path.is_file()
            and not path.name.endswith("-shm")
            and not (path.name.endswith("-wal") and not path.stat().st_size)
        ):
            out[str(path.relative_to(d))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(case: Case, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[case.id]
    proc = outcome.proc
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    line = one_error_line(proc.stderr)
    for fragment in case.expect:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert proc.stdout == ""
    assert outcome.after == outcome.before, "the failed command changed, created or removed a file"


def test_every_case_ran(outcomes: dict[str, Outcome]) -> None:
    assert len(outcomes) == len(CASES) == len({c.id for c in CASES})
