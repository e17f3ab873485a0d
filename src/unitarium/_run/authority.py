"""The dedup authority of a unique run: its keys, under the run's memory budget, in P partitions.

The rule is the one unique mode always had: a candidate is kept iff its key is in no earlier task
and it is the first of its key in its task ("the first record in task order wins"), and, with grid
keys, none of its alternate keys is in an earlier task or is the key of an earlier *kept* row of its
task. The keys live in :class:`~.._storage.keystore.KeyStore` s (in RAM up to a share of
``--memory``, then in sorted runs on disk beside the dataset), one per partition.

**Partitions.** With ``P`` partitions, partition ``i`` owns the keys whose high word (unsigned) lies
in the ``i``-th of ``P`` equal ranges, in a process of its own (``P = 1``: in this process). The
driver sorts a task's keys once by their first word and keeps each key's first row; each partition
gets its range of those, already sorted (only keys travel), answers which are new and adds them:
one message each way, no sort in the partition. A task with alternates (grid keys near a cell
boundary) has rows whose fate depends on more than their own key (an alternate stored, or equal to
an earlier kept row's key, so it cannot be decided per key): the partitions answer the alternates'
membership too and hold their new keys until the driver, having decided those rows, says which to
drop (a message without an answer). Partitions answer in parallel, each in task order, so the
content never depends on ``P``. A partition's store is ``part-<i>-of-<P>/`` under the store's
directory; a resume with another ``P`` rebuilds them (one note).

A store is opened at the first decision of a run: the runs its listing trusts are taken up, and the
keys of the committed records after them are read from the dataset (all of them when there is no
store, or one that cannot be trusted: a note says so). Listed runs follow the commits; a complete
dataset's store is deleted (nothing will resume it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import re
import signal
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.keyset import alternate_rows, drop_for_alternates, first_sorted, keep_mask
from .._errors import SpecError, WorkerError
from .._storage.keystore import MIN_BUDGET, KeyStore, StoreRejected, format_bytes, remove_store
from .._storage.sqlite import path_text, sqlite_errors
from .wire import recv_message, send_message, start_worker, stop_workers

if TYPE_CHECKING:  # a partition's process imports this module: what it never uses is imported where used
    from .._storage.layout import FileWriter
    from .._storage.manifest import Manifest
    from .._storage.shards import DirectoryWriter
    from .progress import StallWatch

__all__ = [
    "FEED_RECORDS",
    "MAX_PARTITIONS",
    "KeyAuthority",
    "check_partitions",
    "default_partitions",
    "partition_of",
    "sorted_ranges",
    "store_directory",
]

FEED_RECORDS = 1 << 16
"""Records whose keys are read from the dataset at a time when a store is extended or rebuilt."""
_PART = re.compile(r"part-(\d+)-of-(\d+)")
_WORKERS_PER_PARTITION = 8
"""Default partitions: one per this many workers (a partition's work per candidate, a search and an
insert, is a fraction of a worker's)."""


def default_partitions(workers: int) -> int:
    """Partitions of the key authority for ``workers`` workers: one per :data:`_WORKERS_PER_PARTITION`."""
    return max(1, -(-workers // _WORKERS_PER_PARTITION))


MAX_PARTITIONS = 64


def check_partitions(partitions: int | None, workers: int | None, budget: int) -> int:
    """The partition count of a run: ``partitions``, or :func:`default_partitions` of the workers
    (``workers``, else this machine's cores); a clear :class:`SpecError` if it is not a count from 1
    to :data:`MAX_PARTITIONS`, or leaves a partition less than the store's minimum budget."""
    if partitions is None:
        from .plan import default_workers

        return default_partitions(workers if isinstance(workers, int) and workers > 0 else default_workers() + 1)
    if isinstance(partitions, bool) or not isinstance(partitions, int) or not 1 <= partitions <= MAX_PARTITIONS:
        raise SpecError(f"--partitions {partitions!r} must be a whole number from 1 to {MAX_PARTITIONS}")
    if budget // partitions < MIN_BUDGET:
        raise SpecError(
            f"--partitions {partitions}: --memory {format_bytes(budget)} leaves each partition less than the key "
            f"store's minimum of {format_bytes(MIN_BUDGET)}: give more --memory or fewer partitions"
        )
    return partitions


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


def _gather(words: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """The words at position ranges ``spans``, in order (one range: a view, no copy)."""
    if len(spans) == 1:
        return words[spans[0][0] : spans[0][1]]
    return np.concatenate([words[a:b] for a, b in spans])


def store_directory(writer: FileWriter | DirectoryWriter) -> Path:
    """Where a dataset's key store lives: ``DATA.keys/`` beside a file, ``DATA/keys/`` in a directory."""
    from .._storage.shards import DirectoryWriter

    if isinstance(writer, DirectoryWriter):
        return writer.directory / "keys"
    return writer.path.with_name(writer.path.name + ".keys")


def _identity(writer: FileWriter | DirectoryWriter, index: int, parts: int) -> bytes:
    """What a partition's store is bound to: the dataset's id (none before schema 3), its spec's
    digest, and the partition."""
    spec = json.dumps(writer.spec.to_json(), sort_keys=True).encode()
    return (writer.fmt.dataset or b"") + hashlib.sha256(spec).digest() + f"{index}/{parts}".encode()


def _firsts(manifest: Manifest) -> np.ndarray:
    """The first record id of every committed task, and the record count after them."""
    with sqlite_errors(manifest.path, "reading"):
        rows = manifest.conn.execute("SELECT first_id FROM tasks ORDER BY task_id").fetchall()
    return np.array([r[0] for r in rows] + [manifest.next_id()], dtype=np.int64)


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


# -- a partition's process ----------------------------------------------------------------------------------


class _Share:
    """A partition's side of :meth:`KeyAuthority.decide`, on its store: in its own process, or in the
    driver's with one partition."""

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
        new = ~self.store.contains_sorted(hi, lo)
        if alt_keys is None:
            self.store.add_sorted(hi[new], lo[new], through)
            return new, None
        self.held = (hi, lo, new.copy(), through)
        return new, self.store.contains(alt_keys)

    def drop(self, positions: np.ndarray) -> None:
        """Add the held new keys but those at ``positions`` (rows that an alternate drops)."""
        assert self.held is not None, "drop without a held decision"
        hi, lo, new, through = self.held
        self.held = None
        new[positions] = False
        self.store.add_sorted(hi[new], lo[new], through)


def _serve(
    conn: Connection, location: str, directory: str, identity: bytes, budget: int, index: int, parts: int
) -> None:
    """A partition: answer ``query`` (membership), take ``add`` and ``committed``, in the order sent;
    return at end-of-file (the driver is done, or gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the driver decides
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    store = KeyStore(Path(directory), identity, budget)
    share = _Share(store)
    fd = conn.fileno()
    try:
        while True:
            try:
                message = recv_message(fd)
            except (EOFError, OSError):
                return
            kind = message[0]
            if kind == "decide":
                if message[5] is not None:  # the previous decision's drops
                    share.drop(message[5])
                send_message(fd, share.decide(*message[1:5]))
            elif kind == "drop":
                share.drop(message[1])
            elif kind == "query":
                send_message(fd, store.contains(message[1]))
            elif kind == "add":
                store.add(message[1], message[2])
            elif kind == "committed":
                store.committed(message[1])
            elif kind == "open":
                send_message(fd, ("opened", open_store(store, Path(location), message[1], index, parts)))
            elif kind == "finish":
                store.close()
                remove_store(store.directory)
                send_message(fd, ("done", None))
    except Exception as exc:  # reported as one line by the driver, never a traceback
        with contextlib.suppress(OSError):
            send_message(fd, ("error", f"{type(exc).__name__}: {exc}"))
    finally:
        store.close()


# -- the driver's side --------------------------------------------------------------------------------------


class KeyAuthority:
    """Decides keep-masks in task order against every key before (see the module's docstring):
    ``parts`` partitions, each with ``budget / parts`` bytes."""

    def __init__(
        self,
        writer: FileWriter | DirectoryWriter,
        budget: int,
        note: Callable[[str], None],
        failed: Callable[[str], WorkerError],
        parts: int = 1,
        watch: StallWatch | None = None,
    ) -> None:
        """``watch``: says which partition process (pid) a decision waits for, when it waits long
        (a partition stopped by SIGSTOP, as a worker: :class:`~.progress.StallWatch`)."""
        self.writer, self.budget, self.note, self.failed, self.parts = writer, budget, note, failed, parts
        self.watch = watch
        self.base = store_directory(writer)
        self.opened = False
        self.told = 0
        self.store: KeyStore | None = None  # one partition, in this process
        self.share: _Share | None = None  # its side of the decisions
        self.ranges: list[list[tuple[int, int]]] = []
        """Each partition's share of the last decision's sorted keys: position ranges (:func:`sorted_ranges`)."""
        self.drops: list[np.ndarray | None] = [None] * parts
        """Per partition, the positions of its held keys to drop, not yet said (:meth:`_drop`)."""
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.conns: list[Connection] = []

    def _directory(self, index: int) -> Path:
        return self.base / f"part-{index}-of-{self.parts}"

    def decide(self, task_id: int, keys: Any) -> np.ndarray:
        """The keep-mask of task ``task_id``'s candidates (``keys``: primary keys and alternates);
        called in task order.

        One sort of the task's keys by their first word serves everything: its first occurrences, and
        their membership and insert, each partition getting its share already sorted (a range of the
        sorted keys: partitions own key ranges) and answering a mask. Without alternates that is one
        message each way per partition, and the partition adds the new keys itself. With alternates,
        only the rows that have some depend on more than their own key (an alternate stored, or equal
        to an earlier kept row's key): the partitions answer the alternates' membership with the
        rest, hold their new keys, and take them once the driver has said which of those rows to
        drop (a message that needs no answer). Falls back to :meth:`_decide_unsorted` when two
        different keys share a first word (~never)."""
        if not self.opened:
            self._open()
        primary, alternates = keys
        primary = np.asarray(primary, dtype=np.int64).reshape(-1, 2)
        order = np.argsort(primary[:, 0], kind="stable")
        hi, lo = primary[order, 0], primary[order, 1]
        first = first_sorted(hi, lo)
        if first is None:
            return self._decide_unsorted(primary, alternates, task_id)
        rows, alts = alternate_rows(alternates or {})
        alt_keys = np.concatenate(alts) if rows else None
        if first.all():  # no key twice (exact keys: tasks drop their repeats): no gather
            at = None
            new, alt_found = self._ask(hi, lo, alt_keys, task_id + 1)
            keep_sorted = new
        else:
            at = np.flatnonzero(first)  # in sorted order: each key's first row
            new, alt_found = self._ask(hi[at], lo[at], alt_keys, task_id + 1)
            keep_sorted = np.zeros(len(hi), dtype=bool)
            keep_sorted[at] = new
        keep = np.empty(len(hi), dtype=bool)
        keep[order] = keep_sorted
        if rows:
            assert alt_keys is not None and alt_found is not None
            dropped = drop_for_alternates(keep, hi, lo, order, rows, alt_keys, [len(a) for a in alts], alt_found)
            rank = np.empty(len(hi), dtype=np.intp)
            rank[order] = np.arange(len(hi))
            self._drop(rank[dropped] if at is None else np.searchsorted(at, rank[dropped]))
        return keep

    def _ask(
        self, hi: np.ndarray, lo: np.ndarray, alt_keys: np.ndarray | None, through: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Which of the distinct keys ``(hi, lo)`` (sorted by ``hi``) are new, and which of ``alt_keys``
        are stored, from each partition's share; without alternates the new keys are added at once."""
        if self.share is not None:
            return self.share.decide(hi, lo, alt_keys, through)
        self.ranges = sorted_ranges(hi, self.parts)
        alt_part = None if alt_keys is None else partition_of(alt_keys[:, 0], self.parts)
        for i, spans in enumerate(self.ranges):
            alt_mine = None if alt_part is None or alt_keys is None else alt_keys[alt_part == i]
            drop, self.drops[i] = self.drops[i], None
            self._send(i, ("decide", _gather(hi, spans), _gather(lo, spans), alt_mine, through, drop))
        new = np.empty(len(hi), dtype=bool)
        alt_found = None if alt_keys is None else np.empty(len(alt_keys), dtype=bool)
        for i, spans in enumerate(self.ranges):
            new_i, alt_i = self._reply(i)
            at = 0
            for a, b in spans:
                new[a:b] = new_i[at : at + b - a]
                at += b - a
            if alt_found is not None:
                alt_found[alt_part == i] = alt_i
        return new, alt_found

    def _drop(self, positions: np.ndarray) -> None:
        """The partitions' held keys go in, but for those at ``positions`` (of the last :meth:`_ask`);
        said to each partition with its next message (:meth:`_flush` before any but a decision)."""
        if self.share is not None:
            self.share.drop(positions)
            return
        for i, spans in enumerate(self.ranges):
            mine, at = [], 0
            for a, b in spans:
                inside = positions[(positions >= a) & (positions < b)]
                mine.append(inside - a + at)
                at += b - a
            self.drops[i] = np.concatenate(mine) if mine else np.zeros(0, dtype=np.intp)

    def _flush(self) -> None:
        """Say the drops not yet said (before a message that is not a decision)."""
        for i, drop in enumerate(self.drops):
            if drop is not None:
                self.drops[i] = None
                self._send(i, ("drop", drop))

    def _decide_unsorted(
        self, primary: np.ndarray, alternates: dict[int, np.ndarray] | None, task_id: int
    ) -> np.ndarray:
        """:meth:`decide` when two different keys share a first word: membership of every key and
        alternate, the keep-mask, then the insert."""
        rows, alts = alternate_rows(alternates or {})
        asked = np.concatenate([primary, *alts]) if rows else primary
        found = self._contains(asked)
        keep = keep_mask(primary, found[: len(primary)], rows, alts, found[len(primary) :] if rows else None)
        self._add(primary[keep], task_id + 1)
        return keep

    def _contains(self, keys: np.ndarray) -> np.ndarray:
        if self.store is not None:
            return self.store.contains(keys)
        self._flush()
        part = partition_of(keys[:, 0], self.parts)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.parts + 1))
        for i in range(self.parts):
            self._send(i, ("query", keys[order[bounds[i] : bounds[i + 1]]]))
        found = np.empty(len(keys), dtype=bool)
        for i in range(self.parts):
            found[order[bounds[i] : bounds[i + 1]]] = self._reply(i)
        return found

    def _add(self, keys: np.ndarray, through: int) -> None:
        if self.store is not None:
            self.store.add(keys, through)
            return
        part = partition_of(keys[:, 0], self.parts)
        for i in range(self.parts):
            self._send(i, ("add", keys[part == i], through))

    # -- opening ------------------------------------------------------------------------------------

    def _open(self) -> None:
        self._remove_other_partitionings()
        firsts = _firsts(self.writer.manifest)
        share = max(1, self.budget // self.parts)
        identities = [_identity(self.writer, i, self.parts) for i in range(self.parts)]
        if self.parts == 1:
            self.store = KeyStore(self._directory(0), identities[0], share)
            notes = [open_store(self.store, self.writer.location, firsts, 0, 1)]
            self.share = _Share(self.store)
        else:
            self._start(identities, share)
            for i in range(self.parts):
                self._send(i, ("open", firsts))
            notes = [self._reply(i)[1] for i in range(self.parts)]
        for text in dict.fromkeys(n for n in notes if n):
            self.note(text)
        self.opened = True

    def _remove_other_partitionings(self) -> None:
        """Stores of another partition count (a resume with another ``P``): rebuilt, said once."""
        if not self.base.is_dir() or self.base.is_symlink():
            return
        others = [p for p in self.base.iterdir() if (m := _PART.fullmatch(p.name)) and int(m.group(2)) != self.parts]
        for p in others:
            remove_store(p)
        if others:
            self.note(
                f"note: the key store {path_text(self.base)} was made by another number of partitions: "
                f"rebuilt for {self.parts} from the dataset"
            )

    def _start(self, identities: list[bytes], share: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        resource_tracker.ensure_running()
        try:
            for i in range(self.parts):
                mine, theirs = ctx.Pipe(duplex=True)
                args = (theirs, str(self.writer.location), str(self._directory(i)), identities[i], share, i, self.parts)
                self.procs.append(start_worker(ctx, _serve, args, (theirs,)))
                self.conns.append(mine)
        except BaseException:
            self.close()
            raise

    # -- messages -------------------------------------------------------------------------------------

    def _died(self, i: int) -> WorkerError:
        return self.failed(f"key partition process {self.procs[i].pid} died (killed, or out of memory?)")

    def _waiting(self, i: int) -> Callable[[], None] | None:
        """What a blocked transfer with partition ``i`` calls: the watch's check, from now on."""
        watch = self.watch
        if watch is None:
            return None
        watch.arrived()
        pid = self.procs[i].pid
        return lambda: watch.check(f"key partition {i}", [] if pid is None else [pid])

    def _send(self, i: int, message: tuple[Any, ...]) -> None:
        try:
            send_message(self.conns[i].fileno(), message, wait=self._waiting(i))
        except OSError:
            raise self._died(i) from None

    def _reply(self, i: int) -> Any:
        try:
            reply = recv_message(self.conns[i].fileno(), wait=self._waiting(i))
        except (EOFError, OSError):
            raise self._died(i) from None
        if isinstance(reply, tuple) and isinstance(reply[0], str) and reply[0] == "error":
            raise self.failed(f"key partition {i} failed: {reply[1]}")
        return reply

    # -- commits, the end ---------------------------------------------------------------------------------

    def committed(self, tasks: int) -> None:
        """Tasks ``0 .. tasks-1`` are committed (the stores list the runs they cover)."""
        if not self.opened or tasks <= self.told:
            return
        self.told = tasks
        if self.store is not None:
            self.store.committed(tasks)
        else:
            self._flush()
            for i in range(self.parts):
                self._send(i, ("committed", tasks))

    def finish(self) -> None:
        """The dataset is complete: its key store goes."""
        if self.conns:
            self._flush()
            for i in range(self.parts):
                self._send(i, ("finish",))
            for i in range(self.parts):
                self._reply(i)
        self.close()
        if self.base.is_dir() and not self.base.is_symlink():
            for p in self.base.iterdir():
                if _PART.fullmatch(p.name):
                    remove_store(p)
            with contextlib.suppress(OSError):
                self.base.rmdir()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        for conn in self.conns:
            conn.close()
        stop_workers(self.procs, graceful=True, wait_s=10)
        self.conns, self.procs = [], []
