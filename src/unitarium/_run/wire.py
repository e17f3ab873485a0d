"""The pipe protocol between a driver and the worker processes it spawned.

A message is pickled (protocol 5) with its numpy arrays (but small ones) out of band, sent as raw
bytes after the pickle, so arrays are copied once (into the pipe). Only our own processes are at either end:
nothing stored, and nothing another program wrote, is ever unpickled (see ``test_security``).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import itertools
import mmap
import os
import pickle
import queue
import select
import signal
import struct
import sys
import termios
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from .progress import process_state

__all__ = ["WAIT_S", "Outbox", "Wait", "grow_pipe", "recv_message", "send_message", "start_worker", "stop_workers"]

_HEADER = struct.Struct("<QI")  # pickle bytes, out-of-band buffers
WAIT_S = 0.2
"""While a message is blocked (the other end stopped, e.g. SIGSTOP, halfway through it), ``wait()``
is called this often: the driver checks for SIGINT/SIGTERM and says what it is waiting for."""

Wait = Callable[[], None]
"""Called while a transfer cannot proceed; may raise (e.g. :class:`Interrupted`) to abandon it."""


def send_message(fd: int, obj: object, *, wait: Wait | None = None) -> None:
    """Write ``obj`` to the pipe ``fd``: pickle protocol 5 with its numpy arrays of at least
    :data:`IN_BAND_BYTES` out of band, as raw bytes after the pickle (one ``writev``), so they are
    copied once (into the pipe), not four times (pickled, framed, read into a buffer, unpickled).
    Between our own processes only: nothing stored is ever pickled. With ``wait``, never blocks for
    long: ``wait()`` is called every :data:`WAIT_S` while the pipe is full (without it, blocks until
    the reader reads)."""
    _write_parts(fd, _encode(obj), wait)


def _encode(obj: object) -> list[memoryview]:
    """:func:`send_message`'s bytes of ``obj``: the header and the pickle, then each out-of-band array."""
    raws: list[memoryview] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if raw.nbytes < IN_BAND_BYTES:
            return True  # (a true value: pickled in band)
        raws.append(raw)
        return False

    data = pickle.dumps(obj, protocol=5, buffer_callback=out_of_band)
    head = _HEADER.pack(len(data), len(raws)) + struct.pack(f"<{len(raws)}Q", *(r.nbytes for r in raws))
    return [memoryview(head + data), *(r.cast("B") for r in raws)]


def _write_parts(fd: int, parts: list[memoryview], wait: Wait | None) -> None:
    blocking = os.get_blocking(fd)
    if wait is not None:
        os.set_blocking(fd, False)  # a blocking write of a large part would wait for the reader in the kernel
    try:
        while parts:
            try:
                written = os.writev(fd, parts[:_IOV_MAX])
            except BlockingIOError:
                _await(fd, select.POLLOUT, wait)
                continue
            while written and written >= parts[0].nbytes:  # (the parts written whole)
                written -= parts.pop(0).nbytes
            if written:
                parts[0] = parts[0][written:]
    finally:
        if wait is not None:
            os.set_blocking(fd, blocking)


def _capacity(fd: int) -> int:
    """The bytes the pipe ``fd`` holds, less two pages (a pipe holds pages: the first and the last in use may be
    partly filled); 0 where it cannot be known (not Linux)."""
    try:
        return int(fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)) - 2 * mmap.PAGESIZE
    except (OSError, AttributeError):
        return 0


def _unread(fd: int) -> int:
    """The bytes written to the pipe ``fd`` and not yet read (where that cannot be known: more than any pipe holds,
    so the message goes the thread's way, whose write reports what is wrong)."""
    unread = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, unread, True)
    except OSError:
        return sys.maxsize
    return unread[0]


IN_BAND_BYTES = 4096
"""Arrays smaller than this travel inside the pickle (a unique task's alternates: ~30 arrays of a few keys each,
one read and one write of the pipe each when out of band); larger ones after it, copied once."""
_IOV_MAX = 512


