"""Batches that cross processes as one buffer: :class:`Batch`, and the shared-memory slots
(:class:`_Ring`) in which a DataLoader worker builds them for :class:`~unitarium.torch.ShuffledBatches`
(the main process views their fields there, no copy); anything else pickles as one ``bytes``."""

from __future__ import annotations

import math
import os
import secrets
import weakref
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

__all__ = ["Batch"]


class Batch(dict):  # type: ignore[type-arg]
    """A batch: a ``dict`` of tensors (see the module docstring) that crosses processes as one buffer.

    A DataLoader worker sends what it yields to the main process by pickling it. Torch pickles each
    tensor through its own shared-memory file whose descriptor the main process fetches from a
    thread of the worker (a socket round trip per tensor, waiting for the worker's GIL): that cost
    more than reading the batch. A ``Batch`` built by :class:`ShuffledBatches` in a DataLoader worker
    lies in a shared-memory slot of the worker and pickles as a reference to it (:class:`_Ring`):
    the main process views its fields there, no copy. Any other ``Batch`` pickles as one ``bytes``
    of all its tensors (their bytes, 16-aligned) and a layout; unpickling copies it into one fresh
    writable buffer and views each field in it. Values that are not plain CPU tensors pickle the
    ordinary way."""

    _sent: dict[str, tuple[torch.Tensor, int, np.ndarray]]  # field: (its tensor, its version, what to send)
    _slot: tuple[_Ring, int] | None  # built in a DataLoader worker's shared-memory slot

    def __copy__(self) -> Batch:
        out = Batch(self)  # (DataLoader's default_convert and pin_memory copy the mapping)
        out._sent = getattr(self, "_sent", {})
        out._slot = getattr(self, "_slot", None)
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        slot = getattr(self, "_slot", None)
        message = None if slot is None else slot[0].message(slot[1], self)
        if message is not None:
            return (_from_slot, message)
        packed = _pack(self)
        if slot is not None and packed is not None:  # changed in the worker: sent by value, slot free again
            slot[0].flags.numpy()[slot[1]] = 0
        return (Batch, (dict(self),)) if packed is None else (_unpack, packed)


_SLOTS = 16
"""Shared-memory slots of a DataLoader worker at most (it needs ``prefetch_factor + 2``)."""


class _Ring:
    """A DataLoader worker's shared-memory slots for its batches (one per worker process, reused
    across epochs by persistent workers).

    The worker builds a batch directly in a free slot and sends only ``(ring, slot, layout)``; the
    slot's tensor (and the ring's flags) travel once, the first time, through torch's descriptor
    passing. The main process hands out the batch's fields as views of the slot (no copy) and
    frees the slot when the last of them is garbage (a ``weakref.finalize`` on the one array they all view):
    a batch stays valid as long as it is referenced, and only then may the worker reuse its slot.
    A worker never waits: with no free slot (e.g. while the main process keeps many batches) it
    builds the batch in ordinary memory and it travels as one ``bytes`` (:func:`_pack`)."""

    def __init__(self) -> None:
        self.key = (os.getpid(), secrets.token_hex(8))
        self.flags = torch.zeros(_SLOTS, dtype=torch.int32).share_memory_()  # 1: the main process holds it
        self.slots: list[torch.Tensor] = []
        self.sent: set[int] = set()

    def take(self, nbytes: int) -> tuple[int, np.ndarray] | None:
        """A free slot of at least ``nbytes`` bytes, marked busy: ``(slot, its first nbytes)``."""
        flags = self.flags.numpy()
        for s, slot in enumerate(self.slots):
            if flags[s] == 0 and slot.numel() >= nbytes:
                flags[s] = 1
                return s, slot.numpy()[:nbytes]
        if len(self.slots) == _SLOTS:
            return None
        self.slots.append(torch.empty(nbytes, dtype=torch.uint8).share_memory_())
        flags[len(self.slots) - 1] = 1
        return len(self.slots) - 1, self.slots[-1].numpy()

    def message(self, s: int, batch: Batch) -> tuple[Any, ...] | None:
        """What :func:`_from_slot` needs to rebuild ``batch`` from slot ``s``; None if a field is not
        a contiguous CPU view of the slot (then the batch pickles by value)."""
        base, size = self.slots[s].data_ptr(), self.slots[s].numel()
        layout = []
        for key, value in batch.items():
            if not isinstance(value, torch.Tensor) or value.device.type != "cpu" or not value.is_contiguous():
                return None
            at, nbytes = value.data_ptr() - base, value.numel() * value.element_size()
            if value.requires_grad or value.is_conj() or not 0 <= at <= at + nbytes <= size:
                return None
            name = str(value.dtype).removeprefix("torch.")
            if name not in _NUMPY_DTYPES:
                return None
            layout.append((key, name, tuple(value.shape), at))
        first = s not in self.sent  # (messages are pickled in order, by the queue's feeder thread)
        self.sent.add(s)
        return self.key, s, tuple(layout), self.slots[s] if first else None, self.flags if first else None


