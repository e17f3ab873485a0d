"""The processes a run spawns (workers, key partitions) start from unitarium's own functions, never by running the
caller's ``__main__`` again: a user's script without an ``if __name__ == "__main__":`` guard generates with workers
and partitions (before, each spawned process ran the script's top level again, which started a run of its own
inside the child: the child died and the run failed with "a worker process died")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import unitarium

from conftest import REPO, content

SCRIPT = """
import sys
import unitarium
spec = unitarium.make_spec(gates="h,s,cx", qubits=2, count=3000, length="1:9", seed=5, unique=True, task_size=500)
summary = unitarium.generate(sys.argv[1], spec, workers=2, partitions=2)
print("records", summary.records)
"""


@pytest.mark.parametrize("target", ["data.db", "data/"])
def test_a_script_without_a_main_guard_runs_with_workers_and_partitions(tmp_path: Path, target: str) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(SCRIPT)
    path = tmp_path / target
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("records") == 1  # the script's top level ran once: in this process, not in a child
    reference = tmp_path / "reference.db"
    unitarium.generate(
        reference,
        unitarium.make_spec(gates="h,s,cx", qubits=2, count=3000, length="1:9", seed=5, unique=True, task_size=500),
        workers=1,
    )
    assert content(path) == content(reference)
    assert proc.stdout.split() == ["records", str(len(content(reference)))]
