"""The ``unitarium export`` command (registered at the end of ``unitarium.cli.main``)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click

from .._read.dataset import Dataset
from .._read.labels import LabelsWarning
from ..interop.export import FORMATS, export

__all__ = ["export_cmd"]


@click.command("export")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="parquet", show_default=True)
@click.option(
    "--split",
    "split",
    default=None,
    help="Parts and fractions, e.g. train=0.8,validation=0.1,test=0.1 (val, dev, eval... are written under "
    "Hugging Face's names: val as validation). Default: everything in train.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the split.")
@click.option("--stratify-by-length", is_flag=True, help="Give each split its fraction of every circuit length.")
@click.option(
    "--allow-incomplete",
    is_flag=True,
    help="Export a dataset still being generated (or interrupted): the records committed when the export starts.",
)
def export_cmd(
    path: Path, out: Path, fmt: str, split: str | None, seed: int, stratify_by_length: bool, allow_incomplete: bool
) -> None:
    """Write the dataset at PATH to directory OUT as Parquet shards (Hugging Face layout) or npz, with a card."""
    ds = Dataset(path).snapshot()  # the records committed now: what is exported, counted and printed
    with warnings.catch_warnings():  # labels beside it but incomplete (not exported): one line on stderr
        warnings.simplefilter("always", LabelsWarning)
        shown = warnings.showwarning

        def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
            if issubclass(category, LabelsWarning):
                click.echo(f"unitarium: warning: {message}", err=True)
            else:
                shown(message, category, *args, **kwargs)

        warnings.showwarning = show
        sizes = export(
            ds,
            out,
            format=fmt,
            split=split,
            seed=seed,
            stratify_by_length=stratify_by_length,
            allow_incomplete=allow_incomplete,
        )
    parts = ", ".join(f"{name} {count:,}" for name, count in sizes.items())
    note = "" if ds.complete else " (incomplete: the dataset's run had not finished)"
    click.echo(f"wrote {sum(sizes.values()):,} records to {out} ({fmt}: {parts}){note}; card: {out / 'README.md'}")
