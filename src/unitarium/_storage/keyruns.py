"""Sorted runs of dedup keys on disk, and the listing that makes them resumable: the files under a
:class:`.keystore.KeyStore` (see its module's docstring for the format, the budget and the rules of trust),
and :class:`RunStack`, a store's runs: written, merged size-tiered in a background thread, searched under the maps'
share."""

from __future__ import annotations

import contextlib
import io
import json
import mmap
import os
import re
import secrets
import threading
from collections.abc import Callable, Container, Iterator
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import xxhash

from .._core.keyset import merge_runs
from .._errors import StorageError
from .sqlite import path_text

__all__ = [
    "FENCE",
    "LISTING",
    "MIN_QUERY_STEP",
    "QUERY_PAGES",
    "RUN",
    "TEMPORARY",
    "Run",
    "RunStack",
    "StoreRejected",
    "file_resident",
    "merged",
    "read_listing",
    "write_listing",
    "write_run",
]

STORE_FORMAT = 1
LISTING = "keys.json"
FENCE = 512
"""Keys per fence entry: one 4 KiB page of ``hi`` words."""
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_READ = 1 << 16
"""Keys per read when checking a run's checksum."""
QUERY_PAGES = 3
"""Pages of a run's map one membership query touches at most: its fenced range of ``hi`` (a 4 KiB page of
words, not page-aligned: two pages) and one of ``lo``."""
MIN_QUERY_STEP = 2048
"""The fewest queries per slice of a membership test (smaller slices cost more in calls than the pages they
save): at small budgets a slice may fault in up to ``3 * 2048`` pages (24 MiB), a fixed overhead."""
RUN = re.compile(r"run-(\d{6,})\.npy")
TEMPORARY = re.compile(r"\.run-\d{6,}\.npy\.[0-9a-f]+\.tmp|\.keys\.json\.[0-9a-f]+\.tmp")


class StoreRejected(Exception):
    """A key store that cannot be trusted (``args[0]``: why, in words)."""


