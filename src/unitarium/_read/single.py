"""Records by id: ``ds[i]`` and ``ds[[i, j, ...]]``, on a fast road and a checked slow one.

The fast road (:class:`RecordReader`) keeps the task list in memory (first id, shard and size of
each task, loaded once and reloaded whenever SQLite's ``data_version`` says another connection
committed to the manifest: a run appending records, or anything else) and, in a directory, reads a
record's bytes through the map of its segment (:meth:`._storage.blocks.BlockStore.mapped`; a
dataset file's pages are read through SQLite, as the slow road does). The first read
of a page checks it whole against its checksums, its move codes against the gate set and its
unitaries for NaN and infinities; later reads of that page (by this dataset handle, in this
process) are served from the map without hashing it again. Computed unitaries are recomputed for
the one record with the kernel's own arithmetic (:func:`product`), bit for bit what the bulk read
computes. Anything off the fast road (ids out of range or negative, a task list that is not the
committed prefix, a file the map cannot read, a page holding a bad record) takes the slow road: the
reads through SQLite that check every page on every read and word every error.
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.circuit import Circuit, Record
from .._core.kernels import ProductTable, _batch_last_step
from .._spec.sources import recompute
from .._spec.spec import RandomSource
from .._storage.mapped import MappedBlock, Maps
from .bulk import check_codes, finite, unitaries_of

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["RecordReader", "product"]

_CHECKED, _SLOW = 1, 2
"""What a page's first read found: sound (served from the map), or holding a bad record (slow road)."""


