"""Helpers shared by the benchmark scripts: machine description, temp dirs on the real disk,
timed subprocesses with CPU accounting, medians, JSON output. Not part of the package."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"


def scratch_dir(parent: str | None = None) -> tempfile.TemporaryDirectory[str]:
    """A temp dir for dataset files on the same disk as the repository (benchmarks/out/ is
    gitignored), never tmpfs: durability on a real disk is part of what is measured."""
    base = Path(parent) if parent else OUT
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix="bench-", dir=base)


def _mount_of(path: Path) -> tuple[str, str, str]:
    best = ("?", "?", "?")
    best_len = -1
    for line in Path("/proc/mounts").read_text().splitlines():
        dev, mnt, fstype = line.split()[:3]
        if (str(path) == mnt or str(path).startswith(mnt.rstrip("/") + "/")) and len(mnt) > best_len:
            best, best_len = (dev, mnt, fstype), len(mnt)
    return best


def _disk_model(dev: str) -> str:
    name = Path(dev).name
    for attr in ("device/model", "device/vendor"):
        p = Path("/sys/block") / name / attr
        if p.exists():
            return p.read_text().strip()
    rotational = Path("/sys/block") / name / "queue/rotational"
    if rotational.exists():
        return "rotational" if rotational.read_text().strip() == "1" else "non-rotational (virtual disk)"
    return "?"


def machine(scratch: str | None = None) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    where = Path(scratch or OUT).resolve()
    dev, mnt, fstype = _mount_of(where)
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = "?"
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "memory_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "disk": f"{dev} ({_disk_model(dev)}), {fstype} mounted at {mnt}",
        "scratch_dir": str(where),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "sqlite": sqlite3.sqlite_version,
        "git": commit,
        "loadavg_at_start": os.getloadavg()[0],
    }


@dataclass
class Timed:
    """One subprocess run: wall seconds and the CPU seconds of it and all its reaped descendants."""

    wall: float
    user: float
    sys: float
    stdout: str
    stderr: str
    loadavg: float

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def run_timed(cmd: Sequence[str], env: dict[str, str] | None = None) -> Timed:
    """Run ``cmd`` to completion (raising on failure) and time it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return Timed(
        wall,
        after.ru_utime - before.ru_utime,
        after.ru_stime - before.ru_stime,
        proc.stdout,
        proc.stderr,
        os.getloadavg()[0],
    )


def unitarium_cmd() -> list[str]:
    """The installed ``unitarium`` console script of this interpreter (``python -m unitarium`` if absent)."""
    script = Path(sys.executable).with_name("unitarium")
    return [str(script)] if script.exists() else [sys.executable, "-m", "unitarium"]


def engine_seconds(cli_stdout: str) -> float:
    """The engine's own duration from ``unitarium generate``'s summary line ("... in 1.23 s, ...")."""
    match = re.search(r" in ([0-9.]+) s,", cli_stdout)
    if not match:
        raise RuntimeError(f"no summary line in {cli_stdout!r}")
    return float(match.group(1))


def summarize(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def write_json(name: str, data: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(
        json.dumps(data, indent=2, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o))
    )
    return path


def rm_dataset(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