class Outbox:
    """A worker's messages to its driver, written in the order given, by a thread of their own where
    they would wait: the worker computes its next task while a message larger than the pipe's room (a
    unique task's 2 MiB of keys) waits for a driver busy deciding another task. Sending inline, workers
    of the 3-qubit Clifford enumeration spent a third of their time blocked in writes (BENCHMARKS.md,
    "The 3-qubit Clifford group"). A message that finds nothing queued before it and fits in the pipe's
    room is written at once by :meth:`put` (a write that cannot block: no hand-over to the thread, which
    cost 3-4% of a 2-qubit unique run's wall time). :meth:`put` returns at once unless :data:`OUTBOX`
    messages already wait (memory stays bounded); :meth:`close` returns once every message is written.
    A write that fails (the driver is gone) ends the sending: ``put`` and ``close`` then return False.
    Messages must not change after ``put`` (results are fresh arrays)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._queue: queue.Queue[list[memoryview] | object] = queue.Queue(maxsize=OUTBOX)
        self._lock = threading.Lock()
        self._queued = 0  # messages put in the queue and not yet written whole (under _lock)
        self._capacity = _capacity(fd)
        self.failed = False
        self._thread = threading.Thread(target=self._send, name="unitarium-outbox", daemon=True)
        self._thread.start()

    def _send(self) -> None:
        while (parts := self._queue.get()) is not _CLOSE:
            if not self.failed:
                try:
                    _write_parts(self._fd, parts, None)  # type: ignore[arg-type]
                except OSError:
                    self.failed = True
            with self._lock:
                self._queued -= 1

    def put(self, message: object) -> bool:
        if self.failed:
            return False
        parts = _encode(message)
        with self._lock:
            size = sum(p.nbytes for p in parts)  # (the capacity first: a message that never fits costs no ioctl)
            if not self._queued and size <= self._capacity and size <= self._capacity - _unread(self._fd):
                try:  # (nothing before it is unwritten, and it fits: this write does not block)
                    _write_parts(self._fd, parts, None)
                except OSError:
                    self.failed = True
                    return False
                return True
            self._queued += 1
        self._queue.put(parts)
        return True

    def close(self) -> bool:
        """Wait until every message is written (or the driver is gone); returns whether all were."""
        if self._thread.is_alive():
            self._queue.put(_CLOSE)
            self._thread.join()
        return not self.failed


OUTBOX = 4
"""Messages a worker's :class:`Outbox` holds before ``put`` waits."""
_CLOSE = object()


def _await(fd: int, event: int, wait: Wait | None) -> None:
    """Return once ``fd`` is ready for ``event`` (or has hung up), calling ``wait()`` every :data:`WAIT_S`."""
    poller = select.poll()
    poller.register(fd, event)
    while not poller.poll(WAIT_S * 1000):
        if wait is not None:
            wait()


