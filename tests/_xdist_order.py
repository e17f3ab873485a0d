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
    "test_ray.py": 82,
    "test_keystore.py": 65,
    "test_engine.py": 51,
    "test_memory_bound.py": 30,
    "test_cost.py": 37,
    "test_shards.py": 35,
    "test_hardening.py": 26,
    "test_enumerate.py": 23,
    "test_fuzz_growing.py": 20,
    "test_signals.py": 15,
    "test_labels.py": 15,
    "test_crash.py": 14,
    "test_ray_nodes.py": 13,
    "test_clifford_fast.py": 12,
    "test_exact_keys.py": 11,
    "test_portable.py": 10,
    "test_batches_speed_mixing.py": 9,
    "test_security.py": 9,
    "test_growing.py": 9,
    "test_frictions.py": 9,
    "test_fuzz.py": 8,
    "test_executors.py": 7,
    "test_torch.py": 7,
    "test_diskfull.py": 6,
}
"""Rough summed test time (s) of the longest modules: a whole run's ``--junitxml`` times on the 2-core machine
(2026-12-04, `-n 2`, nothing else running: 320 s of pytest). Noisy: only their order matters."""


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
