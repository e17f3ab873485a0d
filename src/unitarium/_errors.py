"""The exceptions unitarium raises.

Every error derives from :class:`UnitariumError`; the leaves also derive from the
builtin they resemble, so ``except ValueError`` keeps working::

    UnitariumError
    ├── SpecError(ValueError)            bad gate set, qubits, counts, lengths, angles
    │   ├── GateFileError                a custom gate file that cannot be used
    │   └── SearchCostError              a search that would not end in reasonable time
    ├── DatasetError                     a file that cannot be used as a dataset
    │   ├── NotADatasetError(ValueError) not SQLite, or SQLite but not ours
    │   ├── DatasetDamagedError(ValueError) ours, but damaged: a failed checksum, a truncated,
    │   │                                tampered or corrupt file, a foreign or swapped segment
    │   ├── SchemaVersionError           written by a newer unitarium
    │   ├── SpecMismatchError(ValueError) resuming with a different spec
    │   ├── DatasetBusyError             another process is writing the file
    │   ├── DatasetMissingError(FileNotFoundError)
    │   └── StorageError(OSError)        disk full, unwritable path, I/O error
    ├── RecordIndexError(IndexError)     a record id outside the dataset
    ├── WorkerError                      a worker process failed or died
    ├── ClusterError(ConnectionError)    a cluster (Ray) that cannot be reached or has no CPUs
    ├── Interrupted                      stopped by SIGINT/SIGTERM; committed work kept
    └── MissingOptionalLibraryError(ImportError)

Messages name the offending value and say how to fix it. The CLI prints them as one
line on stderr and exits with status 2 (130 for :class:`Interrupted`).
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "DatasetBusyError",
    "DatasetDamagedError",
    "DatasetError",
    "DatasetMissingError",
    "GateFileError",
    "Interrupted",
    "MissingOptionalLibraryError",
    "NotADatasetError",
    "RecordIndexError",
    "SchemaVersionError",
    "SearchCostError",
    "SpecError",
    "SpecMismatchError",
    "StorageError",
    "UnitariumError",
    "WorkerError",
]


class UnitariumError(Exception):
    """Base class of every error unitarium raises on purpose."""


class SpecError(UnitariumError, ValueError):
    """The dataset specification (gates, qubits, source, dtype...) is invalid."""


class GateFileError(SpecError):
    """A custom gate file is unreadable, malformed, or defines a non-unitary gate."""


class SearchCostError(SpecError):
    """A search whose estimated cost exceeds its limit (``max_pairs``): refused before it starts."""


class DatasetError(UnitariumError):
    """A dataset file cannot be opened or written as asked."""


class NotADatasetError(DatasetError, ValueError):
    """The file is not SQLite, or is SQLite but was not written by unitarium."""


class DatasetDamagedError(DatasetError, ValueError):
    """The dataset is unitarium's but damaged: a block that fails its checksum, a truncated or
    corrupt file (SQLITE_CORRUPT), tampered tables or schema, a task list that is not the committed
    prefix, a foreign, swapped or resized segment. Never served; restore it or regenerate it.
    Not a :class:`NotADatasetError` (that is a file that never was a dataset); a ``ValueError``
    like it, so code that caught damage as ``ValueError`` before this class existed still does."""


class SchemaVersionError(DatasetError):
    """The file was written by a newer unitarium (higher schema version)."""


class SpecMismatchError(DatasetError, ValueError):
    """The file holds a dataset of another spec; resuming it with this one is refused."""


class DatasetBusyError(DatasetError):
    """Another process holds the write lock of the dataset."""


class DatasetMissingError(DatasetError, FileNotFoundError):
    """The dataset file does not exist."""


class StorageError(DatasetError, OSError):
    """The storage failed: disk full, unwritable path, I/O error."""


class RecordIndexError(UnitariumError, IndexError):
    """A record id is outside the dataset."""


class WorkerError(UnitariumError):
    """A worker process raised or died; the dataset stays resumable."""


class ClusterError(UnitariumError, ConnectionError):
    """The cluster an engine runs on cannot be used: an unreachable Ray address, a cluster with no
    CPUs. Nothing was written; fix the address or start the cluster and re-run."""


class Interrupted(UnitariumError):
    """The run was stopped by a signal; everything committed is kept."""


class MissingOptionalLibraryError(UnitariumError, ImportError):
    """A feature needs an optional library that is not installed."""

    def __init__(self, library: str, feature: str, extra: str) -> None:
        super().__init__(f"{feature} needs {library}, which is not installed: pip install 'unitarium[{extra}]'")
        self.library = library
        self.extra = extra
