"""Qiskit transpiler plugins (entry points in pyproject.toml, found by Qiskit without importing
unitarium first):

- ``qiskit.unitary_synthesis`` ``unitarium``: :class:`UnitariumSynthesis`, a
  ``UnitarySynthesisPlugin`` that synthesises 1- and 2-qubit ``UnitaryGate``\\ s from a table,
- ``qiskit.transpiler.optimization`` ``unitarium``: :class:`OptimalBlocksStage`, Qiskit's own
  optimization stage followed by :class:`~unitarium.qiskit.OptimalBlocks`, so that the
  table's optimal circuits survive ``transpile``.

Both read the table from ``unitary_synthesis_plugin_config``::

    transpile(qc, basis_gates=["h", "s", "t", "tdg", "cx"],
              unitary_synthesis_method="unitarium", optimization_method="unitarium",
              unitary_synthesis_plugin_config={"table": "ct8.db"})

Config keys: ``table`` (required: the path of a complete unique enumerated dataset on 1 or 2
qubits), ``strict`` (default False: a unitary the table cannot synthesise goes to Qiskit's
default synthesis; True: raise ``TranspilerError``), ``atol`` (default 1e-5).
"""

from __future__ import annotations

from typing import Any

from qiskit.converters import circuit_to_dag
from qiskit.transpiler import PassManager
from qiskit.transpiler.exceptions import TranspilerError
from qiskit.transpiler.passes.synthesis.default_unitary_synth_plugin import DefaultUnitarySynthesis
from qiskit.transpiler.passes.synthesis.plugin import UnitarySynthesisPlugin
from qiskit.transpiler.preset_passmanagers.plugin import PassManagerStagePlugin

from ._table import OptimalTable, table_from
from .blocks import OptimalBlocks

__all__ = ["OptimalBlocksStage", "UnitariumSynthesis"]

_KEYS = frozenset({"table", "strict", "atol"})


def _config_table(config: dict[str, Any] | None, who: str) -> tuple[OptimalTable, bool]:
    """The table and the strictness named by a plugin config; ``TranspilerError`` when it is
    missing or malformed."""
    if not isinstance(config, dict) or "table" not in config:
        raise TranspilerError(
            f"unitarium: {who} needs unitary_synthesis_plugin_config={{'table': PATH}}, the path of a "
            "unique enumerated dataset (unitarium generate --enumerate --max-length L --unique)"
        )
    unknown = set(config) - _KEYS
    if unknown:
        raise TranspilerError(
            f"unitarium: unknown key(s) {sorted(unknown)} in unitary_synthesis_plugin_config: use {sorted(_KEYS)}"
        )
    return table_from(config["table"], atol=float(config.get("atol", 1e-5))), bool(config.get("strict", False))


class UnitariumSynthesis(UnitarySynthesisPlugin):  # type: ignore[misc]
    """Synthesise 1- and 2-qubit unitaries as the table's optimal circuits (exact, global
    phase included). When the table has none (the unitary needs more than ``2 L`` moves or is
    not in the table's group, more qubits than the table's, or the table's gates are not all
    in the basis), Qiskit's default synthesis runs instead, or, with ``strict``, a
    ``TranspilerError`` says why."""

    @property
    def supports_basis_gates(self) -> bool:
        return True

    @property
    def supports_coupling_map(self) -> bool:
        return True  # passed through to the default synthesis

    @property
    def supports_natural_direction(self) -> bool:
        return True

    @property
    def supports_pulse_optimize(self) -> bool:
        return True

    @property
    def supports_gate_lengths(self) -> bool:
        return False

    @property
    def supports_gate_errors(self) -> bool:
        return False

    @property
    def supports_target(self) -> bool:
        return True

    @property
    def min_qubits(self) -> int:
        return 1

    @property
    def max_qubits(self) -> int:
        return 2  # larger unitaries go to Qiskit's default synthesis

    @property
    def supported_bases(self) -> None:
        return None

    def run(self, unitary: Any, **options: Any) -> Any:
        table, strict = _config_table(options.get("config"), "unitary_synthesis_method='unitarium'")
        missing = _missing_gates(table, options)
        found = None if missing else table.synthesize([unitary])[0]
        if found is not None:
            return circuit_to_dag(found.circuit())
        if strict:
            k = unitary.shape[0].bit_length() - 1
            why = (
                f"the basis lacks the table's gate(s) {sorted(missing)}"
                if missing
                else f"no circuit of at most {2 * table.max_length} moves (2 L) of its gates implements this "
                f"{k}-qubit unitary"
                if k <= table.num_qubits
                else f"the table is on {table.num_qubits} qubit(s), the unitary on {k}"
            )
            raise TranspilerError(f"unitarium: table {table.name} cannot synthesise the unitary: {why} (strict)")
        fallback = {k: v for k, v in options.items() if k != "config"}
        return DefaultUnitarySynthesis().run(unitary, **fallback)


