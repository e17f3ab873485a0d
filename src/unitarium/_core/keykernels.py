"""The key table's queries and inserts compiled with numba (``pip install 'unitarium[fast]'``): the same answers.

:class:`.keyset.KeySet`'s table answers a task's queries and takes its new keys in passes over numpy arrays:
about 35 passes a query and 20 an insert, each costing ~2 us whatever its length, and more between other
processes' time slices. A unique run asks once per task and partition (4,096 keys, ~600 new): the passes,
not the keys, were most of the driver's table time. Here the same probing, one key at a time: a query walks
from its key's bucket through full buckets until one has it or is not full; an insert takes the first bucket
from its own that is not full. A table may be filled partly one way and partly the other (every key is
found from its own bucket through full buckets either way; where it sits within them does not matter to any
answer, nor to what is stored: the key store's runs are sorted).

Loading costs ~0.3 CPU-s and ~110 MiB a process (numba's import and the cached loops), so a process switches
only once it has decided :data:`SWITCH_AFTER` tasks (:func:`load_in_background`; until the loops are loaded,
the numpy way), and only where its key budget is at least :data:`MIN_SHARE`: a short run, or one under a small
``--memory``, never pays it. ``UNITARIUM_JIT`` as for the products: ``always`` loads them at the first query
(tests), ``never`` keeps the numpy way. Measured (BENCHMARKS.md, "The key table compiled"): the 5M-candidate
run's decisions replayed, 0.61 -> 0.20 s in one partition, 0.35 -> 0.10 s in partition 0 of two.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from .compiled import _numba, jit_mode

__all__ = ["MIN_SHARE", "SWITCH_AFTER", "Kernels", "kernels", "load_in_background"]

SWITCH_AFTER = 256
"""Decisions a process makes the numpy way before it loads the compiled table (rent or buy: the numpy way's
passes cost ~0.3-0.5 ms more a decision in a run, the load ~0.3 s)."""
MIN_SHARE = 1 << 30
"""The smallest key budget (a partition's share of ``--memory``) whose process loads the compiled table: numba
and LLVM take ~110 MiB of RSS in a process (measured: 25 -> 139 MiB at the load), which a run under a small
budget has not got (docs/design.md, "Memory of a unique run": budget plus a fixed 120 MiB a process)."""

Kernels = tuple[Callable[..., None], Callable[..., None]]
"""The compiled ``find(hi_table, lo_table, count, hi, lo, found)`` and ``place(hi_table, lo_table, count, hi,
lo)``."""

_loaded: list[Kernels] = []
_loading = threading.Lock()


def kernels() -> Kernels | None:
    """The compiled table loops where this process has loaded them (under ``UNITARIUM_JIT=always``: loaded
    now), else None: the numpy way."""
    if _loaded:
        return _loaded[0]
    mode = jit_mode()
    if mode == "always" and not _loading.locked():
        _load()
        return _loaded[0] if _loaded else None
    return None


def load_in_background() -> bool:
    """Load the compiled table loops in a thread of their own (the numpy way meanwhile); returns whether a load
    was started (not under ``UNITARIUM_JIT=never``, nor where numba is not installed or one was started)."""
    if _loaded or jit_mode() == "never" or _loading.locked() or importlib.util.find_spec("numba") is None:
        return False
    threading.Thread(target=_load, name="unitarium-jit-keys", daemon=True).start()
    return True


def _load() -> None:
    """Compile or load both loops (numba loads a signature's code at its first call) and publish them."""
    if not _loading.acquire(blocking=False):
        return
    try:
        pair = _kernels()
        if pair is None:
            return
        find, place = pair
        hi, lo, count = np.zeros((16, 8), np.int64), np.zeros((16, 8), np.int64), np.zeros(16, np.uint8)
        one = np.zeros(1, np.int64)
        place(hi, lo, count, one, one)
        find(hi, lo, count, one, one, np.zeros(1, np.bool_))
        _loaded.append(pair)
    except Exception:  # pragma: no cover - (a broken numba install: the numpy way goes on, same answers)
        return
    finally:
        _loading.release()


@cache
def _kernels() -> Kernels | None:
    numba = _numba()
    if numba is None:
        return None
    jit = numba.njit(cache=True, nogil=True, boundscheck=False)
    # (each loop computes a key's bucket itself, as :meth:`.keyset._Table.bucket` does: a call to another
    # compiled function from these closures kept numba from finding them in its cache, ~1 s of compiling a process)

    @jit  # type: ignore[misc]
    def find(thi: Any, tlo: Any, count: Any, hi: Any, lo: Any, found: Any) -> None:  # pragma: no cover - compiled
        buckets = count.shape[0]
        for q in range(hi.shape[0]):
            h, low = hi[q], lo[q]
            low_bits = (np.uint64(h) << np.uint64(6)) >> np.uint64(32)
            b: Any = np.int64((low_bits * np.uint64(buckets)) >> np.uint64(32))
            while True:
                used = count[b]
                hit = False
                for j in range(used):
                    if thi[b, j] == h and tlo[b, j] == low:
                        hit = True
                        break
                if hit:
                    found[q] = True
                    break
                if used < thi.shape[1]:
                    break
                b = b + 1 if b + 1 < buckets else 0

    @jit  # type: ignore[misc]
    def place(thi: Any, tlo: Any, count: Any, hi: Any, lo: Any) -> None:  # pragma: no cover - compiled
        buckets, slots = count.shape[0], thi.shape[1]
        for q in range(hi.shape[0]):
            low_bits = (np.uint64(hi[q]) << np.uint64(6)) >> np.uint64(32)
            b: Any = np.int64((low_bits * np.uint64(buckets)) >> np.uint64(32))
            while count[b] == slots:
                b = b + 1 if b + 1 < buckets else 0
            used = count[b]
            thi[b, used] = hi[q]
            tlo[b, used] = lo[q]
            count[b] = used + 1

    return find, place
