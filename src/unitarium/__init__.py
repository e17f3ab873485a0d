"""unitarium: datasets of quantum circuits and their unitaries, generated on every core
into one SQLite file or a directory of shards, deduplicated up to global phase, and served
back as numpy arrays (PyTorch batches, Parquet, Qiskit/Cirq/OpenQASM circuits).

>>> import unitarium
>>> spec = unitarium.make_spec(gates="clifford+t", qubits=2, count=1000, length=12, seed=7)
>>> unitarium.generate("data.db", spec)                     # doctest: +SKIP
>>> ds = unitarium.open("data.db"); ds[42].circuit          # doctest: +SKIP
"""

from ._core.circuit import Circuit, Record
from ._core.gates import PRESETS, STANDARD_GATES, Gate, load_gate_file, parse_gate, parse_gates
from ._core.gateset import GateSet, Move
from ._dataset import Dataset, open
from ._errors import (
    ClusterError,
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
from ._read.dataset import VerifyReport
from ._read.labels import LabelsWarning
from ._read.split import DatasetView
from ._run.engine import generate
from ._run.pack import pack
from ._run.progress import Progress, Summary
from ._spec.spec import Enumeration, RandomSource, Spec, make_spec
from .search import Approximation, Match

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "STANDARD_GATES",
    "Approximation",
    "Circuit",
    "ClusterError",
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
    "LabelsWarning",
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
