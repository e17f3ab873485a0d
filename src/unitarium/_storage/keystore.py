"""The key store of a unique run: its dedup keys under a memory budget, spilled to sorted runs on disk.

Keys are 128 bits, ``(hi, lo)`` int64 words (:mod:`.._core.keyset`). The newest keys are held in RAM
(a :class:`~.._core.keyset.KeySet`); once they take more than a quarter of the budget they are written,
merged into one run sorted by ``hi``, to a file beside the dataset (``DATA.keys/`` for a file,
``DATA/keys/`` for a directory), and answered from there: each run is a ``.npy`` array ``(2, n)``
(``hi`` then ``lo``, little-endian int64) mapped read-only, with a fence of every 512th ``hi`` word in
RAM, so a membership query touches one page of the map (binary search inside the fenced page). Runs
are merged size-tiered (a new run at least half as large as the one before it is merged into it, in
chunks read from the files, never whole in RAM), so there are ``O(log)`` of them.

Memory: RAM keys up to ``budget / 4`` (a hash table: about 1.8 times that while it grows, the old table
beside the new, its last growth to ``budget / 4``, then filled to 90% and spilled; about 1.8 times while it is
drained into a sorted run, written without a copy), the pages of the maps that queries
touched up to ``budget / 4`` (measured as the growth of the process's file-backed resident pages above
the lowest level seen, handed back with ``MADV_DONTNEED`` past ``budget / 8``, checked after each slice
of queries that can fault in at most ``budget / 8`` more: a task's queries would otherwise fault in
every page of a large run at once; the maps are ``MADV_RANDOM``; a run's fence is never read through
its map), merge buffers of ``budget / 16``, and fences of 1/64 byte per key: under the budget in all,
whatever the number of keys (plus :data:`.keyruns.MIN_QUERY_STEP`'s slice at budgets below 96 MiB).

The store is part of the dataset's resumable state, never of its content: readers, ``pack`` and
``verify`` ignore it. ``keys.json`` lists the runs (written atomically: temporary file, fsync, rename,
fsync of the directory) with the identity of the dataset (its id and its spec's digest) and the
committed prefix they cover: the keys of tasks ``0 .. tasks-1``, as many as the records those tasks
hold (every kept record adds its key, once). A run is listed only once every task it covers is
committed, so after a kill -9 the listing never covers more than the dataset. The store's ``lock``
(an ``flock`` held while a process uses the store) keeps a partition process orphaned by a killed
run from writing beside its successor. Each run's checksum
(XXH3-64 of its words, seeded by the dataset's identity and the run's task range) is checked when a
run resumes it: a store that is missing a file, damaged, of another dataset or covering more than is
committed is never trusted: the caller rebuilds it from the dataset's records (and says so once).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._core.keyset import KeySet, select_new
from .._errors import SpecError, StorageError
from .keyruns import LISTING, RUN, TEMPORARY, RunStack, StoreRejected, read_listing, write_listing
from .sqlite import path_text

__all__ = [
    "DEFAULT_FRACTION",
    "LISTING",
    "MIN_BUDGET",
    "KeyStore",
    "StoreRejected",
    "format_bytes",
    "memory_budget",
    "remove_store",
]

LOCK = "lock"
MIN_BUDGET = 1 << 20
"""The smallest ``--memory``: the store's fixed needs (a run's buffers, a fence page, the listing)."""
DEFAULT_FRACTION = 0.25
"""The default budget: this fraction of the memory this process may use."""

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*|%)", re.IGNORECASE)


def format_bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{int(n)} bytes"


def memory_budget(value: int | str | None) -> int:
    """The key store's budget in bytes from ``--memory``: an int (bytes), or text such as ``2GB``,
    ``500MiB``, ``1.5G`` (K, M, G, T alone are binary), ``25%`` (of the memory this process may use);
    None: :data:`DEFAULT_FRACTION` of it (1 GiB where it cannot be told). A clear :class:`SpecError`
    for anything else, below :data:`MIN_BUDGET`, or above this machine's memory."""
    from .._spec.spec import memory_limit  # (here: a partition's process never needs the spec's imports)

    total = memory_limit()
    if value is None:
        return max(MIN_BUDGET, int(DEFAULT_FRACTION * total)) if total else 1 << 30
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SpecError(f"--memory {value!r} is not a size: write e.g. 2GB, 500MiB or 25%")
    if isinstance(value, int):
        budget = value
    else:
        match = _SIZE.fullmatch(value.strip())
        unit = match.group(2).lower() if match else ""
        if match is None or (unit != "%" and unit not in _UNITS):
            raise SpecError(f"--memory {value!r} is not a size: write e.g. 2GB, 500MiB or 25% (of this machine's RAM)")
        number = float(match.group(1))
        if unit == "%":
            if total is None:
                raise SpecError(f"--memory {value}: this machine's memory is unknown: give a size such as 2GB")
            if not 0 < number <= 100:
                raise SpecError(f"--memory {value}: a share of this machine's memory is between 0% and 100%")
            budget = int(number / 100 * total)
        else:
            budget = int(number * _UNITS[unit])
    if budget < MIN_BUDGET:
        raise SpecError(
            f"--memory {value}: {format_bytes(budget)} is below the key store's fixed minimum of "
            f"{format_bytes(MIN_BUDGET)}: give at least 1MiB"
        )
    if total is not None and budget > total:
        raise SpecError(
            f"--memory {value}: {format_bytes(budget)} is more than this machine's {format_bytes(total)}: "
            "give less, e.g. 25%"
        )
    return budget


