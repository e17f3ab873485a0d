"""Shared fixtures: temp datasets, and running the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import unitarium

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str | os.PathLike[str], check: bool = True, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m unitarium ARGS`` (the real CLI, in its own process)."""
    proc = subprocess.run(
        [sys.executable, "-m", "unitarium", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"unitarium {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def content(path: str | os.PathLike[str]) -> list[tuple[str, bytes]]:
    """A dataset's content in id order: (circuit text, unitary bytes) per record."""
    ds = unitarium.open(path)
    try:
        return [(str(r.circuit), r.unitary.tobytes()) for r in ds]
    finally:
        ds.close()


@pytest.fixture
def small_spec() -> unitarium.Spec:
    return unitarium.make_spec(gates="h,t,tdg,cx", qubits=2, count=10_000, length="1:12", seed=3)


@pytest.fixture
def small_dataset(tmp_path: Path, small_spec: unitarium.Spec) -> Path:
    path = tmp_path / "small.db"
    unitarium.generate(path, small_spec, workers=1)
    return path


ALL_GATES = (
    "i,x,y,z,h,s,sdg,t,tdg,sx,sxdg,rx(pi/4),ry(pi/3),rz(pi/4),p(0.3),u(pi/2,0.1,-2pi/3),"
    "cx,cy,cz,ch,swap,iswap,ecr,ccx,cswap"
)
"""Every standard gate (parametric ones with fixed angles), as a --gates value."""