def recv_message(fd: int, *, wait: Wait | None = None) -> Any:
    """Read one :func:`send_message` message from ``fd``; EOFError if the writer of the pipe
    closed it (or died), even halfway through a message. With ``wait``, never blocks for long:
    ``wait()`` is called every :data:`WAIT_S` while no byte arrives (a writer stopped halfway
    through a message must not make the reader deaf to SIGINT: a signal handler only sets a flag,
    and Python retries the interrupted read)."""
    size, count = _HEADER.unpack(_read_exact(fd, _HEADER.size, wait))
    sizes = struct.unpack(f"<{count}Q", _read_exact(fd, 8 * count, wait))
    data = _read_exact(fd, size, wait)
    starts = [0, *itertools.accumulate(-(-n // _ALIGN) * _ALIGN for n in sizes)]  # (each array's bytes aligned)
    whole = memoryview(bytearray(starts[-1]))
    buffers = [whole[a : a + n] for a, n in zip(starts, sizes, strict=False)]
    _read_into(fd, [b for b in buffers if b.nbytes], wait)  # (every array's bytes in one read, mostly)
    return pickle.loads(data, buffers=buffers)


_ALIGN = 16
"""Where each received array starts in the message's buffer (a multiple of this: as aligned as an array of its
own bytes would be)."""


def _read_exact(fd: int, size: int, wait: Wait | None = None) -> bytearray:
    buf = bytearray(size)
    _read_into(fd, [memoryview(buf)], wait)
    return buf


def _read_into(fd: int, views: list[memoryview], wait: Wait | None) -> None:
    """Fill ``views`` in order from ``fd`` (``readv``: as many at once as the pipe holds)."""
    views = [v for v in views if v.nbytes]
    while views:
        if wait is not None:
            _await(fd, select.POLLIN, wait)  # readable or hung up: the read below returns at once
        n = os.readv(fd, views[:_IOV_MAX])
        if n == 0:
            raise EOFError("the pipe was closed halfway through a message")
        while n and n >= views[0].nbytes:
            n -= views.pop(0).nbytes
        if n:
            views[0] = views[0][n:]


def stop_workers(procs: Sequence[BaseProcess], *, graceful: bool, wait_s: float) -> None:
    """Reap worker processes (their pipes already closed, so idle ones exit): unless
    ``graceful``, terminate them first; stopped ones (SIGSTOP, Ctrl-Z) are continued either way
    (a stopped process reads no end of file and gets SIGTERM only once continued); one still alive
    after ``wait_s`` is killed."""
    for proc in procs:
        if not graceful:
            proc.terminate()
        if proc.pid is not None and (not graceful or process_state(proc.pid) in ("T", "t")):
            with contextlib.suppress(OSError):  # (not graceful: continued whatever /proc says, or cannot)
                os.kill(proc.pid, signal.SIGCONT)
    for proc in procs:
        proc.join(wait_s)
        if proc.exitcode is None:
            proc.kill()
            proc.join()


def start_worker(
    ctx: Any, target: Callable[..., None], args: tuple[Any, ...], child_ends: Sequence[Any]
) -> BaseProcess:
    """Start a worker process (``ctx``: a ``spawn`` context) with SIGINT blocked while it starts (a
    Ctrl-C while it imports would print its traceback; the worker unblocks it itself) and one BLAS
    thread (:func:`single_threaded_blas`), without this process's ``__main__`` (:func:`_without_main`);
    then close this process's copies of ``child_ends``."""
    proc = ctx.Process(target=target, args=args, daemon=True)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with single_threaded_blas(), _without_main():
            proc.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        for end in child_ends:
            end.close()
    return proc


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """A spawned process runs this process's ``__main__`` again before its target (the ``unitarium`` script:
    the CLI's imports, ~0.1 CPU-s of each worker and partition process; a user's script: all of its
    top-level code). Our targets are functions of this package, which need none of it: while a process
    starts, ``__main__`` is a bare module, so it has nothing to run."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is None:
            del sys.modules["__main__"]
        else:
            sys.modules["__main__"] = main


_BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """One BLAS thread per worker (the workers are the parallelism), unless the user set it:
    BLAS reads these when numpy loads, so they must be in the environment a worker starts
    with; this process's own environment is restored afterwards."""
    added = [var for var in _BLAS_THREADS if var not in os.environ]
    os.environ.update(dict.fromkeys(added, "1"))
    try:
        yield
    finally:
        for var in added:
            os.environ.pop(var, None)


_PIPE_BYTES = 1 << 20


def grow_pipe(conn: Connection) -> None:
    """Let a result pipe hold a whole result (1 MiB, Linux's default ceiling for a user):
    a worker's send then completes at once instead of in 64 KiB steps, each waiting for
    the writer to read (measured: BENCHMARKS.md, "Workers")."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or above the ceiling: keep the default
        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
