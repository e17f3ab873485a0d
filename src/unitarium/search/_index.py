"""The persistent search index: a search table written once beside its dataset, memory-mapped
by every later search (``unitarium index DATA``, :func:`build_index`).

A dataset ``x.db`` (or a directory ``runs/big/``) gets ``x.db.index`` (``runs/big.index``); the
dataset itself is never written. One file::

    prefix (40 bytes)  magic "UNTMSIDX", format version (uint32), 0 (uint32),
                       header offset, header length, xxh3_64 of the header (uint64 each)
    arrays             each at a 4 KiB-aligned offset, little-endian, C order
    header (JSON)      identity, array layout, per-chunk xxh3_64 checksums (at the end)

The header names the dataset it was built from: ``dataset_id`` (``meta.format``, schema 3),
the record count, the SHA-256 of the spec, a digest of a few records' move codes (schema 2
datasets have no id) and a fingerprint of the key scheme of :mod:`._keys` (an index built with
other keys is stale). An index whose prefix, header checksum, size, version or identity does not
match is never used: :func:`open_index` says why and the search loads the table from the
dataset as it would without an index (correct, only slower); ``unitarium index`` rebuilds it.

What is stored, for a complete unique enumeration (``kind = "enumeration"``): exactly the
arrays :func:`._table._load` computes (``lengths``, ``codes``, ``starts``, the unitaries
recomputed in complex128), the packed hash index of :class:`._keys.KeyIndex` and its bucket
directory (:func:`.mitm.directory`); for any other
complete dataset (``kind = "records"``), the stored unitaries as complex128 (what ``nearest``
scores). So answers with the index are bit for bit those without it.

Checksums: each array is cut into chunks (of :data:`_table.CHUNK` rows for the unitaries,
:data:`SMALL_CHUNK` bytes for the rest), each with its xxh3_64 in the header. The small arrays
(codes, lengths, starts, keys; about ``N (L + 22)`` bytes) are checked when the index is opened;
the unitaries (``N d^2 16`` bytes) a chunk at a time, on first read in the process, and read
with ``readinto`` rather than through the map so a full scan does not stay resident. A chunk
that fails its checksum raises :class:`SearchIndexError` (one line: rebuild with ``unitarium
index``).
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import xxhash

from .._errors import DatasetDamagedError, DatasetError
from .._spec.spec import Enumeration
from . import _keys

if TYPE_CHECKING:
    from .._read.dataset import Dataset

__all__ = [
    "FORMAT_VERSION",
    "SearchIndex",
    "SearchIndexError",
    "SearchIndexWarning",
    "index_path",
    "open_index",
    "write_index",
]

FORMAT_VERSION = 2
MAGIC = b"UNTMSIDX"
_PREFIX = struct.Struct("<8sIIQQQ")
ALIGN = 4096
SMALL_CHUNK = 1 << 24
"""Bytes per checksum of the arrays checked when the index is opened."""
ROW_CHUNK = 1 << 16
"""Rows per checksum of the complex64 copy of the unitaries (:data:`._table.CHUNK`, what a scan
reads at once): read and checked on first use."""
CHECK_ROWS = 1 << 12
"""Rows per checksum of the complex128 unitaries (1 MiB of 2-qubit ones): a search that verifies
a few records reads and checks a few of these, not a whole :data:`ROW_CHUNK`."""


class SearchIndexError(DatasetDamagedError):
    """A search index that fails a checksum while it is read: rebuild it with ``unitarium index``."""


class SearchIndexWarning(UserWarning):
    """A search index beside the dataset that cannot be used (stale, foreign, damaged): ignored."""


def index_path(path: str | os.PathLike[str]) -> Path:
    """Where the index of the dataset at ``path`` lives: ``x.db`` -> ``x.db.index``,
    ``runs/big/`` -> ``runs/big.index``."""
    return Path(os.fspath(path).rstrip("/" + os.sep) + ".index")


def _spec_hash(ds: Dataset) -> str:
    return hashlib.sha256(ds.spec.canonical_json().encode()).hexdigest()


def _probe(ds: Dataset, n: int) -> str:
    """xxh3_64 of the move codes of up to four records spread over the dataset."""
    h = xxhash.xxh3_64()
    for i in sorted({0, n // 3, (2 * n) // 3, n - 1} if n else set()):
        flat, _ = ds.codes(i, i + 1)
        h.update(np.ascontiguousarray(flat, dtype="<i8").tobytes())
    return h.hexdigest()


def keys_fingerprint(d: int) -> str:
    """A digest of what :mod:`._keys` makes of fixed unitaries of dimension ``d``: an index
    built with another key scheme (other constants, other code) has another fingerprint."""
    rng = np.random.default_rng(0x1DE7)
    z = rng.normal(size=(32, d, d)) + 1j * rng.normal(size=(32, d, d))
    q, r = np.linalg.qr(z)
    u = q * (np.diagonal(r, axis1=1, axis2=2) / np.abs(np.diagonal(r, axis1=1, axis2=2)))[:, None, :]
    u = np.concatenate([np.eye(d, dtype=np.complex128)[None], u])
    h = xxhash.xxh3_64()
    h.update(_keys.primary_keys(u).astype("<i8").tobytes())
    h.update(_keys.KeyIndex.build([(0, u)], len(u)).packed.astype("<u8").tobytes())
    return h.hexdigest()


def identity(ds: Dataset) -> dict[str, Any]:
    """What an index must carry to be used for ``ds``."""
    n = len(ds)
    fmt = ds.meta["format"]
    return {
        "dataset_id": fmt.get("dataset_id") if isinstance(fmt, dict) else None,
        "records": n,
        "spec_sha256": _spec_hash(ds),
        "probe": _probe(ds, n),
        "keys": keys_fingerprint(ds.gateset.dim),
    }


def searchable_kind(ds: Dataset) -> str:
    """``"enumeration"`` for a unique enumeration (synthesis), else ``"records"`` (nearest)."""
    return "enumeration" if isinstance(ds.spec.source, Enumeration) and ds.spec.unique else "records"


# -- reading ---------------------------------------------------------------------------------


@dataclass(eq=False)
class SearchIndex:
    """An open, checked index file: arrays as read-only memory maps, unitaries read by chunk."""

    path: Path
    header: dict[str, Any]
    _map: mmap.mmap
    _file: io.BufferedReader
    _checked: set[tuple[str, int]] = field(default_factory=set)
    _last: tuple[tuple[int, int], np.ndarray] | None = None

    @property
    def kind(self) -> str:
        return str(self.header["kind"])

    def array(self, name: str) -> np.ndarray:
        """The stored array ``name`` as a read-only view of the map."""
        a = self.header["arrays"][name]
        dtype = np.dtype(a["dtype"])
        count = int(np.prod(a["shape"], dtype=np.int64))
        flat = np.frombuffer(self._map, dtype=dtype, count=count, offset=int(a["offset"]))
        return flat.reshape(a["shape"])

    def check(self, name: str) -> None:
        """Check every chunk of ``name`` against its checksum (raises :class:`SearchIndexError`)."""
        a = self.header["arrays"][name]
        raw = np.frombuffer(self._map, dtype=np.uint8, count=int(a["nbytes"]), offset=int(a["offset"]))
        step = int(a["chunk_bytes"])
        for c, want in enumerate(a["xxh3"]):
            if xxhash.xxh3_64_hexdigest(raw[c * step : (c + 1) * step].data) != want:
                raise self.damaged(f"array {name!r}, chunk {c}")

    def damaged(self, where: str) -> SearchIndexError:
        return SearchIndexError(
            f"search index {str(self.path)!r} is damaged ({where} fails its checksum): "
            f"rebuild it with `unitarium index {_dataset_of(self.path)}` or delete it"
        )

    # the unitaries: (N, d, d) complex128 with a checksum per CHECK_ROWS rows, and a complex64
    # copy ("coarse", what scans read) with one per ROW_CHUNK rows; checked on first read

    def _rows_per_check(self, name: str) -> int:
        a = self.header["arrays"][name]
        row = int(np.prod(a["shape"][1:], dtype=np.int64)) * np.dtype(a["dtype"]).itemsize
        return max(1, int(a["chunk_bytes"]) // max(row, 1))

    def _verify(self, name: str, c: int, data: memoryview) -> None:
        """Check chunk ``c`` of ``name`` (its bytes ``data``) unless this process already did."""
        if (name, c) not in self._checked:
            if xxhash.xxh3_64_hexdigest(data) != self.header["arrays"][name]["xxh3"][c]:
                raise self.damaged(f"{name} chunk {c}")
            self._checked.add((name, c))

    def coarse(self, c: int) -> np.ndarray:
        """Chunk ``c`` (:data:`ROW_CHUNK` rows) of the complex64 copy of the unitaries (what scans
        read: half the bytes), a view of the map checked on first read in the process; hand it
        back with :meth:`release` so that a full scan does not stay resident."""
        a = self.header["arrays"]["coarse"]
        n, rest = int(a["shape"][0]), tuple(int(x) for x in a["shape"][1:])
        lo, hi = c * ROW_CHUNK, min(n, (c + 1) * ROW_CHUNK)
        row = int(np.prod(rest, dtype=np.int64)) * 8
        view = np.frombuffer(self._map, np.complex64, (hi - lo) * row // 8, int(a["offset"]) + lo * row)
        self._verify("coarse", c, view.data.cast("B"))
        return view.reshape(hi - lo, *rest)

    def release(self, c: int) -> None:
        """Drop chunk ``c`` of the complex64 copy from this process's resident pages (they stay
        in the page cache; a later read maps them again)."""
        a = self.header["arrays"]["coarse"]
        row = int(np.prod(a["shape"][1:], dtype=np.int64)) * 8
        start = int(a["offset"]) + c * ROW_CHUNK * row
        length = min(ROW_CHUNK * row, int(a["nbytes"]) - c * ROW_CHUNK * row)
        if length > 0 and start % mmap.PAGESIZE == 0 and hasattr(self._map, "madvise"):
            self._map.madvise(mmap.MADV_DONTNEED, start, length)

    def unitaries(self, start: int, stop: int) -> np.ndarray:
        """The ``(stop - start, d, d)`` complex128 unitaries of rows ``start .. stop - 1``, read
        (not mapped: a full scan does not stay resident) and checked; the last one is kept."""
        if self._last is not None and self._last[0] == (start, stop):
            return self._last[1]
        a = self.header["arrays"]["unitaries"]
        n, d, per = int(a["shape"][0]), int(a["shape"][1]), self._rows_per_check("unitaries")
        lo, hi = start // per * per, min(n, -(-stop // per) * per)
        out = np.empty((max(hi - lo, 0), d, d), dtype=np.complex128)
        if _read_at(self._file, out.data.cast("B"), int(a["offset"]) + lo * d * d * 16) != out.nbytes:
            raise self.damaged(f"unitaries rows {lo}..{hi} (short read)")
        for c in range(lo // per, -(-hi // per)):
            self._verify("unitaries", c, out[c * per - lo : (c + 1) * per - lo].data.cast("B"))
        got = out[start - lo : stop - lo]
        self._last = ((start, stop), got)
        return got

    def take(self, ids: np.ndarray) -> np.ndarray:
        """The unitaries of rows ``ids`` (any order), through the map, their chunks checked."""
        ids = np.asarray(ids, dtype=np.int64)
        per = self._rows_per_check("unitaries")
        whole = self.array("unitaries")
        for c in sorted(set((ids // per).tolist())):
            self._verify("unitaries", c, whole[c * per : (c + 1) * per].data.cast("B"))
        return whole[ids]

    def close(self) -> None:
        self._file.close()


def _read_at(f: io.BufferedReader, buf: memoryview, offset: int) -> int:
    """Read into ``buf`` from ``offset`` of ``f`` (``preadv``: no shared file position), all of it
    unless the file ends first; the bytes read."""
    done = 0
    while done < len(buf):
        if hasattr(os, "preadv"):
            got = os.preadv(f.fileno(), [buf[done:]], offset + done)
        else:  # pragma: no cover - platforms without preadv
            f.seek(offset + done)
            got = f.readinto(buf[done:]) or 0
        if got <= 0:
            break
        done += got
    return done


def _dataset_of(path: Path) -> str:
    text = str(path)
    return text[: -len(".index")] if text.endswith(".index") else text


def open_index(ds: Dataset, kind: str | None = None) -> tuple[SearchIndex | None, str | None]:
    """The index beside ``ds`` if it exists and is ``ds``'s: ``(index, None)``; else ``(None,
    why)`` (``why`` None when there is no index file)."""
    path = index_path(ds.path)
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    try:
        index, why = _open(ds, path, f, kind or searchable_kind(ds))
    except BaseException:
        f.close()
        raise
    if index is None:
        f.close()
    return index, why


def _open(ds: Dataset, path: Path, f: io.BufferedReader, kind: str) -> tuple[SearchIndex | None, str | None]:
    size = os.fstat(f.fileno()).st_size
    raw = f.read(_PREFIX.size)
    if len(raw) < _PREFIX.size:
        return None, f"is damaged (truncated to {size} bytes)"
    magic, version, _, offset, length, digest = _PREFIX.unpack(raw)
    if magic != MAGIC:
        return None, "is not a unitarium search index"
    if version != FORMAT_VERSION:
        return None, f"has format version {version}, this unitarium reads {FORMAT_VERSION}"
    if offset + length != size or length > 1 << 30:
        return None, f"is damaged (truncated or extended: {size} bytes, its header says {offset + length})"
    f.seek(offset)
    text = f.read(length)
    if xxhash.xxh3_64_intdigest(raw[:-8] + text) != digest:
        return None, "is damaged (its header fails its checksum)"
    try:
        header = json.loads(text)
    except ValueError:
        return None, "is damaged (its header is not JSON)"
    if not _valid_layout(header, offset):
        return None, "is damaged (its header describes arrays outside the file)"
    if header.get("kind") != kind:
        return None, f"indexes a dataset of another kind ({header.get('kind')!r})"
    d, names = ds.gateset.dim, set(header["arrays"])
    need = set(ENUMERATION_ARRAYS) if kind == "enumeration" else {"unitaries"}
    if names != need or not _shapes_ok(header, kind, d):
        return None, "is damaged (its arrays are not those of a search index)"
    why = _mismatch(header.get("identity", {}), ds)
    if why is not None:
        return None, why
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    index = SearchIndex(path, header, mm, f)
    for name in header["arrays"]:
        if name not in ("unitaries", "coarse"):
            try:
                index.check(name)
            except SearchIndexError:
                return None, f"is damaged (array {name!r} fails its checksum)"
    return index, None


_DTYPES = {"|u1", "<u2", "<u4", "<i8", "<u8", "<c8", "<c16"}
ENUMERATION_ARRAYS = ("lengths", "codes", "starts", "keys", "directory", "bloom", "unitaries", "coarse")


def _valid_layout(header: Any, end: int) -> bool:
    """Whether every array of ``header`` has a known dtype and lies within ``ALIGN .. end``."""
    try:
        for a in header["arrays"].values():
            size = int(np.prod(a["shape"], dtype=np.int64)) * np.dtype(a["dtype"]).itemsize
            chunks = -(-max(size, 1) // int(a["chunk_bytes"]))
            if not (
                a["dtype"] in _DTYPES
                and all(isinstance(x, int) and x >= 0 for x in a["shape"])
                and size == a["nbytes"]
                and _PREFIX.size <= a["offset"]
                and a["offset"] + size <= end
                and len(a["xxh3"]) == chunks
            ):
                return False
        return True
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError):
        return False


def _shapes_ok(header: dict[str, Any], kind: str, d: int) -> bool:
    """Whether the arrays' shapes agree with each other (and the numbers the search uses)."""
    shape = {name: a["shape"] for name, a in header["arrays"].items()}
    n = shape["unitaries"][0]
    if shape["unitaries"] != [n, d, d]:
        return False
    if kind != "enumeration":
        return True
    numbers = [header.get(key) for key in ("max_length", "row_bits", "directory_bits", "bloom_bits")]
    ints = [x for x in numbers if isinstance(x, int) and not isinstance(x, bool)]
    if len(ints) != 4:
        return False
    big, row_bits, bits, bloom = ints
    return (
        shape["coarse"] == [n, d, d]
        and 3 <= bloom <= 64 - row_bits
        and shape["bloom"] == [1 << (bloom - 3)]
        and shape["lengths"] == [n]
        and shape["codes"] == [n, big]
        and shape["starts"] == [big + 2]
        and 1 <= row_bits <= 63
        and 1 <= bits <= min(30, 64 - row_bits)
        and shape["directory"] == [(1 << bits) + 1]
    )