def _header(n: int) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<i8", "fortran_order": False, "shape": (2, n)})
    return buf.getvalue()


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_resident() -> int:
    """Bytes of this process's resident file-backed (and shared) pages: the maps' pages among them."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[2]) * _PAGE
    except (OSError, IndexError, ValueError):  # pragma: no cover - not Linux: never released
        return 0


def _read_words(fd: int, offset: int, count: int) -> np.ndarray:
    data = os.pread(fd, 8 * count, offset)
    if len(data) != 8 * count:
        raise StoreRejected("a run is shorter than listed")
    return np.frombuffer(data, dtype="<i8")


class Run:
    """One sorted run on disk: ``hi`` and ``lo`` words mapped read-only, its fence in RAM; it holds the
    keys of tasks ``tasks[0] .. tasks[1]-1`` (those not in an earlier run)."""

    def __init__(
        self, path: Path, tasks: tuple[int, int], n: int, sums: tuple[str, str], fence: np.ndarray | None = None
    ) -> None:
        """``fence``: every :data:`FENCE`-th ``hi`` word, as :func:`write_run` returns it (None: read
        from the file, never through the map: a fence built from the map would fault in every page
        of ``hi``, 8 bytes a key of resident memory until the next release)."""
        self.path, self.tasks, self.n, self.sums = path, tasks, n, sums
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version != (1, 0):
                raise StoreRejected(f"{path.name} is not a run of this store")
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            self.offset = f.tell()
            if shape != (2, n) or fortran or dtype != np.dtype("<i8"):
                raise StoreRejected(f"{path.name} does not hold the {n} keys listed")
            if os.fstat(f.fileno()).st_size != self.offset + 16 * n:
                raise StoreRejected(f"{path.name} has the wrong size")
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.map.madvise(mmap.MADV_RANDOM)  # one page per fault: what a query touches, no read-around
        self.hi = np.frombuffer(self.map, dtype="<i8", count=n, offset=self.offset)
        self.lo = np.frombuffer(self.map, dtype="<i8", count=n, offset=self.offset + 8 * n)
        self.fence = self._read_fence() if fence is None else fence

    def _read_fence(self) -> np.ndarray:
        parts, fd = [], os.open(self.path, os.O_RDONLY)
        try:
            for a in range(0, self.n, _READ):  # (_READ is a multiple of FENCE)
                parts.append(_read_words(fd, self.offset + 8 * a, min(_READ, self.n - a))[::FENCE].astype(np.int64))
        finally:
            os.close(fd)
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    @property
    def name(self) -> str:
        return self.path.name

    def checksums(self, seed: int) -> tuple[str, str]:
        """The XXH3-64 of the ``hi`` and ``lo`` words, read from the file (not through the map)."""
        sums = []
        with open(self.path, "rb") as f:
            for start in (self.offset, self.offset + 8 * self.n):
                h = xxhash.xxh3_64(seed=seed)
                for a in range(0, self.n, _READ):
                    h.update(_read_words(f.fileno(), start + 8 * a, min(_READ, self.n - a)).tobytes())
                sums.append(h.hexdigest())
        return sums[0], sums[1]

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The run's ``(hi, lo)`` words in chunks of ``size``, read from the file (not through the map)."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for a in range(0, self.n, size):
                k = min(size, self.n - a)
                yield (
                    _read_words(fd, self.offset + 8 * a, k).astype(np.int64),
                    _read_words(fd, self.offset + 8 * (self.n + a), k).astype(np.int64),
                )
        finally:
            os.close(fd)

    def contains(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Which keys ``(hi, lo)`` are in the run; the fence narrows each search to one page."""
        page = np.searchsorted(self.fence, hi, side="left")  # fence[page-1] < hi <= fence[page]
        below = np.where(page == 0, -1, (page - 1) * FENCE)  # hi[below] < q
        above = np.where(page == 0, 0, np.minimum(page * FENCE, self.n))  # hi[above] >= q, or the end
        active = np.flatnonzero(above - below > 1)
        while len(active):
            mid = (below[active] + above[active]) // 2
            less = self.hi[mid] < hi[active]
            below[active[less]] = mid[less]
            above[active[~less]] = mid[~less]
            active = active[above[active] - below[active] > 1]
        found = np.zeros(len(hi), dtype=bool)
        inside = np.flatnonzero(above < self.n)
        same = inside[self.hi[above[inside]] == hi[inside]]
        found[same] = self.lo[above[same]] == lo[same]
        for r in same[~found[same]]:  # equal first words: ~never
            k = int(above[r]) + 1
            while k < self.n and self.hi[k] == hi[r] and not found[r]:
                found[r] = self.lo[k] == lo[r]
                k += 1
        return found

    def release(self) -> None:
        """Hand the pages that queries mapped back to the kernel (they stay in the page cache)."""
        self.map.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        del self.hi, self.lo
        self.map.close()


def write_run(
    path: Path, n: int, parts: Iterator[tuple[np.ndarray, np.ndarray]], seed: int
) -> tuple[tuple[str, str], np.ndarray]:
    """Write the run ``(2, n)`` from its ``(hi, lo)`` chunks, in order: a temporary file, fsync,
    rename, fsync of the directory. Returns its checksums and its fence (every :data:`FENCE`-th
    ``hi`` word). The chunks are written as they are (no copy)."""
    header = _header(n)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    sums = [xxhash.xxh3_64(seed=seed), xxhash.xxh3_64(seed=seed)]
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.pwrite(fd, header, 0)
        at, fence = 0, []
        for hi, lo in parts:
            hi, lo = np.ascontiguousarray(hi, dtype="<i8"), np.ascontiguousarray(lo, dtype="<i8")
            _write_all(fd, hi, len(header) + 8 * at)
            _write_all(fd, lo, len(header) + 8 * (n + at))
            sums[0].update(hi.data)
            sums[1].update(lo.data)
            fence.append(hi[-at % FENCE :: FENCE].astype(np.int64))
            at += len(hi)
        if at != n:
            raise AssertionError(f"a run of {n} keys got {at}")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_directory(path.parent)
    return (sums[0].hexdigest(), sums[1].hexdigest()), (np.concatenate(fence) if fence else np.zeros(0, np.int64))


