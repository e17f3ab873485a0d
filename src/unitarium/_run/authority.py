"""The dedup authority of a unique run: its keys, under the run's memory budget, in P partitions.

The rule is the one unique mode always had: a candidate is kept iff its key is in no earlier task
and it is the first of its key in its task ("the first record in task order wins"), and, with grid
keys, none of its alternate keys is in an earlier task or is the key of an earlier *kept* row of its
task. The keys live in :class:`~.._storage.keystore.KeyStore` s (in RAM up to a share of
``--memory``, then in sorted runs on disk beside the dataset), one per partition.

**Partitions.** With ``P`` partitions, partition ``i`` owns the keys whose high word (unsigned) lies
in the ``i``-th of ``P`` equal ranges, in a process of its own or a Ray actor, whichever the engine
hands the authority (:mod:`.partitions`, :mod:`.actors`; ``P = 1``, and partition 0 of the local
engines: in this process, which answers its share while the others answer theirs). The
driver sorts a task's keys once by their first word and keeps each key's first row; each partition
gets its range of those, already sorted (only keys travel), answers which are new and adds them:
one message each way, no sort in the partition. A task with alternates (grid keys near a cell
boundary) has rows whose fate depends on more than their own key (an alternate stored, or equal to
an earlier kept row's key, so it cannot be decided per key): the partitions answer the alternates'
membership too and hold their new keys until the driver, having decided those rows, says which to
drop (a message without an answer). Partitions answer in parallel, each in the order of the
messages sent to it (:class:`~.partition.KeyPartition`), so the content never depends on ``P`` or
on where the partitions run. A partition's store is ``part-<i>-of-<P>/`` under the store's
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
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.keyset import alternate_rows, drop_for_alternates, first_sorted, keep_mask
from .._errors import SpecError, WorkerError
from .._storage.keystore import MIN_BUDGET, format_bytes, remove_store
from .._storage.sqlite import path_text, sqlite_errors
from .partition import PartitionArgs, gather, partition_of, sorted_ranges
from .partitions import InProcess, LocalProcesses, Partitions, PartitionsFactory

if TYPE_CHECKING:  # (imported where used: a partition's process imports .partition, which imports none of these)
    from .._storage.layout import FileWriter
    from .._storage.manifest import Manifest
    from .._storage.shards import DirectoryWriter
    from .progress import StallWatch

__all__ = [
    "MAX_PARTITIONS",
    "KeyAuthority",
    "check_partitions",
    "default_partitions",
    "store_directory",
]

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
        partitions: PartitionsFactory = LocalProcesses,
    ) -> None:
        """``partitions``: makes the partitions of a run with ``parts > 1`` (the engine's: local
        processes, Ray actors); ``failed`` and ``watch`` go to it (``watch``: says what a decision
        waits for, when it waits long: :class:`~.progress.StallWatch`). One partition is this process."""
        self.writer, self.budget, self.note, self.parts = writer, budget, note, parts
        self.base = store_directory(writer)
        self.opened = False
        self.told = 0
        self.partitions: Partitions = InProcess() if parts == 1 else partitions(failed, watch)
        self.order = range(parts - 1, -1, -1)
        """The order of a message to every partition: partition 0 last (it may answer when sent, in this
        process, while the others work: :class:`~.partitions.LocalProcesses`)."""
        self.ranges: list[list[tuple[int, int]]] = []
        """Each partition's share of the last decision's sorted keys: position ranges (:func:`sorted_ranges`)."""
        self.drops: list[np.ndarray | None] = [None] * parts
        """Per partition, the positions of its held keys to drop, not yet said (:meth:`_drop`)."""

    def _directory(self, index: int) -> Path:
        return self.base / f"part-{index}-of-{self.parts}"

    def decide(self, task_id: int, keys: Any) -> np.ndarray:
        """The keep-mask of task ``task_id``'s candidates (``keys``: primary keys and alternates, and the
        primary keys' stable order by first word if the caller has it, as
        :meth:`~.._spec.sources.TaskResult.decision_keys` gives them); called in task order.

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
        primary, alternates, *given = keys
        primary = np.asarray(primary, dtype=np.int64).reshape(-1, 2)
        order = given[0] if given else np.argsort(primary[:, 0], kind="stable")
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
        self.ranges = sorted_ranges(hi, self.parts)
        alt_part = None if alt_keys is None else partition_of(alt_keys[:, 0], self.parts)
        for i in self.order:
            spans = self.ranges[i]
            alt_mine = None if alt_part is None or alt_keys is None else alt_keys[alt_part == i]
            drop, self.drops[i] = self.drops[i], None
            self.partitions.send(i, ("decide", gather(hi, spans), gather(lo, spans), alt_mine, through, drop))
        new = np.empty(len(hi), dtype=bool)
        alt_found = None if alt_keys is None else np.empty(len(alt_keys), dtype=bool)
        for i, spans in enumerate(self.ranges):
            new_i, alt_i = self.partitions.reply(i)
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
        for i, spans in enumerate(self.ranges):
            mine, at = [], 0
            for a, b in spans:
                inside = positions[(positions >= a) & (positions < b)]
                mine.append(inside - a + at)
                at += b - a
            self.drops[i] = np.concatenate(mine) if mine else np.zeros(0, dtype=np.intp)

    def _flush(self) -> None:
        """Say the drops not yet said (before a message that is not a decision)."""
        for i in self.order:
            if (drop := self.drops[i]) is not None:
                self.drops[i] = None
                self.partitions.send(i, ("drop", drop))

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
        self._flush()
        part = partition_of(keys[:, 0], self.parts)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.parts + 1))
        for i in self.order:
            self.partitions.send(i, ("query", keys[order[bounds[i] : bounds[i + 1]]]))
        found = np.empty(len(keys), dtype=bool)
        for i in range(self.parts):
            found[order[bounds[i] : bounds[i + 1]]] = self.partitions.reply(i)
        return found

    def _add(self, keys: np.ndarray, through: int) -> None:
        part = partition_of(keys[:, 0], self.parts)
        for i in self.order:
            self.partitions.send(i, ("add", keys[part == i], through))

    # -- opening ------------------------------------------------------------------------------------

    def _open(self) -> None:
        self._remove_other_partitionings()
        firsts = _firsts(self.writer.manifest)
        share = max(1, self.budget // self.parts)
        identities = [_identity(self.writer, i, self.parts) for i in range(self.parts)]
        location = str(self.writer.location)
        self.partitions.start(
            [
                PartitionArgs(location, str(self._directory(i)), identities[i], share, i, self.parts)
                for i in range(self.parts)
            ]
        )
        for i in self.order:
            self.partitions.send(i, ("open", firsts))
        notes = [self.partitions.reply(i)[1] for i in range(self.parts)]
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

    # -- commits, the end ---------------------------------------------------------------------------------

    def committed(self, tasks: int) -> None:
        """Tasks ``0 .. tasks-1`` are committed (the stores list the runs they cover)."""
        if not self.opened or tasks <= self.told:
            return
        self.told = tasks
        self._flush()
        for i in self.order:
            self.partitions.send(i, ("committed", tasks))

    def finish(self) -> None:
        """The dataset is complete: its key store goes."""
        if self.opened:
            self._flush()
            for i in self.order:
                self.partitions.send(i, ("finish",))
            for i in range(self.parts):
                self.partitions.reply(i)
        self.close()
        if self.base.is_dir() and not self.base.is_symlink():
            for p in self.base.iterdir():
                if _PART.fullmatch(p.name):
                    remove_store(p)
            with contextlib.suppress(OSError):
                self.base.rmdir()

    def close(self) -> None:
        self.partitions.close()
