"""Security: nothing read from a file is unpickled or evaluated, SQL is literal or parameterised, readers open
datasets read-only, and hostile contents (gate names, angles, meta JSON, BLOBs, gate files, .npy matrices) end
as one error line or as harmless output: never as code run, SQL run, a traceback or a changed file.

Two halves: static checks over the package's source (``ast``), and the real CLI, in its own process, on
tampered copies of a real dataset. Payloads run ``touch pwned`` in the command's working directory, so an
executed payload shows up as a new file in the directory each case watches."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import pickle
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import unitarium

from conftest import DROP_ROOT_POWERS, IS_ROOT, REPO, cli, file_digests, one_error_line

SRC = REPO / "src" / "unitarium"
TREES = {
    str(path.relative_to(SRC)): ast.parse(path.read_text(encoding="utf-8"), str(path))
    for path in sorted(SRC.rglob("*.py"))
}
"""Every module of the package, subpackages included (``search/mitm.py``), so moved code stays checked."""
SPEC = ("--gates", "h,s,cx", "--qubits", "2", "--enumerate", "--max-length", "3", "--unique")
MARKER = "pwned"
CODE = f"__import__('os').system('touch {MARKER}')"
"""A Python payload: evaluated anywhere, it creates ``pwned`` in the working directory."""


class _Payload:
    """Unpickling this runs ``touch pwned`` (pickling it runs nothing)."""

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return (os.system, (f"touch {MARKER}",))


PICKLE = pickle.dumps(_Payload())


def _calls(tree: ast.AST) -> Iterator[ast.Call]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.Call))


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef))


def _assigned(tree: ast.AST, name: str) -> list[ast.expr]:
    """The values assigned to ``name`` anywhere in ``tree``."""
    targets = {
        node: node.targets if isinstance(node, ast.Assign) else [node.target]
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AnnAssign)
    }
    return [node.value for node, ts in targets.items() if any(isinstance(t, ast.Name) and t.id == name for t in ts)]


def _call_name(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


# -- static checks over the source --------------------------------------------------------------------------

FORBIDDEN_MODULES = {
    *("pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "jsonpickle"),  # load() runs code
    *("marshal", "shelve", "yaml"),  # marshal loads code objects, shelve is pickle, yaml.load builds objects
    *("subprocess", "runpy", "code", "codeop"),  # the library never starts a shell or runs source text
}
PICKLE_PIPES = {"_run/wire.py": "recv_message"}
"""Where pickle may appear, and the one function that may unpickle: the messages on the pipes between a driver
and the workers it spawned (never a file, never anything another program wrote)."""
PIPE_USERS = {"_run/wire.py", "_run/file.py", "_run/directory.py", "_run/partitions.py", "_run/partition.py"}
"""The modules that may read those pipes: the engines, whose workers they spawned, the key authority's local
partitions (partitions.py), whose processes it spawned, and a partition's process, which reads the pipe its driver
holds."""
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__", "breakpoint"}
FORBIDDEN_METHODS = {"eval", "exec", "import_module", "system", "popen", "literal_eval"}


def test_sources_were_found() -> None:
    wanted = {"_storage/schema.py", "_storage/sqlite.py", "_read/dataset.py", "_core/gates.py", "cli/main.py"}
    assert wanted <= set(TREES)


@pytest.mark.parametrize("module", TREES)
def test_no_pickle_like_or_code_running_imports(module: str) -> None:
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if name == "pickle" and module in PICKLE_PIPES:
                continue  # checked by test_only_our_own_pipes_are_unpickled
            assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{module}:{node.lineno} imports {name}"


def test_only_our_own_pipes_are_unpickled() -> None:
    """In the modules allowed pickle, only the named pipe reader unpickles, and no other module calls it."""
    for module, reader in PICKLE_PIPES.items():
        for scope, call in _scoped_calls(TREES[module]):
            if ast.unparse(call.func) in ("pickle.load", "pickle.loads", "pickle.Unpickler"):
                assert scope == (reader,), f"{module}:{call.lineno} unpickles in {'.'.join(scope) or 'the module'}"
        for other, tree in TREES.items():
            if other not in PIPE_USERS:
                names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
                names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
                assert reader not in names, f"{other} uses {module}'s {reader}"


@pytest.mark.parametrize("module", TREES)
def test_no_eval_exec_compile_or_dynamic_import(module: str) -> None:
    for call in _calls(TREES[module]):
        func = call.func
        if isinstance(func, ast.Name):
            assert func.id not in FORBIDDEN_BUILTINS, f"{module}:{call.lineno} calls {func.id}()"
        elif isinstance(func, ast.Attribute):
            if module == "__init__.py" and func.attr == "import_module":
                continue  # the package's lazy names: test_lazy_imports_name_only_the_packages_own_modules
            assert func.attr not in FORBIDDEN_METHODS, f"{module}:{call.lineno} calls .{func.attr}()"


def test_lazy_imports_name_only_the_packages_own_modules() -> None:
    """The one dynamic import, ``unitarium.__getattr__``'s, imports a module named by the literal ``_LAZY`` table
    (relative names of the package's own modules), looked up by attribute name, never anything given at run time."""
    tree = TREES["__init__.py"]
    calls = [c for c in _calls(tree) if isinstance(c.func, ast.Attribute) and c.func.attr == "import_module"]
    assert len(calls) == 1 and ast.unparse(calls[0]) == "importlib.import_module(module, __name__)"
    (table,) = [n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "_LAZY"]
    assert isinstance(table, ast.Dict) and all(isinstance(v, ast.Constant) for v in table.values)
    assert all(v.value.startswith(".") for v in table.values)  # type: ignore[union-attr]
    (getattr_,) = [f for f in _functions(tree) if f.name == "__getattr__"]
    assert "module = _LAZY.get(name)" in ast.unparse(getattr_)


def test_angles_are_parsed_by_a_whitelist_walker() -> None:
    """parse_angle parses (never runs) with ``ast.parse(..., mode="eval")`` and walks the tree itself: the
    walker resolves one name (``pi``), applies four operators, and calls nothing it was given."""
    functions = {f.name: f for f in _functions(TREES["_core/gates.py"])}
    parse = functions["parse_angle"]
    parses = [c for c in _calls(parse) if ast.unparse(c.func) == "ast.parse"]
    assert parses and all(
        any(k.arg == "mode" and isinstance(k.value, ast.Constant) and k.value.value == "eval" for k in c.keywords)
        for c in parses
    )
    assert "_eval_angle" in {_call_name(c) for c in _calls(parse)}
    walker = functions["_eval_angle"]
    compared = {ast.unparse(c) for node in ast.walk(walker) if isinstance(node, ast.Compare) for c in node.comparators}
    assert compared == {"'pi'", "_BINOPS"}, compared  # the one name it resolves; the four operators
    called = {ast.unparse(c.func) for c in _calls(walker)}
    assert called <= {"isinstance", "float", "_eval_angle", "_BINOPS[type(node.op)]", "ValueError", "type"}, called
    (binops,) = _assigned(TREES["_core/gates.py"], "_BINOPS")
    assert isinstance(binops, ast.Dict)
    assert {ast.unparse(k) for k in binops.keys if k} == {"ast.Add", "ast.Sub", "ast.Mult", "ast.Div"}
    assert {ast.unparse(v) for v in binops.values} == {
        "operator.add",
        "operator.sub",
        "operator.mul",
        "operator.truediv",
    }


@pytest.mark.parametrize(
    "text",
    [
        CODE,
        "(lambda: 0)()",
        "pi.__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "[pi][0]",
        "pi if 1 else 0",
        "1 and 2",
        "f'{pi}'",
        "b'1'",
        "1j",
        "True",
        "None",
        "...",
        "(1, 2)",
        "e",
        "pi(1)",
        "2 ** 10",
        "1 << 3",
        "~1",
        "not 0",
        "open('x')",
    ],
)
def test_angles_that_are_not_arithmetic_are_refused(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(unitarium.SpecError):
        unitarium.parse_gate(f"rz({text})")
    assert not list(tmp_path.iterdir())


SQL_CALLS = {"execute", "executemany", "executescript", "_query", "query"}
STORE_RECEIVERS = {"self", "self._store", "store", "ds._store"}
"""Receivers of ``.query(...)`` that are a BlockStore (whose query() runs SQL)."""
SQL_CONSTANTS = {
    *("PAGE_SIZE", "SMALL_PAGE_SIZE", "APPLICATION_ID", "SCHEMA_VERSION", "OLDEST_SCHEMA", "READER_MMAP_BYTES"),
}
"""Module-level integer constants of _storage/sqlite.py and schema.py that PRAGMAs interpolate (PRAGMA values
cannot be bound)."""
SQL_EXCEPTIONS = {
    ("search/label.py", "label", "statement"): "the statements of the module constant _read/labels.py: LABELS_SCHEMA",
    ("_storage/schema.py", "create_tables", "statement"): "the statements of the module constants _SCHEMA and "
    "_BLOCK_SCHEMA, split at ';'",
    (
        "_storage/schema.py",
        "check_structure",
        "_STRUCTURE",
    ): "a module constant, literal SQL; its one parameter is bound",
    ("_storage/blocks.py", "query", "sql"): "the reader's one pass-through to execute(): its callers are checked here",
    (
        "_read/dataset.py",
        "_query",
        "sql",
    ): "the Dataset's pass-through to BlockStore.query: its callers are checked here",
    ("_read/lookup.py", "lookup", "f'SELECT task_id, row FROM lookup WHERE key IN ({marks})'"): "marks is only '?' "
    "placeholders (checked below); the keys are bound",
    ("_storage/rows.py", "_insert_lookup_rows", "statement"): "_lookup_insert's literal INSERT and literal "
    "placeholder groups (checked below); every value is bound",
}


def _safe_sql(node: ast.expr) -> bool:
    """A string literal, a choice between literals, or an f-string interpolating only :data:`SQL_CONSTANTS`."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.IfExp):
        return _safe_sql(node.body) and _safe_sql(node.orelse)
    if isinstance(node, ast.JoinedStr):
        return all(
            isinstance(v, ast.Constant)
            or (isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name) and v.value.id in SQL_CONSTANTS)
            for v in node.values
        )
    return False


def _sql_calls() -> Iterator[tuple[str, str, ast.Call]]:
    for module, tree in TREES.items():
        for function in _functions(tree):
            for call in _calls(function):
                if isinstance(call.func, ast.Attribute) and call.func.attr in SQL_CALLS:
                    if call.func.attr == "query" and ast.unparse(call.func.value) not in STORE_RECEIVERS:
                        continue  # another library's query() (a k-d tree's), not BlockStore.query
                    yield module, function.name, call


def test_sql_is_literal_or_parameterised() -> None:
    seen = set()
    calls = list(_sql_calls())
    assert len(calls) > 20  # the walk found the store's and the reader's statements
    for module, function, call in calls:
        assert call.args, f"{module}:{call.lineno} passes its SQL by keyword"
        sql = call.args[0]
        if _safe_sql(sql):
            continue
        key = (module, function, ast.unparse(sql))
        assert key in SQL_EXCEPTIONS, f"{module}:{call.lineno} in {function}() builds SQL from {key[2]!r}"
        seen.add(key)
    assert seen == set(SQL_EXCEPTIONS), f"stale exceptions: {set(SQL_EXCEPTIONS) - seen}"


def test_the_interpolated_sql_pieces_are_what_the_exceptions_say() -> None:
    store = {
        t.id: node.value
        for module in ("_storage/sqlite.py", "_storage/schema.py")
        for node in TREES[module].body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    for name in SQL_CONSTANTS:
        assert isinstance(store[name], ast.Constant) and type(store[name].value) is int, name
    assert isinstance(store["_SCHEMA"], ast.Constant) and isinstance(store["_SCHEMA"].value, str)
    assert isinstance(store["_BLOCK_SCHEMA"], ast.Constant) and isinstance(store["_BLOCK_SCHEMA"].value, str)
    lookup = next(f for f in _functions(TREES["_read/lookup.py"]) if f.name == "lookup")
    assert [ast.unparse(v) for v in _assigned(lookup, "marks")] == ["','.join('?' * len(probes))"]
    rows = next(f for f in _functions(TREES["_storage/rows.py"]) if f.name == "_insert_lookup_rows")
    assert [ast.unparse(v) for v in _assigned(rows, "statement")] == ["_lookup_insert(size)"]
    insert = next(f for f in _functions(TREES["_storage/rows.py"]) if f.name == "_lookup_insert")
    returned = [ast.unparse(n.value) for n in ast.walk(insert) if isinstance(n, ast.Return) and n.value is not None]
    assert returned == ["'INSERT INTO lookup VALUES ' + ', '.join(['(?, ?, ?)'] * rows)"]
    # BLOBs are opened in one place, by a literal table and the column of the reader callback (_codec.Reader)
    opens = [(m, c) for m, tree in TREES.items() for c in _calls(tree) if _call_name(c) == "blobopen"]
    assert [m for m, _ in opens] == ["_storage/blocks.py"]
    table, column = opens[0][1].args[:2]
    assert isinstance(table, ast.Constant) and ast.unparse(column) == "column", ast.unparse(opens[0][1])
    # ...and every column _codec.read_rows asks that callback for is a literal name
    read_rows = next(f for f in _functions(TREES["_core/codec.py"]) if f.name == "read_rows")
    reads = [c for c in _calls(read_rows) if _call_name(c) == "read"]
    assert len(reads) == 5
    for call in reads:
        assert isinstance(call.args[0], ast.Constant) and re.fullmatch(r"[a-z_]+", call.args[0].value), ast.unparse(
            call
        )


def test_numpy_loads_refuse_pickles() -> None:
    loads = [
        (module, call)
        for module, tree in TREES.items()
        for call in _calls(tree)
        if ast.unparse(call.func) in ("np.load", "numpy.load")
    ]
    assert loads  # lookup --matrix reads a .npy file
    for module, call in loads:
        allow = [k.value for k in call.keywords if k.arg == "allow_pickle"]
        assert len(allow) == 1 and isinstance(allow[0], ast.Constant) and allow[0].value is False, (
            f"{module}:{call.lineno} loads without allow_pickle=False"
        )


def _scoped_calls(tree: ast.AST, scope: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], ast.Call]]:
    """Every call with the names of the classes and functions around it, outermost first."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.Call):
            yield scope, child
        named = isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        yield from _scoped_calls(child, (*scope, child.name) if named else scope)


WRITERS = {
    ("_storage/manifest.py", ("Manifest",)),
    ("_storage/shards.py", ("SegmentWriter",)),
    ("_storage/shards.py", ("DirectoryWriter",)),
    ("search/label.py", ("_writer",)),  # the labels file beside a dataset (never the dataset itself)
    ("_storage/schema.py", ("roll_back_hot_journal",)),  # SQLite's own recovery of a killed writer's commit
}


def test_only_the_writer_opens_a_dataset_for_writing() -> None:
    """sqlite3.connect appears in _storage.sqlite.connect only; every call of that ``connect`` says ``readonly=``
    literally, and ``readonly=False`` appears in the writers only: the dataset file's or manifest's (Manifest),
    a worker's private segment (SegmentWriter) or its rewrite at resume (DirectoryWriter), the labels file
    beside a dataset (search/label.py), and a reader's moment of write access that lets SQLite roll back the hot
    journal of a writer killed mid-commit (schema.roll_back_hot_journal: it writes only what SQLite restores)."""
    for module, tree in TREES.items():
        for scope, call in _scoped_calls(tree):
            where = f"{module}:{call.lineno} in {'.'.join(scope) or 'the module'}"
            if ast.unparse(call.func) == "sqlite3.connect":
                assert (module, scope) == ("_storage/sqlite.py", ("connect",)), where
            elif _call_name(call) == "connect":
                readonly = [k.value for k in call.keywords if k.arg == "readonly"]
                assert len(readonly) == 1 and isinstance(readonly[0], ast.Constant), where
                if readonly[0].value is not True:
                    assert (module, scope[:1]) in WRITERS, where


# -- tampered datasets through the real CLI -------------------------------------------------------------------


def _edit_meta(key: str, edit: Callable[[dict], object]) -> Callable[[sqlite3.Connection], None]:
    def tamper(conn: sqlite3.Connection) -> None:
        data = json.loads(conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])
        edit(data)
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(data), key))

    return tamper


