"""The small frictions of a new user's day (issue 21, item 6), each fixed and pinned here: gate aliases and "did you
mean", counts like 1e6, ``info`` naming the running writer, a new PATH without a suffix, ``--help`` with examples,
Hugging Face split names, the demo's next commands, and the length histogram as text bars in ``info``."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from qiskit.circuit import library as qlib
from qiskit.quantum_info import Operator

import unitarium
from unitarium._core.gates import ALIASES, parse_gate

from conftest import REPO, cli, dataset_digest, kill_group, one_error_line, records_in, start_cli, wait_until

SMALL = ["--qubits", "2", "--count", "3000", "--length", "1:8", "--seed", "5", "--workers", "1", "--quiet"]


def stored_spec(path: Path) -> dict:
    with unitarium.open(path) as ds:
        return ds.info()["spec"]


# -- 1. gate aliases and suggestions ----------------------------------------------------------------------------------

QISKIT_ALIASES = {  # each alias against Qiskit's own gate, an independent oracle of the matrix
    "id": qlib.IGate(),
    "cnot": qlib.CXGate(),
    "ccnot": qlib.CCXGate(),
    "toffoli": qlib.CCXGate(),
    "fredkin": qlib.CSwapGate(),
    "sdag": qlib.SdgGate(),
    "tdag": qlib.TdgGate(),
    "v": qlib.SXGate(),
    "vdg": qlib.SXdgGate(),
    "sxdag": qlib.SXdgGate(),
    "phase(0.3)": qlib.PhaseGate(0.3),
    "u1(-pi/5)": qlib.U1Gate(-np.pi / 5),
    "u3(pi/2,0.1,-2pi/3)": qlib.U3Gate(np.pi / 2, 0.1, -2 * np.pi / 3),
}


def test_every_alias_is_checked_here() -> None:
    assert {name.split("(")[0] for name in QISKIT_ALIASES} == set(ALIASES)


@pytest.mark.parametrize("alias", QISKIT_ALIASES)
def test_an_alias_is_its_canonical_gate(alias: str) -> None:
    gate = parse_gate(alias)
    base = alias.split("(")[0]
    assert gate.base == ALIASES[base] and gate.base != base  # the canonical name is what is kept
    assert np.allclose(gate.matrix, Operator(QISKIT_ALIASES[alias]).data, atol=1e-12)
    assert parse_gate(alias.upper()).name == gate.name  # CNOT, TOFFOLI: as Cirq writes them


def test_aliases_make_exactly_the_dataset_of_the_canonical_names(tmp_path: Path) -> None:
    aliased, canonical = tmp_path / "aliased.db", tmp_path / "canonical.db"
    cli("generate", aliased, "--gates", "CNOT,h,tdag,phase(pi/4)", *SMALL)
    cli("generate", canonical, "--gates", "cx,h,tdg,p(pi/4)", *SMALL)
    assert dataset_digest(aliased) == dataset_digest(canonical)
    assert stored_spec(aliased) == stored_spec(canonical)
    assert stored_spec(aliased)["gates"] == ["cx", "h", "tdg", "p(pi/4)"]
    # the same spec, so re-running with either spelling is a resume (a different spec is refused, exit 2)
    for path, gates in ((aliased, "cx,h,tdg,p(pi/4)"), (canonical, "cnot,h,tdag,phase(pi/4)")):
        proc = cli("generate", path, "--gates", gates, *SMALL)
        assert "(0 new)" in proc.stdout
    assert cli("generate", aliased, "--gates", "cx,h,t,p(pi/4)", *SMALL, check=False).returncode == 2


def test_a_custom_gate_named_like_an_alias_stays_custom(tmp_path: Path) -> None:
    """Stored specs of datasets made before aliases may hold a custom gate ``v``: it must still mean that gate."""
    gates = tmp_path / "g.json"
    gates.write_text(json.dumps({"gates": {"v": {"matrix": [[0, 1], [1, 0]]}}}))
    path = tmp_path / "custom.db"
    cli("generate", path, "--gate-file", gates, "--gates", "v,h", *SMALL)
    with unitarium.open(path) as ds:
        assert [g.name for g in ds.gateset.gates] == ["v", "h"] and ds.gateset.gates[0].custom
        assert np.array_equal(ds.gateset.gates[0].matrix, [[0, 1], [1, 0]])


@pytest.mark.parametrize(
    ("gates", "hint"),
    [
        ("h,tt", "unknown gate 'tt' (did you mean 't'?)"),
        ("swp,h", "unknown gate 'swp' (did you mean 'swap'?)"),
        ("hadamrd", None),
        ("clifford+tt", "unknown gate 'clifford+tt' (did you mean 'clifford+t'?)"),
        ("rzz(pi/2)", "unknown gate 'rzz(pi/2)' (did you mean 'rz(pi/2)'?)"),
        ("toffolli", "unknown gate 'toffolli' (did you mean 'toffoli'?)"),
        ("phse(pi/4)", "unknown gate 'phse(pi/4)' (did you mean 'phase(pi/4)'?)"),
        ("h0", "unknown gate 'h0' (did you mean 'h'? gates take no qubit indices here"),
        ("cx 0 1", "unknown gate 'cx 0 1' (did you mean 'cx'? gates take no qubit indices here"),
        ("CNOT01", "unknown gate 'CNOT01' (did you mean 'CNOT'? gates take no qubit indices here"),
        ("qq", None),
    ],
)
def test_a_misspelt_gate_gets_one_line_with_a_suggestion(tmp_path: Path, gates: str, hint: str | None) -> None:
    path = tmp_path / "never.db"
    proc = cli("generate", path, "--gates", gates, *SMALL, check=False)
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    if hint is None:
        assert "did you mean" not in line and "known gates: i, x," in line
    else:
        assert line.startswith(f"unitarium: error: {hint}") and "known gates:" in line
    assert not path.exists()


def test_a_hostile_gate_name_gets_its_error_at_once() -> None:
    """The suggestion's work does not grow with the name: a backtracking regex took minutes on 20,000 digits."""
    for name in ("a" + "1" * 100_000 + "x", "h" + "1" * 100_000, "x" * 100_000):
        with pytest.raises(unitarium.SpecError, match="unknown gate") as err:
            parse_gate(name)
        assert "did you mean" not in str(err.value)


