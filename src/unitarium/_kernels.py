"""Pure, vectorised numpy kernels on stacks of matrices. No I/O.

Conventions:
- ``n`` qubits, ``d = 2**n``. Basis index ``b0 + 2*b1 + ... `` with ``b_j`` the state
  of qubit ``j`` (Qiskit's little-endian order).
- A stack of unitaries has shape ``(batch, d, d)``.
- A circuit is a sequence of move indices ``s_0, s_1, ...`` applied in that order, so
  its unitary is ``M[s_{L-1}] @ ... @ M[s_1] @ M[s_0]``.
- Move index ``m`` (one past the last real move) is the identity, used to pad
  circuits of different lengths to one array: multiplying by it is exact.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ProductTable", "apply_moves", "embed", "table_depth"]

KERNEL_VERSION = 1
"""Bumped whenever a change alters the bits a kernel produces; stored in datasets so a
resume never mixes records of two kernel versions."""

_TABLE_BYTES = 16 << 20


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
    complex128 and stored in ``dtype``.
    """

    def __init__(self, moves: np.ndarray, dtype: np.dtype | type, depth: int | None = None) -> None:
        m, d, _ = moves.shape
        self.num_moves = m
        self.dtype = np.dtype(dtype)
        self.depth = depth or table_depth(m, d, self.dtype.itemsize)
        base = np.concatenate([moves, np.eye(d, dtype=np.complex128)[None]])
        table = base
        for _ in range(self.depth - 1):
            # entry (a_0, ..., a_{k-1}) -> M[a_{k-1}] @ ... @ M[a_0]; a_0 is the fastest index
            table = (base[:, None] @ table[None, :]).reshape(-1, d, d)
        self.table = np.ascontiguousarray(table.astype(self.dtype))
        self.radix = m + 1

    def unitaries(self, seqs: np.ndarray) -> np.ndarray:
        """Unitaries of a batch of padded move sequences ``(batch, L)`` (pad = ``num_moves``)
        as a ``(batch, d, d)`` array of the table's dtype."""
        batch, length = seqs.shape
        k = self.depth
        chunks = -(-length // k)
        padded = np.full((batch, chunks * k), self.num_moves, dtype=np.int64)
        padded[:, :length] = seqs
        weights = self.radix ** np.arange(k, dtype=np.int64)
        index = padded.reshape(batch, chunks, k) @ weights
        d = self.table.shape[1]
        if chunks == 0:
            return np.broadcast_to(np.eye(d, dtype=self.dtype), (batch, d, d)).copy()
        out = self.table[index[:, 0]]
        for c in range(1, chunks):
            out = self.table[index[:, c]] @ out
        return out


def apply_moves(unitaries: np.ndarray, moves: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Left-multiply each unitary by one move: ``out[i] = moves[which[i]] @ unitaries[i]``.

    ``unitaries`` is ``(batch, d, d)``, ``moves`` the ``(m, d, d)`` stack, ``which`` a
    ``(batch,)`` integer array. Used by enumeration to extend parents by one gate.
    """
    return np.matmul(moves[which], unitaries)
