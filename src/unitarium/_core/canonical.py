"""Canonical forms and hash keys of unitaries up to global phase. Pure numpy.

**Phase.** ``U`` and ``e^{ia} U`` are the same operation. The phase is fixed smoothly:
with fixed pseudo-random complex weights ``W`` (one set per dimension), the overlap
``s = sum(W * U)`` is rotated onto the positive real axis, ``V = U * conj(s) / |s|``.
There is no "first non-zero entry" rule whose choice could flip under rounding noise,
no tie between equal-magnitude entries, and ``-0.0`` never matters. ``|s|`` is of order
1 for every unitary (it vanishes only on a measure-zero set).

**Keys.** ``V`` (as ``2 d^2`` reals) is projected on ``m`` fixed random directions and
each coordinate is rounded to a grid of spacing ``delta``; the integer cells are mixed
into one signed 64-bit key. Two computations of one unitary differ by rounding noise
far below ``eta``, so their cells can differ only in coordinates lying within ``eta``
of a cell boundary. Every such *near* coordinate is reported, and the keys with any
subset of them moved to the neighbouring cell are the *alternates*: two noisy copies
of one unitary always have one's primary key among the other's primary and alternates.

Two key families:

- **dedup** keys, computed from complex128 products (noise ~1e-14): fine grid
  (``delta = 2**-20``), ``m = 16`` coordinates, ``eta = 2**-32``; distinct unitaries
  closer than ~1e-6 in every projection would be merged.
- **lookup** keys, coarse (``delta = 2**-10``, ``m = 6``, ``eta = 2**-15``), tolerant
  of complex64 noise and user input; a query probes every alternate and verifies each
  candidate with :func:`equal_up_to_phase`.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from . import compiled
from .kernels import one_blas_thread
from .keyset import Alternates

__all__ = ["DEDUP", "LOOKUP", "KeyScheme", "canonical_phase", "equal_up_to_phase", "grid_keys", "phased_flat"]

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


@functools.cache
def _weights(d: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(0x5EED, spawn_key=(d,)))
    w = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
    return w.astype(np.complex128)


def canonical_phase(u: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``(batch, d, d)`` unitaries with their global phase fixed (complex128; into ``out`` if given)."""
    u = np.asarray(u, dtype=np.complex128)
    s = np.einsum("ij,nij->n", _weights(u.shape[-1]), u)
    mag = np.abs(s)
    phase = np.where(mag > 0, np.conj(s) / np.where(mag > 0, mag, 1), 1)
    return np.multiply(u, phase[:, None, None], out=out)


def equal_up_to_phase(a: np.ndarray, b: np.ndarray, *, atol: float = 1e-5) -> bool:
    """Whether ``a == e^{i phi} b`` for some phase, entrywise within ``atol``."""
    a = np.asarray(a, dtype=np.complex128)
    b = np.asarray(b, dtype=np.complex128)
    if a.shape != b.shape:
        return False
    overlap = np.vdot(b, a)
    phase = overlap / abs(overlap) if abs(overlap) > 0 else 1.0
    return bool(np.abs(a - phase * b).max() <= atol)


_SPLITMIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))
"""splitmix64's multipliers (:func:`_splitmix`, and :func:`.compiled.grid_words`'s loop)."""


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _SPLITMIX[0]
        x = x ^ (x >> np.uint64(27))
        x = x * _SPLITMIX[1]
        return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class KeyScheme:
    """A grid hash: ``dims`` random projections rounded to ``delta``; coordinates within
    ``eta`` of a cell boundary are *near*."""

    name: str
    dims: int
    delta: float
    eta: float

    def _projection(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        return _projection(self.name, self.dims, d)

    def project(self, u: np.ndarray) -> np.ndarray:
        """``(batch, dims)`` coordinates of ``(batch, d, d)`` unitaries, in grid units."""
        return self.project_flat(phased_flat(u), np.shape(u)[-1])

    def project_flat(self, flat: np.ndarray, d: int) -> np.ndarray:
        """:meth:`project` of :func:`phased_flat` ``(batch, 2 d^2)`` (one phase for several schemes)."""
        with one_blas_thread():
            return self._project(flat, d)

    def _project(self, flat: np.ndarray, d: int, *, scratch: bool = False) -> np.ndarray:
        """:meth:`project_flat`, BLAS already on one thread (``scratch``: in a scratch array of this scheme)."""
        proj, _ = self._projection(d)
        y = np.matmul(flat, proj, out=_scratch(self.name, (len(flat), self.dims), np.float64) if scratch else None)
        return np.divide(y, self.delta, out=y)

    def grid(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integer cells of coordinates ``y`` (grid units), the neighbouring cell of
        each coordinate across its nearer boundary, and the near mask."""
        cells = np.floor(y + 0.5)
        frac = y + 0.5 - cells  # in [0, 1): position inside the cell
        near = np.minimum(frac, 1 - frac) < self.eta / self.delta
        neighbour = np.where(frac < 0.5, cells - 1, cells + 1)
        return cells.astype(np.int64), neighbour.astype(np.int64), near

    def cells(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`grid` of :meth:`project`: cells, neighbours and near mask of unitaries."""
        return self.grid(self.project(u))

    def _mix(self, cells: np.ndarray, d: int, word: int = 0) -> np.ndarray:
        salt = _projection(self.name, self.dims, d)[1] if word == 0 else _second_salt(self.name, self.dims, d)
        with np.errstate(over="ignore"):
            acc = (cells.astype(np.uint64) * salt).sum(axis=-1, dtype=np.uint64)
        return _splitmix(acc).view(np.int64)

    def _wide(self, cells: np.ndarray, d: int) -> np.ndarray:
        """``(n, 2)`` int64 for ``(n, dims)`` cells: the 64-bit key (:meth:`_mix`) and a second,
        independent 64-bit word (128 bits). Both words' salted sums in one integer product: sums
        modulo 2^64 in any order are the same bits."""
        salts = _wide_salts(self.name, self.dims, d)
        with np.errstate(over="ignore"):
            acc = np.asarray(cells, dtype=np.int64).view(np.uint64) @ salts
        return _splitmix(acc).view(np.int64)

    def primary(self, u: np.ndarray) -> np.ndarray:
        """Primary keys ``(batch,)`` int64 of ``(batch, d, d)`` unitaries."""
        return self.primary_of(self.project(u), np.shape(u)[-1])

    def primary_of(self, y: np.ndarray, d: int) -> np.ndarray:
        """:meth:`primary` from the coordinates ``y`` (:meth:`project`), through :func:`.compiled.grid_words`
        where it applies (the same bits)."""
        fast = compiled.grid_words(y, 0.0, _first_salts(self.name, self.dims, d), _SPLITMIX)
        if fast is not None:
            return np.ascontiguousarray(fast[0][:, 0])  # (the second word's salts are 0: not a key's word)
        return self._mix(np.floor(y + 0.5).astype(np.int64), d)

    def keys(self, u: np.ndarray) -> tuple[np.ndarray, dict[int, list[int]]]:
        """Primary keys ``(batch,)`` int64 and, for rows with near coordinates, their
        alternate keys (every non-empty subset of near coordinates moved across; of the
        first 12 near ones if there are more: for dedup keys a coordinate is near with
        probability ``2 eta / delta = 2**-11``, so 13 of 16 at once has probability < 1e-40)."""
        return self.keys_of_cells(*self.cells(u), np.shape(u)[-1])

    def wide_keys(self, u: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """:meth:`keys` as 128-bit keys: primary ``(batch, 2)`` int64 and, per row with near
        coordinates, its alternates ``(k, 2)``. Two distinct cells collide with probability
        ~2**-128 (64-bit keys: n**2 / 2**65, ~2,400 pairs among 3e11 unitaries)."""
        return self.wide_keys_of(self.project(u), np.shape(u)[-1])

    def wide_keys_of(self, y: np.ndarray, d: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """:meth:`wide_keys` from the coordinates ``y`` (:meth:`project`): the alternates' keys of
        every near row at once, neighbours formed for those rows only (the same cells as :meth:`grid`).
        The primary keys and near rows go through :func:`.compiled.grid_words` where it applies (the same bits)."""
        fast = compiled.grid_words(y, self.eta / self.delta, _wide_salts(self.name, self.dims, d), _SPLITMIX)
        if fast is None:
            cells, _, near = self._near(y)
            primary = self._wide(cells.astype(np.int64), d)
            rows = np.flatnonzero(near.any(axis=1))
        else:
            primary, rows = fast[0], np.flatnonzero(fast[1])
        if not len(rows):
            return primary, {}
        at, frac, near = self._near(y[rows])  # (element by element: the rows' own cells)
        neighbour = np.where(frac < 0.5, at - 1, at + 1).astype(np.int64)
        moved = self._moved(at.astype(np.int64), neighbour, near)
        stacked = [moved[r] for r in range(len(rows))]
        keys = self._wide(np.concatenate(stacked), d)
        ends = np.cumsum([len(m) for m in stacked])
        return primary, Alternates((int(r), keys[e - len(m) : e]) for r, m, e in zip(rows, stacked, ends, strict=True))

    def _near(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cells (float), positions inside them and the near mask of coordinates ``y``."""
        shifted = y + 0.5
        cells = np.floor(shifted)
        frac = shifted - cells
        return cells, frac, np.minimum(frac, 1 - frac) < self.eta / self.delta

    def keys_of_cells(
        self, cells: np.ndarray, neighbour: np.ndarray, near: np.ndarray, d: int
    ) -> tuple[np.ndarray, dict[int, list[int]]]:
        """:meth:`keys` from the output of :meth:`grid` (``d`` selects the salts)."""
        moved = self._moved(cells, neighbour, near)
        return self._mix(cells, d), {r: self._mix(m, d).tolist() for r, m in moved.items()}

    def _moved(self, cells: np.ndarray, neighbour: np.ndarray, near: np.ndarray) -> dict[int, np.ndarray]:
        """For each row with near coordinates, the ``(k, dims)`` cells of its alternates."""
        counts = near.sum(axis=1)
        single = np.flatnonzero(counts == 1)
        moved = cells[single].copy()
        col = near[single].argmax(axis=1)
        moved[np.arange(len(single)), col] = neighbour[single, col]
        out = {int(r): moved[k : k + 1] for k, r in enumerate(single)}
        for row in np.flatnonzero(counts > 1):
            out[int(row)] = self._variants(cells[row], neighbour[row], near[row])
        return out

    def _variants(self, cells: np.ndarray, neighbour: np.ndarray, near: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(near)[:12]
        variants = []
        for size in range(1, len(idx) + 1):
            for subset in combinations(idx, size):
                moved = cells.copy()
                moved[list(subset)] = neighbour[list(subset)]
                variants.append(moved)
        return np.array(variants)

    def probes(self, u: np.ndarray) -> list[int]:
        """Every key a unitary within noise of ``u`` (``(d, d)``) may have been stored under."""
        primary, alternates = self.keys(np.asarray(u)[None])
        return [int(primary[0]), *alternates.get(0, [])]


@functools.cache
def _projection(name: str, dims: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    seed = np.random.SeedSequence(0xC0FFEE, spawn_key=(d, dims, sum(map(ord, name))))
    rng = np.random.default_rng(seed)
    proj = rng.normal(size=(2 * d * d, dims))
    proj /= np.linalg.norm(proj, axis=0)
    salt = rng.integers(1, 2**63, size=dims, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    return proj, salt


@functools.cache
def _second_salt(name: str, dims: int, d: int) -> np.ndarray:
    """Salts of the second key word (:meth:`KeyScheme.wide_keys`), independent of the first."""
    rng = np.random.default_rng(np.random.SeedSequence(0xC0FFEE, spawn_key=(d, dims, sum(map(ord, name)), 2)))
    return rng.integers(1, 2**63, size=dims, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


@functools.cache
def _wide_salts(name: str, dims: int, d: int) -> np.ndarray:
    """``(dims, 2)`` uint64: the salts of both key words (:meth:`KeyScheme._wide`)."""
    return np.stack([_projection(name, dims, d)[1], _second_salt(name, dims, d)], axis=1)


@functools.cache
def _first_salts(name: str, dims: int, d: int) -> np.ndarray:
    """``(dims, 2)`` uint64: the first key word's salts and zeros (:meth:`KeyScheme.primary_of` through the loop
    of :func:`.compiled.grid_words`, which forms two words: one loop, one load; the second costs ~30%)."""
    return np.stack([_projection(name, dims, d)[1], np.zeros(dims, np.uint64)], axis=1)


def phased_flat(u: np.ndarray, *, scratch: bool = False) -> np.ndarray:
    """``(batch, 2 d^2)`` reals of ``(batch, d, d)`` unitaries with their phase fixed
    (:func:`canonical_phase`): what :meth:`KeyScheme.project` projects. ``scratch``: in this thread's
    scratch arrays (:func:`_scratch`), which the next such call overwrites."""
    n, d = len(u), np.shape(u)[-1]
    v = canonical_phase(u, _scratch("phased", (n, d, d), np.complex128) if scratch else None)
    flat = _scratch("flat", (n, d, 2 * d), np.float64) if scratch else None
    return np.concatenate([v.real, v.imag], axis=-1, out=flat).reshape(n, -1)


_SCRATCH_BYTES = 4 << 20
"""The largest array :func:`_scratch` keeps for the next call (larger ones are made each time)."""
_scratches = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """An array for a key computation's intermediate ``name``, this thread's from the last call of the same
    shape where it is small: a task's keys form their intermediates in the same arrays each time instead of
    new ones (on a VM, a MiB freshly mapped costs more than the arithmetic that fills it: the phase and its
    concatenation took 1.2 ms per 4,096 2-qubit unitaries beside other allocations, 0.32 ms in kept arrays).
    The same operations either way, so the same bits."""
    kept: dict[str, np.ndarray] = _scratches.__dict__.setdefault("arrays", {})
    array = kept.get(name)
    if array is None or array.shape != shape or array.dtype != dtype:
        array = np.empty(shape, dtype)
        if array.nbytes <= _SCRATCH_BYTES:
            kept[name] = array
    return array


def grid_keys(u: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray], np.ndarray]:
    """Unique mode's grid keys of ``(batch, d, d)`` unitaries: ``DEDUP.wide_keys(u)`` and
    ``LOOKUP.primary(u)``, bit for bit, with the phase fixed once for both (in scratch arrays)."""
    flat, d = phased_flat(u, scratch=True), np.shape(u)[-1]
    with one_blas_thread():
        dedup, lookup = DEDUP._project(flat, d, scratch=True), LOOKUP._project(flat, d, scratch=True)
    primary, alternates = DEDUP.wide_keys_of(dedup, d)
    return primary, alternates, LOOKUP.primary_of(lookup, d)


DEDUP = KeyScheme("dedup", dims=16, delta=2.0**-20, eta=2.0**-32)
LOOKUP = KeyScheme("lookup", dims=6, delta=2.0**-10, eta=2.0**-15)
