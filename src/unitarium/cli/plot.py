"""The ``unitarium plot`` command (registered at the end of ``unitarium.cli.main``)."""

from __future__ import annotations

from pathlib import Path

import click

from .._errors import SpecError
from .._read.dataset import Dataset
from ..plot import figure, profile, text_chart

__all__ = ["plot_cmd"]


@click.command("plot")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the picture to this .png file (needs matplotlib: pip install 'unitarium[plot]').",
)
def plot_cmd(path: Path, out: Path | None) -> None:
    """Picture the dataset at PATH: circuit lengths, records per task, move frequencies.

    Without --out, a text chart in the terminal (no extra library needed).

    \b
    Examples:
      unitarium plot data.db
      unitarium plot data.db --out data.png
    """
    if out is not None and out.suffix.lower() != ".png":
        raise SpecError(f"--out {str(out)!r} must name a .png file")
    if out is not None and not out.parent.is_dir():
        raise SpecError(f"--out {str(out)!r}: the directory {str(out.parent)!r} does not exist")
    p = profile(Dataset(path))
    if out is None:
        click.echo(text_chart(p))
    else:
        figure(p, out)
        click.echo(f"wrote {out}")
