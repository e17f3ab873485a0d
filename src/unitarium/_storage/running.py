"""Who is writing a dataset now: the process holding its write lock, read from the kernel's lock table.

The writer (its :class:`~unitarium._storage.manifest.Manifest`) holds an exclusive ``flock`` for its whole run
on the dataset file (a directory: on its ``manifest.db``; on a network filesystem: on ``<file>-lock``).
Linux lists every lock in ``/proc/locks`` with the holder's pid and the locked file's device and
inode, so a reader names the writer without touching the lock (taking it, even for an instant, could
refuse a writer that starts at that moment). SQLite's own locks are POSIX locks and never match.

What this cannot see: a writer on another host (a dataset on a network filesystem), and any writer
where ``/proc/locks`` is not readable (not Linux): :func:`lock_table_readable` says which.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunningWriter", "lock_table_readable", "running_writer"]

_LOCKS = Path("/proc/locks")
_MANIFEST = "manifest.db"  # shards.MANIFEST (not imported: this module needs nothing of a writer's)


@dataclass(frozen=True)
class RunningWriter:
    """The process writing a dataset: ``pid`` on ``host`` (this one), started at ``since`` (seconds
    since the epoch; None where unknown), running ``command`` (its command line; None where unknown)."""

    pid: int
    host: str
    since: float | None
    command: str | None

    def describe(self, now: float | None = None) -> str:
        """``"pid 1234 on host since 2026-12-03 07:10:03 UTC (2 min ago): unitarium generate ..."``."""
        text = f"pid {self.pid} on {self.host}"
        if self.since is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
            text += f" since {stamp} ({_ago((now if now is not None else time.time()) - self.since)})"
        if self.command:
            text += f": {self.command}"
        return text

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "host": self.host, "since": self.since, "command": self.command}


def lock_table_readable() -> bool:
    """Whether this system lists its locks in ``/proc/locks`` (so "no writer found" means none here)."""
    return os.access(_LOCKS, os.R_OK)


def running_writer(path: str | os.PathLike[str]) -> RunningWriter | None:
    """The process on this host holding the write lock of the dataset at ``path`` (a file or a
    directory), or None (no writer here, or no lock table to read: :func:`lock_table_readable`)."""
    base = Path(path)
    target = base / _MANIFEST if base.is_dir() else base
    wanted = {}
    for candidate in (target, Path(f"{target}-lock")):
        try:
            st = candidate.stat()
        except OSError:
            continue
        wanted[(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = candidate
    if not wanted:
        return None
    for pid, key in _exclusive_flocks():
        if key in wanted:
            return RunningWriter(pid, socket.gethostname(), _start_time(pid), _command(pid))
    return None


def _exclusive_flocks() -> list[tuple[int, tuple[int, int, int]]]:
    """``(pid, (major, minor, inode))`` of every exclusive ``flock`` held (waiters, ``->``, skipped).

    A line reads ``3: FLOCK  ADVISORY  WRITE 1234 fe:00:2146307 0 EOF`` (major and minor in hex)."""
    try:
        lines = _LOCKS.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[3] != "WRITE":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            found.append((int(fields[4]), (int(major, 16), int(minor, 16), int(inode))))
        except ValueError:
            continue
    return found


def _start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from ``/proc``; None where unknown."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _command(pid: int, limit: int = 160) -> str | None:
    """Process ``pid``'s command line (``python -m unitarium`` shown as ``unitarium``), cut at ``limit``."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    # shown on a terminal: bytes that are not UTF-8 and characters that are not printable, escaped
    args = [
        "".join(c if c.isprintable() else ascii(c)[1:-1] for c in a.decode(errors="backslashreplace")) for a in raw if a
    ]
    if not args:
        return None
    if len(args) >= 3 and args[1:3] == ["-m", "unitarium"]:
        args = ["unitarium", *args[3:]]
    text = " ".join(args)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"
