"""SIGINT and SIGTERM during a run: a flag the driver checks at safe points (within a task's time)."""

from __future__ import annotations

import contextlib
import signal
from types import FrameType
from typing import Any

__all__ = ["Stop"]


class Stop:
    """Turns SIGINT/SIGTERM into a flag checked at safe points (a second one aborts)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> Stop:
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
