"""Records by id: ``ds[i]`` and ``ds[[i, j, ...]]``, on a fast road and a checked slow one.

The fast road (:class:`RecordReader`) keeps the task list in memory (first id, shard and size of each
task, loaded once and reloaded whenever another connection committed to the manifest: a run appending
records, or anything else; told by :meth:`._storage.mapped.Maps.version`, the change counter in the
header of a complete dataset) and reads a record's bytes through the map of its file, a dataset file or
a directory's segment (:meth:`._storage.blocks.BlockStore.mapped`). The first read of a page checks it
whole against its checksums, its move codes against the gate set and its unitaries for NaN and
infinities, with the unchecked pages of its group (:data:`GROUP_PAGES`); later reads of those pages (by
this dataset handle, in this process) are served without hashing them again: from what the check read,
kept while it fits in :data:`KEPT_BYTES` (the group's move codes and unitaries: a record is then two
slices), else from the map. Computed unitaries: a group's are computed at once with the batch kernel
when its first read checks it, and kept while they fit (then kept, not replaced: a random read that
misses recomputes its one record with the kernel's own arithmetic, :func:`product`, bit for bit what the
batch computes); ``ds[ids]`` recomputes the missing ones in one batch. Anything off the fast road (ids
out of range or negative, a task list that is not the committed prefix, a block the map cannot read, a
page holding a bad record) takes the slow road: the reads through SQLite that check every page on every
read and word every error. Records are built in one place, :meth:`RecordReader.record`.
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from dataclasses import MISSING, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from .._core.circuit import Circuit, Record
from .._core.codec import Block, BlockFormat
from .._core.kernels import ProductTable, _batch_last_step
from .._core.portable import product_one
from .._spec.sources import recompute
from .._spec.spec import RandomSource
from .._storage.mapped import CACHED as _CACHED
from .._storage.mapped import MappedBlock, Maps
from .bulk import check_codes, finite, unitaries_of

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["GROUP_PAGES", "KEPT_BYTES", "RecordReader", "product"]

KEPT_BYTES = 128 << 20
"""Records a dataset handle keeps in memory once their pages are checked (move codes and unitaries,
stored or computed, a group at a time; about 1M 2-qubit complex64 records): a read of one costs two
slices instead of reading the map (stored) or a product (computed). Past it, groups are not kept
(never replaced: under random reads a replaced group would be needed again as often as the new one)."""

GROUP_PAGES = 16
"""Pages checked together at the first read of one of them (the unchecked ones of its aligned group
of this many): a page's check is mostly per-call work, so random reads over a dataset check its
pages ~10x cheaper in groups; a sparse read pays for ~16 pages (256 KiB) instead of one.
(Checksums stay per page: a damaged page costs only its own records.)"""

_new = object.__new__
_I64 = np.dtype(np.int64)
_CHECKED, _SLOW = 1, 2
"""What a page's first read found: sound (served from the map), or holding a bad record (slow road)."""


