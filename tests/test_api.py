"""The public API: exported names are pinned (adding or removing one is a deliberate change of this list)."""

from __future__ import annotations

import inspect

import pytest

import unitarium

EXPORTED = [
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
    "PRESETS",
    "Progress",
    "RandomSource",
    "Record",
    "RecordIndexError",
    "STANDARD_GATES",
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


def test_exported_names_are_pinned() -> None:
    assert sorted(unitarium.__all__) == EXPORTED
    assert len(set(unitarium.__all__)) == len(unitarium.__all__)


@pytest.mark.parametrize("name", EXPORTED)
def test_every_exported_name_exists(name: str) -> None:
    assert hasattr(unitarium, name)
    obj = getattr(unitarium, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert obj.__module__.startswith("unitarium."), obj.__module__
        assert obj.__doc__, f"{name} has no docstring"


def test_star_import_gives_exactly_the_exported_names() -> None:
    namespace: dict[str, object] = {}
    exec("from unitarium import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == EXPORTED


def test_public_modules_are_private_behind_the_package() -> None:
    """Everything else lives in underscore modules (plus the CLI), like httpx."""
    import pkgutil

    names = {m.name for m in pkgutil.iter_modules(unitarium.__path__)}
    assert {n for n in names if not n.startswith("_")} == {"cli", "interop", "plot", "qiskit", "search", "torch"}


def test_exception_tree() -> None:
    """The tree drawn in ``unitarium._errors``: one base, leaves that also subclass a builtin."""
    base = unitarium.UnitariumError
    errors = [getattr(unitarium, n) for n in EXPORTED if n.endswith("Error") or n == "Interrupted"]
    assert all(issubclass(e, base) for e in errors)
    assert issubclass(unitarium.SpecError, ValueError)
    assert issubclass(unitarium.GateFileError, unitarium.SpecError)
    for leaf in (
        "NotADatasetError",
        "DatasetDamagedError",
        "SchemaVersionError",
        "SpecMismatchError",
        "DatasetBusyError",
    ):
        assert issubclass(getattr(unitarium, leaf), unitarium.DatasetError)
    assert issubclass(unitarium.NotADatasetError, ValueError)
    # damage is its own class (not a file that never was a dataset), a ValueError as damage always was
    assert issubclass(unitarium.DatasetDamagedError, ValueError)
    assert not issubclass(unitarium.DatasetDamagedError, unitarium.NotADatasetError)
    assert issubclass(unitarium.SpecMismatchError, ValueError)
    assert issubclass(unitarium.DatasetMissingError, FileNotFoundError)
    assert issubclass(unitarium.StorageError, OSError) and issubclass(unitarium.StorageError, unitarium.DatasetError)
    assert issubclass(unitarium.RecordIndexError, IndexError)
    assert issubclass(unitarium.MissingOptionalLibraryError, ImportError)
    assert not issubclass(unitarium.WorkerError, unitarium.DatasetError)
    err = unitarium.MissingOptionalLibraryError("torch", "Dataset.to_torch", "torch")
    assert "pip install 'unitarium[torch]'" in str(err) and err.library == "torch"


def test_version() -> None:
    from importlib.metadata import version

    assert unitarium.__version__ == version("unitarium")
