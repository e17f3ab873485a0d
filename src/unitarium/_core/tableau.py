"""Stabilizer tableaux of Clifford circuits by update rules: no matrices. Pure numpy.

The tableau of a Clifford ``U`` is that of :mod:`unitarium._core.exact` (the same generators, bits,
signs and key): row ``k`` is ``U G_k U^dagger = (-1)^s i^{x.z} X^x Z^z`` for ``G_k`` in
``X_0..X_{n-1}, Z_0..Z_{n-1}``. Appending a move ``M`` to a circuit conjugates every row by ``M``,
so a circuit's tableau is the identity's, updated by each move in turn, and an enumeration child's
is its parent's, updated by the last move.

**Layout.** A row is ``2n + 1`` bits: ``x`` (bit ``q`` for qubit ``q``), then ``z``, then the sign.
Rows are packed whole into ``uint64`` words, ``64 // (2n + 1)`` per word, row ``k`` in word
``k // R`` at bit ``(k % R)(2n + 1)``: up to 3 qubits a tableau is one word, laid out exactly as the
key's bit string (:func:`unitarium._core.exact.tableau_keys`), and a gate is a few shifts, masks and
xors over a whole batch of tableaux at once (every row of a word in one operation: ``mask`` holds
the lowest bit of each row).

**Rules** (Aaronson and Gottesman 2004, in this sign convention): each move's tableau is read once off
its matrix (:func:`unitarium._core.exact.tableau`, every entry checked) and matched against the
bit rules of ``h, s, sdg, x, y, z, cx, cz, swap`` on every qubit (pair); a move that matches none
(``sx``, ``iswap``, ``ecr``, a custom Clifford...) is applied by its general action: the image of a
row is the product of the images of the generators in it, with the phase tracked mod 4.
Tests check every rule and the general action against the matrix path and ``stim`` (test_clifford_fast).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .exact import _feistel, _keys_of_bits, tableau

__all__ = ["TableauRules"]

Rule = Callable[[np.ndarray], np.ndarray]


class TableauRules:
    """Tableau update rules of a Clifford gate set's moves on ``num_qubits`` qubits.

    ``move_matrices`` is the ``(m, d, d)`` stack of full move matrices; raises
    :class:`unitarium._core.exact.NotExact` if one is not Clifford."""

    def __init__(self, move_matrices: np.ndarray) -> None:
        mats = np.asarray(move_matrices, dtype=np.complex128)
        d = mats.shape[-1]
        n = d.bit_length() - 1
        self.n = n
        self.width = 2 * n + 1
        self.per_word = 64 // self.width
        self.words = -(-2 * n // self.per_word)
        mask = np.zeros(self.words, dtype=np.uint64)
        for k in range(2 * n):
            mask[k // self.per_word] |= np.uint64(1 << ((k % self.per_word) * self.width))
        self.mask = mask
        self._row_mask = np.uint64((1 << self.width) - 1)
        x, z, s = tableau(mats, eps=1e-9, full=True)
        self.move_tableaux = self.pack(x, z, s)  # (m, words)
        self.names: list[str] = []
        self.rules: list[Rule] = [self._rule(x[i], z[i], s[i], self.move_tableaux[i]) for i in range(len(mats))]

    # -- layout -----------------------------------------------------------------------------

    def pack(self, x: np.ndarray, z: np.ndarray, s: np.ndarray) -> np.ndarray:
        """``(batch, words)`` packed tableaux of ``x, z`` int masks and ``s`` bool signs ``(batch, 2n)``."""
        n = self.n
        rows = (
            np.asarray(x, dtype=np.uint64)
            | (np.asarray(z, dtype=np.uint64) << np.uint64(n))
            | (np.asarray(s, dtype=np.uint64) << np.uint64(2 * n))
        )
        out = np.zeros((len(rows), self.words), dtype=np.uint64)
        for k in range(2 * n):
            out[:, k // self.per_word] |= rows[:, k] << np.uint64((k % self.per_word) * self.width)
        return out

    def rows(self, t: np.ndarray) -> np.ndarray:
        """``(batch, 2n)`` uint64 rows (``x | z << n | s << 2n``) of packed tableaux ``t``."""
        out = np.empty((len(t), 2 * self.n), dtype=np.uint64)
        for k in range(2 * self.n):
            out[:, k] = (t[:, k // self.per_word] >> np.uint64((k % self.per_word) * self.width)) & self._row_mask
        return out

    def from_rows(self, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), self.words), dtype=np.uint64)
        for k in range(2 * self.n):
            out[:, k // self.per_word] |= rows[:, k] << np.uint64((k % self.per_word) * self.width)
        return out

    def identity(self, batch: int) -> np.ndarray:
        n = self.n
        q = np.arange(n)
        x = np.concatenate([1 << q, np.zeros(n, dtype=np.int64)])
        z = np.concatenate([np.zeros(n, dtype=np.int64), 1 << q])
        one = self.pack(x[None], z[None], np.zeros((1, 2 * n), dtype=bool))
        return np.repeat(one, batch, axis=0)

    def keys(self, t: np.ndarray) -> np.ndarray:
        """``(batch, 2)`` int64 keys of packed tableaux: bit for bit :func:`unitarium._core.exact.tableau_keys`
        of their unitaries."""
        n, width, total = self.n, self.width, 2 * self.n * self.width
        if total > 128:
            rows = self.rows(t)
            shifts = np.arange(width, dtype=np.uint64)
            bits = ((rows[:, :, None] >> shifts) & np.uint64(1)).astype(np.uint8)
            return _keys_of_bits(bits.reshape(len(t), total))
        if self.words == 1:
            return _feistel(t[:, 0], np.zeros(len(t), dtype=np.uint64))
        lo = np.zeros(len(t), dtype=np.uint64)
        hi = np.zeros(len(t), dtype=np.uint64)
        rows = self.rows(t)
        for k in range(2 * n):
            pos = k * width
            if pos < 64:
                lo |= rows[:, k] << np.uint64(pos)
                if pos + width > 64:
                    hi |= rows[:, k] >> np.uint64(64 - pos)
            else:
                hi |= rows[:, k] << np.uint64(pos - 64)
        return _feistel(lo, hi)

    # -- circuits ---------------------------------------------------------------------------

    def apply(self, t: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """The tableaux ``t`` ``(batch, words)`` after each row's moves ``codes`` ``(batch, L)``, in
        order (a code equal to the number of moves is the identity: padding)."""
        t = np.array(t, dtype=np.uint64, copy=True)
        m = len(self.rules)
        for j in range(codes.shape[1]):
            col = codes[:, j]
            order = np.argsort(col, kind="stable")
            bounds = np.searchsorted(col[order], np.arange(m + 1))
            for move in range(m):
                a, b = bounds[move], bounds[move + 1]
                if a < b:
                    rows = order[a:b]
                    t[rows] = self.rules[move](t[rows])
        return t

    def circuits(self, codes: np.ndarray) -> np.ndarray:
        """Packed tableaux of circuits ``codes`` ``(batch, L)`` (padded with the number of moves)."""
        return self.apply(self.identity(len(codes)), codes)

    def extend(self, parents: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        """Every allowed one-move extension of packed tableaux ``parents`` ``(batch, words)``, in
        parent-major, move-minor order (as :func:`unitarium._core.kernels.extend`)."""
        batch, m = allowed.shape
        out = np.empty((batch, m, self.words), dtype=np.uint64)
        for move in range(m):
            if allowed[:, move].any():
                out[:, move] = self.rules[move](parents)
        return out.reshape(batch * m, self.words)[allowed.reshape(-1)]

    # -- rules ------------------------------------------------------------------------------

    def _rule(self, x: np.ndarray, z: np.ndarray, s: np.ndarray, packed: np.ndarray) -> Rule:
        """The fastest rule whose action on the identity is this move's tableau."""
        n = self.n
        ident = self.identity(1)
        for name, qubits, rule in self._named():
            if np.array_equal(rule(ident)[0], packed):
                self.names.append(" ".join([name, *map(str, qubits)]))
                return rule
        self.names.append("general")
        return self._general(x, z, s, n)

    def _named(self) -> list[tuple[str, tuple[int, ...], Rule]]:
        n = self.n
        out: list[tuple[str, tuple[int, ...], Rule]] = []
        for q in range(n):
            for name in ("x", "y", "z", "h", "s", "sdg"):
                out.append((name, (q,), self._one(name, q)))
        for a in range(n):
            for b in range(n):
                if a != b:
                    out.append(("cx", (a, b), self._cx(a, b)))
                    if a < b:
                        out.append(("cz", (a, b), self._cz(a, b)))
                        out.append(("swap", (a, b), self._swap(a, b)))
        return out

    def _one(self, name: str, q: int) -> Rule:
        n, mask = self.n, self.mask
        xq, zq, sq = np.uint64(q), np.uint64(n + q), np.uint64(2 * n)

        def rule(t: np.ndarray) -> np.ndarray:
            x = (t >> xq) & mask
            z = (t >> zq) & mask
            if name == "x":
                return t ^ (z << sq)
            if name == "z":
                return t ^ (x << sq)
            if name == "y":
                return t ^ ((x ^ z) << sq)
            if name == "h":  # X <-> Z, Y -> -Y
                flip = x ^ z
                return t ^ ((x & z) << sq) ^ (flip << xq) ^ (flip << zq)
            if name == "s":  # X -> Y, Y -> -X
                return t ^ ((x & z) << sq) ^ (x << zq)
            # sdg: X -> -Y, Y -> X
            return t ^ ((x & ~z & mask) << sq) ^ (x << zq)

        return rule

    def _cx(self, a: int, b: int) -> Rule:
        n, mask = self.n, self.mask
        xa, xb, za, zb, sq = (np.uint64(v) for v in (a, b, n + a, n + b, 2 * n))

        def rule(t: np.ndarray) -> np.ndarray:
            x_a = (t >> xa) & mask
            z_b = (t >> zb) & mask
            r = x_a & z_b & ~((t >> xb) ^ (t >> za))
            return t ^ ((r & mask) << sq) ^ (x_a << xb) ^ (z_b << za)

        return rule

    def _cz(self, a: int, b: int) -> Rule:
        n, mask = self.n, self.mask
        xa, xb, za, zb, sq = (np.uint64(v) for v in (a, b, n + a, n + b, 2 * n))

        def rule(t: np.ndarray) -> np.ndarray:
            x_a = (t >> xa) & mask
            x_b = (t >> xb) & mask
            r = x_a & x_b & ((t >> za) ^ (t >> zb))
            return t ^ (r << sq) ^ (x_b << za) ^ (x_a << zb)

        return rule

    def _swap(self, a: int, b: int) -> Rule:
        n, mask = self.n, self.mask
        xa, xb, za, zb = (np.uint64(v) for v in (a, b, n + a, n + b))

        def rule(t: np.ndarray) -> np.ndarray:
            dx = ((t >> xa) ^ (t >> xb)) & mask
            dz = ((t >> za) ^ (t >> zb)) & mask
            return t ^ (dx << xa) ^ (dx << xb) ^ (dz << za) ^ (dz << zb)

        return rule

    def _general(self, x: np.ndarray, z: np.ndarray, s: np.ndarray, n: int) -> Rule:
        """Conjugation by a Clifford given by its generators' images ``x, z, s`` ``(2n,)``: a row
        ``(-1)^s i^{x.z} X^x Z^z`` maps to ``(-1)^s i^{x.z}`` times the product of the images of
        ``X_q`` (``x_q`` set) then ``Z_q`` (``z_q`` set), each ``(-1)^{s_k} i^{x_k.z_k} X^{x_k} Z^{z_k}``;
        with ``X^a Z^b X^c Z^d = (-1)^{b.c} X^{a+c} Z^{b+d}`` the product's phase is tracked mod 4."""
        gx = np.asarray(x, dtype=np.uint64)
        gz = np.asarray(z, dtype=np.uint64)
        ge = (2 * np.asarray(s, dtype=np.int64) + np.bitwise_count(gx & gz).astype(np.int64)) % 4
        low = np.uint64((1 << n) - 1)

        def rule(t: np.ndarray) -> np.ndarray:
            rows = self.rows(t)
            rx, rz, rs = rows & low, (rows >> np.uint64(n)) & low, rows >> np.uint64(2 * n)
            ax = np.zeros_like(rx)
            az = np.zeros_like(rz)
            e = 2 * rs.astype(np.int64) + np.bitwise_count(rx & rz).astype(np.int64)
            for k in range(2 * n):
                bits = rx if k < n else rz
                on = ((bits >> np.uint64(k % n)) & np.uint64(1)).astype(bool)
                e += on * (ge[k] + 2 * np.bitwise_count(az & gx[k]).astype(np.int64))
                ax ^= np.where(on, gx[k], np.uint64(0))
                az ^= np.where(on, gz[k], np.uint64(0))
            sign = ((e - np.bitwise_count(ax & az).astype(np.int64)) % 4 == 2).astype(np.uint64)
            return self.from_rows(ax | (az << np.uint64(n)) | (sign << np.uint64(2 * n)))

        return rule
