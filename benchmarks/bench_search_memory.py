"""Peak memory and time of search on a table of >= 3M records (issue #17, item 8).

    .venv/bin/python benchmarks/bench_search_memory.py                 # 3 rounds
    .venv/bin/python benchmarks/bench_search_memory.py --rounds 1 --src /path/to/old/src

The table (2 qubits, h,t,cx, unique, every circuit of at most 13 moves: 3,823,477 records)
is generated once into ``benchmarks/out/cache/`` (about 100 s) and reused. Each operation
runs in a fresh process, as ``unitarium synth`` does (table load included), and its peak
RSS is the kernel's ``ru_maxrss`` of that process (``os.wait4``): ``synth --matrix`` of a
Haar-random target (not found: every prefix tried, the worst case) and of a 20-move
circuit's unitary, ``ds.nearest(U, k=3)``, ``synth --approximate`` with the default
``--max-length 2L`` (refused by its cost estimate) and ``ds.approximate`` at the largest
``max_length`` the default ``max_pairs`` admits. Compared with docs/search.md's formula,
``N (16 d^2 + L + 22)`` bytes (unitaries cached, as here, since ``N d^2 16 <= 1 GiB``).
Peak RSS includes the pages of the dataset file that SQLite maps (``mmap_size``: shared,
file-backed, given back under pressure); the peak of ``RssAnon`` (sampled every 20 ms from
``/proc/<pid>/status``) is the memory the process allocated, the part the formula is about.
``--src`` runs another checkout's sources (e.g. the base commit) for comparison; a
command that runs past ``--timeout`` seconds is killed and reported as such.
Writes benchmarks/out/search_memory.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import OUT, ROOT, machine, write_json

GATES, LENGTH = "h,t,cx", 13

PY_OP = """
import sys, time, numpy as np, unitarium
ds = unitarium.open(sys.argv[1]); u = np.load(sys.argv[2]); op = sys.argv[3]
t0 = time.perf_counter()
if op == "nearest":
    out = ds.nearest(u, k=3); print([round(m.distance, 6) for m in out])
else:
    a = ds.approximate(u, max_length=int(op.split("=")[1])); print(len(a.circuit), round(a.distance, 6))
print("op_s", time.perf_counter() - t0)
"""


WRAP = """
import resource, subprocess, sys, time
proc = subprocess.Popen(sys.argv[2:])
deadline, anon = time.monotonic() + float(sys.argv[1]), 0
while proc.poll() is None and time.monotonic() < deadline:
    try:
        for line in open(f"/proc/{proc.pid}/status"):
            if line.startswith("RssAnon:"):
                anon = max(anon, int(line.split()[1]))
    except (OSError, ValueError):
        pass
    time.sleep(0.02)
rc = proc.poll()
if rc is None:
    proc.kill()
    proc.wait()  # reaped, so that its peak counts in RUSAGE_CHILDREN
    rc = "timeout"
print("MAXRSS_KIB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, anon, file=sys.stderr)
sys.exit(124 if rc == "timeout" else rc)
"""


def table(cache: Path) -> Path:
    path = cache / f"ht_cx_{LENGTH}.db"
    if not path.exists():
        import unitarium

        tmp = cache / f"ht_cx_{LENGTH}.partial.db"
        spec = unitarium.make_spec(gates=GATES, qubits=2, max_length=LENGTH, unique=True)
        unitarium.generate(tmp, spec, workers=1)
        tmp.rename(path)
    return path


def run(cmd: list[str], src: Path, timeout: float) -> dict[str, Any]:
    """Run ``cmd`` with ``src`` on PYTHONPATH: wall seconds, peak RSS (MiB), exit status, output."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    t0 = time.perf_counter()
    # a fresh wrapper per run: its RUSAGE_CHILDREN peak is that of its one child
    proc = subprocess.Popen(
        [sys.executable, "-c", WRAP, str(timeout), *cmd],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    fields = err.rsplit("MAXRSS_KIB", 1)[1].split()[:2] if "MAXRSS_KIB" in err else ["nan", "nan"]
    rss, anon = (float(f) / 1024 for f in fields)
    err = err.rsplit("MAXRSS_KIB", 1)[0]
    return {
        "wall_s": wall,
        "rss_mib": rss,
        "anon_mib": anon,
        "rc": proc.returncode,
        "stdout": out[-300:],
        "stderr": err[-300:],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--src", type=Path, default=ROOT / "src")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--only", default="", help="comma-separated operation names")
    args = ap.parse_args()
    cache = OUT / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    path = table(cache)
    from scipy.stats import unitary_group

    import unitarium

    ds = unitarium.open(path)
    n, d = len(ds), ds.gateset.dim
    rng = np.random.default_rng(17)
    np.save(cache / "haar.npy", unitary_group.rvs(d, random_state=17))
    moves = rng.integers(0, len(ds.gateset.move_matrices), size=20)
    np.save(cache / "c20.npy", unitarium.Circuit(moves, ds.gateset).unitary())
    formula = n * (16 * d * d + LENGTH + 22) / 2**20
    py, cli = [sys.executable, "-c", PY_OP, str(path)], [sys.executable, "-m", "unitarium", "synth", str(path)]
    ops = {
        "synth --matrix (Haar, not found)": [*cli, "--matrix", str(cache / "haar.npy")],
        "synth --matrix (20-move circuit)": [*cli, "--matrix", str(cache / "c20.npy")],
        "nearest(U, k=3)": [*py, str(cache / "haar.npy"), "nearest"],
        "synth --approximate (default 2L)": [*cli, "--matrix", str(cache / "haar.npy"), "--approximate"],
        "approximate(U, max_length=9)": [*py, str(cache / "haar.npy"), "approx=9"],
    }
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    results: dict[str, Any] = {}
    for name, cmd in ops.items():
        if only and not any(o in name for o in only):
            continue
        runs = [run(cmd, args.src.resolve(), args.timeout) for _ in range(args.rounds)]
        results[name] = {
            "wall_s_median": statistics.median(r["wall_s"] for r in runs),
            "rss_mib_median": statistics.median(r["rss_mib"] for r in runs),
            "anon_mib_median": statistics.median(r["anon_mib"] for r in runs),
            "runs": runs,
        }
        print(
            name,
            f"{results[name]['wall_s_median']:.1f} s",
            f"{results[name]['rss_mib_median']:.0f} MiB",
            "rc",
            [r["rc"] for r in runs],
            runs[-1]["stderr"].strip()[-200:],
            flush=True,
        )
    data = {"machine": machine(), "records": n, "formula_mib": formula, "src": str(args.src), "results": results}
    write_json("search_memory.json" if args.src == ROOT / "src" else "search_memory_other.json", data)
    print(f"\n{n:,} records; formula N (16 d^2 + L + 22) = {formula:.0f} MiB\n")
    print("| operation | median wall s | median peak RSS MiB | median peak anonymous MiB | exit |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        row = (
            f"{r['wall_s_median']:.1f} | {r['rss_mib_median']:.0f} | {r['anon_mib_median']:.0f} | {r['runs'][0]['rc']}"
        )
        print(f"| {name} | {row} |")


if __name__ == "__main__":
    main()