class KeyStore:
    """The dedup keys of one unique run, under ``budget`` bytes (see the module's docstring): the newest in
    RAM, the rest in :attr:`disk` (:class:`~.keyruns.RunStack`), and the listing that makes them resumable.

    ``directory`` is where runs go (created at the first spill); ``identity`` binds them to the dataset
    (its id and its spec's digest). Feed it with :meth:`add` in task order (``through``: the tasks whose
    keys are now all in), tell it what is committed with :meth:`committed` (runs are listed, and so
    resumable, only once committed), ask it :meth:`contains`/:meth:`select_new`."""

    def __init__(self, directory: Path, identity: bytes, budget: int) -> None:
        self.directory, self.identity, self.budget = directory, identity, budget
        self.ram = KeySet(limit=self.ram_limit)
        self.disk = RunStack(directory, identity, budget)
        self.decided = 0
        """Tasks whose keys are all in the store."""
        self.spilled = 0
        """Tasks whose keys are in runs (the rest of the decided ones are in RAM)."""
        self.committed_tasks = 0
        self.listed: dict[str, int] = {}
        """Runs in ``keys.json`` (name -> keys)."""
        self.listed_tasks = 0
        self._lock_fd: int | None = None
        self.spills = 0
        self._count = 0

    @property
    def ram_limit(self) -> int:
        return self.budget // 4

    @property
    def merges(self) -> int:
        return self.disk.merges

    @property
    def disk_bytes(self) -> int:
        return self.disk.disk_bytes

    def __len__(self) -> int:
        return self._count

    # -- resume -----------------------------------------------------------------------------------

    def open(self, committed: int, records_before: Callable[[int], int], *, share: bool = False) -> int:
        """Take up the listed runs if they can be trusted (the dataset's, intact, covering at most the
        ``committed`` tasks, holding as many keys as ``records_before(tasks)``, or at most as many for a
        ``share`` of the keys: a partition's); returns the tasks they
        cover (the caller adds the keys of the tasks after them). Raises :class:`StoreRejected` (what
        is wrong) after emptying the store when they cannot: the caller rebuilds it from the dataset."""
        self.committed_tasks = committed
        if not self.directory.exists() and not self.directory.is_symlink():
            return 0  # created at the first spill
        self._lock()
        try:
            covered = self._take_up(committed, records_before, share)
        except StoreRejected:
            self.clear()
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.clear()
            raise StoreRejected(f"unreadable ({type(exc).__name__}: {exc})") from None
        self._remove_unlisted()
        return covered

    def _lock(self) -> None:
        """Create the store's directory and hold its lock until :meth:`close`: a partition process
        orphaned by a killed run finishes the step it is in before a new one takes the store."""
        if self._lock_fd is not None:
            return
        if self.directory.is_symlink() or (self.directory.exists() and not self.directory.is_dir()):
            raise StorageError(
                f"{path_text(self.directory)} is in the way of the key store (not a directory): move it away"
            )
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot create the key store {path_text(self.directory)}: {exc.strerror}") from exc
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd

    def _take_up(self, committed: int, records_before: Callable[[int], int], share: bool) -> int:
        taken = read_listing(self.directory, self.identity, committed, records_before, share, self.disk.seed)
        if taken is None:
            return 0
        self.disk.runs, tasks, total, self.disk.seq = taken
        self.listed = {r.name: r.n for r in self.disk.runs}
        self.listed_tasks = self.decided = self.spilled = tasks
        self._count = total
        return tasks

    # -- membership -------------------------------------------------------------------------------

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask: which of the ``(n, 2)`` keys are in the store."""
        keys = np.asarray(keys, dtype=np.int64).reshape(-1, 2)
        order = np.argsort(keys[:, 0], kind="stable")
        found = np.empty(len(keys), dtype=bool)
        found[order] = self.contains_sorted(keys[order, 0], keys[order, 1])
        return found

    def contains_sorted(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """:meth:`contains` of keys sorted by their first word ``hi`` (the mask in that order)."""
        found = self.ram.contains_sorted(hi, lo)
        self.disk.settle(self.listed)  # a merge done in the background: its run replaces its inputs
        if self.disk.runs and len(hi):
            self.disk.find(hi, lo, found)
        return found

    def contains_both(self, hi: np.ndarray, lo: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`contains_sorted` of ``(hi, lo)`` and :meth:`contains` of the keys ``others`` ``(m, 2)``, with one
        query of the keys in RAM for both (a task's keys and its alternates: one pass over the table's buckets)."""
        others = np.asarray(others, dtype=np.int64).reshape(-1, 2)
        n = len(hi)
        found = self.ram.contains_sorted(np.concatenate([hi, others[:, 0]]), np.concatenate([lo, others[:, 1]]))
        self.disk.settle(self.listed)
        if self.disk.runs:
            if n:
                self.disk.find(hi, lo, found[:n])
            if len(others):
                order = np.argsort(others[:, 0], kind="stable")
                mine = found[n:][order]
                self.disk.find(others[order, 0], others[order, 1], mine)
                found[n + order] = mine
        return found[:n], found[n:]

    def select_new(self, primary: np.ndarray, alternates: dict[int, np.ndarray]) -> np.ndarray:
        """Which rows of a batch are new (:func:`.._core.keyset.select_new` against the store)."""
        return select_new(self.contains, primary, alternates)

    # -- growth -----------------------------------------------------------------------------------

    def add(self, keys: np.ndarray, through: int) -> None:
        """Add new keys (not in the store); all keys of tasks ``0 .. through-1`` are now in."""
        keys = np.asarray(keys, dtype=np.int64).reshape(-1, 2)
        order = np.argsort(keys[:, 0], kind="stable")
        self.add_sorted(keys[order, 0], keys[order, 1], through)

    def add_sorted(self, hi: np.ndarray, lo: np.ndarray, through: int) -> None:
        """:meth:`add` of keys sorted by their first word ``hi``: the keys in RAM are spilled first where
        their table could not take these within :attr:`ram_limit` (its last growth goes to the limit, then it
        fills to ``FULL_LOAD``), and after, where these keys alone take more."""
        if len(self.ram) and not self.ram.fits(len(hi)):
            self.spill()
        self.ram.add_sorted(hi, lo)
        self._count += len(hi)
        self.decided = through
        if self.ram.nbytes > self.ram_limit:
            self.spill()

    def spill(self) -> None:
        """Write the keys in RAM as a run (they cover the tasks decided since the last run), then
        merge runs size-tiered and list what is committed."""
        if not len(self.ram):
            return
        self._lock()
        self.disk.push((self.spilled, self.decided), *self.ram.drain(), self.listed)
        self.spilled = self.decided
        self.spills += 1
        self._list()

    # -- commits and listing ------------------------------------------------------------------------

    def committed(self, tasks: int) -> None:
        """Tasks ``0 .. tasks-1`` are committed: list the runs that now cover only committed tasks."""
        self.committed_tasks = tasks
        if self.disk.runs and self.disk.runs[-1].tasks[1] > self.listed_tasks:
            self._list()

    def _list(self) -> None:
        prefix = []
        for run in self.disk.runs:
            if run.tasks[1] > self.committed_tasks:
                break
            prefix.append(run)
        tasks = prefix[-1].tasks[1] if prefix else 0
        if tasks <= self.listed_tasks:
            return
        write_listing(self.directory, self.identity, prefix, tasks)
        old, self.listed, self.listed_tasks = self.listed, {r.name: r.n for r in prefix}, tasks
        in_use = {r.name for r in self.disk.runs}
        for name in old.keys() - self.listed.keys() - in_use:
            with contextlib.suppress(OSError):
                (self.directory / name).unlink()

    # -- cleaning up ----------------------------------------------------------------------------------

    def _remove_unlisted(self) -> None:
        """Runs and temporaries nobody lists (a run killed while spilling, merging or listing)."""
        for p in self.directory.iterdir():
            if (RUN.fullmatch(p.name) and p.name not in self.listed) or TEMPORARY.fullmatch(p.name):
                with contextlib.suppress(OSError):
                    p.unlink()

    def close(self) -> None:
        self.disk.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def clear(self) -> None:
        """Forget everything, on disk too (the store is rebuilt from the dataset); the lock is kept."""
        self.disk.close()
        self.ram = KeySet(limit=self.ram_limit)
        self.listed, self.listed_tasks = {}, 0
        self.decided = self.spilled = self._count = 0
        if self.directory.is_dir() and not self.directory.is_symlink():
            for p in self.directory.iterdir():
                if RUN.fullmatch(p.name) or TEMPORARY.fullmatch(p.name) or p.name == LISTING:
                    with contextlib.suppress(OSError):
                        p.unlink()

    def remove(self) -> None:
        """Delete the store (the dataset is complete: nothing will resume it)."""
        self._lock()
        self.clear()
        self.close()
        with contextlib.suppress(OSError):
            (self.directory / LOCK).unlink()
        with contextlib.suppress(OSError):
            self.directory.rmdir()


def remove_store(directory: Path) -> None:
    """Delete the key store in ``directory`` (our files only; the directory if it is then empty)."""
    if directory.is_dir() and not directory.is_symlink():
        store = KeyStore(directory, b"", MIN_BUDGET)
        store.remove()