def product(table: ProductTable, seq: list[int], width: int) -> np.ndarray:
    """The unitary ``(d, d)`` of one move sequence padded to ``width``: bit for bit
    ``table.unitaries(seqs)[k]`` for a row ``k`` of a batch holding it. The same chunk products in
    the same order, and each matrix product formed as the batch kernel forms it (kernel 6:
    :func:`.._core.portable.product_one`; kernel 5: entrywise, summed in ascending order, or
    ``np.matmul`` for large matrices)."""
    k, m, radix = table.depth, table.num_moves, table.radix
    padded = seq + [m] * (-(-width // k) * k - len(seq))
    powers = [radix**j for j in range(k)]  # the chunk's first move is the fastest digit
    index = [sum(map(operator.mul, padded[c : c + k], powers)) for c in range(0, len(padded), k)]
    t = table.table
    if not index:
        return np.eye(t.shape[1], dtype=table.dtype)
    out = t[index[0]]
    if table.kernel != 5:  # kernel 6: each product as portable.matmul_planes forms it
        for c in index[1:]:
            out = product_one(t[c], out)
        return out.copy() if len(index) == 1 else out
    if _batch_last_step(t.shape[1], table.dtype) is None:
        for c in index[1:]:
            out = np.matmul(t[c : c + 1], out[None])[0]
        return out.copy() if len(index) == 1 else out
    add = np.add.reduce
    for c in index[1:]:
        out = add(t[c][:, :, None] * out[None, :, :], axis=1)
    return out.copy() if len(index) == 1 else out


def _from_kept(kept: tuple[int, np.ndarray, np.ndarray, int], offsets: Any, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ``r``'s move codes (int64) and unitary, each its own copy, from what :class:`Checked`
    kept of its group (``offsets``: the block's)."""
    base, codes, units, r0 = kept
    return codes[offsets[r] - base : offsets[r + 1] - base].astype(_I64), units[r - r0].copy()


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
        self._checked = Checked(ds)
        self._pages = self._checked.pages  # (the hot path's dict get)
        self._page = ds.format.page
        self._blocks: dict[tuple[int, int, int, int], MappedBlock] = {}
        self._maps: Maps | None = None
        self._gateset = ds.gateset
        self._defaults = {f.name: f.default for f in fields(Record) if f.default is not MISSING}
        self._defaults["cost_model"] = ds.spec.cost

    # -- the task list ------------------------------------------------------------------------

    def length(self) -> int | None:
        """The records committed (None: the task list is not the committed prefix: ask SQLite)."""
        _, _, n, sound = self._refresh()
        return n if sound else None

    def _refresh(self) -> tuple[list[int], list[tuple[int, int, int, int]], int, bool]:
        maps = self._store.maps
        version = maps.version()
        if version != self._version:
            self._index = self._load()
            self._version = version
            maps.forget_unmapped()
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
        """Record ``key`` (of the first ``fixed`` records, when given). The hot path: a record kept
        (:class:`Checked`) of a block this handle holds, in this call; anything else goes through
        :meth:`_parts`."""
        if type(key) is int:
            i = key
        elif isinstance(key, np.integer) and not isinstance(key, bool):
            i = int(key)
        else:
            return self._ds._slow_record(key)
        maps = self._store.maps
        firsts, tasks, n, sound = self._index if maps.version() == self._version else self._refresh()
        if not (sound and 0 <= i < n and (fixed is None or i < fixed)):
            return self._ds._slow_record(key)
        task = tasks[bisect_right(firsts, i) - 1]
        block = self._blocks.get(task) if self._maps is maps else None
        if block is not None:
            r = i - task[2]
            kept = self._pages.get((block.shard, block.task_id, r // self._page))  # (kept: checked and sound)
            if kept is not None:  # (_from_kept written out: the call costs ~8% of a read here)
                base, codes, units, r0 = kept
                off = block.offsets
                return self.record(i, codes[off[r] - base : off[r + 1] - base].astype(_I64), units[r - r0].copy())
        found = self._parts(i, firsts, tasks)
        if found is None:
            return self._ds._slow_record(key)
        codes, unitary = found
        return self.record(i, codes, self._product(codes) if unitary is None else unitary)

    def many(self, ids: np.ndarray) -> list[Record]:
        """Records ``ids`` (checked, non-negative, in range), in their order."""
        firsts, tasks, n, sound = self._refresh()
        if not sound or (len(ids) and int(ids.max()) >= n):
            return self._ds._slow_records(ids)
        found = [self._parts(i, firsts, tasks) for i in ids.tolist()]
        missing = [k for k, f in enumerate(found) if f is not None and f[1] is None]
        if missing:  # computed unitaries not kept: recomputed in one batch
            codes = [found[k][0] for k in missing]  # type: ignore[index]
            offsets = np.zeros(len(codes) + 1, dtype=np.int64)
            np.cumsum([len(c) for c in codes], out=offsets[1:])
            done = recompute(self._ds._context, np.concatenate(codes), offsets)
            for j, k in enumerate(missing):
                found[k] = (found[k][0], done[j])  # type: ignore[index]
        return [
            self._ds._slow_record(i) if f is None else self.record(i, f[0], f[1])  # type: ignore[arg-type]
            for i, f in zip(ids.tolist(), found, strict=True)
        ]

    def record(self, i: int, codes: np.ndarray, unitary: np.ndarray) -> Record:
        """Record ``i`` of the fast road, from its move codes (int64) and unitary (its own copy):
        the one place it is built. (Filled in place of the frozen dataclasses' ``__init__``, which
        costs twice this, a tenth of a read: every field set, defaults included; pinned by
        test_single_reads against the constructors.)"""
        circuit = _new(Circuit)
        fill = circuit.__dict__
        fill["codes"] = codes
        fill["gateset"] = self._gateset
        rec = _new(Record)
        fill = rec.__dict__
        fill.update(self._defaults)
        fill["id"] = i
        fill["circuit"] = circuit
        fill["unitary"] = unitary
        return rec

    def _parts(
        self, i: int, firsts: list[int], tasks: list[tuple[int, int, int, int]]
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """Record ``i``'s move codes and unitary (None: computed, not kept: :meth:`_product`);
        None: take the slow road."""
        task = tasks[bisect_right(firsts, i) - 1]
        setup = self._setup or self._prepare()
        maps = self._store.maps
        block = self._blocks.get(task) if self._maps is maps else None
        if block is None or block.row is None:
            block = self._block(maps, setup[0], task)
        if block is None:  # a block the map cannot read: its page through SQLite
            first = task[2]
            part = check_codes(self._ds, self._store.read(setup[0], (*task, i - first, i - first + 1)), i)
            return part.codes.astype(np.int64), finite(self._ds, unitaries_of(self._ds, part), [i])[0]
        r = i - task[2]
        page = r // setup[1]
        state = block.checked[page]
        if state != _CHECKED and (state == _SLOW or self._checked.check(block, page) != _CHECKED):
            return None
        row = block.row
        if row is None:
            return None
        off = block.offsets
        kept = self._pages.get((block.shard, block.task_id, page))
        if kept is not None:
            return _from_kept(kept, off, r)
        a = off[r]
        cs, us = setup[2], setup[3]
        raw = row.read_pair(a * cs, (off[r + 1] - a) * cs, r * us, us)
        if raw is None:
            return None
        codes = np.frombuffer(raw[0], setup[4]).astype(np.int64)
        if us:
            unitary = np.ndarray(setup[5], setup[6], bytearray(raw[1]))  # (a copy, writable)
            return codes, unitary if setup[7] else unitary.astype(setup[6].newbyteorder("="))
        return codes, None

    def _block(self, maps: Maps, fmt: BlockFormat, task: tuple[int, int, int, int]) -> MappedBlock | None:
        """The mapped block of ``task`` (None: read it through SQLite), remembered by its task row
        (a plain dict get on the next read: as many as the store keeps, forgotten with its maps)."""
        if self._maps is not maps:  # (the store reconnected: what was kept came through its old maps)
            self.forget()
            self._maps = maps
        elif len(self._blocks) >= _CACHED:
            self._blocks = {}
        block = maps.block(fmt, task)
        if block is not None:
            self._blocks[task] = block
        else:
            self._blocks.pop(task, None)
        return block

    def forget(self) -> None:
        """Drop the blocks and the records kept (the dataset closed, or its store reconnected)."""
        self._blocks = {}
        self._checked.forget()

    def _product(self, codes: np.ndarray) -> np.ndarray:
        """The computed unitary of one record's move codes (bit for bit the batch kernel's)."""
        setup = self._setup or self._prepare()
        if setup[8] is not None:
            return product(setup[8], codes.tolist(), setup[9]).astype(setup[10], copy=False)
        offsets = np.array([0, len(codes)], dtype=np.int64)
        return recompute(self._ds._context, codes, offsets)[0]

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
            fmt.code_dtype,
            (fmt.dim, fmt.dim),
            fmt.unitary_dtype,
            fmt.unitary_dtype.isnative,
            table,
            width,
            fmt.unitary_dtype.newbyteorder("="),
        )
        return self._setup


class Checked:
    """The pages a dataset handle has checked, by their blocks' ``checked`` marks, and what it keeps
    of them: ``pages[(shard, task_id, page)]`` = the page's group's first code offset, move codes,
    unitaries (read-only) and first row in the block (one tuple per group, shared by its pages),
    while they fit in :data:`KEPT_BYTES`."""

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds
        self._moves = len(ds.gateset.moves)
        self.pages: dict[tuple[int, int, int], tuple[int, np.ndarray, np.ndarray, int]] = {}
        self._room = KEPT_BYTES

    def forget(self) -> None:
        """Drop what is kept (the dict stays the same object: readers hold it)."""
        self.pages.clear()
        self._room = KEPT_BYTES

    def check(self, block: MappedBlock, page: int) -> int:
        """Check page ``page`` on its first read, with the unchecked pages around it in its group of
        :data:`GROUP_PAGES` (one read and one pass for them all): checksums (damage raises), move
        codes, finite unitaries; then kept while they fit (:data:`KEPT_BYTES`; computed unitaries
        computed for that). A group holding a bad record is checked again page by page."""
        checked = block.checked
        start = page - page % GROUP_PAGES
        end = min(len(checked), start + GROUP_PAGES)
        start = max((k + 1 for k in range(start, page) if checked[k]), default=start)
        end = next((k for k in range(page + 1, end) if checked[k]), end)
        found = block.check(page, start, end)
        if found is None:
            return 0  # the map disagrees with SQLite: the block reads through SQLite from now on
        part, start, end = found
        sound = self._sound(part)
        if not sound and end - start > 1:
            found = block.check(page)
            if found is None:
                return 0
            part, start, end = found
            sound = self._sound(part)
        state = _CHECKED if sound else _SLOW
        if sound:
            self._keep(block, start, part)
        checked[start:end] = bytes([state]) * (end - start)
        return state

    def _sound(self, part: Block) -> bool:
        """No move code past the gate set's last move, no NaN or infinite stored unitary."""
        if part.codes.size and int(part.codes.max()) >= self._moves:
            return False
        return part.unitaries is None or bool(np.isfinite(part.unitaries).all())

    def _keep(self, block: MappedBlock, start: int, part: Block) -> None:
        """Keep the move codes and unitaries (computed here for a computed dataset) of the checked
        pages from ``start`` that ``part`` holds, while they fit."""
        fmt = self._ds.format
        units = part.unitaries
        size = part.codes.nbytes + part.count * fmt.dim**2 * fmt.unitary_dtype.itemsize
        if size > self._room:
            return
        if units is None:
            units = unitaries_of(self._ds, part)
        elif not units.dtype.isnative:
            units = units.astype(units.dtype.newbyteorder("="))
        units.flags.writeable = False
        p = fmt.page
        entry = (block.offsets[start * p], part.codes, units, start * p)
        for k in range(-(-part.count // p)):
            self.pages[(block.shard, block.task_id, start + k)] = entry
        self._room -= size