_WORKER_RING: list[_Ring] = []  # this DataLoader worker's ring (a list: set once per process)


def _worker_ring() -> _Ring | None:
    """This process's ring when it is a DataLoader worker, else None."""
    if get_worker_info() is None:
        return None
    if not _WORKER_RING or _WORKER_RING[0].key[0] != os.getpid():
        _WORKER_RING[:] = [_Ring()]
    return _WORKER_RING[0]


class _Received:
    """The main process's view of a worker's ring: its slots' tensors and its flags."""

    def __init__(self, flags: torch.Tensor) -> None:
        self.flags, self.free = flags, flags.numpy()
        self.slots: dict[int, torch.Tensor] = {}


_RECEIVED: dict[tuple[int, str], _Received] = {}


def _from_slot(
    key: tuple[int, str], s: int, layout: tuple[Any, ...], slot: torch.Tensor | None, flags: torch.Tensor | None
) -> Batch:
    """The :class:`Batch` a worker built in slot ``s`` of its ring: its fields are views of the slot,
    which is freed for the worker when they are all garbage."""
    ring = _RECEIVED.get(key)
    if ring is None:
        if flags is None:
            raise RuntimeError("a unitarium batch refers to shared memory of an unknown DataLoader worker")
        for old in [k for k in _RECEIVED if not _alive(k[0])]:  # rings of workers that have exited
            del _RECEIVED[old]
        ring = _RECEIVED[key] = _Received(flags)
    if slot is not None:
        ring.slots[s] = slot
    end = max((at + math.prod(shape) * np.dtype(dtype).itemsize for _, dtype, shape, at in layout), default=0)
    if not layout:
        ring.free[s] = 0
        return Batch()
    # one array per batch over the slot's bytes: every field is a view whose base is this array (numpy
    # stops collapsing view chains at an array over a foreign buffer), so the slot is free when it is garbage
    buffer = np.frombuffer(ring.slots[s].numpy().data[:end], dtype=np.uint8)
    weakref.finalize(buffer, ring.free.__setitem__, s, 0)
    out = Batch()
    for key_, dtype, shape, at in layout:
        size = math.prod(shape) * np.dtype(dtype).itemsize
        out[key_] = torch.from_numpy(buffer[at : at + size].view(dtype).reshape(shape))
    return out


_NUMPY_DTYPES = {
    "bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "complex64", "complex128"
}  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process
        return True
    return True


_Layout = tuple[tuple[str, str, str, tuple[int, ...], int], ...]