def product(table: ProductTable, seq: list[int], width: int) -> np.ndarray:
    """The unitary ``(d, d)`` of one move sequence padded to ``width``: bit for bit
    ``table.unitaries(seqs)[k]`` for a row ``k`` of a batch holding it. The same chunk products in
    the same order, and each matrix product formed as the batch kernel forms it (entrywise, summed
    in ascending order; or ``np.matmul`` for large matrices)."""
    k, m, radix = table.depth, table.num_moves, table.radix
    padded = seq + [m] * (-(-width // k) * k - len(seq))
    powers = [radix**j for j in range(k)]  # the chunk's first move is the fastest digit
    index = [sum(map(operator.mul, padded[c : c + k], powers)) for c in range(0, len(padded), k)]
    t = table.table
    if not index:
        return np.eye(t.shape[1], dtype=table.dtype)
    out = t[index[0]]
    if _batch_last_step(t.shape[1], table.dtype) is None:
        for c in index[1:]:
            out = np.matmul(t[c : c + 1], out[None])[0]
        return out.copy() if len(index) == 1 else out
    add = np.add.reduce
    for c in index[1:]:
        out = add(t[c][:, :, None] * out[None, :, :], axis=1)
    return out.copy() if len(index) == 1 else out


class RecordReader:
    """``ds[i]`` and ``ds[ids]`` of a :class:`~._read.dataset.Dataset` (see the module docstring)."""

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds
        self._store = ds._store
        self._version: object = None
        self._index: tuple[list[int], list[tuple[int, int, int, int]], int, bool] = ([], [], 0, False)
        """First ids and ``(task_id, shard, first_id, count)`` of the non-empty tasks, the records
        they hold, and whether the task list is the committed prefix (one tuple: threads share it)."""
        self._setup: tuple[Any, ...] | None = None

    # -- the task list ------------------------------------------------------------------------

    def length(self) -> int | None:
        """The records committed (None: the task list is not the committed prefix: ask SQLite)."""
        _, _, n, sound = self._refresh()
        return n if sound else None

    def _refresh(self) -> tuple[list[int], list[tuple[int, int, int, int]], int, bool]:
        version = self._store.data_version()
        if version != self._version:
            self._index = self._load()
            self._version = version
            self._store.maps.forget_unmapped()
        return self._index

    def _load(self) -> tuple[list[int], list[tuple[int, int, int, int]], int, bool]:
        rows = self._ds._query("SELECT task_id, shard, first_id, count FROM tasks ORDER BY task_id")
        tasks, firsts, end = [], [], 0
        sound = True
        for k, row in enumerate(rows):
            task_id, shard, first, count = row
            if not all(type(v) is int for v in row) or task_id != k or first != end or count < 0:
                sound = False
                break
            if count:
                tasks.append((task_id, shard, first, count))
                firsts.append(first)
            end = first + count
        return firsts, tasks, end, sound

    # -- reads --------------------------------------------------------------------------------

    def one(self, key: Any, fixed: int | None = None) -> Record:
        """Record ``key`` (of the first ``fixed`` records, when given)."""
        firsts, tasks, n, sound = self._refresh()
        if type(key) is int or (isinstance(key, np.integer) and not isinstance(key, bool)):
            i = int(key)
            if sound and 0 <= i < n and (fixed is None or i < fixed):
                found = self._fast(i, firsts, tasks, self._store.maps)
                if found is not None:
                    return found
        return self._ds._slow_record(key)

    def many(self, ids: np.ndarray) -> list[Record]:
        """Records ``ids`` (checked, non-negative, in range), in their order."""
        firsts, tasks, n, sound = self._refresh()
        if not sound or (len(ids) and int(ids.max()) >= n):
            return self._ds._slow_records(ids)
        out, maps = [], self._store.maps
        for i in ids.tolist():
            found = self._fast(i, firsts, tasks, maps)
            out.append(found if found is not None else self._ds._slow_record(i))
        return out

    def _fast(self, i: int, firsts: list[int], tasks: list[tuple[int, int, int, int]], maps: Maps) -> Record | None:
        task = tasks[bisect_right(firsts, i) - 1]
        setup = self._setup or self._prepare()
        block = maps.block(setup[0], task)
        if block is None:  # a dataset file (or a segment the map cannot read): its page through SQLite
            first = task[2]
            part = check_codes(self._ds, self._store.read(setup[0], (*task, i - first, i - first + 1)), i)
            unitary = finite(self._ds, unitaries_of(self._ds, part), [i])[0]
            return Record(i, Circuit(part.codes.astype(np.int64), setup[4]), unitary, self._ds.spec.cost)
        r = i - task[2]
        page = r // setup[1]
        state = block.checked[page]
        if state != _CHECKED and (state == _SLOW or self._check(block, page) != _CHECKED):
            return None
        row = block.row
        if row is None:
            return None
        fmt, _, cs, us, gs, native, table, width = setup
        off = block.offsets
        a, b = int(off[r]), int(off[r + 1])
        raw = row.read("codes", a * cs, (b - a) * cs)
        if raw is None:
            return None
        codes = np.frombuffer(raw, fmt.code_dtype).astype(np.int64)
        if us:
            raw = row.read("unitaries", r * us, us)
            if raw is None:
                return None
            unitary = np.ndarray((fmt.dim, fmt.dim), fmt.unitary_dtype, bytearray(raw))  # (a copy, writable)
            if not fmt.unitary_dtype.isnative:
                unitary = unitary.astype(native)
        elif table is not None:
            unitary = product(table, codes.tolist(), width).astype(native, copy=False)
        else:
            offsets = np.array([0, len(codes)], dtype=np.int64)
            unitary = recompute(self._ds._context, codes, offsets)[0]
        return Record(i, Circuit(codes, gs), unitary, self._ds.spec.cost)

    def _prepare(self) -> tuple[Any, ...]:
        ds = self._ds
        fmt = ds.format
        table = width = None
        if not fmt.stored_unitaries and isinstance(ds.spec.source, RandomSource):
            table, width = ds._context.table, ds.spec.source.max_length
        self._setup = (
            fmt,
            fmt.page,
            fmt.code_dtype.itemsize,
            fmt.unitary_bytes,
            ds.gateset,
            fmt.unitary_dtype.newbyteorder("="),
            table,
            width,
        )
        return self._setup

    def _check(self, block: MappedBlock, page: int) -> int:
        """Check page ``page`` on its first read: checksums (damage raises), move codes, finite unitaries."""
        part = block.check(page)
        if part is None:
            return 0  # the map disagrees with SQLite: the block reads through SQLite from now on
        sound = not (part.codes.size and int(part.codes.max()) >= len(self._ds.gateset.moves))
        if sound and part.unitaries is not None:
            sound = bool(np.isfinite(part.unitaries).all())
        block.checked[page] = _CHECKED if sound else _SLOW
        return block.checked[page]
