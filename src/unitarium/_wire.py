"""The pipe protocol between a driver and the worker processes it spawned.

A message is pickled (protocol 5) with its numpy arrays out of band, sent as raw bytes after the
pickle, so arrays are copied once (into the pipe). Only our own processes are at either end:
nothing stored, and nothing another program wrote, is ever unpickled (see ``test_security``).
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

__all__ = ["recv_message", "send_message"]

_HEADER = struct.Struct("<QI")  # pickle bytes, out-of-band buffers


def send_message(fd: int, obj: object) -> None:
    """Write ``obj`` to the pipe ``fd``: pickle protocol 5 with its numpy arrays out of band,
    as raw bytes after the pickle, so they are copied once (into the pipe), not four times
    (pickled, framed, read into a buffer, unpickled). Between our own processes only:
    nothing stored is ever pickled."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    head = _HEADER.pack(len(data), len(raws)) + struct.pack(f"<{len(raws)}Q", *(r.nbytes for r in raws))
    parts: list[bytes | memoryview] = [head + data, *raws]
    for part in parts:
        view = memoryview(part).cast("B")
        while view:
            view = view[os.write(fd, view) :]


def recv_message(fd: int) -> Any:
    """Read one :func:`send_message` message from ``fd``; EOFError if the writer of the pipe
    closed it (or died), even halfway through a message."""
    size, count = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    sizes = struct.unpack(f"<{count}Q", _read_exact(fd, 8 * count))
    data = _read_exact(fd, size)
    return pickle.loads(data, buffers=[_read_exact(fd, n) for n in sizes])


def _read_exact(fd: int, size: int) -> bytearray:
    buf = bytearray(size)
    view = memoryview(buf)
    while view:
        n = os.readv(fd, [view])
        if n == 0:
            raise EOFError("the pipe was closed halfway through a message")
        view = view[n:]
    return buf
