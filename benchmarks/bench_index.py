"""The persistent search index (issue #21, item 2): the CLI's ``synth``, ``nearest`` and ``lookup``
on a 1M-record table, each a fresh process, without the index and with it, in one run.

    cd benchmarks && ../.venv/bin/python bench_index.py [--length 9] [--rounds 3] [--quick]

The table: 2 qubits, h,s,t,tdg,cx, unique enumeration to length 9 (1,020,728 records), generated
once into benchmarks/out/cache/ (about a minute). "Without" runs read a hard link of the same
file from a directory holding no index (the same bytes, the table loaded from the dataset as
before the index existed); "with" runs map ``hst9.db.index`` (built here, timed). Targets: a
record's unitary (found at once), a product of two records of length L (a circuit of up to 2L
moves: the longest search that finds something), a Haar-random unitary (no circuit: every
prefix tried). Wall time and peak RSS (``/usr/bin/time -v``'s maximum resident set size, which
counts the mapped index pages the process touched) per command, median of ``--rounds``; the
floor is ``python -c "import unitarium.cli.main"`` measured in the same run. Answers are
compared between the two (the same stdout). Writes benchmarks/out/index.json.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
from scipy.stats import unitary_group

import unitarium
from unitarium.search import build_index, index_path

from _common import OUT, machine, write_json

GATES = "h,s,t,tdg,cx"


def timed(cmd: list[str]) -> tuple[float, float, str, int, float]:
    """``(wall s, peak RSS MiB, stdout, exit status, CPU s)`` of ``cmd`` under /usr/bin/time -v."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if rss is None or proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", proc.stderr))
    return wall, int(rss.group(1)) / 1024, proc.stdout, proc.returncode, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--length", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run: length 7 (100k records), 1 round")
    args = parser.parse_args()
    if args.quick:
        args.length, args.rounds = 7, 1
    cache = OUT / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"hst{args.length}.db"
    if not path.exists():
        spec = unitarium.make_spec(gates=GATES, qubits=2, max_length=args.length, unique=True)
        unitarium.generate(path, spec, workers=1)
    bare = cache / "noindex" / path.name
    bare.parent.mkdir(exist_ok=True)
    if not bare.exists():
        try:
            os.link(path, bare)
        except OSError:
            shutil.copyfile(path, bare)
    assert not index_path(bare).exists()
    t0 = time.perf_counter()
    build_index(path)
    build_s = time.perf_counter() - t0

    ds = unitarium.open(path)
    n, big = len(ds), args.length
    rng = np.random.default_rng(0)
    starts = np.searchsorted(ds.lengths(), [big])[0]
    a, b = (int(x) for x in rng.integers(starts, n, 2))
    targets = {
        "record": ds[int(rng.integers(0, n))].circuit.unitary(),
        "2L product": ds[b].circuit.unitary() @ ds[a].circuit.unitary(),
        "Haar-random": unitary_group.rvs(4, random_state=1),
    }
    files = {}
    for name, u in targets.items():
        files[name] = OUT / f"index-{name.replace(' ', '_')}.npy"
        np.save(files[name], u)
    py = [sys.executable, "-m", "unitarium"]
    ops = [(f"synth ({name})", ["synth"], name) for name in targets]
    ops += [
        ("nearest -k 3 (Haar-random)", ["nearest", "-k", "3"], "Haar-random"),
        ("lookup (record)", ["lookup"], "record"),
    ]
    load_at_start = os.getloadavg()[0]
    floor = [timed([sys.executable, "-c", "import unitarium.cli.main"]) for _ in range(args.rounds)]
    rows: list[dict[str, Any]] = []
    for label, cmd, target in ops:
        got: dict[str, list[tuple[float, float, str, int, float]]] = {"without": [], "with": []}
        for _ in range(args.rounds):
            for which, data in (("without", bare), ("with", path)):
                got[which].append(timed([*py, *cmd, str(data), "--matrix", str(files[target])]))
        same = {r[2] for r in got["without"] + got["with"]}
        assert len(same) == 1, f"{label}: the answers differ with and without the index"
        row = {"operation": label, "exit": got["with"][0][3]}
        for which in ("without", "with"):
            row[f"{which}_wall_s"] = statistics.median(r[0] for r in got[which])
            row[f"{which}_rss_mib"] = statistics.median(r[1] for r in got[which])
            row[f"{which}_cpu_s"] = statistics.median(r[4] for r in got[which])
        row["speedup"] = row["without_wall_s"] / row["with_wall_s"]
        rows.append(row)
        print(row, flush=True)
    result = {
        "machine": machine(),
        "records": n,
        "index_bytes": index_path(path).stat().st_size,
        "dataset_bytes": path.stat().st_size,
        "build_s": build_s,
        "import_floor_s": statistics.median(r[0] for r in floor),
        "import_floor_rss_mib": statistics.median(r[1] for r in floor),
        "import_floor_cpu_s": statistics.median(r[4] for r in floor),
        "rows": rows,
        "loadavg_at_start": load_at_start,
        "loadavg_at_end": os.getloadavg()[0],
    }
    write_json("index.json", result)
    print(
        f"\n{n:,} records; index {result['index_bytes'] / 2**20:,.0f} MiB (dataset "
        f"{result['dataset_bytes'] / 2**20:,.0f} MiB), built in {build_s:.1f} s; interpreter + import "
        f"floor {result['import_floor_s']:.2f} s ({result['import_floor_cpu_s']:.2f} s CPU), "
        f"{result['import_floor_rss_mib']:.0f} MiB; load average {load_at_start:.1f} at the start, "
        f"{result['loadavg_at_end']:.1f} at the end\n"
    )
    print(
        "| command | without index: wall s, CPU s, peak RSS MiB | with index: wall s, CPU s, peak RSS MiB | speedup |"
    )
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| `{r['operation']}` | {r['without_wall_s']:.2f}, {r['without_cpu_s']:.2f}, {r['without_rss_mib']:.0f} | "
            f"{r['with_wall_s']:.2f}, {r['with_cpu_s']:.2f}, {r['with_rss_mib']:.0f} | {r['speedup']:.1f}x |"
        )


if __name__ == "__main__":
    main()
