"""A key partition of a unique run (see :mod:`.authority`): the key ranges partitions own, a partition's
store opened and resumed (:func:`open_store`), its side of each decision (:class:`Share`), its answers to
the authority's messages (:class:`KeyPartition`, wherever it runs), and the local process that serves
it (:func:`serve`). Imported by a partition's process or Ray actor: light imports."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from .._core.compiled import own_process
from .._core.keykernels import MIN_SHARE, SWITCH_AFTER, load_in_background
from .._storage.keystore import KeyStore, StoreRejected, remove_store
from .._storage.sqlite import path_text
from .wire import recv_message, send_message

__all__ = [
    "FEED_RECORDS",
    "SILENT",
    "KeyPartition",
    "PartitionArgs",
    "Share",
    "gather",
    "open_store",
    "partition_of",
    "serve",
    "sorted_ranges",
]

FEED_RECORDS = 1 << 16
"""Records whose keys are read from the dataset at a time when a store is extended or rebuilt."""


def partition_of(hi: np.ndarray, parts: int) -> np.ndarray:
    """The partition of each key by its high word: ``parts`` equal ranges of its top 32 bits (unsigned)."""
    top = np.ascontiguousarray(hi, dtype=np.int64).view(np.uint64) >> np.uint64(32)
    return ((top * np.uint64(parts)) >> np.uint64(32)).astype(np.intp)


def sorted_ranges(hi: np.ndarray, parts: int) -> list[list[tuple[int, int]]]:
    """Each partition's keys among first words ``hi`` sorted (signed): the position ranges ``(start, stop)``
    of :func:`partition_of`'s ``i``-th unsigned range, which signed order cuts in two where it holds
    both signs (its negative words first: the ranges' keys in order are still sorted)."""
    starts = [-(-i * 2**32 // parts) << 32 for i in range(parts + 1)]  # unsigned, starts[parts] = 2^64
    signed = np.array([b - 2**64 if b >= 2**63 else b for b in starts[:-1]], dtype=np.int64)
    at = np.searchsorted(hi, signed).tolist()
    zero, n = int(np.searchsorted(hi, 0)), len(hi)
    out = []
    for i in range(parts):
        low, high = starts[i], starts[i + 1]
        end = at[i + 1] if i + 1 < parts else zero  # 2^64: the end of the negative words
        if high <= 2**63:
            out.append([(at[i], n if high == 2**63 else end)])
        elif low >= 2**63:
            out.append([(0 if low == 2**63 else at[i], end)])
        else:
            out.append([(0, end), (at[i], n)])
    return out


def gather(words: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """The words at position ranges ``spans``, in order (one range: a view, no copy)."""
    if len(spans) == 1:
        return words[spans[0][0] : spans[0][1]]
    return np.concatenate([words[a:b] for a, b in spans])


def _task_groups(firsts: np.ndarray, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
    """``(first id, end id, through)`` over tasks ``start .. stop-1``: record ranges of about
    :data:`FEED_RECORDS`, each ending with a whole task (``through``: the task after it)."""
    task = start
    while task < stop:
        end = int(np.searchsorted(firsts, firsts[task] + FEED_RECORDS, side="left"))
        through = min(stop, max(task + 1, end))
        yield int(firsts[task]), int(firsts[through]), through
        task = through


def open_store(store: KeyStore, location: Path, firsts: np.ndarray, index: int, parts: int) -> str | None:
    """Open ``store`` (partition ``index`` of ``parts``) for a run of the dataset at ``location`` whose
    committed tasks start at the record ids ``firsts``: take up what it can trust, read the keys of
    the records committed after that. Returns a note when the store could not be trusted."""
    committed = len(firsts) - 1
    note = None
    try:
        covered = store.open(committed, lambda tasks: int(firsts[tasks]), share=parts > 1)
    except StoreRejected as exc:
        note = f"note: the key store {path_text(store.directory)} is not used ({exc}): rebuilt from the dataset"
        covered = 0
    if covered < committed:
        from .._read.bulk import blocks
        from .._read.dataset import Dataset

        with Dataset(location) as reader:
            for first, end, through in _task_groups(firsts, covered, committed):
                parts_read = [b.keys for _, b in blocks(reader, first, end) if b.keys is not None]
                keys = np.concatenate(parts_read) if parts_read else np.zeros((0, 2), np.int64)
                if parts > 1:
                    keys = keys[partition_of(keys[:, 0], parts) == index]
                store.add(keys, through)
    return note


# -- a partition ---------------------------------------------------------------------------------------------


class Share:
    """A partition's side of :meth:`KeyAuthority.decide`, on its store."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.held: tuple[np.ndarray, np.ndarray, np.ndarray, int] | None = None

    def decide(
        self, hi: np.ndarray, lo: np.ndarray, alt_keys: np.ndarray | None, through: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Which of the distinct keys ``(hi, lo)``, sorted by ``hi``, are new, and (``alt_keys`` not
        None: the task has alternates) which of ``alt_keys`` are stored. Without alternates the new
        keys are added now (all of tasks ``0 .. through-1`` are then in); with them they are held
        until :meth:`drop`."""
        if alt_keys is None:
            new = ~self.store.contains_sorted(hi, lo)
            self.store.add_sorted(hi[new], lo[new], through)
            return new, None
        found, alt_found = self.store.contains_both(hi, lo, alt_keys)
        new = ~found
        self.held = (hi, lo, new.copy(), through)
        return new, alt_found

    def drop(self, positions: np.ndarray) -> None:
        """Add the held new keys but those at ``positions`` (rows that an alternate drops)."""
        assert self.held is not None, "drop without a held decision"
        hi, lo, new, through = self.held
        self.held = None
        new[positions] = False
        self.store.add_sorted(hi[new], lo[new], through)


@dataclass(frozen=True)
class PartitionArgs:
    """What partition ``index`` of ``parts`` is made of: the dataset at ``location``, its store's
    ``directory``, the ``identity`` the store is bound to, and its ``budget`` in bytes (plain values:
    they travel to a partition's process or Ray actor)."""

    location: str
    directory: str
    identity: bytes
    budget: int
    index: int
    parts: int


SILENT = frozenset({"drop", "add", "committed"})
"""The messages without an answer (:meth:`KeyPartition.handle` returns None)."""


class KeyPartition:
    """A partition: its store and its side of the decisions, answering the authority's messages in the
    order sent. The same in the driver (``P = 1``), in a local process (:func:`serve`) and as a Ray
    actor (:mod:`.actors`).

    Messages: ``("decide", hi, lo, alt_keys, through, drop)`` (:meth:`Share.decide`, after the
    previous decision's ``drop`` if not None), ``("drop", positions)``, ``("query", keys)``
    (membership), ``("add", keys, through)``, ``("committed", tasks)``, ``("open", firsts)``
    (:func:`open_store`; answers ``("opened", note)``), ``("finish",)`` (the store is deleted;
    answers ``("done", None)``)."""

    def __init__(self, args: PartitionArgs) -> None:
        self.args = args
        self.store = KeyStore(Path(args.directory), args.identity, args.budget)
        self.share = Share(self.store)
        self.decided = 0
        """Decisions answered (past :data:`~.._core.keykernels.SWITCH_AFTER`, the compiled table is loaded where
        the budget is at least :data:`~.._core.keykernels.MIN_SHARE`)."""

    def handle(self, message: tuple[Any, ...]) -> Any:
        """The answer to ``message``, or None for the :data:`SILENT` ones."""
        kind, store = message[0], self.store
        if kind == "decide":
            if message[5] is not None:  # the previous decision's drops
                self.share.drop(message[5])
            self.decided += 1
            if self.decided == SWITCH_AFTER and self.args.budget >= MIN_SHARE:
                load_in_background()
            return self.share.decide(*message[1:5])
        if kind == "drop":
            self.share.drop(message[1])
        elif kind == "query":
            return store.contains(message[1])
        elif kind == "add":
            store.add(message[1], message[2])
        elif kind == "committed":
            store.committed(message[1])
        elif kind == "open":
            args = self.args
            return ("opened", open_store(store, Path(args.location), message[1], args.index, args.parts))
        elif kind == "finish":
            store.close()
            remove_store(store.directory)
            return ("done", None)
        else:
            raise ValueError(f"unknown message {kind!r}")
        return None

    def close(self) -> None:
        self.store.close()


def serve(conn: Connection, args: PartitionArgs) -> None:
    """A partition's process: answer its driver's messages (:meth:`KeyPartition.handle`) in the order
    sent; return at end-of-file (the driver is done, or gone). A failure is sent as ``("error", line)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the driver decides
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    own_process()  # (only unitarium runs here: numba's load may skip its SciPy probe)
    partition = KeyPartition(args)
    fd = conn.fileno()
    try:
        while True:
            try:
                message = recv_message(fd)
            except (EOFError, OSError):
                return
            reply = partition.handle(message)
            if reply is not None:
                send_message(fd, reply)
    except Exception as exc:  # reported as one line by the driver, never a traceback
        with contextlib.suppress(OSError):
            send_message(fd, ("error", f"{type(exc).__name__}: {exc}"))
    finally:
        partition.close()
