"""Reading the small input files a user names (gate files, ``.npy`` matrices, OpenQASM files).

:func:`read_input` opens the path without blocking (``O_NONBLOCK``: opening a FIFO for reading
would otherwise wait for a writer forever) and refuses anything but a regular file before
reading a byte: a FIFO, a device (``/dev/zero`` would never end), a socket, a directory. Paths
need not be UTF-8 (Linux allows any bytes); messages show such bytes escaped.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat

import numpy as np

from .._errors import SpecError

__all__ = ["load_matrix", "quoted", "read_input"]


def quoted(path: str | os.PathLike[str] | bytes) -> str:
    """``path`` quoted for a message (bytes that are not UTF-8 shown escaped, never an error)."""
    # repr shows an undecodable byte 0xE9 as \udce9 (its surrogate escape): show it as \xe9
    return re.sub(r"\\udc([89a-f][0-9a-f])", r"\\x\1", repr(os.fsdecode(path)))


def read_input(path: str | os.PathLike[str], what: str, error: type[SpecError] = SpecError) -> bytes:
    """The bytes of the regular file ``path`` (``what`` names it in messages: "gate file").
    Raises ``error`` (a :class:`SpecError`) for a missing path, a dangling symbolic link, a
    directory, a FIFO, device or socket, or an unreadable file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if os.path.islink(path):
            raise error(f"cannot read {what} {quoted(path)}: it is a symbolic link to nothing") from None
        raise error(f"cannot read {what} {quoted(path)}: it does not exist (check the path)") from None
    except OSError as exc:
        raise error(f"cannot read {what} {quoted(path)}: {exc.strerror or exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise error(f"{what} {quoted(path)} is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise error(f"{what} {quoted(path)} is not a regular file (a FIFO, device or socket): pass a file")
        os.set_blocking(fd, True)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"cannot read {what} {quoted(path)}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def load_matrix(path: str | os.PathLike[str], what: str = "matrix file") -> np.ndarray:
    """The array in the ``.npy`` file ``path`` (:func:`read_input`: regular files only), never
    unpickled; its header is checked before anything is allocated (a header may claim any shape).
    Raises :class:`SpecError` unless it holds an array of numbers (bool, int, float, complex)."""
    raw = read_input(path, what)
    fail = f"cannot read {what} {quoted(path)} as a .npy matrix"
    f = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_2_0 if version >= (2, 0) else np.lib.format.read_array_header_1_0
        shape, _, dtype = header(f)
    except Exception as exc:  # anything a malformed header raises: ValueError, SyntaxError, EOFError...
        raise SpecError(f"{fail}: not a .npy file (save one with np.save)") from exc
    if dtype.kind not in "biufc" or dtype.names is not None:
        raise SpecError(f"{fail}: it holds an array of {dtype}, not of numbers")
    if math.prod(shape) * dtype.itemsize > len(raw):
        raise SpecError(f"{fail}: its header promises shape {shape} but the file is {len(raw)} bytes (truncated?)")
    f.seek(0)
    try:
        return np.asarray(np.load(f, allow_pickle=False))
    except Exception as exc:  # a short or otherwise malformed body
        raise SpecError(f"{fail}: {exc}") from exc