def _pack(batch: dict[str, Any]) -> tuple[bytes, _Layout] | None:
    """One ``bytes`` of a dict of CPU tensors and each field's ``(key, dtype, sent dtype, shape,
    offset)``: integer fields travel in the narrowest integer type holding their values (move codes
    and lengths fit a byte), 16-aligned. None if a value is not a CPU tensor numpy can view
    (autograd, conjugate bit, bfloat16...)."""
    pieces: list[Any] = []
    layout = []
    at = 0
    known = getattr(batch, "_sent", {})
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor) or value.device.type != "cpu":
            return None
        try:
            array = value.numpy()
        except (RuntimeError, TypeError):
            return None
        hint = known.get(key)
        fresh = hint is not None and hint[0] is value and hint[1] == value._version  # not modified in place
        sent = hint[2] if fresh and hint is not None else _narrow(array)
        layout.append((key, array.dtype.str, sent.dtype.str, tuple(array.shape), at))
        pieces.append(np.ascontiguousarray(sent).reshape(-1).view(np.uint8))
        pad = -sent.nbytes % 16
        pieces.append(bytes(pad))
        at += sent.nbytes + pad
    return b"".join(pieces), tuple(layout)


def _narrow(array: np.ndarray) -> np.ndarray:
    """An integer array in the narrowest integer type that holds its values (others as they are)."""
    if array.dtype.kind not in "iu" or array.itemsize == 1 or not array.size:
        return array
    lo, hi = int(array.min()), int(array.max())
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32):
        info = np.iinfo(dtype)
        if info.bits // 8 < array.itemsize and info.min <= lo and hi <= info.max:
            return array.astype(dtype)
    return array


def _unpack(payload: bytes, layout: _Layout) -> Batch:
    """The :class:`Batch` of :func:`_pack`: the fields copied (and widened back) into one fresh
    writable buffer, each field a view of it."""
    data = np.frombuffer(payload, dtype=np.uint8)
    sizes = [math.prod(shape) * np.dtype(dtype).itemsize for _, dtype, _, shape, _ in layout]
    buffer = np.empty(sum(-(-n // 16) * 16 for n in sizes), dtype=np.uint8)
    out = Batch()
    start = 0
    for (key, dtype, sent, shape, at), size in zip(layout, sizes, strict=True):
        view = buffer[start : start + size].view(dtype).reshape(shape)
        count = math.prod(shape)
        view.reshape(-1)[:] = data[at : at + count * np.dtype(sent).itemsize].view(sent)
        out[key] = torch.from_numpy(view)
        start += -(-size // 16) * 16
    return out


def _batch(cols: dict[str, np.ndarray], rows: np.ndarray, ring: _Ring | None = None) -> Batch:
    """Rows ``rows`` of window columns as a :class:`Batch` of int64 and complex64 fields, each a view
    of one buffer: a shared-memory slot of ``ring`` when one is free (a DataLoader worker's), else
    fresh memory. Columns held narrower in the window (move codes, lengths) are widened here, and
    their narrow rows kept for sending by value (no second narrowing in :func:`_pack`)."""
    dtypes = {k: np.dtype(np.int64) if v.dtype.kind in "iu" else v.dtype for k, v in cols.items()}
    shapes = {k: (len(rows), *v.shape[1:]) for k, v in cols.items()}
    sizes = {k: -(-math.prod(shapes[k]) * dtypes[k].itemsize // 16) * 16 for k in cols}
    got = None if ring is None else ring.take(sum(sizes.values()))
    buffer = np.empty(sum(sizes.values()), dtype=np.uint8) if got is None else got[1]
    out = Batch()
    out._sent = {}
    out._slot = None if got is None or ring is None else (ring, got[0])
    at = 0
    for key, col in cols.items():
        view = buffer[at : at + sizes[key]][: math.prod(shapes[key]) * dtypes[key].itemsize]
        view = view.view(dtypes[key]).reshape(shapes[key])
        if col.dtype == view.dtype:
            np.take(col, rows, axis=0, out=view)
            sent = view
        else:
            sent = col[rows]
            view[...] = sent
        out[key] = torch.from_numpy(view)
        out._sent[key] = (out[key], out[key]._version, sent)
        at += sizes[key]
    return out
