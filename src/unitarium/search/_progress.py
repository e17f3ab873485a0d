"""Progress of a long search on a terminal: a rich bar on stderr, only when stderr is a
terminal and only once the work has run for :data:`DELAY` seconds (short searches, pipes,
logs and tests see nothing). The bar is transient: it disappears when the work ends."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["DELAY", "Bar", "progress"]

DELAY = 2.0
"""Seconds of work before a bar appears."""


class Bar:
    """Counts done units of ``total``; draws a bar after :data:`DELAY` s on a terminal."""

    def __init__(self, what: str, total: int, *, tty: bool) -> None:
        self.what, self.total, self.done = what, max(int(total), 1), 0
        self._tty, self._start = tty, time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    def advance(self, units: int) -> None:
        self.done += int(units)
        if self._bar is None and self._tty and time.monotonic() - self._start >= DELAY:
            self._open()
        if self._bar is not None:
            self._bar.update(self._task, completed=min(self.done, self.total))

    def _open(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr, force_terminal=True),  # only opened on a terminal
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.what, total=self.total, completed=min(self.done, self.total))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextmanager
def progress(what: str, total: int) -> Iterator[Bar]:
    """A :class:`Bar` for ``total`` units of work described by ``what``, closed on exit."""
    bar = Bar(what, total, tty=_is_terminal())
    try:
        yield bar
    finally:
        bar.close()


def _is_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False
