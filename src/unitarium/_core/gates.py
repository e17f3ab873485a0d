"""Gates: the standard library, angle parsing, presets and custom gate files.

Matrices follow Qiskit's conventions exactly: a k-qubit gate applied to qubits
``(q0, q1, ...)`` has the matrix whose row/column index is ``b0 + 2*b1 + 4*b2 ...``
where ``b_j`` is the state of ``q_j`` (little-endian; the first qubit argument is
the least significant bit). So ``cx 0 1`` has control 0, target 1, and matrix
``[[1,0,0,0],[0,0,0,1],[0,0,1,0],[0,1,0,0]]``.

All matrices here are ``complex128`` arrays of shape ``(2**k, 2**k)``.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import json
import math
import operator
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import GateFileError, SpecError
from .inputs import read_input

__all__ = [
    "ALIASES",
    "PRESETS",
    "STANDARD_GATES",
    "Gate",
    "load_gate_file",
    "parse_gate",
    "parse_gates",
    "unitarity_error",
]

_S2 = 1 / math.sqrt(2)


@dataclass(frozen=True, eq=False)
class Gate:
    """A named gate: ``name`` as written in circuits (``"rz(pi/4)"``), its qubit count,
    its matrix (complex128, Qiskit's little-endian convention), and whether it came
    from a custom gate file."""

    name: str
    num_qubits: int
    matrix: np.ndarray
    custom: bool = False

    @property
    def base(self) -> str:
        """The name without its angle arguments: ``"rz"`` for ``"rz(pi/4)"``."""
        return self.name.split("(", 1)[0]

    @property
    def params(self) -> tuple[float, ...]:
        """The parsed angle arguments, in radians."""
        if "(" not in self.name:
            return ()
        return tuple(parse_angle(a) for a in _split_args(self.name))


def _controlled(u: np.ndarray) -> np.ndarray:
    """Controlled-U with the control on the first (least significant) qubit."""
    m = np.eye(4, dtype=complex)
    m[np.ix_([1, 3], [1, 3])] = u
    return m


def _u(theta: float, phi: float, lam: float) -> np.ndarray:
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    return np.array([[c, -np.exp(1j * lam) * s], [np.exp(1j * phi) * s, np.exp(1j * (phi + lam)) * c]])


def _fixed() -> dict[str, np.ndarray]:
    x = np.array([[0, 1], [1, 0]], dtype=complex)
    y = np.array([[0, -1j], [1j, 0]])
    h = np.array([[_S2, _S2], [_S2, -_S2]], dtype=complex)
    sx = 0.5 * np.array([[1 + 1j, 1 - 1j], [1 - 1j, 1 + 1j]])
    t = np.exp(1j * math.pi / 4)
    ccx = np.eye(8, dtype=complex)
    ccx[[3, 7]] = ccx[[7, 3]]
    cswap = np.eye(8, dtype=complex)
    cswap[[3, 5]] = cswap[[5, 3]]
    ecr = _S2 * np.array([[0, 1, 0, 1j], [1, 0, -1j, 0], [0, 1j, 0, 1], [-1j, 0, 1, 0]])
    return {
        "i": np.eye(2, dtype=complex),
        "x": x,
        "y": y,
        "z": np.diag([1, -1]).astype(complex),
        "h": h,
        "s": np.diag([1, 1j]),
        "sdg": np.diag([1, -1j]),
        "t": np.diag([1, t]),
        "tdg": np.diag([1, np.conj(t)]),
        "sx": sx,
        "sxdg": sx.conj().T,
        "cx": _controlled(x),
        "cy": _controlled(y),
        "cz": np.diag([1, 1, 1, -1]).astype(complex),
        "ch": _controlled(h),
        "swap": np.eye(4, dtype=complex)[[0, 2, 1, 3]],
        "iswap": np.array([[1, 0, 0, 0], [0, 0, 1j, 0], [0, 1j, 0, 0], [0, 0, 0, 1]]),
        "ecr": ecr,
        "ccx": ccx,
        "cswap": cswap,
    }


_PARAMETRIC: dict[str, tuple[int, Callable[..., np.ndarray]]] = {
    "rx": (1, lambda a: _u(a, -math.pi / 2, math.pi / 2)),
    "ry": (1, lambda a: _u(a, 0.0, 0.0)),
    "rz": (1, lambda a: np.diag([np.exp(-0.5j * a), np.exp(0.5j * a)])),
    "p": (1, lambda a: np.diag([1, np.exp(1j * a)])),
    "u": (3, _u),
}

STANDARD_GATES: dict[str, np.ndarray] = _fixed()
"""The fixed standard gates by name (matrices as Qiskit defines them)."""

PRESETS: dict[str, tuple[str, ...]] = {
    "clifford": ("h", "s", "cx"),
    "clifford+t": ("h", "s", "t", "tdg", "cx"),
}
"""Named gate sets usable wherever a gate list is expected."""

ALIASES: dict[str, str] = {
    "id": "i",  # OpenQASM 2/3, Qiskit
    "cnot": "cx",  # Cirq, Quil, pyzx
    "ccnot": "ccx",  # Quil
    "toffoli": "ccx",  # Cirq
    "fredkin": "cswap",  # Cirq
    "sdag": "sdg",
    "tdag": "tdg",
    "v": "sx",  # sqrt(X), Qiskit's SXGate (also called V)
    "vdg": "sxdg",
    "sxdag": "sxdg",
    "phase": "p",  # OpenQASM 3, Qiskit's PhaseGate
    "u1": "p",  # OpenQASM 2 (qelib1.inc)
    "u3": "u",  # OpenQASM 2 (qelib1.inc)
}
"""Other spellings of standard gates (``cnot``, ``toffoli``, ``phase(pi/4)``...) and the canonical
name each stands for: the canonical name is what a spec stores and circuits show, so
``--gates cnot,h`` makes exactly the dataset of ``--gates cx,h``."""

_BINOPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


_IMPLICIT_MUL = re.compile(r"(\d)\s*(pi)\b")
_ANGLE_TEXT = re.compile(r"[0-9A-Za-z_.+\-*/()\s]*")  # Python's parser would also skip a "# comment"


def parse_angle(text: str) -> float:
    """Parse an angle such as ``pi/4``, ``-3*pi/8``, ``0.25`` or ``2pi`` (radians).

    Only numbers, ``pi``, ``+ - * /`` and parentheses are accepted; nothing is
    evaluated as Python. Raises :class:`SpecError` on anything else or a non-finite value.
    """
    src = _IMPLICIT_MUL.sub(r"\1*\2", text.strip())
    try:
        if not _ANGLE_TEXT.fullmatch(src):
            raise ValueError("characters outside arithmetic")
        value = _eval_angle(ast.parse(src, mode="eval").body)
    # ArithmeticError: 1/0, a 400-digit integer; MemoryError: the parser on "-" * 10**5 + "1"
    except (SyntaxError, ValueError, ArithmeticError, RecursionError, MemoryError) as exc:
        raise SpecError(f"malformed angle {text!r}: use numbers, pi, + - * / and ( )") from exc
    if not math.isfinite(value):
        raise SpecError(f"angle {text!r} is not a finite number")
    return value


def _eval_angle(node: ast.expr) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id == "pi":
        return math.pi
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval_angle(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval_angle(node.left), _eval_angle(node.right))
    raise ValueError("unsupported angle syntax")


def _split_args(name: str) -> list[str]:
    inner = name[name.index("(") + 1 : -1]
    return [a for a in (s.strip() for s in inner.split(",")) if a] if inner.strip() else []


def parse_gate(text: str, custom: dict[str, Gate] | None = None) -> Gate:
    """Build a gate from its written name: ``"h"``, ``"rz(pi/4)"``, ``"u(pi/2,0,pi)"``,
    or the name of a gate in ``custom``. Raises :class:`SpecError` naming the problem."""
    stripped = text.strip()
    if custom and stripped in custom:
        return custom[stripped]
    name = _unalias(stripped.lower())
    if name in STANDARD_GATES:
        matrix = STANDARD_GATES[name]
        return Gate(name, int(matrix.shape[0]).bit_length() - 1, matrix)
    match = re.fullmatch(r"([a-z]+)\s*\((.*)\)", name)
    if match and match.group(1) in _PARAMETRIC:
        base = match.group(1)
        arity, build = _PARAMETRIC[base]
        args = _split_args(name)
        if len(args) != arity:
            raise SpecError(f"gate {text!r}: {base} takes {arity} angle(s), got {len(args)}")
        angles = [parse_angle(a) for a in args]
        written = [_IMPLICIT_MUL.sub(r"\1*\2", a).replace(" ", "") for a in args]
        canonical = f"{base}({','.join(written)})"
        return Gate(canonical, 1, np.asarray(build(*angles), dtype=complex))
    if name in _PARAMETRIC:
        raise SpecError(f"gate {text!r} needs fixed angle(s), e.g. {name}(pi/4)")
    known = ", ".join([*STANDARD_GATES, *(f"{p}(angle)" for p in _PARAMETRIC), *sorted(custom or {})])
    hint = _suggestion(stripped, custom or {})
    raise SpecError(f"unknown gate {text!r}{hint}; known gates: {known}; presets: {', '.join(PRESETS)}")


def _unalias(name: str) -> str:
    """``name`` (lower case) with an alias of :data:`ALIASES` replaced by its canonical name,
    angle arguments kept: ``"cnot"`` -> ``"cx"``, ``"phase(pi/4)"`` -> ``"p(pi/4)"``."""
    base, paren, rest = name.partition("(")
    canonical = ALIASES.get(base.strip())
    return name if canonical is None else canonical + paren + rest


_QUBIT_CHARACTERS = "0123456789 \t,_"
_SUGGEST_MAX = 64
"""Longer unknown names get no suggestion (nobody mistypes 64 characters; and no work grows with them)."""


def _suggestion(text: str, custom: dict[str, Gate]) -> str:
    """``" (did you mean 'x'?)"`` for a typo of a gate, alias or preset name (:mod:`difflib`), or
    for a gate written with qubit indices (``h0``, ``cx 0 1``, ``rz(pi/4) 2``): gates are named
    without qubits here. Linear in ``text`` (no regex that could backtrack on hostile input)."""
    if len(text) > _SUGGEST_MAX:
        return ""
    head = text.rstrip(_QUBIT_CHARACTERS)
    if head and head != text and any(c.isdigit() for c in text[len(head) :]):
        with contextlib.suppress(SpecError):
            parse_gate(head, custom)
            return f" (did you mean {head!r}? gates take no qubit indices here: every allowed qubit tuple is used)"
    base, paren, args = text.lower().partition("(")
    close = difflib.get_close_matches(base.strip(), [*STANDARD_GATES, *ALIASES, *_PARAMETRIC, *PRESETS, *custom], n=1)
    if not close:
        return ""
    best = close[0]
    return f" (did you mean {best + paren + args if _unalias(best) in _PARAMETRIC else best!r}?)"


def split_gate_list(text: str) -> list[str]:
    """Split ``"h,rz(pi/4),cx"`` at the commas that are not inside parentheses."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def parse_gates(names: Iterable[str], custom: dict[str, Gate] | None = None) -> list[Gate]:
    """Expand presets and parse each gate; duplicates (same name) are dropped."""
    gates: dict[str, Gate] = {}
    for item in names:
        key = item.strip().lower()
        expanded = PRESETS.get(key, (item,))
        for name in expanded:
            gate = parse_gate(name, custom)
            gates.setdefault(gate.name, gate)
    if not gates:
        raise SpecError("the gate set is empty: pass --gates, e.g. --gates clifford+t")
    return list(gates.values())


def matrix_from_json(entries: object, name: str, *, atol: float = 1e-8) -> np.ndarray:
    """A unitary matrix from nested lists whose entries are numbers, ``[re, im]`` pairs
    or strings such as ``"0.5-0.5j"``; checks shape (2**k square) and unitarity."""
    try:
        rows = [[_complex_entry(e) for e in row] for row in entries]  # type: ignore[attr-defined]
        matrix = np.array(rows, dtype=complex)
    except (TypeError, ValueError) as exc:
        raise GateFileError(f"gate {name!r}: matrix entries must be numbers, [re, im] or 'a+bj'") from exc
    n = matrix.shape[0] if matrix.ndim == 2 else 0
    if matrix.ndim != 2 or matrix.shape != (n, n) or n < 2 or n & (n - 1):
        raise GateFileError(f"gate {name!r}: matrix must be square of size 2, 4, 8...; got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise GateFileError(f"gate {name!r}: matrix has NaN or infinite entries")
    error = unitarity_error(matrix)
    if not error <= atol:  # NaN (an overflow: "1e308+1e308j") is never <= anything
        raise GateFileError(f"gate {name!r} is not unitary (max |U^dag U - I| = {error:.3g} > {atol:g})")
    return matrix


def unitarity_error(matrix: np.ndarray) -> float:
    """``max |U^dag U - I|`` of a square ``matrix`` (``(d, d)``, or a stack ``(n, d, d)``: the
    worst of all); ``inf``/NaN where the product overflows (entries near 1e308), without a
    RuntimeWarning. Compare as ``not error <= atol``: NaN must fail."""
    d = matrix.shape[-1]
    with np.errstate(all="ignore"):
        product = np.conj(np.swapaxes(matrix, -1, -2)) @ matrix
        return float(np.abs(product - np.eye(d)).max(initial=0.0))


def _complex_entry(entry: object) -> complex:
    if isinstance(entry, bool):
        raise TypeError("bool")
    if isinstance(entry, int | float):
        return complex(entry)
    if isinstance(entry, str):
        return complex(entry.replace(" ", ""))
    if isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, int | float) for v in entry):
        return complex(entry[0], entry[1])
    raise TypeError(repr(entry))


