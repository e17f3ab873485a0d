"""One entry point from anything that names a unitary to the matrix, for ``ds.lookup(x)``.

:func:`as_unitary` accepts a matrix, a unitarium :class:`~unitarium.Circuit`, a Qiskit
``QuantumCircuit``, a Cirq circuit or OpenQASM 2/3 text, and returns the ``(d, d)``
complex128 matrix in unitarium's convention (Qiskit's little-endian qubit order; see
:mod:`unitarium._core.cirq` for how Cirq's qubits map). Circuits may use any gates, not
only the gate set's: only the register size is taken from ``gateset``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._errors import SpecError
from ._match import check_unitary
from .gateset import GateSet
from .inputs import read_input

__all__ = ["as_unitary", "unitary_from_qasm_file"]


def as_unitary(x: Any, gateset: GateSet | int, *, atol: float = 1e-4) -> np.ndarray:
    """The ``(d, d)`` complex128 unitary named by ``x``, ``d = 2**n`` for the gate set's (or
    the given) ``n`` qubits.

    ``x``: an array-like ``(d, d)`` matrix (checked finite and unitary: ``|U^dag U - I| <= atol``
    entrywise; loose enough for complex64 data and small noise), a
    unitarium ``Circuit`` on ``n`` qubits, a ``qiskit.QuantumCircuit`` on ``n`` qubits
    (``Operator(x).data``), a ``cirq.Circuit`` (``LineQubit(j)`` is qubit ``j``), or OpenQASM
    2/3 text (a ``str`` starting with its ``OPENQASM`` line). Raises :class:`SpecError` for
    anything else, a size that does not fit, or a non-unitary matrix or instruction.
    """
    from .circuit import Circuit
    from .cirq import cirq_unitary, is_cirq_circuit
    from .qasm import qasm_unitary
    from .qiskit import is_qiskit_circuit, qiskit_unitary

    n = gateset if isinstance(gateset, int) else gateset.num_qubits
    if isinstance(x, Circuit):
        if x.gateset.num_qubits != n:
            raise SpecError(
                f"the circuit is on {x.gateset.num_qubits} qubit(s) but the gate set has {n}: use one on its register"
            )
        return x.unitary()
    if isinstance(x, str):
        return qasm_unitary(x, n)
    if isinstance(x, bytes | os.PathLike):
        raise SpecError("pass OpenQASM as text (str); for a file use unitary_from_qasm_file(path, gateset)")
    if is_qiskit_circuit(x):
        return qiskit_unitary(x, n)
    if is_cirq_circuit(x):
        return cirq_unitary(x, n)
    return _matrix(x, n, atol=atol)


def _matrix(x: Any, n: int, *, atol: float) -> np.ndarray:
    d = 1 << n
    if not (isinstance(atol, int | float) and 0 <= atol < float("inf")):
        raise SpecError(f"atol {atol!r} must be a finite number >= 0")
    try:
        arr = np.asarray(x)
        if arr.dtype.kind in "USVMm":  # text, bytes, structured, dates: numpy would parse "1" as 1
            raise TypeError(f"an array of {arr.dtype}")
        u = arr.astype(np.complex128)
    except (TypeError, ValueError) as exc:
        of = f" of {x.dtype}" if isinstance(x, np.ndarray) else ""
        raise SpecError(
            f"cannot use a {type(x).__name__}{of} as a unitary: pass a ({d}, {d}) matrix, a Circuit, "
            "a Qiskit or Cirq circuit, or OpenQASM text"
        ) from exc
    if u.shape != (d, d):
        raise SpecError(f"{n} qubit(s) need a {d}x{d} matrix, got shape {u.shape}")
    check_unitary(u, "the matrix", atol=atol)
    return u


def unitary_from_qasm_file(path: str | os.PathLike[str], gateset: GateSet | int) -> np.ndarray:
    """:func:`as_unitary` of the OpenQASM 2/3 file at ``path`` (UTF-8). Raises
    :class:`SpecError` on an unreadable file or malformed OpenQASM (one line, naming the file)."""
    raw = read_input(path, "OpenQASM file")  # never blocks on a FIFO
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"OpenQASM file {str(path)!r} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    try:
        return as_unitary(text, gateset)
    except SpecError as exc:
        raise SpecError(f"{str(path)!r}: {exc}") from exc
