"""The ``unitarium`` command: a thin layer over the library.

Each command parses its options, calls one library function and prints the result.
Errors the user can fix become one line on stderr and exit status 2 (130 when
interrupted); they never change an existing dataset.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

_GC = gc.isenabled()
gc.disable()  # the imports allocate much and free little: no collector passes meanwhile (enabled at the end)

import click  # noqa: E402

_BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
BLAS_PINNED = "numpy" not in sys.modules and not any(var in os.environ for var in _BLAS_THREADS)
"""Whether this process runs BLAS on one thread: numpy loaded here and the user set none of
:data:`_BLAS_THREADS`. The commands' own threads are their parallelism (the search scans), and an
idle BLAS team spins a core for a while after numpy loads and after each product (0.05-0.2 s of
CPU a search command: BENCHMARKS.md, "Search index"); ``synth --approximate``, whose products
are large, gets a thread per core back (:func:`.search.blas_on_every_core`). BLAS reads these
when numpy loads: they are set for the import only (child processes see the user's environment)."""
if BLAS_PINNED:
    os.environ.update(dict.fromkeys(_BLAS_THREADS, "1"))
try:
    import numpy as np
finally:
    if BLAS_PINNED:
        for _var in _BLAS_THREADS:
            os.environ.pop(_var, None)

from .._core.compiled import own_process  # noqa: E402  (after numpy: _BLAS_THREADS)
from .._dataset import Dataset  # noqa: E402  (after numpy: _BLAS_THREADS)
from .._errors import Interrupted, SpecError, UnitariumError  # noqa: E402  (after numpy: _BLAS_THREADS)
from .._spec.spec import DTYPES, KEYS, UNITARIES, make_spec  # noqa: E402  (after numpy: _BLAS_THREADS)
from .._storage.shards import is_directory_path  # noqa: E402  (after numpy: _BLAS_THREADS)
from .._storage.sqlite import JOURNAL_MODES  # noqa: E402  (after numpy: _BLAS_THREADS)
from .params import COUNT  # noqa: E402  (after numpy: _BLAS_THREADS)

if TYPE_CHECKING:  # the engines are imported by `generate` alone (the other commands start faster)
    from .._run.progress import Progress

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Group(click.Group):
    """Runs a command and turns every expected error into one line on stderr; imports the
    commands of :data:`_LAZY_COMMANDS` when named."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY_COMMANDS and cmd_name not in self.commands:
            self.add_command(_LAZY_COMMANDS[cmd_name]())
        return super().get_command(ctx, cmd_name)

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if not args and "args" not in kwargs:  # run as the program (`unitarium`, `python -m unitarium`), not
            own_process()  # called in another's process (click's CliRunner): that process runs only unitarium
        try:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            _fail("interrupted", EXIT_INTERRUPTED)
        except click.ClickException as exc:
            _fail(exc.format_message(), EXIT_USAGE)
        except Interrupted as exc:
            _fail(str(exc), EXIT_INTERRUPTED)
        except UnitariumError as exc:
            _fail(str(exc), EXIT_USAGE)
        except KeyboardInterrupt:
            _fail("interrupted; committed records are kept", EXIT_INTERRUPTED)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # a second Ctrl-C; left to click, it would print an extra empty line
            raise Interrupted("interrupted; committed records are kept: re-run the same command to resume") from None


def _fail(message: str, code: int) -> None:
    click.echo(f"unitarium: error: {' '.join(message.split())}", err=True)
    sys.exit(code)


_EXAMPLES = """Examples:

\b
  unitarium generate data.db --gates clifford+t --qubits 2 --count 1e6 --length 12
  unitarium generate runs/big/ --gates h,t,cx --qubits 3 --count 1e9 --length 1:30
  unitarium generate cliff.db --gates h,s,cx --qubits 2 --enumerate --max-length 14 --unique
  unitarium info data.db
  unitarium show data.db 42
  unitarium lookup cliff.db --circuit "h 0; s 1; cx 0 1"
  unitarium export data.db hf/ --split train=0.8,validation=0.1,test=0.1

Run 'unitarium COMMAND --help' for a command's options."""


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EXAMPLES)
@click.version_option(package_name="unitarium")
def main() -> None:
    """Generate, inspect and query datasets of quantum circuits and their unitaries."""


