"""OpenQASM 2 and 3: writing circuits, reading them back into moves of a gate set.

Writing (:func:`to_qasm`). Version 2 includes the original ``qelib1.inc`` (the one of the
OpenQASM 2 paper, which is what Qiskit's ``qasm2.loads``, Cirq's and pytket's readers know
by default); every gate outside it (``sx sxdg swap cswap iswap ecr``) gets a ``gate``
definition in the file, so the text parses with each reader's default settings. Version 3
includes ``stdgates.inc`` and defines ``sxdg iswap ecr``. Names: ``i`` is written ``id``;
``p`` is ``u1`` (v2) or ``p`` (v3); ``u`` is ``u3`` (v2) or the built-in ``U`` (v3), all
the same matrices. Definitions hold a gate up to global phase (OpenQASM 2 has no global
phase), so a reader's unitary of our text equals ``circuit.unitary()`` up to global phase.

Custom gates are defined too: a one-qubit gate as one ``u3`` (v3: ``U``) from its
Z-Y-Z angles (numpy), a larger one as ``u3``/``cx`` from Qiskit's synthesis (needs
``qiskit``; without it version 2 declares the gate ``opaque`` with a comment saying so, and
version 3 raises :class:`MissingOptionalLibraryError`), angles written to 17 significant
digits. A custom name that OpenQASM or a reader reserves (``u3``, ``gate``, ``CX``...) or
that OpenQASM 2 cannot spell (``Foo``, ``_x``) is written with a ``g_`` prefix or a ``_`` suffix.

Reading (:func:`moves_from_qasm`) parses with Qiskit (``qiskit.qasm2.loads``; OpenQASM 3 with
``qiskit.qasm3.loads``, which needs ``qiskit-qasm3-import``), then matches each gate to a
move by matrix (:mod:`unitarium._core._match`). OpenQASM 2 that relies on Qiskit's
extended ``qelib1.inc`` (``swap`` without a definition, as ``qiskit.qasm2.dumps`` writes)
is read too.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import numpy as np

from .._errors import MissingOptionalLibraryError, SpecError
from .gates import Gate
from .gateset import GateSet

__all__ = ["load_qasm", "moves_from_qasm", "qasm_unitary", "qasm_version", "to_qasm"]

# Gates outside a version's include file: (arguments, body in gates both versions know)
_DEFS = {
    "sx": ("a", "sdg a; h a; sdg a;"),
    "sxdg": ("a", "s a; h a; s a;"),
    "swap": ("a,b", "cx a,b; cx b,a; cx a,b;"),
    "cswap": ("a,b,c", "cx c,b; ccx a,b,c; cx c,b;"),
    "iswap": ("a,b", "s a; s b; h a; cx a,b; cx b,a; h b;"),
    "ecr": ("a,b", "h b; cx a,b; rz(pi/4) b; cx a,b; h b; x a; h b; cx a,b; rz(-pi/4) b; cx a,b; h b;"),
}
_NEEDS_DEF = {2: frozenset(_DEFS), 3: frozenset({"sxdg", "iswap", "ecr"})}
_NAMES = {2: {"i": "id", "p": "u1", "u": "u3"}, 3: {"i": "id", "u": "U"}}
_HEADER = {2: 'OPENQASM 2.0;\ninclude "qelib1.inc";', 3: 'OPENQASM 3.0;\ninclude "stdgates.inc";'}
_U3 = {2: "u3", 3: "U"}

_RESERVED = frozenset(
    " ".join(
        [  # OpenQASM 2 keywords, built-ins and functions; the original and Qiskit's extended qelib1.inc
            "OPENQASM include qreg creg gate opaque barrier measure reset if U CX pi sin cos tan exp ln sqrt",
            "u3 u2 u1 u0 cx id x y z h s sdg t tdg rx ry rz cz cy ch ccx crz cu1 cu3",
            "p u sx sxdg swap cswap iswap ecr crx cry cp csx cu rxx ryy rzz rccx rc3x c3x c3sqrtx c4x r",
            # OpenQASM 3 keywords, types, constants, functions; stdgates.inc
            "defcalgrammar def cal defcal extern box let break continue else end return for while in switch case",
            "default pragma input output const readonly mutable qubit bool bit int uint float angle complex array",
            "void duration stretch gphase inv pow ctrl negctrl dim durationof delay true false tau euler arcsin",
            "arccos arctan log ceiling floor mod popcount rotl rotr sizeof real imag phase cphase",
        ]
    ).split()
)
_SAFE_ANGLE = re.compile(r"(?:pi|\d+\.?\d*|\.\d+|[-+*/()])+")
_HEADER_RE = re.compile(r"(?:\s|//[^\n]*\n|/\*.*?\*/)*OPENQASM\s+(\d+)(?:\.(\d+))?\s*;", re.S)


def _real(value: float) -> str:
    """A float as an OpenQASM 2 real literal (17 significant digits; an exponent needs a point)."""
    text = repr(float(value))
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        mantissa += ".0"
    return mantissa + e + exponent


def _angles(gate: Gate) -> str:
    """``"(pi/4)"`` for ``rz(pi/4)``: the angles as the user wrote them where OpenQASM spells
    them the same, else their values."""
    if "(" not in gate.name:
        return ""
    written = gate.name[len(gate.base) + 1 : -1].split(",")
    return (
        "("
        + ",".join(a if _SAFE_ANGLE.fullmatch(a) else _real(v) for a, v in zip(written, gate.params, strict=True))
        + ")"
    )


def _custom_names(gates: list[Gate]) -> dict[str, str]:
    """The OpenQASM name of each custom gate: its own unless reserved or unspellable."""
    names: dict[str, str] = {}
    taken = set(_RESERVED) | {g.name for g in gates if not g.custom}
    for gate in (g for g in gates if g.custom):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", gate.name):  # gate files allow no other; never write it
            raise SpecError(f"custom gate name {gate.name!r} is not an identifier: it cannot be written as OpenQASM")
        name = gate.name if re.fullmatch(r"[a-z][A-Za-z0-9_]*", gate.name) else "g_" + gate.name
        while name in taken or name.lower() in _RESERVED:
            name += "_"
        names[gate.name] = name
        taken.add(name)
    return names


def _u3_angles(m: np.ndarray) -> tuple[float, float, float]:
    """``(theta, phi, lam)`` with ``u3(theta, phi, lam)`` equal to the 2x2 unitary ``m`` up to global phase."""
    a, b = abs(m[0, 0]), abs(m[1, 0])
    theta = 2 * math.atan2(b, a)
    if b < 1e-12:
        return theta, 0.0, float(np.angle(m[1, 1]) - np.angle(m[0, 0]))
    if a < 1e-12:
        return theta, float(np.angle(m[1, 0]) - np.angle(-m[0, 1])), 0.0
    alpha = np.angle(m[0, 0])
    return theta, float(np.angle(m[1, 0]) - alpha), float(np.angle(-m[0, 1]) - alpha)


def _u3_cx(matrix: np.ndarray, name: str) -> list[tuple[str, tuple[float, ...], tuple[int, ...]]]:
    """``matrix`` (k qubits) as ``u3``/``cx`` gates ``(name, angles, qubits)``, up to global phase."""
    if matrix.shape[0] == 2:
        return [("u3", _u3_angles(matrix), (0,))]
    try:
        from qiskit import QuantumCircuit, transpile
        from qiskit.quantum_info import Operator
    except ImportError as exc:
        raise MissingOptionalLibraryError("qiskit", f"OpenQASM export of the custom gate {name!r}", "qiskit") from exc
    k = matrix.shape[0].bit_length() - 1
    qc = QuantumCircuit(k)
    qc.unitary(matrix, list(range(k)))
    out = transpile(qc, basis_gates=["u3", "cx"], optimization_level=1, seed_transpiler=0)
    if not Operator(out).equiv(Operator(matrix), atol=1e-9):  # a guard: Qiskit's synthesis is exact
        raise SpecError(f"custom gate {name!r} could not be written as u3/cx gates within 1e-9")
    return [
        (i.operation.name, tuple(float(p) for p in i.operation.params), tuple(out.find_bit(q).index for q in i.qubits))
        for i in out.data
    ]


@functools.lru_cache(maxsize=256)  # Gate hashes by identity: one synthesis per gate set, not per circuit
def _synthesis(gate: Gate) -> list[tuple[str, tuple[float, ...], tuple[int, ...]]]:
    return _u3_cx(gate.matrix, gate.name)  # an exception (qiskit missing) is not cached


def _definition(gate: Gate, name: str, version: int) -> str:
    args = [f"q{j}" for j in range(gate.num_qubits)]
    try:
        gates = _synthesis(gate)
    except MissingOptionalLibraryError:
        if version == 3:
            raise
        # `unitarium show` must not fail without qiskit: declare the gate as before, and say why
        hint = "pip install 'unitarium[qiskit]' to define it"
        return f"// {name}: a custom gate on {gate.num_qubits} qubits; {hint}\nopaque {name} {','.join(args)};"
    body = []
    for op, angles, qubits in gates:
        params = "(" + ",".join(_real(a) for a in angles) + ")" if angles else ""
        body.append(f"{_U3[version] if op == 'u3' else op}{params} {','.join(args[q] for q in qubits)};")
    return f"gate {name} {','.join(args)} {{ {' '.join(body)} }}"


def to_qasm(codes: np.ndarray, gateset: GateSet, version: int = 2) -> str:
    """OpenQASM ``version`` (2 or 3) text of the moves ``codes`` of ``gateset``
    (:meth:`Circuit.to_qasm`) on one register ``q`` of ``num_qubits`` qubits; ``q[j]`` is
    unitarium's qubit ``j``, gate arguments in move order."""
    if version not in (2, 3):
        raise SpecError(f"OpenQASM version {version!r} is not supported: use 2 or 3")
    gates = list(gateset.gates)
    custom = _custom_names(gates)
    used = sorted({gateset.moves[int(c)].gate for c in codes})
    lines = [_HEADER[version]]
    for g in used:
        gate = gates[g]
        if gate.custom:
            lines.append(_definition(gate, custom[gate.name], version))
        elif gate.base in _NEEDS_DEF[version]:
            args, body = _DEFS[gate.base]
            lines.append(f"gate {gate.base} {args} {{ {body} }}")
    lines.append(f"qreg q[{gateset.num_qubits}];" if version == 2 else f"qubit[{gateset.num_qubits}] q;")
    names = _NAMES[version]
    for c in codes:
        move = gateset.moves[int(c)]
        gate = gates[move.gate]
        name = custom[gate.name] if gate.custom else names.get(gate.base, gate.base) + _angles(gate)
        lines.append(f"{name} {','.join(f'q[{q}]' for q in move.qubits)};")
    return "\n".join(lines) + "\n"