# -- 2. counts as people write them -----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", ["3e3", "3_000", "3000", "3.0e3", "0.3e4"])
def test_count_in_scientific_or_underscored_notation(tmp_path: Path, count: str) -> None:
    path = tmp_path / "c.db"
    args = [a if a != "3000" else count for a in SMALL]
    cli("generate", path, "--gates", "h,cx", *args)
    assert stored_spec(path)["source"]["count"] == 3000 and len(unitarium.open(path)) == 3000


@pytest.mark.parametrize(
    ("count", "why"),
    [
        ("2.5", "'2.5' is not a whole number"),
        ("1e-3", "'1e-3' is not a whole number"),
        ("1,000", "'1,000' has a comma: write 1_000 or a power of ten like 1e6"),
        ("1e400", "'1e400' is too large"),
        ("ten", "'ten' is not a whole number (e.g. 1000000, 1_000_000 or 1e6)"),
        ("1__0", "'1__0' is not a whole number"),
        ("nan", "'nan' is not a whole number"),
    ],
)
def test_a_count_that_is_not_a_whole_number_is_refused(tmp_path: Path, count: str, why: str) -> None:
    path = tmp_path / "c.db"
    args = [a if a != "3000" else count for a in SMALL]
    proc = cli("generate", path, "--gates", "h,cx", *args, check=False)
    assert proc.returncode == 2
    assert one_error_line(proc.stderr).startswith(f"unitarium: error: Invalid value for '--count': {why}")
    assert not path.exists()


def test_a_negative_count_in_any_notation_keeps_its_message(tmp_path: Path) -> None:
    proc = cli(
        "generate", tmp_path / "c.db", "--gates", "h", *[a if a != "3000" else "-5e0" for a in SMALL], check=False
    )
    assert one_error_line(proc.stderr) == "unitarium: error: --count -5 must be a positive integer"


# -- 3. info names the process writing the dataset --------------------------------------------------------------------

LONG_RUN = ["--gates", "clifford+t", "--qubits", "3", "--count", "1e7", "--length", "1:30", "--seed", "1"]


@pytest.mark.parametrize("name", ["busy.db", "busy/"])
def test_info_names_the_running_writer(tmp_path: Path, name: str) -> None:
    path = f"{tmp_path}/{name}"  # a str: the / of a directory must survive
    proc = start_cli("generate", path, *LONG_RUN, "--workers", "1", "--quiet")
    try:
        wait_until(lambda: records_in(path) >= 1, timeout=120, what="the run to commit its first task")
        os.kill(proc.pid, signal.SIGSTOP)  # mid-run, holding the write lock, however fast the machine
        try:
            text = cli("info", path).stdout
            info = json.loads(cli("info", path, "--json").stdout)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
    finally:
        kill_group(proc)
    line = next(x for x in text.splitlines() if x.startswith("complete:"))
    assert line.startswith(f"complete:    no (being generated by pid {proc.pid} on {socket.gethostname()} since 20")
    assert f": unitarium generate {path} --gates clifford+t" in line and "re-run" not in line
    assert info["complete"] is False and info["writer"]["pid"] == proc.pid
    assert info["writer"]["host"] == socket.gethostname() and info["writer"]["command"].startswith("unitarium generate")
    assert abs(info["writer"]["since"] - time.time()) < 3600  # seconds since the epoch, not clock ticks
    # the writer killed (-9): nobody holds the lock, and info says how to resume
    after = cli("info", path).stdout
    assert (
        "complete:    no (no process on this host is writing it: re-run the same generate command to resume)" in after
    )
    assert json.loads(cli("info", path, "--json").stdout)["writer"] is None