_GENERATE_EXAMPLES = """Examples:

\b
  # 1,000,000 random Clifford+T circuits of 12 gates on 2 qubits, in one file
  unitarium generate data.db --gates clifford+t --qubits 2 --count 1e6 --length 12 --seed 7
  # a billion circuits of 1 to 30 gates into a sharded directory (the trailing /)
  unitarium generate runs/big/ --gates clifford+t --qubits 2 --count 1_000_000_000 --length 1:30
  # every unitary reachable in at most 14 gates, each once, with a shortest circuit
  unitarium generate cliff.db --gates h,s,cx --qubits 2 --enumerate --max-length 14 --unique

Re-running the same command resumes an interrupted run (with any --workers)."""


@main.command("generate", epilog=_GENERATE_EXAMPLES)
@click.argument("path", type=click.Path())  # a str: a trailing / (a directory) must survive
@click.option(
    "--gates",
    default="",
    help="Gates or presets, comma-separated: clifford, clifford+t, h,t,cx, rz(pi/4)... "
    "(aliases such as cnot, toffoli, fredkin, sdag, tdag, v, phase(a) are stored as cx, ccx, cswap, sdg, "
    "tdg, sx, p(a)).",
)
@click.option("--gate-file", type=click.Path(dir_okay=False, path_type=Path), help="JSON/TOML file of custom gates.")
@click.option("--qubits", type=int, required=True, help="Number of qubits.")
@click.option("--coupling", default="full", show_default=True, help="full, linear, ring, or edges like 0-1,1-2.")
@click.option("--count", type=COUNT, help="Random circuits to draw: 1000000, 1_000_000 or 1e6.")
@click.option("--length", help="Random circuit length: N or MIN:MAX (uniform).")
@click.option("--enumerate", "enumerate_", is_flag=True, help="Every gate sequence up to --max-length, breadth-first.")
@click.option("--max-length", type=int, help="Longest enumerated sequence.")
@click.option("--cost", help="Gate weights for --unique enumeration by cost, e.g. t=1,tdg=1 (unnamed gates 0).")
@click.option("--max-cost", type=int, help="Highest cost enumerated (with --cost).")
@click.option("--no-prune", is_flag=True, help="Enumerate without skipping trivially redundant sequences.")
@click.option("--unique", is_flag=True, help="Keep one record per distinct unitary up to global phase.")
@click.option(
    "--keys",
    type=click.Choice(KEYS),
    default="grid",
    show_default=True,
    help="--unique keys: grid (float grid with alternates), exact (Clifford tableau, Clifford+T channel; "
    "refused where the gates allow none) or auto (exact where the gates allow).",
)
@click.option("--dtype", type=click.Choice(DTYPES), default="complex64", show_default=True)
@click.option(
    "--task-size",
    type=int,
    default=0,
    help="Records (random) or candidates (enumeration) per task, up to 1048576; part of the spec (random "
    "content depends on it). Default: about 512 KiB of unitaries (1024 at 3 qubits). Larger tasks pay "
    "for unique enumerations with --unitaries computed (131072 for the 3-qubit Clifford group).",
)
@click.option(
    "--unitaries",
    type=click.Choice(UNITARIES),
    default="stored",
    show_default=True,
    help="stored, or computed: store circuits only and recompute unitaries (same bits) when read.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--workers",
    type=int,
    help="Worker processes (default: a file, one per core but one, at least 1, as the writer uses a core; "
    "a directory, one per core, each writing its own shards). Never changes the content.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option(
    "--journal",
    type=click.Choice(JOURNAL_MODES),
    default="wal",
    show_default=True,
    help="SQLite journal: wal, or delete for network filesystems (readers then wait while it commits).",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: worker processes here; ray: Ray tasks (a directory PATH; --workers caps the tasks in flight).",
)
@click.option(
    "--ray-address",
    help="Ray cluster to run on (HOST:PORT; default: RAY_ADDRESS, else a local Ray started for the run).",
)
@click.option(
    "--memory",
    help="--unique: RAM for the dedup keys, e.g. 2GB, 500MiB, 25% (the default: 25% of this machine's); "
    "beyond it keys spill to sorted runs on disk beside PATH. Never changes the content.",
)
@click.option(
    "--partitions",
    type=int,
    help="--unique: processes that share the dedup keys by key range (default: one per 8 workers; "
    "1: the driver itself; P: the driver holds the first range, P-1 processes the others). "
    "Never changes the content.",
)
@click.option(
    "--index/--no-index",
    "index",
    default=None,
    help="A complete unique enumeration's search index beside PATH (default: built when it takes at most 4 GiB "
    "and a quarter of the free disk; --index: whatever its size, where the disk holds it; --no-index: none).",
)
def generate_cmd(
    path: str,
    gates: str,
    gate_file: Path | None,
    qubits: int,
    coupling: str,
    count: int | None,
    length: str | None,
    enumerate_: bool,
    max_length: int | None,
    cost: str | None,
    max_cost: int | None,
    no_prune: bool,
    unique: bool,
    keys: str,
    dtype: str,
    task_size: int,
    unitaries: str,
    seed: int,
    workers: int | None,
    quiet: bool,
    journal: str,
    engine: str,
    ray_address: str | None,
    memory: str | None,
    partitions: int | None,
    index: bool | None,
) -> None:
    """Generate (or resume) a dataset into the SQLite file PATH, or into the sharded dataset
    directory PATH (a path ending in / or an existing directory: one writer per worker). A new
    PATH without a suffix (runs/x) makes a file, and says so: write runs/x/ for a directory."""
    if enumerate_ != (max_length is not None or max_cost is not None):
        raise SpecError("--enumerate and --max-length (or --max-cost) go together")
    spec = make_spec(
        gates=gates,
        qubits=qubits,
        count=count,
        length=length,
        max_length=max_length,
        unique=unique,
        prune=not no_prune,
        coupling=coupling,
        gate_file=gate_file,
        dtype=dtype,
        seed=seed,
        unitaries=unitaries,
        cost=cost,
        max_cost=max_cost,
        keys=keys,
        task_size=task_size,
    )
    from .._run.engine import generate
    from .progress import progress_printer

    update, close = progress_printer(quiet)
    update, said = _with_layout_note(path, update, quiet)
    try:
        summary = generate(
            path,
            spec,
            workers=workers,
            progress=update,
            journal=journal,
            engine=engine,
            ray_address=ray_address,
            memory=memory,
            partitions=partitions,
        )
    finally:
        close()
    said()
    rate = summary.new_records / summary.seconds if summary.seconds else 0.0
    click.echo(
        f"{summary.path}: {summary.records:,} records ({summary.new_records:,} new) in "
        f"{summary.seconds:.2f} s, {rate:,.0f} records/s; complete"
    )
    if not quiet:
        from .info import print_info

        print_info(Dataset(path).info())
    if index is not False:
        index_after_generate(path, always=bool(index))  # a unique enumeration's search index (unitarium index)