def _mismatch(have: dict[str, Any], ds: Dataset) -> str | None:
    want = identity(ds)
    if have.get("dataset_id") != want["dataset_id"] or have.get("spec_sha256") != want["spec_sha256"]:
        return "belongs to another dataset"
    if have.get("records") != want["records"]:
        return f"is stale (built for {have.get('records')} records, the dataset has {want['records']:,})"
    if have.get("probe") != want["probe"]:
        return "belongs to another dataset (its records differ)"
    if have.get("keys") != want["keys"]:
        return "is stale (built with another key scheme)"
    return None


def usable_index(ds: Dataset, kind: str) -> SearchIndex | None:
    """:func:`open_index`, warning (:class:`SearchIndexWarning`) about an index that exists
    but cannot be used; None then and when there is none."""
    index, why = open_index(ds, kind)
    if why is not None:
        path = index_path(ds.path)
        warnings.warn(
            f"search index {str(path)!r} {why}: ignored (searching without it); "
            f"rebuild it with `unitarium index {_dataset_of(path)}`",
            SearchIndexWarning,
            stacklevel=3,
        )
    return index


# -- writing ---------------------------------------------------------------------------------


def write_index(ds: Dataset, kind: str, arrays: dict[str, Any], extra: dict[str, Any]) -> Path:
    """Write ``arrays`` (numpy arrays, or :class:`Stream` for the unitaries) as the index of
    ``ds`` beside it, atomically (a temporary file, fsync, rename), and return its path."""
    path = index_path(ds.path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            _write(f, kind, identity(ds), arrays, extra)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"cannot write the search index {str(path)!r}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class Stream:
    """An array written chunk by chunk (``read(start, stop)`` gives rows), never whole in memory."""

    shape: tuple[int, ...]
    read: Any
    dtype: str = "<c16"
    rows: int = ROW_CHUNK
    """Rows per checksum."""

    def chunks(self) -> Iterator[np.ndarray]:
        for a in range(0, self.shape[0], ROW_CHUNK):
            block = np.ascontiguousarray(self.read(a, min(self.shape[0], a + ROW_CHUNK)), dtype=self.dtype)
            yield from (block[b : b + self.rows] for b in range(0, len(block), self.rows))


def _write(f: BinaryIO, kind: str, ident: dict[str, Any], arrays: dict[str, Any], extra: dict[str, Any]) -> None:
    f.write(b"\0" * _PREFIX.size)
    layout: dict[str, Any] = {}
    for name, arr in arrays.items():
        offset = -(-f.tell() // ALIGN) * ALIGN
        f.write(b"\0" * (offset - f.tell()))
        sums: list[str] = []
        if isinstance(arr, Stream):
            dtype, shape, nbytes = np.dtype(arr.dtype), arr.shape, 0
            step = arr.rows * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            for chunk in arr.chunks():
                data = chunk.astype(dtype, copy=False).data.cast("B")
                sums.append(xxhash.xxh3_64_hexdigest(data))
                f.write(data)
                nbytes += len(data)
            if not sums:
                sums.append(xxhash.xxh3_64_hexdigest(b""))
        else:
            a = np.ascontiguousarray(arr)
            a = a.astype(a.dtype.newbyteorder("<"), copy=False)
            dtype, shape, nbytes, step = a.dtype, a.shape, a.nbytes, SMALL_CHUNK
            data = a.data.cast("B")
            for lo in range(0, max(nbytes, 1), step):
                sums.append(xxhash.xxh3_64_hexdigest(data[lo : lo + step]))
            f.write(data)
        layout[name] = {
            "offset": offset,
            "dtype": dtype.str,
            "shape": list(shape),
            "nbytes": nbytes,
            "chunk_bytes": step,
            "xxh3": sums,
        }
    header = {
        "format": "unitarium-search-index",
        "version": FORMAT_VERSION,
        "kind": kind,
        "identity": ident,
        **extra,
        "arrays": layout,
    }
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    offset = f.tell()
    f.write(text)
    head = _PREFIX.pack(MAGIC, FORMAT_VERSION, 0, offset, len(text), 0)[:-8]
    f.seek(0)
    f.write(head + struct.pack("<Q", xxhash.xxh3_64_intdigest(head + text)))