# -- 4. a new PATH without a suffix -----------------------------------------------------------------------------------


def test_a_new_path_without_suffix_says_it_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "newdir"
    proc = cli("generate", path, "--gates", "h,cx", *SMALL[:-1])  # not --quiet
    note = [x for x in proc.stderr.splitlines() if x.startswith("unitarium: note:")]
    assert note == [
        f"unitarium: note: {str(path)!r} is new and has no suffix: it is one dataset file (SQLite); for a sharded "
        f"directory, give {str(path) + '/'!r} (ending in /)"
    ]
    assert path.is_file()
    # resuming it, a path with a suffix, a directory, or --quiet: nothing to say
    for target, extra in ((path, []), (tmp_path / "x.db", []), (f"{tmp_path}/d/", []), (tmp_path / "q", ["--quiet"])):
        again = cli("generate", target, "--gates", "h,cx", *SMALL[:-1], *extra)
        assert "note:" not in again.stderr
    assert (tmp_path / "d").is_dir() and (tmp_path / "q").is_file()


def test_a_refused_run_on_a_new_path_without_suffix_prints_only_its_error(tmp_path: Path) -> None:
    path = tmp_path / "newdir"
    proc = cli("generate", path, "--gates", "h,cx", *SMALL[:-3], "--workers", "100000", check=False)
    assert proc.returncode == 2 and "--workers 100000 is more than this machine can run" in one_error_line(proc.stderr)
    assert not path.exists()


# -- 5. --help with examples, and --workers as the README says ---------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["generate"]])
def test_help_has_examples_that_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    text = cli(*command, "--help").stdout
    assert "Examples:" in text
    examples = [x.strip() for x in text.split("Examples:", 1)[1].splitlines() if x.strip().startswith("unitarium ")]
    assert len(examples) >= 3
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for example in examples:  # each one runs, in order, shrunk: counts, lengths and enumeration depth made small
        args = shlex.split(example)[1:]
        for option, small in (("--count", "100"), ("--max-length", "3"), ("--length", "1:4")):
            if option in args:
                args[args.index(option) + 1] = small
        cli(*args, *(["--workers", "1", "--quiet"] if args[0] == "generate" else []))


def test_workers_help_agrees_with_the_readme() -> None:
    text = " ".join(cli("generate", "--help").stdout.split())
    workers = text.split("--workers INTEGER", 1)[1].split(" -q, --quiet", 1)[0]
    assert "a file, one per core but one" in workers and "a directory, one per core" in workers
    readme = (REPO / "README.md").read_text()
    row = next(x for x in readme.splitlines() if x.startswith("| `--workers N` |"))
    assert "A file: default one per core but one" in row and "A directory: default one per core" in row


# -- 6. Hugging Face split names ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_dataset_for_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "ct.db"
    cli("generate", path, "--gates", "clifford+t", *SMALL)
    return path


def split_files(out: Path) -> list[str]:
    return sorted({p.name.split("-")[0] for p in (out / "data").iterdir()})


