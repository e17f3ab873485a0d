"""Interoperability with other libraries and formats (optional extras, imported lazily)."""

from .._core.convert import as_unitary, unitary_from_qasm_file

__all__ = ["as_unitary", "unitary_from_qasm_file"]
