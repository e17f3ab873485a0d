"""Single-record reads: ``ds[i]`` at random ids, this tree against an earlier one, in one run.

    .venv/bin/python benchmarks/bench_single.py --count 1000000 --rounds 3   # before = bb6b619
    .venv/bin/python benchmarks/bench_single.py --quick                      # 200k records, 1 round

Generates, on the repository's disk, a file of ``--count`` random length-12 circuits over
h,t,tdg,cx on 2 qubits (complex64, stored), the same spec with ``--unitaries computed``, and both
as directories; then the two reference layouts the seed describes, holding the same unitaries:
SQLite with a row per record (``SELECT u FROM t WHERE id = ?``) and a numpy ``.npy`` read through
``np.load(mmap_mode="r")``. Each round, alternately, a fresh process of each code (``--before``:
``git archive`` of that commit's ``src/``; after: this tree) opens each dataset and reads, warm page
cache:
  - ``ds[i]`` for ``--random`` random ids on a fresh handle (every page read is checked on its
    first read: most reads here are first reads),
  - ``ds[i]`` for ``--random`` more random ids on the same handle, after it read every page once
    (pages already checked: the steady state of a handle in use),
  - ``ds[ids]`` for the same ids, 1,000 at a time.
The computed file is read a second time by this tree with no computed page kept
(``single.KEPT_BYTES = 0``: every record recomputed alone, the per-record product). The
reference layouts are read in the same rounds, each in its own fresh process too (the machine's
speed of the moment: the issue's figures were 86k/s for SQLite rows, 512k/s for the memmap). Rates
are per second of the process's CPU time (``time.process_time``), which a shared machine's other
loads inflate less than wall-clock (not at all by time-slicing; still by shared caches and cores). Writes
benchmarks/out/single.json and prints a markdown table of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import HERE, ROOT, machine, scratch_dir, summarize, write_json

KINDS = ("stored file", "computed file", "stored directory", "computed directory")
NO_PAGES = "computed file, no computed page kept"


def worker(path: str, count: int, seed: int, pages: bool = True) -> dict[str, float]:
    """Rates (records/s) of one process of whichever ``unitarium`` is on the path (``pages`` False:
    no computed page kept, where that tree keeps them)."""
    import unitarium

    if not pages:
        from unitarium._read import single

        # (KEPT_BYTES since 2026-12-03 evening: stored records are kept too; COMPUTED_BYTES before)
        setattr(single, "KEPT_BYTES" if hasattr(single, "KEPT_BYTES") else "COMPUTED_BYTES", 0)
    out = {}
    with unitarium.open(path) as ds:
        rng = np.random.default_rng(seed)
        first, second = (rng.integers(0, len(ds), size=count).tolist() for _ in range(2))
        t0 = time.process_time()
        for i in first:
            ds[i]
        out["fresh handle"] = count / (time.process_time() - t0)
        n, page = len(ds), ds.format.page
        for i in range(0, n, max(1, page // 2)):  # every page read once (most, the first time)
            ds[i]
        t0 = time.process_time()
        for i in second:
            ds[i]
        out["same handle"] = count / (time.process_time() - t0)
        t0 = time.process_time()
        for a in range(0, count, 1000):
            ds[second[a : a + 1000]]
        out["ds[ids], 1,000 ids"] = count / (time.process_time() - t0)
    return out


def make_references(tmp: Path, path: Path) -> None:
    """The seed's layouts, holding the unitaries of ``path``."""
    import unitarium

    rows, npy = tmp / "rows.db", tmp / "u.npy"
    with unitarium.open(path) as ds:
        n = len(ds)
        arr = np.lib.format.open_memmap(npy, mode="w+", dtype=np.complex64, shape=(n, 4, 4))
        conn = sqlite3.connect(rows)
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, u BLOB NOT NULL)")
        for a in range(0, n, 1 << 16):
            u = ds.unitaries(a, min(n, a + (1 << 16)))
            arr[a : a + len(u)] = u
            conn.executemany("INSERT INTO t VALUES (?, ?)", ((a + k, x.tobytes()) for k, x in enumerate(u)))
        conn.commit()
        conn.close()
        arr.flush()
        del arr


