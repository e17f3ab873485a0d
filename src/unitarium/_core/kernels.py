"""Pure, vectorised numpy kernels on stacks of matrices. No I/O.

Conventions:
- ``n`` qubits, ``d = 2**n``. Basis index ``b0 + 2*b1 + ... `` with ``b_j`` the state
  of qubit ``j`` (Qiskit's little-endian order).
- A stack of unitaries has shape ``(batch, d, d)``.
- A circuit is a sequence of move indices ``s_0, s_1, ...`` applied in that order, so
  its unitary is ``M[s_{L-1}] @ ... @ M[s_1] @ M[s_0]``.
- Move index ``m`` (one past the last real move) is the identity, used to pad
  circuits of different lengths to one array: multiplying by it is exact.

Arithmetic (kernel 6, every new dataset): every product is formed by :mod:`.portable` from float
multiplies and adds, one numpy ufunc call per operation over a whole sub-batch, in the batch-last layout
``(d, d, batch)`` of real and imaginary planes; such operations round the same on every CPU, so a record's
unitary has the same bits wherever it is computed (generation on any node, a resume elsewhere, a
``--unitaries computed`` read on another machine: ``test_portable``). :class:`ProductTable` chains its
table's chunk products so; enumeration's one-move extensions (:func:`extend`) apply each move's nonzero
entries only. The cost against BLAS (kernel 5): about the same end to end for 1 and 2 qubits, the
products 3-10x slower from 3 qubits up (BENCHMARKS.md, "Kernels").

Kernel 5 (datasets made before, which resume and recompute with it): ``np.matmul`` on a stack of tiny
matrices makes one BLAS call per matrix, so tiny matrices (at most 128 bytes each) were multiplied in the
batch-last layout with complex multiplies, larger ones by ``np.matmul``, and extensions as one ``(m * d, d)``
by ``(d, d)`` product per parent. Its bits depend on the machine: OpenBLAS picks its kernels by the CPU,
and numpy's complex multiply fuses multiply-adds on CPUs with FMA. A BLAS product's bits can also depend on
how many threads compute it, so every BLAS product here runs on one thread (:func:`one_blas_thread`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, cached_property
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from . import compiled
from .portable import apply_moves, matmul_planes, matmul_stack, planes, sub_batch

__all__ = [
    "KERNELS",
    "KERNEL_VERSION",
    "ProductTable",
    "embed",
    "extend",
    "one_blas_thread",
    "pin_one_blas_thread",
    "table_depth",
]

KERNEL_VERSION = 6
"""Bumped whenever a change alters the bits a kernel produces; stored in datasets (their spec's
``kernel_version``) so a resume never mixes records of two kernel versions. 2: batch-last products of
tiny matrices; 3: the same for enumeration's one-move extensions; 4: enumeration extends each parent by
all moves in one product (:func:`extend`); 5: enumeration recomputes its parents from their circuits with
the product table (tasks carry their input and never read the dataset being written), so that a
record's unitary is a function of its circuit alone and can be recomputed on read; 6: every product in
float arithmetic that rounds the same on every machine (:mod:`.portable`): version 5's BLAS products and
numpy complex multiplies gave other bits on other CPUs (AVX-512 or not, fused multiply-add or not)."""

KERNELS = (5, 6)
"""The kernel versions this code computes: a dataset of version 5 resumes, and recomputes its
``--unitaries computed`` records, with version 5's arithmetic (the bits of the machine that made it,
on a machine of the same kind; see :data:`KERNEL_VERSION`); new datasets get version 6."""

_TABLE_BYTES = 16 << 20
_BATCH_LAST_MAX_BYTES = 128
"""Largest matrix (``d * d * itemsize`` bytes) multiplied in the batch-last layout: measured
faster than ``np.matmul`` for complex64 4x4 and complex128 2x2, slower for complex128 4x4 and 8x8."""
_EXTEND_BYTES = 16 << 20
"""Largest temporary of :func:`extend` (all moves applied to a sub-batch of parents)."""
_BATCH_LAST_BLOCK_BYTES = 256 << 10
"""Sub-batch size of the batch-last products, in bytes of one ``(d, d, sub)`` array (fits in L2)."""


@cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


_PINNED = False


def pin_one_blas_thread() -> None:
    """BLAS on one thread for the rest of this process: for unitarium's own worker processes, which
    do nothing else; :func:`one_blas_thread` then costs nothing there."""
    global _PINNED
    _blas().limit(limits=1, user_api="blas")  # kept: the limit is undone only by its restore
    _PINNED = True


@cache
def _blas_libraries() -> tuple[Any, ...]:
    """The BLAS libraries of :func:`_blas` (what ``limit(user_api="blas")`` acts on)."""
    return tuple(lib for lib in _blas().lib_controllers if lib.user_api == "blas")


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread in this process for the block (nothing in a worker process that pinned
    it): the bits of a product must not depend on the thread count. Other threads' BLAS calls meanwhile
    run on one thread too (the limit is per process). What ``threadpoolctl``'s ``limit`` does, by the
    libraries' own calls: ~5 us where the limiter took ~50 (twice per task of a unique run in process)."""
    if _PINNED:
        yield
        return
    libraries = _blas_libraries()
    before = [lib.get_num_threads() for lib in libraries]
    for lib, n in zip(libraries, before, strict=True):
        if n != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libraries, before, strict=True):
            if n != 1:
                lib.set_num_threads(n)


