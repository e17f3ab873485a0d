"""What a run reports while it runs, and what it did: :class:`Progress` after each commit (and
notes while it waits), :class:`Summary` at the end; :class:`StallWatch` says what a run waits for."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (imported where used: a key partition's process imports this module, and needs no spec)
    from .._spec.spec import Spec

__all__ = ["SLOW_NOTE_S", "STOPPED_NOTE_S", "Progress", "StallWatch", "Summary", "announce", "process_state"]


@dataclass(frozen=True)
class Progress:
    """Reported after each commit: records stored, candidates processed (random: of
    ``total``), and the enumeration level in progress."""

    records: int
    candidates: int
    total: int | None
    level: int
    note: str | None = None
    """Set (with the counts unchanged) when the run has waited a while for a worker: what it waits
    for and why, e.g. a worker stopped by SIGSTOP. A caller should show it (the CLI prints it on
    stderr, even with --quiet); None in the reports after commits."""


STOPPED_NOTE_S = 2.0
"""Say what the run waits for once a worker it waits for has been stopped (SIGSTOP, Ctrl-Z) this long..."""
SLOW_NOTE_S = 60.0
"""...or once no result has arrived for this long (a running worker: a slow task); repeated as long."""


def process_state(pid: int) -> str | None:
    """The state letter of process ``pid`` from ``/proc`` (``R``, ``S``, ``T`` stopped...), None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


class StallWatch:
    """Tells a run's progress callback, now and then, what it is waiting for while no result arrives."""

    def __init__(
        self,
        progress: Callable[[Progress], None] | None,
        counts: Callable[[], Progress],
        interrupt: Callable[[], None] | None = None,
    ) -> None:
        """``interrupt``: called first by every :meth:`check`; raises to end the wait (a stop
        requested by a signal while the run waits for a process that may never answer: stopped)."""
        self.progress, self.counts, self.interrupt = progress, counts, interrupt
        self.since = time.monotonic()
        self.next_note = 0.0

    def arrived(self) -> None:
        """A result arrived: the wait starts over."""
        self.since = time.monotonic()
        self.next_note = 0.0

    def check(self, waiting_for: str, pids: list[int]) -> None:
        """Report ``waiting_for`` (e.g. "task 12") through the callback if the wait has lasted."""
        if self.interrupt is not None:
            self.interrupt()
        now = time.monotonic()
        idle = now - self.since
        stopped = [pid for pid in pids if process_state(pid) in ("T", "t")]
        if self.progress is None or now < self.next_note or idle < (STOPPED_NOTE_S if stopped else SLOW_NOTE_S):
            return
        self.next_note = now + SLOW_NOTE_S
        if stopped:
            which = ", ".join(map(str, stopped))
            note = (
                f"waiting {idle:.0f} s for {waiting_for}: worker process {which} is stopped (SIGSTOP or Ctrl-Z); "
                f"resume it with kill -CONT {which}, or interrupt the run (committed records are kept)"
            )
        elif pids:
            note = f"waiting {idle:.0f} s for {waiting_for} from worker process {', '.join(map(str, pids))} (running)"
        else:  # (no process of this machine: a Ray actor)
            note = f"waiting {idle:.0f} s for {waiting_for} (running)"
        self.progress(dataclasses.replace(self.counts(), note=note))


@dataclass(frozen=True)
class Summary:
    """What a :func:`generate` call did."""

    path: str
    records: int
    new_records: int
    tasks: int
    seconds: float
    complete: bool


def announce(progress: Callable[[Progress], None] | None, note: str | None, spec: Spec) -> None:
    """Say ``note`` (from :func:`check_size`) through ``progress``, before the first task."""
    if note is not None and progress is not None:
        from .._spec.spec import RandomSource

        total = spec.source.count if isinstance(spec.source, RandomSource) else None
        progress(Progress(0, 0, total, 0, note=note))
