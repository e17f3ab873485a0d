"""unitarium: datasets of quantum circuits and their unitaries, generated on every core
into one SQLite file or a directory of shards, deduplicated up to global phase, and served
back as numpy arrays (PyTorch batches, Parquet, Qiskit/Cirq/OpenQASM circuits).

>>> import unitarium
>>> spec = unitarium.make_spec(gates="clifford+t", qubits=2, count=1000, length=12, seed=7)
>>> unitarium.generate("data.db", spec)                     # doctest: +SKIP
>>> ds = unitarium.open("data.db"); ds[42].circuit          # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from ._core.circuit import Circuit, Record
    from ._core.gates import PRESETS, STANDARD_GATES, Gate, load_gate_file, parse_gate, parse_gates
    from ._core.gateset import GateSet, Move
    from ._dataset import Dataset, open
    from ._read.dataset import VerifyReport
    from ._read.labels import LabelsWarning
    from ._read.split import DatasetView
    from ._run.engine import generate
    from ._run.pack import pack
    from ._run.progress import Progress, Summary
    from ._spec.spec import Enumeration, RandomSource, Spec, make_spec
    from .search import Approximation, Match

# The rest is imported on first use (PEP 562), so that a command or a worker that needs one
# part (e.g. ``unitarium synth``: the reader and the search) does not pay for every other part's
# imports (the engines, multiprocessing, exports): ``python -X importtime -m unitarium``.
_LAZY = {
    "Circuit": "._core.circuit",
    "Record": "._core.circuit",
    "PRESETS": "._core.gates",
    "STANDARD_GATES": "._core.gates",
    "Gate": "._core.gates",
    "load_gate_file": "._core.gates",
    "parse_gate": "._core.gates",
    "parse_gates": "._core.gates",
    "GateSet": "._core.gateset",
    "Move": "._core.gateset",
    "Dataset": "._dataset",
    "open": "._dataset",
    "VerifyReport": "._read.dataset",
    "LabelsWarning": "._read.labels",
    "DatasetView": "._read.split",
    "generate": "._run.engine",
    "pack": "._run.pack",
    "Progress": "._run.progress",
    "Summary": "._run.progress",
    "Enumeration": "._spec.spec",
    "RandomSource": "._spec.spec",
    "Spec": "._spec.spec",
    "make_spec": "._spec.spec",
    "Approximation": ".search",
    "Match": ".search",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'unitarium' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
