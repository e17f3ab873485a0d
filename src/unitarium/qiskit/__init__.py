"""unitarium inside Qiskit's compiler (``pip install 'unitarium[qiskit]'``): a table's optimal
circuits as a transpiler pass and as plugins ``transpile`` finds by name.

- :class:`OptimalBlocks` ``(table)``: a ``TransformationPass`` replacing each maximal 1- or
  2-qubit block of the table's gates by the table's optimal circuit when cheaper.
- ``transpile(..., unitary_synthesis_method="unitarium", unitary_synthesis_plugin_config={"table": path})``:
  :class:`UnitariumSynthesis`, the table's optimal circuit for each 1- and 2-qubit ``UnitaryGate``.
- ``transpile(..., optimization_method="unitarium", unitary_synthesis_plugin_config={"table": path})``:
  :class:`OptimalBlocksStage`, Qiskit's optimization stage then ``OptimalBlocks``.

See docs/qiskit.md. ``import unitarium`` never imports Qiskit; this module does.
"""

from __future__ import annotations

from .._errors import MissingOptionalLibraryError

try:
    import qiskit  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
    raise MissingOptionalLibraryError("qiskit", "unitarium.qiskit", "qiskit") from exc

from ._table import OptimalTable, cost_key
from .blocks import OptimalBlocks
from .plugin import OptimalBlocksStage, UnitariumSynthesis

__all__ = ["OptimalBlocks", "OptimalBlocksStage", "OptimalTable", "UnitariumSynthesis", "cost_key"]