def _batch_last_step(d: int, dtype: np.dtype) -> int | None:
    """Rows per sub-batch for batch-last products of ``d x d`` matrices of ``dtype``; None
    where the matrices are too large for that layout to pay (use ``np.matmul``)."""
    size = d * d * dtype.itemsize
    return None if size > _BATCH_LAST_MAX_BYTES else max(1, _BATCH_LAST_BLOCK_BYTES // size)


def embed(matrix: np.ndarray, qubits: tuple[int, ...], num_qubits: int) -> np.ndarray:
    """The ``(d, d)`` matrix of a k-qubit gate ``matrix`` applied to ``qubits`` of an
    n-qubit register (``qubits[0]`` is the gate's least significant qubit)."""
    d = 1 << num_qubits
    idx = np.arange(d)
    sub = np.zeros(d, dtype=np.int64)
    mask = 0
    for j, q in enumerate(qubits):
        sub |= ((idx >> q) & 1) << j
        mask |= 1 << q
    rest = idx & ~mask
    same_rest = rest[:, None] == rest[None, :]
    return np.where(same_rest, matrix[sub[:, None], sub[None, :]], 0).astype(np.complex128)


def table_depth(num_moves: int, d: int, itemsize: int) -> int:
    """How many moves one precomputed product covers: the largest k <= 4 whose table
    of ``(num_moves + 1) ** k`` products fits in 16 MiB (at least 1)."""
    k = 1
    while k < 4 and (num_moves + 1) ** (k + 1) * d * d * itemsize <= _TABLE_BYTES:
        k += 1
    return k


class ProductTable:
    """All products of ``depth`` consecutive moves (identity padding included), so that
    a circuit of length L costs ``ceil(L / depth)`` gathers and matrix products.

    ``moves`` is the ``(m, d, d)`` stack of move matrices; products are formed in
    complex128 and stored in ``dtype``; ``kernel``: the arithmetic (:data:`KERNELS`).
    """

    def __init__(
        self, moves: np.ndarray, dtype: np.dtype | type, depth: int | None = None, kernel: int = KERNEL_VERSION
    ) -> None:
        m, d, _ = moves.shape
        if kernel not in KERNELS:
            raise ValueError(f"kernel version {kernel} is not one this unitarium computes ({KERNELS})")
        self.num_moves = m
        self.kernel = kernel
        self.dtype = np.dtype(dtype)
        self.depth = depth or table_depth(m, d, self.dtype.itemsize)
        base = np.concatenate([moves, np.eye(d, dtype=np.complex128)[None]])
        table = base
        with one_blas_thread():
            for _ in range(self.depth - 1):
                # entry (a_0, ..., a_{k-1}) -> M[a_{k-1}] @ ... @ M[a_0]; a_0 is the fastest index
                if kernel == 5:
                    table = (base[:, None] @ table[None, :]).reshape(-1, d, d)
                else:
                    table = matmul_stack(np.repeat(base, len(table), axis=0), np.tile(table, (len(base), 1, 1)))
        self.table = np.ascontiguousarray(table.astype(self.dtype))
        self.radix = m + 1

    def unitaries(self, seqs: np.ndarray) -> np.ndarray:
        """Unitaries of a batch of padded move sequences ``(batch, L)`` (pad = ``num_moves``)
        as a ``(batch, d, d)`` array of the table's dtype.

        The product is ``T[i_{c-1}] @ ... @ T[i_1] @ T[i_0]`` with ``i_j`` the table index
        of chunk ``j`` (moves ``j*depth .. (j+1)*depth - 1``), formed right to left."""
        batch = seqs.shape[0]
        d = self.table.shape[1]
        index = self.chunk_index(seqs)
        if index.shape[1] == 0:
            return np.broadcast_to(np.eye(d, dtype=self.dtype), (batch, d, d)).copy()
        if self.kernel != 5:
            return self._portable(index)
        step = _batch_last_step(d, self.dtype)
        if step is None:
            out = self.table[index[:, 0]]
            with one_blas_thread():
                for c in range(1, index.shape[1]):
                    out = self.table[index[:, c]] @ out
            return out
        out = np.empty((batch, d, d), dtype=self.dtype)
        for a in range(0, batch, step):
            out[a : a + step] = self._batch_last(index[a : a + step]).transpose(2, 0, 1)
        return out

    def chunk_index(self, seqs: np.ndarray) -> np.ndarray:
        """``(batch, chunks)`` table indices of the padded sequences ``(batch, L)``: chunk
        ``c`` covers moves ``c*depth ..`` (missing moves pad with the identity)."""
        batch, length = seqs.shape
        k = self.depth
        chunks = -(-length // k)
        if chunks * k != length:
            pad = np.full((batch, chunks * k - length), self.num_moves, dtype=seqs.dtype)
            seqs = np.concatenate([seqs, pad], axis=1)
        digits = seqs.reshape(batch, chunks, k)
        index = digits[:, :, k - 1].astype(np.intp)
        for j in range(k - 2, -1, -1):  # Horner: a_0 is the fastest digit
            index *= self.radix
            index += digits[:, :, j]
        return index

    def _portable(self, index: np.ndarray) -> np.ndarray:
        """:meth:`unitaries` in kernel 6's arithmetic (:mod:`.portable`), a sub-batch at a time (each
        chunk's table entries gathered whole, then split into planes: a gather along the planes' last
        axis reads the table ~1.5x slower)."""
        fast = compiled.chain(*self._planes, index)
        if fast is not None:
            return fast
        batch = len(index)
        table = self.table
        d = table.shape[1]
        out = np.empty((batch, d, d), dtype=self.dtype)
        step = sub_batch(d, out.real.dtype)
        for a in range(0, batch, step):
            rows = index[a : a + step]
            re, im = planes(table[rows[:, 0]])
            for c in range(1, rows.shape[1]):
                re, im = matmul_planes(*planes(table[rows[:, c]]), re, im)
            out.real[a : a + step] = re.transpose(2, 0, 1)
            out.imag[a : a + step] = im.transpose(2, 0, 1)
        return out

    @cached_property
    def _planes(self) -> tuple[np.ndarray, np.ndarray]:
        """The table's real and imaginary planes, contiguous (the compiled loop's operands)."""
        return np.ascontiguousarray(self.table.real), np.ascontiguousarray(self.table.imag)

    @cached_property
    def _table_batch_last(self) -> np.ndarray:
        return np.ascontiguousarray(self.table.transpose(1, 2, 0))

    def _batch_last(self, index: np.ndarray) -> np.ndarray:
        """Products for ``index`` ``(sub, chunks)`` in the batch-last layout ``(d, d, sub)``."""
        table = self._table_batch_last
        out = np.take(table, index[:, 0], axis=2)
        for c in range(1, index.shape[1]):
            out = _matmul_batch_last(np.take(table, index[:, c], axis=2), out)
        return out


def _matmul_batch_last(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for stacks in the batch-last layout ``(d, d, batch)``:
    ``out[i, k] = sum_j a[i, j] * b[j, k]``, summed in ascending ``j``."""
    out = a[:, 0, None, :] * b[None, 0, :, :]
    term = np.empty_like(out)
    for j in range(1, a.shape[0]):
        np.multiply(a[:, j, None, :], b[None, j, :, :], out=term)
        out += term
    return out


def extend(parents: np.ndarray, moves: np.ndarray, allowed: np.ndarray, kernel: int = KERNEL_VERSION) -> np.ndarray:
    """Every allowed one-move extension: ``moves[k] @ parents[p]`` for each ``(p, k)`` with
    ``allowed[p, k]``, in parent-major, move-minor order, as an ``(allowed.sum(), d, d)`` array.

    ``parents`` is ``(batch, d, d)``, ``moves`` the ``(m, d, d)`` stack (same dtype), ``allowed``
    a ``(batch, m)`` bool array. Each parent is multiplied by all the moves at once, stacked
    as one ``(m * d, d)`` matrix: one matrix product per parent instead of one per child
    (enumeration's parents have about five children each), then the disallowed children are
    dropped. The bits of a child depend only on its parent and the gate set, never on the
    batch. Parents go in sub-batches whose products take at most 16 MiB. Kernel 6 (not 5):
    :func:`.portable.apply_moves`, the same products in machine-independent arithmetic.
    """
    if kernel != 5:
        return apply_moves(parents, moves, allowed)
    batch, d, _ = parents.shape
    m = len(moves)
    stacked = np.ascontiguousarray(moves.reshape(m * d, d))
    step = max(1, _EXTEND_BYTES // (m * d * d * parents.itemsize))
    out = np.empty((int(np.count_nonzero(allowed)), d, d), dtype=parents.dtype)
    done = 0
    with one_blas_thread():
        for a in range(0, batch, step):
            keep = allowed[a : a + step].reshape(-1)
            n = int(np.count_nonzero(keep))
            every = np.matmul(stacked, parents[a : a + step]).reshape(-1, d, d)
            np.compress(keep, every, axis=0, out=out[done : done + n])
            done += n
    return out
