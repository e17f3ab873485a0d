"""``unitarium synth``: exact or approximate synthesis of one unitary from a dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from .._core.circuit import Circuit
from .._core.inputs import load_matrix
from .._errors import SpecError

__all__ = ["label_cmd", "synth_cmd"]


@click.command("synth")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--matrix", type=click.Path(dir_okay=False, path_type=Path), help=".npy file holding a d x d unitary.")
@click.option("--qasm", type=click.Path(dir_okay=False, path_type=Path), help="OpenQASM 2/3 file (any gates).")
@click.option("--circuit", help='A circuit in the dataset\'s gates, e.g. "h 0; cx 0 1".')
@click.option("--approximate", is_flag=True, help="The nearest circuit of at most --max-length moves instead.")
@click.option("--max-length", type=int, help="Budget for --approximate (default and limit: 2 x the dataset's).")
@click.option(
    "--max-pairs",
    type=click.IntRange(min=1),
    help="Refuse an --approximate search scoring more pairs than this (default 5e8: tens of seconds).",
)
@click.option("--atol", type=float, default=1e-5, show_default=True, help="Entrywise tolerance (exact synthesis).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def synth_cmd(
    path: Path,
    matrix: Path | None,
    qasm: Path | None,
    circuit: str | None,
    approximate: bool,
    max_length: int | None,
    max_pairs: int | None,
    atol: float,
    as_json: bool,
) -> None:
    """A shortest circuit for a unitary from a unique enumerated dataset PATH (max length L):
    exact up to global phase with at most 2L moves, or with --approximate the nearest one.
    Exit status 1 when no circuit of at most 2L moves implements it. An --approximate search
    whose cost estimate exceeds --max-pairs is refused before it starts (exit status 2), with
    the largest --max-length that fits. A search that runs for more than a couple of seconds
    shows a progress bar when stderr is a terminal."""
    from .._dataset import Dataset

    ds = Dataset(path)
    if sum(x is not None for x in (matrix, qasm, circuit)) != 1:
        raise SpecError("give exactly one of --matrix FILE.npy, --qasm FILE.qasm or --circuit TEXT")
    if (max_length is not None or max_pairs is not None) and not approximate:
        raise SpecError("--max-length and --max-pairs go with --approximate")
    u = _target(ds, matrix, qasm, circuit)
    if approximate:
        found = ds.approximate(u, max_length=max_length, **({} if max_pairs is None else {"max_pairs": max_pairs}))
        _report(found.circuit, {"distance": found.distance, **_cost_of(ds, found.circuit)}, as_json)
        return
    result = ds.synthesize(u, atol=atol)
    if result is None and ds.spec.cost is not None:
        from ..search.mitm import cost_reach

        if as_json:
            click.echo(json.dumps({"circuit": None, "length": None, "max_cost": cost_reach(ds.spec)}))
        click.echo(f"no circuit of cost at most {cost_reach(ds.spec)} implements this unitary", err=True)
        sys.exit(1)
    if result is None:
        longest = 2 * ds.spec.source.max_length  # type: ignore[union-attr]  # synthesize checked the source
        if as_json:
            click.echo(json.dumps({"circuit": None, "length": None, "max_length": longest}))
        click.echo(f"no circuit of at most {longest} moves implements this unitary", err=True)
        sys.exit(1)
    _report(result, _cost_of(ds, result), as_json)


def _cost_of(ds: Any, circuit: Circuit) -> dict[str, float]:
    """``{"cost": ...}`` under the table's cost model (``--cost``), else nothing (the length says it)."""
    from .._core.cost import circuit_cost

    return {} if ds.spec.cost is None else {"cost": circuit_cost(circuit, ds.spec.cost)}


def _target(ds: Any, matrix: Path | None, qasm: Path | None, circuit: str | None) -> np.ndarray:
    if matrix is not None:
        return load_matrix(matrix)
    if qasm is not None:
        try:
            from .._core.convert import unitary_from_qasm_file
        except ImportError as exc:  # the interop package is newer than this command
            raise SpecError(f"--qasm is not available in this installation ({exc}): use --matrix") from exc
        return unitary_from_qasm_file(qasm, ds.gateset)
    return Circuit.from_text(circuit or "", ds.gateset).unitary()


def _report(circuit: Circuit, extra: dict[str, float], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"circuit": str(circuit), "length": len(circuit), "qasm": circuit.to_qasm(), **extra}))
        return
    more = "".join(f", {key} {value:.6g}" for key, value in extra.items())
    click.echo(f"{len(circuit)} gates{more}\ncircuit: {circuit}\n\n{circuit.to_qasm()}", nl=False)


@click.command("label")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--table", type=click.Path(path_type=Path), required=True, help="A unique enumerated dataset.")
@click.option("--chunk", type=click.IntRange(1, 1 << 20), default=4096, show_default=True, help="Records per commit.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def label_cmd(path: Path, table: Path, chunk: int, quiet: bool) -> None:
    """Store in the dataset file PATH, for every record, its least cost under TABLE's cost model
    (--cost, else the length), or a lower bound beyond TABLE's reach. Resumable: re-run to finish."""
    from .._dataset import Dataset as Full

    def shown(done: int, total: int) -> None:
        if not quiet:
            click.echo(f"labelled {done:,}/{total:,}", err=True)

    ds, tab = Full(path), Full(table)
    try:
        found = ds.label(tab, progress=shown, chunk=chunk)
    finally:
        ds.close()
        tab.close()
    click.echo(
        f"{path}: {found['records']:,} records labelled ({found['new']:,} new, {found['exact']:,} of them exact; "
        f"the others cost more than {found['reach']}) by {table}"
    )