def qasm_version(text: str) -> int:
    """2 or 3, from the ``OPENQASM`` header (after blank lines and comments). Raises
    :class:`SpecError` when there is none or the version is not 2 or 3."""
    match = _HEADER_RE.match(text)
    if not match:
        raise SpecError("not OpenQASM: the text must start with 'OPENQASM 2.0;' or 'OPENQASM 3.0;'")
    version = int(match.group(1))
    if version not in (2, 3):
        raise SpecError(f"OpenQASM {match.group(1)} is not supported: use OpenQASM 2 or 3")
    return version


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def load_qasm(text: str) -> Any:
    """Parse OpenQASM 2 or 3 ``text`` into a ``qiskit.QuantumCircuit``; a malformed text
    raises :class:`SpecError` with the parser's reason on one line."""
    if not isinstance(text, str):
        raise SpecError(f"OpenQASM must be text (str), got {type(text).__name__}")
    version = qasm_version(text)
    if version == 2:
        try:
            import qiskit.qasm2 as qasm2
        except ImportError as exc:
            raise MissingOptionalLibraryError("qiskit", "reading OpenQASM 2", "qiskit") from exc
        try:
            return qasm2.loads(text)  # the file's own definitions, exactly
        except qasm2.QASM2ParseError:
            pass
        try:  # Qiskit's extended qelib1.inc (swap, sx... used without definitions, as qasm2.dumps writes)
            return qasm2.loads(text, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
        except qasm2.QASM2ParseError as exc:
            raise SpecError(f"malformed OpenQASM 2: {_one_line(exc)}") from exc
    try:
        import qiskit.qasm3 as qasm3
        import qiskit_qasm3_import  # noqa: F401
    except ImportError as exc:
        raise MissingOptionalLibraryError("qiskit-qasm3-import", "reading OpenQASM 3", "qasm3") from exc
    try:
        return qasm3.loads(text)
    # the importer raises its own, openqasm3's and ANTLR's error types: any is a malformed text
    except Exception as exc:
        raise SpecError(f"malformed OpenQASM 3: {_qasm3_reason(exc)}") from exc


def _qasm3_reason(exc: BaseException) -> str:
    """One line from the importer's error: openqasm3's syntax errors carry no message, only
    an ANTLR exception (in the cause chain) holding the offending token."""
    seen: list[BaseException] = []
    pending: list[object] = [exc]
    while pending:
        x = pending.pop(0)
        if not isinstance(x, BaseException) or x in seen:
            continue
        seen.append(x)
        token = getattr(x, "offendingToken", None)
        if token is not None and getattr(token, "line", None) is not None:
            return f"{token.line},{token.column}: syntax error at {token.text!r}"
        pending.extend([x.__cause__, x.__context__, *x.args])
    messages = [m for m in (_one_line(x) for x in seen) if m not in ("None", type(x).__name__)]
    return messages[0] if messages else "syntax error"


def moves_from_qasm(text: str, gateset: GateSet) -> np.ndarray:
    """The move codes (int64) of ``gateset`` that OpenQASM 2 or 3 ``text`` is (one register or
    several, concatenated in declaration order as qubits 0, 1, ...). Raises :class:`SpecError`
    on malformed text, a gate not in the gate set, a register of another size, or measurements."""
    from .qiskit import moves_from_qiskit

    return moves_from_qiskit(load_qasm(text), gateset)


def qasm_unitary(text: str, num_qubits: int) -> np.ndarray:
    """The ``(d, d)`` complex128 unitary of OpenQASM 2 or 3 ``text`` (any gates), in
    unitarium's (Qiskit's) qubit order."""
    from .qiskit import qiskit_unitary

    return qiskit_unitary(load_qasm(text), num_qubits)