def _raw_meta(key: str, value: Callable[[str], str | bytes]) -> Callable[[sqlite3.Connection], None]:
    def tamper(conn: sqlite3.Connection) -> None:
        old = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value(old), key))

    return tamper


def _sql(statement: str, *args: object) -> Callable[[sqlite3.Connection], None]:
    return lambda conn: conn.execute(statement, args)


def _codes_past_the_last_move(conn: sqlite3.Connection) -> None:
    rows = conn.execute("SELECT task_id, length(codes) FROM blocks").fetchall()
    for task_id, n in rows:
        conn.execute("UPDATE blocks SET codes = ? WHERE task_id = ?", (b"\xff" * n, task_id))


def _gates_and_moves_hold_payloads(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE gates SET name = ?, matrix = ?", (CODE, PICKLE))
    conn.execute("UPDATE moves SET text = ?, qubits = ?", (CODE, CODE))


QASM_LINE = "reset q[0];"


def _custom_gate_writing_qasm(spec: dict) -> None:
    """Rename the first gate (h) to a custom gate (x) whose name ends a QASM statement and writes another."""
    name = f"g q0;\n{QASM_LINE}\nopaque z"
    spec["custom_gates"][name] = [[[0.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]]
    spec["gates"][0] = name


def _custom_gate_named_like_sql_and_python(spec: dict) -> None:
    name = f"x'); DROP TABLE meta;-- {CODE}"
    spec["custom_gates"][name] = [[[0.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]]
    spec["gates"].append(name)


DEEP = "[" * 100_000 + "]" * 100_000
READ = (("info",), ("show", "-1", "--json"), ("verify", "--all"), ("lookup", "--circuit", "h 0; cx 0 1"))
READ_AND_RESUME = (*READ, ("generate", *SPEC, "--workers", "1", "--quiet"))


@dataclass(frozen=True)
class Tamper:
    id: str
    tamper: Callable[[sqlite3.Connection], None]
    commands: tuple[tuple[str, ...], ...] = READ_AND_RESUME


TAMPERS = [
    # the spec: everything in it is parsed, never evaluated; a resume compares it and refuses
    Tamper("gate name is Python", _edit_meta("spec", lambda s: s["gates"].__setitem__(0, CODE))),
    Tamper("angle is Python", _edit_meta("spec", lambda s: s["gates"].__setitem__(0, f"rz({CODE})"))),
    Tamper("custom gate named like SQL and Python", _edit_meta("spec", _custom_gate_named_like_sql_and_python)),
    Tamper(
        "custom gate name writes QASM",
        _edit_meta("spec", _custom_gate_writing_qasm),
        (*READ_AND_RESUME, ("show", "1", "--json")),
    ),
    Tamper("custom matrix entries are Python", _edit_meta("spec", lambda s: s["custom_gates"].update(g=[[CODE]]))),
    Tamper("seed of 5000 digits", _raw_meta("spec", lambda v: v.replace('"seed": 0', '"seed": 1' + "0" * 5000))),
    Tamper("spec is a pickle", _raw_meta("spec", lambda v: PICKLE)),
    Tamper("spec nested 100000 deep", _raw_meta("spec", lambda v: v[:-1] + f', "x": {DEEP}}}')),
    Tamper("format is a pickle", _raw_meta("format", lambda v: PICKLE)),
    Tamper("state nested 100000 deep", _raw_meta("state", lambda v: DEEP)),
    # the format and the BLOBs: a reader must not trust their sizes, types or values
    Tamper("dtype is object", _edit_meta("format", lambda f: f.update(unitary_dtype="O", code_dtype="O")), READ),
    Tamper("dim is Python", _edit_meta("format", lambda f: f.update(dim=CODE)), READ),
    Tamper("dim disagrees with the spec", _edit_meta("format", lambda f: f.update(dim=2)), READ),
    Tamper("unitaries are a pickle", _sql("UPDATE blocks SET unitaries = ?", PICKLE), READ),
    Tamper("codes are text", _sql("UPDATE blocks SET codes = hex(codes)"), READ),
    Tamper("codes past the last move", _codes_past_the_last_move, READ),
    Tamper("block count lies", _sql("UPDATE blocks SET count = 2 * count + 1"), READ),
    # tables readers never need: payloads there stay inert
    Tamper("gates and moves tables hold payloads", _gates_and_moves_hold_payloads, READ),
]


def _tree(d: Path) -> dict[str, str]:
    """sha256 of every file under ``d`` except what SQLite's readers may create (``-shm``, an empty ``-wal``)."""
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file() and not p.name.endswith("-shm") and not (p.name.endswith("-wal") and not p.stat().st_size)
    }


def _problem(args: tuple[str, ...], proc: subprocess.CompletedProcess) -> str | None:
    """None if ``proc`` failed cleanly (one error line, status 2), reported problems (verify), found nothing
    (lookup) or worked; else what is wrong."""
    err = proc.stderr
    if "Traceback" in err or proc.returncode not in (0, 1, 2):
        return f"{args[0]}: status {proc.returncode}, {err.strip().splitlines()[-1:]}"
    if proc.returncode == 2:
        lines = err.splitlines()
        if len(lines) != 1 or not lines[0].startswith("unitarium: error: "):
            return f"{args[0]}: not one error line: {err!r}"
    if proc.returncode == 1:
        ok = ("problem: ", "no record implements this unitary")
        if args[0] not in ("verify", "lookup") or not all(line.startswith(ok) for line in err.splitlines()):
            return f"{args[0]}: status 1 with {err!r}"
    return None


@dataclass
class Outcome:
    procs: list[tuple[tuple[str, ...], subprocess.CompletedProcess]]
    before: dict[str, str]
    after: dict[str, str]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A unique-mode dataset as one self-contained file (no ``-wal`` beside it)."""
    d = tmp_path_factory.mktemp("source")
    cli("generate", d / "gen.db", *SPEC, "--workers", "1", "--quiet")
    src, dst = sqlite3.connect(d / "gen.db"), sqlite3.connect(d / "ds.db")
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return d / "ds.db"


@pytest.fixture(scope="module")
def tampered(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("tampered")

    def run(i: int, case: Tamper) -> Outcome:
        d = root / f"case{i}"
        d.mkdir()
        shutil.copy(source, d / "ds.db")
        conn = sqlite3.connect(d / "ds.db", isolation_level=None)
        try:
            case.tamper(conn)
        finally:
            conn.close()
        before = _tree(d)
        with contextlib.chdir(d):  # in this process (click's runner), where a payload would leave its marker
            procs = [(args, cli(args[0], "ds.db", *args[1:], check=False)) for args in case.commands]
        return Outcome(procs, before, _tree(d))

    return {c.id: run(i, c) for i, c in enumerate(TAMPERS)}


@pytest.mark.parametrize("case", TAMPERS, ids=[c.id for c in TAMPERS])
def test_a_tampered_dataset_runs_nothing_and_fails_cleanly(case: Tamper, tampered: dict[str, Outcome]) -> None:
    outcome = tampered[case.id]
    assert MARKER not in outcome.after, "a payload ran"
    problems = [p for args, proc in outcome.procs if (p := _problem(args, proc))]
    assert not problems, "\n".join(problems)
    assert outcome.after == outcome.before, "a command changed, created or removed a file"


SPEC_TAMPERS = [c.id for c in TAMPERS if c.commands[-1] == READ_AND_RESUME[-1]]


@pytest.mark.parametrize("case", SPEC_TAMPERS)
def test_a_resume_refuses_a_tampered_spec(case: str, tampered: dict[str, Outcome]) -> None:
    proc = dict(tampered[case].procs)[READ_AND_RESUME[-1]]
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = one_error_line(proc.stderr)
    assert "another spec" in line or "damaged meta table" in line or "cannot use" in line, line


@pytest.mark.parametrize("case", ["gate name is Python", "angle is Python", "custom matrix entries are Python"])
def test_a_spec_holding_code_is_refused(case: str, tampered: dict[str, Outcome]) -> None:
    for args, proc in tampered[case].procs:
        assert proc.returncode == 2, (args, proc.stderr)
        assert "cannot use" in one_error_line(proc.stderr) or args[0] == "generate"


def test_a_stored_gate_name_cannot_write_qasm(tampered: dict[str, Outcome]) -> None:
    """Gate files allow identifiers only; a name stored in a tampered file must be refused too, or it writes its
    own lines into the OpenQASM (and circuit text) that show and Circuit.to_qasm() print."""
    proc = dict(tampered["custom gate name writes QASM"].procs)[("show", "1", "--json")]
    if proc.returncode == 2:
        one_error_line(proc.stderr)
    else:
        assert proc.returncode == 0, proc.stderr
        assert QASM_LINE not in json.loads(proc.stdout)["qasm"].splitlines(), "a stored gate name wrote QASM"


# -- hostile input to generate and lookup ---------------------------------------------------------------------


def _gate_file(body: str, name: str = "g.json") -> tuple[tuple[str, str | bytes], ...]:
    return ((name, body),)


GF = ("--gate-file", "g.json", "--qubits", "1", "--count", "5", "--length", "3")


@dataclass(frozen=True)
class Hostile:
    id: str
    args: tuple[str, ...]
    expect: str
    files: tuple[tuple[str, str | bytes], ...] = ()


HOSTILE = [
    Hostile("angle is Python", ("--gates", f"h,rz({CODE})", "--qubits", "1", *GF[-4:]), "malformed angle"),
    Hostile("gate is SQL", ("--gates", "h'); DROP TABLE meta;--", "--qubits", "1", *GF[-4:]), "unknown gate"),
    Hostile(
        "angle carries a comment",
        ("--gates", "h,rz(pi/4 # '); DROP TABLE meta;--)", "--qubits", "1", *GF[-4:]),
        "malformed angle",
    ),
    Hostile(
        "matrix entries are Python",
        GF,
        "must be numbers",
        _gate_file(json.dumps({"gates": {"g": {"matrix": [[CODE, 0], [0, 1]]}}})),
    ),
    Hostile(
        "matrix entries are objects",
        GF,
        "must be numbers",
        _gate_file(json.dumps({"gates": {"g": {"matrix": [[{"__reduce__": CODE}, 0], [0, 1]]}}})),
    ),
    Hostile("gate file is a pickle", GF, "is not valid", _gate_file(PICKLE)),
    Hostile(
        "a row of a million entries",
        GF,
        "must be square",
        _gate_file(json.dumps({"gates": {"g": {"matrix": [[0] * 1_000_000]}}})),
    ),
    Hostile(
        "matrix nested 100000 deep",
        GF,
        "gate file",
        _gate_file('{"gates": {"g": {"matrix": ' + DEEP + "}}}"),
    ),
    Hostile(
        "TOML matrix nested 5000 deep",
        ("--gate-file", "g.toml", *GF[2:]),
        "gate file",
        _gate_file("[gates.g]\nmatrix = " + "[" * 5000 + "]" * 5000 + "\n", "g.toml"),
    ),
    Hostile(
        "an integer of 5000 digits",
        GF,
        "gate file",
        _gate_file('{"gates": {"g": {"matrix": [[1' + "0" * 5000 + ", 0], [0, 1]]}}}"),
    ),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c.id for c in HOSTILE])
def test_hostile_gates_are_one_error_line(case: Hostile, tmp_path: Path) -> None:
    for name, body in case.files:
        (tmp_path / name).write_bytes(body.encode() if isinstance(body, str) else body)
    before = _tree(tmp_path)
    proc = cli("generate", "out.db", *case.args, "--workers", "1", "--quiet", check=False, cwd=tmp_path, timeout=120)
    assert not (tmp_path / MARKER).exists(), "a payload ran"
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert case.expect in one_error_line(proc.stderr)
    assert _tree(tmp_path) == before, "a refused generate left a file"


def test_an_angle_is_numbers_and_pi_only() -> None:
    """parse_angle's contract: numbers, pi, + - * / and ( ). A ``#`` comment would carry any text into the
    stored gate name, the spec and the OpenQASM output."""
    with pytest.raises(unitarium.SpecError, match="malformed angle"):
        unitarium.parse_gate("rz(pi/4 # '); DROP TABLE meta;--)")


def _save_object_npy(path: Path) -> None:
    arr = np.empty((4, 4), dtype=object)
    arr[...] = _Payload()
    np.save(path, arr, allow_pickle=True)


def _save_object_npz(path: Path) -> None:
    arr = np.empty((4, 4), dtype=object)
    arr[...] = _Payload()
    np.savez(path, m=arr)


MATRIX_FILES = {
    "object array .npy": ("m.npy", _save_object_npy, "np.load(p, allow_pickle=True)"),
    "raw pickle": ("m.npy", lambda p: p.write_bytes(PICKLE), "np.load(p, allow_pickle=True)"),
    "object array .npz": ("m.npz", _save_object_npz, "np.load(p, allow_pickle=True)['m']"),
}


@pytest.mark.parametrize("kind", MATRIX_FILES)
def test_lookup_never_unpickles_a_matrix_file(kind: str, source: Path, tmp_path: Path) -> None:
    name, save, unsafe_load = MATRIX_FILES[kind]
    control, work = tmp_path / "control", tmp_path / "work"
    control.mkdir()
    work.mkdir()
    save(work / name)
    shutil.copy(source, work / "ds.db")
    # The payload is live: an unsafe load in another process runs it.
    subprocess.run(
        [sys.executable, "-c", f"import numpy as np; p = {str(work / name)!r}; {unsafe_load}"],
        cwd=control,
        capture_output=True,
        timeout=60,
    )
    assert (control / MARKER).exists(), "the payload is not live: this test would prove nothing"
    before = _tree(work)
    proc = cli("lookup", "ds.db", "--matrix", name, check=False, cwd=work, timeout=60)
    assert not (work / MARKER).exists(), "lookup unpickled the matrix file"
    assert proc.returncode == 2, proc.stderr
    assert "matrix" in one_error_line(proc.stderr)
    assert _tree(work) == before


# -- readers open read-only -------------------------------------------------------------------------------------


def _unprivileged(*argv: str | os.PathLike[str]) -> subprocess.CompletedProcess:
    """Run ``argv`` where file modes apply (as root: without the capabilities that skip them)."""
    prefix = DROP_ROOT_POWERS if IS_ROOT else []
    return subprocess.run([*prefix, *map(str, argv)], capture_output=True, text=True, timeout=120)


READ_ALL = (
    "import sys, unitarium\n"
    "ds = unitarium.open(sys.argv[1])\n"
    "n = sum(1 for _ in ds)\n"
    "assert n == len(ds) == len(ds.unitaries()) == len(ds.circuits()) and ds.verify(sample=None).ok\n"
    "assert ds.lookup(ds[-1].unitary)\n"
    "print(n)\n"
)


def test_readers_change_no_byte(tmp_path: Path) -> None:
    """info, show, verify, lookup and the API read a dataset (with a writer's ``-wal`` still beside it)
    without changing a byte of it."""
    path = tmp_path / "ds.db"
    cli("generate", path, *SPEC, "--workers", "1", "--quiet")
    before = file_digests(path)
    for args in (("info", "--json"), ("show", "5", "--json"), ("verify", "--all"), ("lookup", "--circuit", "h 0")):
        cli(args[0], path, *args[1:])
    proc = subprocess.run([sys.executable, "-c", READ_ALL, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with unitarium.open(path) as ds:
        assert len(list(ds)) == len(ds) > 0
    assert file_digests(path) == before


def test_open_gives_a_read_only_connection(source: Path, tmp_path: Path) -> None:
    path = tmp_path / "ds.db"
    shutil.copy(source, path)
    before = file_digests(path)
    with unitarium.open(path) as ds:
        conn = ds._store.connection()
        for statement in ("DELETE FROM meta", "DROP TABLE lookup", "CREATE TABLE t (x)", "PRAGMA user_version=7"):
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                conn.execute(statement)
        assert len(ds) > 0
    assert file_digests(path) == before


def test_a_read_only_file_reads_and_refuses_writing(source: Path, tmp_path: Path) -> None:
    """A dataset file of mode 0444 in a writable directory: every reader works (they may add ``-shm`` beside
    it), a resume is one error line, and the file is unchanged."""
    path = tmp_path / "ds.db"
    shutil.copy(source, path)
    path.chmod(0o444)
    before = file_digests(path)
    proc = _unprivileged(sys.executable, "-c", READ_ALL, path)
    assert proc.returncode == 0, proc.stderr
    for args in (("info",), ("show", "-1"), ("verify", "--all"), ("lookup", "--circuit", "h 1")):
        proc = _unprivileged(sys.executable, "-m", "unitarium", args[0], path, *args[1:])
        assert proc.returncode == 0, (args, proc.stderr)
    proc = _unprivileged(sys.executable, "-m", "unitarium", "generate", path, *SPEC, "--workers", "1", "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert "Permission denied" in one_error_line(proc.stderr)
    assert file_digests(path) == before


def test_a_delete_journal_dataset_reads_from_a_read_only_directory(tmp_path: Path) -> None:
    """The documented way to read from a read-only place (``--journal delete``): readers create nothing."""
    d = tmp_path / "ro"
    d.mkdir()
    path = d / "ds.db"
    cli("generate", path, *SPEC, "--journal", "delete", "--workers", "1", "--quiet")
    path.chmod(0o444)
    d.chmod(0o555)
    try:
        before = _tree(d), sorted(p.name for p in d.iterdir())
        proc = _unprivileged(sys.executable, "-c", READ_ALL, path)
        assert proc.returncode == 0, proc.stderr
        proc = _unprivileged(sys.executable, "-m", "unitarium", "info", path)
        assert proc.returncode == 0, proc.stderr
        assert (_tree(d), sorted(p.name for p in d.iterdir())) == before
    finally:
        d.chmod(0o755)