def _with_layout_note(
    path: str, update: Callable[[Progress], None] | None, quiet: bool
) -> tuple[Callable[[Progress], None] | None, Callable[[], None]]:
    """A new PATH without a suffix (``runs/x``) becomes a *file*, which someone who meant a
    directory would only find out later: say so on stderr once the run has started (a run refused
    at once prints its one error line only), at its first progress report or else when it ends.
    Returns the progress callback to use, and the function that says it unless already said."""
    text = os.fspath(path)
    if quiet or is_directory_path(text) or os.path.lexists(text) or os.path.splitext(text)[1]:
        return update, lambda: None
    pending = True

    def say() -> None:
        nonlocal pending
        if pending:
            pending = False
            click.echo(
                f"unitarium: note: {text!r} is new and has no suffix: it is one dataset file (SQLite); "
                f"for a sharded directory, give {text + os.sep!r} (ending in {os.sep})",
                err=True,
            )

    def first(p: Progress) -> None:
        say()
        if update is not None:
            update(p)

    return first, say


@main.command("pack")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
def pack_cmd(source: Path, target: Path) -> None:
    """Copy the finished sharded dataset SOURCE (a directory) into the new dataset file TARGET."""
    from .._run.pack import pack

    summary = pack(source, target)
    click.echo(f"{summary.path}: {summary.records:,} records packed from {str(source)!r}")