def _missing_gates(table: OptimalTable, options: dict[str, Any]) -> set[str]:
    """The table's gates (Qiskit names) that the target or basis does not offer (none when
    neither is given)."""
    target = options.get("target")
    basis = set(target.operation_names) if target is not None else options.get("basis_gates")
    if not basis:
        return set()
    return set(table.gate_names) - set(basis)


class OptimalBlocksStage(PassManagerStagePlugin):  # type: ignore[misc]
    """An optimization stage (``optimization_method="unitarium"``): Qiskit's optimization stage
    for the same settings (its Clifford+T stage for a Clifford+T basis), then
    :class:`~unitarium.qiskit.OptimalBlocks` over the table of ``unitary_synthesis_plugin_config``,
    so no later pass undoes the table's optimal circuits. ``OptimalBlocks`` only replaces a
    block by a cheaper one, so the result never costs more than Qiskit's own."""

    def pass_manager(self, pass_manager_config: Any, optimization_level: int | None = None) -> PassManager:
        table, _ = _config_table(pass_manager_config.unitary_synthesis_plugin_config, "optimization_method='unitarium'")
        missing = _missing_gates(
            table, {"basis_gates": pass_manager_config.basis_gates, "target": pass_manager_config.target}
        )
        if missing:
            raise TranspilerError(
                f"unitarium: the basis lacks the table's gate(s) {sorted(missing)}: OptimalBlocks would "
                f"write gates the target cannot run (table {table.name})"
            )
        pm = PassManager()
        qiskit_stage = _qiskit_stage(pass_manager_config, optimization_level)
        if qiskit_stage is not None:
            pm += qiskit_stage
        pm.append(OptimalBlocks(table))
        return pm


def _qiskit_stage(config: Any, level: int | None) -> PassManager | None:
    """Qiskit's optimization stage for ``config``: the Clifford+T one when ``transpile`` would
    use it, else the ``default`` plugin."""
    try:  # Qiskit versions without a Clifford+T pipeline serve every basis with the default stage
        from qiskit.transpiler.passmanager_config import PassManagerCliffordTConfig
        from qiskit.transpiler.preset_passmanagers.builtin_plugins import OptimizeCliffordTPassManager
        from qiskit.transpiler.preset_passmanagers.common import is_clifford_t_basis
    except ImportError:
        is_clifford_t_basis = None
    if is_clifford_t_basis is not None and is_clifford_t_basis(config.basis_gates, config.target):
        clifford_t = PassManagerCliffordTConfig(
            basis_gates=config.basis_gates,
            coupling_map=config.coupling_map,
            approximation_degree=config.approximation_degree,
            target=config.target,
        )
        return OptimizeCliffordTPassManager().pass_manager(clifford_t, optimization_level=level)
    from qiskit.transpiler.preset_passmanagers.plugin import PassManagerStagePluginManager

    return PassManagerStagePluginManager().get_passmanager_stage(
        "optimization", "default", config, optimization_level=level
    )