def references(tmp: str, count: int, seed: int) -> dict[str, float]:
    """Rates of the seed's layouts (run in a fresh process, as the datasets are)."""
    rows, npy = Path(tmp) / "rows.db", Path(tmp) / "u.npy"
    out = {}
    conn = sqlite3.connect(f"file:{rows}?mode=ro", uri=True)
    n = conn.execute("SELECT max(id) + 1 FROM t").fetchone()[0]
    ids = np.random.default_rng(seed).integers(0, n, size=count).tolist()
    for i in ids[: count // 4]:  # (warm: the b-tree's pages in SQLite's cache, as the steady state)
        conn.execute("SELECT u FROM t WHERE id = ?", (i,)).fetchone()
    t0 = time.process_time()
    for i in ids:
        np.frombuffer(conn.execute("SELECT u FROM t WHERE id = ?", (i,)).fetchone()[0], np.complex64).reshape(4, 4)
    out["SQLite, a row per record"] = count / (time.process_time() - t0)
    conn.close()
    mm = np.load(npy, mmap_mode="r", allow_pickle=False)
    t0 = time.process_time()
    for i in ids:
        np.array(mm[i])
    out["numpy memmap"] = count / (time.process_time() - t0)
    return out


def run_worker(src: Path | None, args: list[str]) -> dict[str, float]:
    """One fresh process: ``--worker`` (the tree ``src`` on the path) or ``--references``."""
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{HERE}" if src else str(HERE)}
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "pages")))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--references":
        print(json.dumps(references(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--random", type=int, default=20_000, help="random ids per measurement (after)")
    parser.add_argument("--before-random", type=int, default=3_000, help="random ids per measurement (before)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", default="bb6b619", help="the commit to compare with")
    parser.add_argument("--tmpdir")
    args = parser.parse_args()
    if args.quick:
        args.count, args.random, args.before_random, args.rounds = 200_000, 5_000, 2_000, 1
    import unitarium

    with scratch_dir(args.tmpdir) as tmp_name:
        tmp = Path(tmp_name)
        info = machine(tmp_name)
        before = tmp / "before"
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.before, "src"], capture_output=True, check=True
        ).stdout
        (tmp / "before.tar").write_bytes(archive)
        with tarfile.open(tmp / "before.tar") as tar:
            tar.extractall(before, filter="data")
        paths = {
            "stored file": tmp / "stored.db",
            "computed file": tmp / "computed.db",
            "stored directory": tmp / "stored.dir",
            "computed directory": tmp / "computed.dir",
        }
        spec = dict(gates="h,t,tdg,cx", qubits=2, count=args.count, length=12, seed=3)
        for kind, path in paths.items():
            extra = {"unitaries": "computed"} if kind.startswith("computed") else {}
            where = f"{path}/" if kind.endswith("directory") else path
            unitarium.generate(where, unitarium.make_spec(**spec, **extra), workers=2)
        make_references(tmp, paths["stored file"])
        rates: dict[str, list[float]] = {}
        for r in range(args.rounds):
            seed = str(r)
            for name, value in run_worker(None, ["--references", tmp_name, str(args.random), seed]).items():
                rates.setdefault(f"reference: {name}", []).append(value)
            for kind, path in paths.items():
                for label, src, count in (
                    ("before", before / "src", args.before_random),
                    ("after", ROOT / "src", args.random),
                ):
                    for what, value in run_worker(src, ["--worker", str(path), str(count), seed, "pages"]).items():
                        rates.setdefault(f"{kind}: {what}, {label}", []).append(value)
            got = run_worker(ROOT / "src", ["--worker", str(paths["computed file"]), str(args.random), seed, "none"])
            for what, value in got.items():
                rates.setdefault(f"{NO_PAGES}: {what}, after", []).append(value)
            print(f"round {r + 1}/{args.rounds}, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    results: dict[str, Any] = {k: summarize(v) for k, v in rates.items()}
    out = write_json("single.json", {"machine": info, "args": vars(args), "results": results})
    rows = results["reference: SQLite, a row per record"]["median"]
    print(
        f"\n{args.count:,} records, 2 qubits, {args.rounds} round(s), median records/s (min-max); "
        f"before = {args.before}; {info['nproc']} CPUs ({info['cpu_model']}), load {os.getloadavg()[0]:.2f}\n"
    )
    print("| read | before | after | after/before | after/SQLite rows |\n|---|---|---|---|---|")
    for kind in (*KINDS, NO_PAGES):
        for what in ("fresh handle", "same handle", "ds[ids], 1,000 ids"):
            a = results[f"{kind}: {what}, after"]
            b = results.get(f"{kind}: {what}, before")
            was = f"{b['median']:,.0f}" if b else ""
            ratio = f"{a['median'] / b['median']:.1f}x" if b else ""
            print(
                f"| {kind}, {what} | {was} | {a['median']:,.0f} ({a['min']:,.0f}-{a['max']:,.0f}) | {ratio} "
                f"| {a['median'] / rows:.2f}x |"
            )
    for name in ("SQLite, a row per record", "numpy memmap"):
        v = results[f"reference: {name}"]
        print(f"| reference: {name} | | {v['median']:,.0f} ({v['min']:,.0f}-{v['max']:,.0f}) | | |")
    print(f"\nwrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