def _write_all(fd: int, words: np.ndarray, offset: int) -> None:
    """``os.pwrite`` of the array's bytes, whole (a write may stop short; no copy of the array)."""
    view = words.data.cast("B")
    while len(view):
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


class _Cancelled(Exception):
    """A merge given up by :meth:`RunStack.close`."""


def _unless(
    cancel: threading.Event, parts: Iterator[tuple[np.ndarray, np.ndarray]]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``parts``, until ``cancel`` is set (then :class:`_Cancelled` is raised, between two chunks)."""
    for part in parts:
        if cancel.is_set():
            raise _Cancelled
        yield part


def merged(older: Run, newer: Run, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The keys of two runs in ``hi`` order, in chunks of about ``size`` (read from the files)."""
    a_chunks, b_chunks = older.chunks(size), newer.chunks(size)
    a = next(a_chunks, None)
    b = next(b_chunks, None)
    while a is not None or b is not None:
        if a is None or b is None:
            rest = a if a is not None else b
            assert rest is not None
            yield rest
            a = next(a_chunks, None) if a is not None else None
            b = next(b_chunks, None) if b is not None else None
            continue
        limit = min(a[0][-1], b[0][-1])
        i = int(np.searchsorted(a[0], limit, side="right"))
        j = int(np.searchsorted(b[0], limit, side="right"))
        yield merge_runs((a[0][:i], a[1][:i]), (b[0][:j], b[1][:j]))  # (placed, not sorted: equal words older first)
        a = (a[0][i:], a[1][i:]) if i < len(a[0]) else next(a_chunks, None)
        b = (b[0][j:], b[1][j:]) if j < len(b[0]) else next(b_chunks, None)


class RunStack:
    """A key store's runs on disk, oldest (largest) first, under its ``budget``: each spill is written as a
    run and merged size-tiered (a run at least half its elder's size merges into it, in chunks of
    :attr:`chunk` keys read from the files) in a background thread while queries go on through the runs as
    they are (:meth:`settle` swaps a finished merge in; the next spill waits for it); membership goes through
    every run in slices of
    :attr:`query_step` queries, after each of which the maps' pages are handed back once they pass
    ``map_limit / 2`` (see :mod:`.keystore`)."""

    def __init__(self, directory: Path, identity: bytes, budget: int) -> None:
        self.directory, self.identity, self.budget = directory, identity, budget
        self.runs: list[Run] = []
        self.seq = 0
        """The highest run number used."""
        self.baseline: int | None = None
        self.releases = 0
        self.merges = 0
        self._merging: tuple[Future[Run], Run, Run, threading.Event] | None = None
        """The merge under way: its result, its inputs (the last two runs) and what cancels it."""

    @property
    def map_limit(self) -> int:
        return self.budget // 4

    @property
    def query_step(self) -> int:
        """Queries per slice of a membership test: each touches at most :data:`QUERY_PAGES` pages of a
        run's map, so a slice adds at most ``map_limit / 2`` (or :data:`MIN_QUERY_STEP`'s fixed 24 MiB at
        budgets below 96 MiB) to the pages the maps hold before they are handed back."""
        return max(MIN_QUERY_STEP, self.map_limit // (2 * QUERY_PAGES * _PAGE))

    @property
    def chunk(self) -> int:
        """Keys per chunk of a merge: its buffers (inputs, output, order) stay below ``budget / 16``."""
        return max(FENCE, self.budget // 16 // 64)

    @property
    def disk_bytes(self) -> int:
        return sum(16 * r.n for r in self.runs)

    def seed(self, tasks: tuple[int, int]) -> int:
        """The checksum seed of a run of tasks ``tasks[0] .. tasks[1]-1``: the identity and the range."""
        return xxhash.xxh3_64_intdigest(self.identity + b"".join(int(t).to_bytes(8, "little") for t in tasks))

    def find(self, hi: np.ndarray, lo: np.ndarray, found: np.ndarray) -> None:
        """Set ``found`` for the keys ``(hi, lo)`` (sorted by ``hi``) not yet found that a run holds."""
        step = self.query_step
        for run in self.runs:
            ask = np.flatnonzero(~found)
            for a in range(0, len(ask), step):  # each slice faults in at most map_limit / 2 of pages
                part = ask[a : a + step]
                found[part] = run.contains(hi[part], lo[part])
                self._bound_maps()

    def _bound_maps(self) -> None:
        """Hand back the pages the maps hold once they pass :attr:`map_limit`: measured as the growth of
        this process's file-backed resident pages (``/proc/self/statm``) since the last release."""
        now = file_resident()
        # (the lowest level seen: pages others in this process hand back, the plan's reader, count for it)
        self.baseline = now if self.baseline is None else min(self.baseline, now)
        if now - self.baseline > self.map_limit // 2:
            for run in self.runs:
                run.release()
            self.releases += 1
            self.baseline = file_resident()

    def push(self, tasks: tuple[int, int], hi: np.ndarray, lo: np.ndarray, listed: Container[str]) -> None:
        """Write the keys ``(hi, lo)`` of tasks ``tasks`` (sorted by ``hi``) as the newest run, once the merges
        under way are done and swapped in, then start the merge the size tiers call for; merged runs' files
        go unless ``listed`` (``keys.json`` still names them)."""
        while self._merging is not None:
            self.settle(listed, wait=True)
        self.runs.append(self._write(self._next_path(), tasks, len(hi), iter([(hi, lo)])))
        del hi, lo
        self._start_merge()

    def _start_merge(self) -> None:
        """Merge the last two runs in the background if the newer is at least half the older's size."""
        if self._merging is not None or len(self.runs) < 2 or 2 * self.runs[-1].n < self.runs[-2].n:
            return
        older, newer = self.runs[-2], self.runs[-1]
        future: Future[Run] = Future()
        cancel = threading.Event()
        parts = _unless(cancel, merged(older, newer, self.chunk))
        path, span, n = self._next_path(), (older.tasks[0], newer.tasks[1]), older.n + newer.n

        def merge() -> None:
            try:
                future.set_result(self._write(path, span, n, parts))
            except BaseException as exc:  # (given to whoever settles or closes)
                future.set_exception(exc)

        # a daemon: an exit that skips close() (kill, crash) leaves at most a temporary file, which resume removes
        threading.Thread(target=merge, name="unitarium-merge", daemon=True).start()
        self._merging = (future, older, newer, cancel)

    def settle(self, listed: Container[str], *, wait: bool = False) -> None:
        """Swap a finished merge in for its two inputs (``wait``: wait for it to finish), whose files go
        unless ``listed``, then start the next merge the tiers call for. Raises the merge's
        :class:`StorageError` (its inputs stay)."""
        if self._merging is None or not (wait or self._merging[0].done()):
            return
        future, older, newer, _ = self._merging
        self._merging = None
        run = future.result()
        self.runs[-2:] = [run]  # (its inputs are still the last two: nothing is pushed while a merge runs)
        self.merges += 1
        for old in (older, newer):
            old.close()
            if old.name not in listed:
                old.path.unlink()
        self._start_merge()

    def _next_path(self) -> Path:
        self.seq += 1
        return self.directory / f"run-{self.seq:06d}.npy"

    def _write(self, path: Path, tasks: tuple[int, int], n: int, parts: Iterator[tuple[np.ndarray, np.ndarray]]) -> Run:
        try:
            sums, fence = write_run(path, n, parts, self.seed(tasks))
        except OSError as exc:
            raise StorageError(
                f"cannot write the key store {path_text(self.directory)}: {exc.strerror}; free some space, or give "
                "--memory more room (nothing committed is lost)"
            ) from exc
        return Run(path, tasks, n, sums, fence)

    def close(self) -> None:
        """Unmap every run (the files stay); a merge under way is cancelled at its next chunk (a stop does
        not wait for it) and its run dropped, never listed."""
        if self._merging is not None:
            future, _, _, cancel = self._merging
            self._merging = None
            cancel.set()
            with contextlib.suppress(Exception):  # (cancelled or failed: write_run removed its temporary file)
                run = future.result()
                run.close()
                run.path.unlink()
        for run in self.runs:
            run.close()
        self.runs = []


def read_listing(
    directory: Path,
    identity: bytes,
    committed: int,
    records_before: Callable[[int], int],
    share: bool,
    seed: Callable[[tuple[int, int]], int],
) -> tuple[list[Run], int, int, int] | None:
    """The runs ``keys.json`` in ``directory`` lists, checked (see :meth:`.keystore.KeyStore.open`):
    ``(runs, tasks covered, keys, highest run number)``; None: no listing and no run. Raises
    :class:`StoreRejected` (what is wrong) when they cannot be trusted (the runs it opened are closed
    again); ``seed(tasks)`` seeds a run's checksums."""
    try:
        listing = json.loads((directory / LISTING).read_text())
    except FileNotFoundError:
        if any(RUN.fullmatch(p.name) for p in directory.iterdir()):
            raise StoreRejected(f"its {LISTING} is missing") from None
        return None
    if not isinstance(listing, dict) or listing.get("format") != STORE_FORMAT:
        raise StoreRejected(f"its {LISTING} is not a key store listing")
    if listing.get("identity") != identity.hex():
        raise StoreRejected("it belongs to another dataset or spec")
    tasks, total = int(listing["tasks"]), int(listing["keys"])
    if tasks > committed:
        raise StoreRejected(f"it covers {tasks} tasks and the dataset has {committed} committed")
    if total > records_before(tasks) or (total != records_before(tasks) and not share):
        raise StoreRejected(f"it holds {total} keys and the dataset's first {tasks} tasks hold other records")
    runs: list[Run] = []
    try:
        start = 0
        for entry in listing["runs"]:
            name, (a, b), n = str(entry["file"]), entry["tasks"], int(entry["keys"])
            if not RUN.fullmatch(name) or a != start or not a < b or n < 1:
                raise StoreRejected(f"its {LISTING} is inconsistent")
            run = Run(directory / name, (int(a), int(b)), n, tuple(entry["xxh3"]))  # type: ignore[arg-type]
            runs.append(run)
            if run.checksums(seed(run.tasks)) != run.sums:
                raise StoreRejected(f"{name} is damaged (checksum mismatch)")
            start = int(b)
        if start != tasks or sum(r.n for r in runs) != total:
            raise StoreRejected(f"its {LISTING} is inconsistent")
    except BaseException:
        for run in runs:
            run.close()
        raise
    seq = max((int(m.group(1)) for p in directory.iterdir() if (m := RUN.fullmatch(p.name))), default=0)
    return runs, tasks, total, seq


def write_listing(directory: Path, identity: bytes, prefix: list[Run], tasks: int) -> None:
    """List the runs ``prefix`` (covering tasks ``0 .. tasks-1``) in ``keys.json``, atomically."""
    listing = {
        "format": STORE_FORMAT,
        "identity": identity.hex(),
        "tasks": tasks,
        "keys": sum(r.n for r in prefix),
        "runs": [{"file": r.name, "tasks": list(r.tasks), "keys": r.n, "xxh3": list(r.sums)} for r in prefix],
    }
    tmp = directory / f".{LISTING}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(listing, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / LISTING)
        fsync_directory(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot write the key store {path_text(directory)}: {exc.strerror}") from exc