def load_gate_file(path: str | os.PathLike[str]) -> dict[str, Gate]:
    """Read custom gates from a JSON or TOML file.

    The file holds a table ``gates`` mapping each name to ``{"matrix": [[...], ...]}``
    (TOML: ``[gates.NAME]`` with ``matrix = [...]``). Names must be new identifiers.
    """
    path = Path(path)
    raw = read_input(path, "gate file", GateFileError)  # never blocks on a FIFO
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    # ValueError: invalid JSON/TOML, a 5000-digit integer; RecursionError: nested 100000 deep
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise GateFileError(f"gate file {str(path)!r} is not valid {path.suffix[1:] or 'JSON'}: {reason}") from exc
    table = data.get("gates") if isinstance(data, dict) else None
    if not isinstance(table, dict) or not table:
        raise GateFileError(f"gate file {str(path)!r} must hold a non-empty table 'gates'")
    return {name: custom_gate(name, body) for name, body in table.items()}


def custom_gate(name: str, body: object) -> Gate:
    """A custom gate from its name and ``{"matrix": ...}``, both checked (gate files, stored specs)."""
    if not isinstance(name, str):
        raise GateFileError(f"custom gate name {name!r} must be a string")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,31}", name):
        raise GateFileError(f"custom gate name {name!r} must be an identifier of at most 32 characters")
    if name.lower() in STANDARD_GATES or name.lower() in _PARAMETRIC or name.lower() in PRESETS:
        raise GateFileError(f"custom gate {name!r} shadows a standard gate or preset: rename it")
    if not isinstance(body, dict) or "matrix" not in body:
        raise GateFileError(f"custom gate {name!r} needs a 'matrix' entry")
    matrix = matrix_from_json(body["matrix"], name)
    return Gate(name, int(matrix.shape[0]).bit_length() - 1, matrix, custom=True)
