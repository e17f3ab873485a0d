"""pytest-xdist's ``--dist loadfile``, longest modules first (imported by conftest, which makes it the hook).

``loadfile`` hands each xdist process a whole module at a time, in order of test count by default, so a module of
few but long tests (kill -9 and resume, local Ray, real processes) started last keeps one process busy while the
other has nothing left: the run's wall time is its longest tail. Here the modules known to be long go first, by
their summed test time, and the rest follow in xdist's own order (most tests first). The figures only order the
modules: a wrong or missing one costs balance, never a test."""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadFileScheduling

SECONDS = {
    "test_ray.py": 95,
    "test_engine.py": 75,
    "test_keystore.py": 69,
    "test_shards.py": 59,
    "test_cost.py": 47,
    "test_labels.py": 38,
    "test_memory_bound.py": 33,
    "test_enumerate.py": 32,
    "test_signals.py": 30,
    "test_hardening.py": 26,
    "test_crash.py": 20,
    "test_clifford_fast.py": 20,
    "test_exact_keys.py": 19,
    "test_ray_nodes.py": 18,
    "test_portable.py": 16,
    "test_security.py": 17,
    "test_executors.py": 15,
    "test_fuzz.py": 12,
    "test_diskfull.py": 11,
    "test_growing.py": 11,
    "test_frictions.py": 11,
    "test_fuzz_growing.py": 10,
    "test_bad_input.py": 10,
    "test_batches_speed_mixing.py": 10,
}
"""Rough summed test time (s) of the longest modules: a whole run's ``--junitxml`` times on the shared 2-core machine
(2026-12-03 night, under a load of 5-6, scaled by the wall time of an unloaded run: 462 s / 844 s; test_engine's after
its kill runs got cheaper). Noisy: only their order matters."""


class LongestFirst(LoadFileScheduling):
    """:class:`LoadFileScheduling` whose next module is always the longest one left."""

    def _assign_work_unit(self, node: Any) -> None:
        if self.workqueue:  # max() keeps the first of equals: xdist's order (most tests first) among the rest
            longest = max(self.workqueue, key=lambda scope: SECONDS.get(scope.rsplit("/", 1)[-1], 0))
            self.workqueue.move_to_end(longest, last=False)
        super()._assign_work_unit(node)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: unknown under -p no:xdist
def pytest_xdist_make_scheduler(config: Any, log: Any) -> LoadFileScheduling | None:
    """``--dist loadfile`` (what scripts/test asks for): :class:`LongestFirst`; any other mode: xdist's own."""
    if config.getvalue("dist") != "loadfile":
        return None
    return LongestFirst(config, log)