@pytest.mark.parametrize(
    ("split", "written"),
    [
        ("train=0.8,val=0.1,test=0.1", ["test", "train", "validation"]),
        ("training=0.6,dev=0.2,eval=0.2", ["test", "train", "validation"]),
        ("train=0.7,validation=0.3", ["train", "validation"]),
    ],
)
def test_split_names_load_back_as_written(
    small_dataset_for_export: Path, tmp_path: Path, split: str, written: list[str]
) -> None:
    import datasets

    out = tmp_path / "hf"
    proc = cli("export", small_dataset_for_export, out, "--split", split)
    assert split_files(out) == written
    for name in written:
        assert f" {name} " in proc.stdout  # "(parquet: train 2,400, validation 300, test 300)"
    card = (out / "README.md").read_text()
    assert [m for m in re.findall(r"- split: (\w+)", card)] == [
        n for n in ("train", "validation", "test") if n in written
    ]
    for data_dir in (out, out / "data"):
        loaded = datasets.load_dataset("parquet", data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"))
        assert sorted(loaded) == written, data_dir
        assert sum(len(v) for v in loaded.values()) == 3000


def test_val_and_validation_together_are_refused(small_dataset_for_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "hf"
    proc = cli("export", small_dataset_for_export, out, "--split", "train=0.8,validation=0.1,val=0.1", check=False)
    assert proc.returncode == 2 and not out.exists()
    assert one_error_line(proc.stderr) == (
        "unitarium: error: split names 'validation' and 'val' both name the 'validation' split: give it once"
    )


def test_npz_split_names_are_the_same(small_dataset_for_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "npz"
    cli("export", small_dataset_for_export, out, "--format", "npz", "--split", "train=0.5,val=0.5")
    assert sorted(p.name for p in (out / "data").iterdir()) == ["train.npz", "validation.npz"]


# -- 7. the demo's next three commands ---------------------------------------------------------------------------------


def test_the_demo_prints_three_next_commands_that_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = (REPO / "scripts" / "demo").read_text()
    block = script.split("<<'NEXT'\n", 1)[1].split("\nNEXT\n", 1)[0]
    commands = [x.strip() for x in block.splitlines() if x.strip().startswith(".venv/bin/unitarium ")]
    assert len(commands) == 3
    # the demo's own dataset, smaller: the generate line of the script with --count 2000
    generate = shlex.split(next(x for x in script.splitlines() if x.startswith(".venv/bin/unitarium generate")))
    generate[generate.index("--count") + 1] = "2000"
    monkeypatch.chdir(tmp_path)
    cli(*generate[1:], "--workers", "1", "--quiet")
    outputs = [
        cli(*shlex.split(command)[1:], "--workers", "1") if " generate " in command else cli(*shlex.split(command)[1:])
        for command in commands
    ]
    assert (tmp_path / "demo-hf" / "data").is_dir()
    assert outputs[2].stdout.startswith("1 gates\ncircuit: cx 1 0\n")  # cx 0 1 between Hadamards is cx 1 0
    # printed last, after the summary and the record
    assert script.rstrip().endswith("\nNEXT") and script.index("cat <<'NEXT'") > script.index("unitarium show demo.db")


# -- 8. info draws the length histogram --------------------------------------------------------------------------------


def bar_units(bar: str) -> float:
    """A text bar's length in full blocks: █ is 1, ▏..▉ are 1/8..7/8."""
    return sum(1 if c == "█" else (" ▏▎▍▌▋▊▉".index(c) / 8 if c in "▏▎▍▌▋▊▉" else 0) for c in bar)


def chart_rows(text: str) -> list[tuple[str, str, int]]:
    """(label, bar, count) of each chart row of ``info``'s output (the lines after ``lengths:``)."""
    lines = text.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith("lengths:")) + 1
    rows = []
    for line in lines[start:]:
        match = re.fullmatch(r" {13}\s*(\d+(?:-\d+)?) (.{40}) ([\d,]+)", line)
        if not match:
            break
        rows.append((match.group(1), match.group(2), int(match.group(3).replace(",", ""))))
    return rows


def test_info_shows_the_length_histogram_as_bars(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    cli("generate", path, "--gates", "h,t,cx", "--qubits", "2", "--count", "5000", "--length", "0:9", "--quiet")
    hist = {int(k): v for k, v in unitarium.open(path).info()["length_histogram"].items()}
    rows = chart_rows(cli("info", path).stdout)
    assert [int(label) for label, _, _ in rows] == list(range(10)) and [c for _, _, c in rows] == [
        hist[k] for k in range(10)
    ]
    top = max(hist.values())
    for label, bar, count in rows:
        assert abs(bar_units(bar) - 40 * count / top) <= 1 / 16 + 1e-9, (label, bar, count)
    assert any(bar.rstrip() == "█" * 40 for _, bar, _ in rows)


def test_info_groups_many_lengths_into_ranges(tmp_path: Path) -> None:
    path = tmp_path / "long.db"
    cli("generate", path, "--gates", "h,t", "--qubits", "1", "--count", "3000", "--length", "1:100", "--quiet")
    rows = chart_rows(cli("info", path).stdout)
    assert 1 < len(rows) <= 24 and rows[0][0] == "1-5" and sum(c for _, _, c in rows) == 3000
    hist = {int(k): v for k, v in unitarium.open(path).info()["length_histogram"].items()}
    for label, _, count in rows:
        a, b = map(int, label.split("-"))
        assert count == sum(v for k, v in hist.items() if a <= k <= b)


def test_info_bars_on_a_terminal_without_unicode(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    cli("generate", path, "--gates", "h,t", "--qubits", "1", "--count", "500", "--length", "0:3", "--quiet")
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    text = cli("info", path, env=env).stdout
    lines = text.splitlines()
    i = next(k for k, x in enumerate(lines) if x.startswith("lengths:"))
    assert all(re.fullmatch(r" {13}\d [#. ]{40} [\d,]+", x) for x in lines[i + 1 : i + 5]), text
    assert "#" * 40 in text
