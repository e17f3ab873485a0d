"""What ``unitarium generate`` prints while it runs: a rich bar on a terminal, a line every 2 s
otherwise, and (also with ``--quiet``) what a stalled run waits for."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from .._run.progress import Progress

__all__ = ["progress_printer"]


def progress_printer(quiet: bool) -> tuple[Callable[[Progress], None] | None, Callable[[], None]]:
    """``(report, stop)``: the progress callback of a run and what ends its display."""
    if quiet:  # no progress, but what a stalled run waits for is still said
        return _print_note, lambda: None
    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        bar = Bar(
            TextColumn("[bold]generate"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
        bar.start()
        task = bar.add_task("generate", total=None, rate="")
        t0 = time.monotonic()

        def update(p: Progress) -> None:
            if p.note is not None:
                bar.console.print(f"unitarium: {p.note}", highlight=False, markup=False)
                return
            rate = p.candidates / max(time.monotonic() - t0, 1e-9)
            extra = f"{rate:,.0f}/s  {p.records:,} records" + (f"  {_level(p.level)}" if p.total is None else "")
            bar.update(task, completed=p.candidates, total=p.total, rate=extra)

        return update, bar.stop
    last = [0.0]
    t0 = time.monotonic()

    def plain(p: Progress) -> None:
        if p.note is not None:
            _print_note(p)
            return
        now = time.monotonic()
        if now - last[0] >= 2.0:
            last[0] = now
            of = f"/{p.total:,}" if p.total else f" ({_level(p.level)})"
            click.echo(
                f"progress: {p.candidates:,}{of} candidates, {p.records:,} records, "
                f"{p.candidates / max(now - t0, 1e-9):,.0f}/s",
                err=True,
            )

    return plain, lambda: None


def _print_note(p: Progress) -> None:
    """What a stalled run waits for (:attr:`Progress.note`), one line on stderr."""
    if p.note is not None:
        click.echo(f"unitarium: {p.note}", err=True)


def _level(level: int) -> str:
    """``level 7``; under a cost model past cost 0 (levels ``cost * LEVEL_STRIDE + length``), ``cost 2, length 7``."""
    from .._core.cost import split_level

    cost, length = split_level(level)
    return f"level {level}" if cost == 0 else f"cost {cost}, length {length}"