@main.command("show", context_settings={"ignore_unknown_options": True})  # RECORD_ID may be negative: -1
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("record_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show_cmd(path: Path, record_id: int, as_json: bool) -> None:
    """Print one record: its circuit (text and OpenQASM 2) and its matrix."""
    rec = Dataset(path)[record_id]
    if as_json:
        u = rec.unitary
        click.echo(
            json.dumps(
                {
                    "id": rec.id,
                    "circuit": str(rec.circuit),
                    "qasm": rec.circuit.to_qasm(),
                    "unitary": {"real": u.real.tolist(), "imag": u.imag.tolist()},
                },
                indent=2,
            )
        )
        return
    with np.printoptions(precision=4, suppress=True, linewidth=160):
        click.echo(
            f"record {rec.id} ({len(rec.circuit)} gates)\ncircuit: {rec.circuit}\n\n"
            f"{rec.circuit.to_qasm()}\nunitary ({rec.unitary.dtype}, qubit 0 least significant):\n{rec.unitary}"
        )


@main.command("verify")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--all", "check_all", is_flag=True, help="Recompute every record, not a sample.")
@click.option("--sample", type=click.IntRange(min=0), default=1000, show_default=True, help="Records to recompute.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the sample.")
def verify_cmd(path: Path, check_all: bool, sample: int, seed: int) -> None:
    """Check integrity, checksums and structure, and recompute unitaries from their circuits."""
    report = Dataset(path).verify(sample=None if check_all else sample, seed=seed)
    click.echo(
        f"integrity_check: {report.integrity}; recomputed {report.checked:,} of {report.records:,} "
        f"records, max error {report.max_error:.3g}"
    )
    if not report.ok:
        for problem in report.problems:
            click.echo(f"problem: {problem}", err=True)
        sys.exit(1)
    click.echo("ok")


@main.command("lookup")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--matrix", type=click.Path(dir_okay=False, path_type=Path), help=".npy file holding a d x d matrix.")
@click.option("--circuit", help='A circuit whose unitary to look up, e.g. "h 0; cx 0 1".')
@click.option("--qasm", type=click.Path(dir_okay=False, path_type=Path), help="OpenQASM 2 or 3 file of a circuit.")
@click.option("--atol", type=float, default=1e-5, show_default=True, help="Entrywise tolerance.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (a list, empty when nothing matches).")
def lookup_cmd(
    path: Path, matrix: Path | None, circuit: str | None, qasm: Path | None, atol: float, as_json: bool
) -> None:
    """Find the records implementing a unitary up to global phase."""
    from .._core.circuit import Circuit
    from .search import read_only_exit

    read_only_exit()
    from .._core.inputs import load_matrix
    from ..interop import unitary_from_qasm_file

    ds = Dataset(path)
    if sum(x is not None for x in (matrix, circuit, qasm)) != 1:
        raise SpecError("give exactly one of --matrix FILE.npy, --circuit TEXT or --qasm FILE.qasm")
    if qasm is not None:
        u = unitary_from_qasm_file(qasm, ds.gateset)
    elif matrix is not None:
        u = load_matrix(matrix)
    else:
        u = Circuit.from_text(circuit or "", ds.gateset).unitary()
    found = ds.lookup(u, atol=atol)
    if as_json:
        click.echo(json.dumps([{"id": r.id, "circuit": str(r.circuit), "qasm": r.circuit.to_qasm()} for r in found]))
    else:
        for rec in found:
            click.echo(f"{rec.id}\t{rec.circuit}")
    if not found:
        click.echo("no record implements this unitary", err=True)
        sys.exit(1)


from .search import index_after_generate, index_cmd, label_cmd, nearest_cmd, synth_cmd  # noqa: E402

main.add_command(synth_cmd)
main.add_command(nearest_cmd)
main.add_command(index_cmd)
main.add_command(label_cmd)


def _export_cmd() -> click.Command:
    from .export import export_cmd

    return export_cmd


def _plot_cmd() -> click.Command:
    from .plot import plot_cmd

    return plot_cmd


def _info_cmd() -> click.Command:
    from .info import info_cmd

    return info_cmd


_LAZY_COMMANDS: dict[str, Callable[[], click.Command]] = {"export": _export_cmd, "plot": _plot_cmd, "info": _info_cmd}
"""Commands imported when named (or listed by --help), each by a plain import (no dynamic import: see
test_security): the others start without their imports."""

if _GC:
    gc.enable()
