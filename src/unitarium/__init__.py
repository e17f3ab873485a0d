"""unitarium: datasets of quantum circuits and their unitaries, generated on every core
into one SQLite file or a directory of shards, deduplicated up to global phase, and served
back as numpy arrays (PyTorch batches, Parquet, Qiskit/Cirq/OpenQASM circuits).

>>> import unitarium
>>> spec = unitarium.make_spec(gates="clifford+t", qubits=2, count=1000, length=12, seed=7)
>>> unitarium.generate("data.db", spec)                     # doctest: +SKIP
>>> ds = unitarium.open("data.db"); ds[42].circuit          # doctest: +SKIP
"""

from ._errors import (
    DatasetBusyError,
    DatasetDamagedError,
    DatasetError,
    DatasetMissingError,
    GateFileError,
    Interrupted,
    MissingOptionalLibraryError,
    NotADatasetError,
    RecordIndexError,
    SchemaVersionError,
    SearchCostError,
    SpecError,
    SpecMismatchError,
    StorageError,
    UnitariumError,
    WorkerError,
)
from .core.circuit import Circuit, Record
from .core.gates import PRESETS, STANDARD_GATES, Gate, load_gate_file, parse_gate, parse_gates
from .core.gateset import GateSet, Move
from .dataset import Dataset, open
from .read.dataset import VerifyReport
from .read.split import DatasetView
from .run.engine import generate
from .run.pack import pack
from .run.progress import Progress, Summary
from .search import Approximation, Match
from .spec.spec import Enumeration, RandomSource, Spec, make_spec

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "STANDARD_GATES",
    "Approximation",
    "Circuit",
    "Dataset",
    "DatasetBusyError",
    "DatasetDamagedError",
    "DatasetError",
    "DatasetMissingError",
    "DatasetView",
    "Enumeration",
    "Gate",
    "GateFileError",
    "GateSet",
    "Interrupted",
    "Match",
    "MissingOptionalLibraryError",
    "Move",
    "NotADatasetError",
    "Progress",
    "RandomSource",
    "Record",
    "RecordIndexError",
    "SchemaVersionError",
    "SearchCostError",
    "Spec",
    "SpecError",
    "SpecMismatchError",
    "StorageError",
    "Summary",
    "UnitariumError",
    "VerifyReport",
    "WorkerError",
    "__version__",
    "generate",
    "load_gate_file",
    "make_spec",
    "open",
    "pack",
    "parse_gate",
    "parse_gates",
]
