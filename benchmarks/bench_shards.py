"""Sharded datasets (issue #10): parallel efficiency, rate against the disk, computed vs stored
unitaries, peak memory against --count, unique-mode rates, and the projection to 32 cores and
3e11 records. Every figure is a median of ``--rounds`` runs of the real CLI in a subprocess (CPU
time = user + sys of the whole process tree), all in one run, one after the other.

    python benchmarks/bench_shards.py [--count 4000000] [--rounds 3] [--reads-only]

Shape: 2-qubit h,t,tdg,cx, length 12 (the issue's), into a directory; the file engine with the
same shape is measured as the reference. The disk's sequential write rate is measured in the
same run (1 GiB written and fsynced in 8 MiB pieces).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

from _common import machine, run_timed, scratch_dir, summarize, unitarium_cmd, write_json

SHAPE = ["--gates", "h,t,tdg,cx", "--qubits", "2", "--length", "12", "--seed", "1", "--quiet"]
RECORDS = 3e11
CORES = 32


def disk_write_rate(directory: Path, total: int = 1 << 30, piece: int = 8 << 20) -> float:
    """Bytes/s of a sequential write with fsync (the ceiling for stored records)."""
    path = directory / "disk-probe"
    block = os.urandom(piece)
    t0 = time.perf_counter()
    with path.open("wb") as f:
        for _ in range(total // piece):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - t0
    path.unlink()
    return total / elapsed


def size_of(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


def generate(scratch: Path, target: str, count: int, workers: int, extra: list[str]) -> dict[str, Any]:
    path = scratch / target
    cmd = [*unitarium_cmd(), "generate", str(path) + ("/" if target.endswith("/") else ""), *SHAPE]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    timed = run_timed([*cmd, "--count", str(count), "--workers", str(workers), *extra])
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    size = size_of(path.resolve())
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return {
        "wall": timed.wall,
        "rate": count / timed.wall,
        "cpu_per_record_us": timed.cpu / count * 1e6,
        "bytes_per_record": size / count,
        "peak_rss_mib_so_far": max(before, peak_kib) / 1024,
        "loadavg": timed.loadavg,
    }


def measure(scratch: Path, target: str, count: int, workers: int, extra: list[str], rounds: int) -> dict[str, Any]:
    runs = [generate(scratch, target, count, workers, extra) for _ in range(rounds)]
    keys = ("wall", "rate", "cpu_per_record_us", "bytes_per_record")
    out = {k: summarize([r[k] for r in runs]) for k in keys}
    out["loadavg"] = [r["loadavg"] for r in runs]
    return out


def peak_rss(scratch: Path, count: int, workers: int) -> float:
    """Peak RSS (MiB) of the largest process of one run, in a fresh interpreter so that earlier runs'
    peaks (ru_maxrss of reaped children is a maximum) do not mask it."""
    import subprocess
    import sys

    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    path = scratch / "mem"
    cmd = [*unitarium_cmd(), "generate", f"{path}/", *SHAPE, "--count", str(count), "--workers", str(workers)]
    out = subprocess.run([sys.executable, "-c", code, *cmd], check=True, capture_output=True, text=True).stdout
    shutil.rmtree(path, ignore_errors=True)
    return int(out) / 1024


def _drop_from_page_cache(path: Path) -> None:
    for file in [p for p in path.rglob("*") if p.is_file()]:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_rates(scratch: Path, count: int, rounds: int) -> dict[str, Any]:
    """``ds.unitaries(a, a + 65536)`` over a whole directory, stored vs computed, cold (its files dropped
    from the page cache first) and warm: records/s."""
    import unitarium

    out: dict[str, Any] = {}
    for mode in ("stored", "computed"):
        path = scratch / f"read-{mode}"
        cmd = [*unitarium_cmd(), "generate", f"{path}/", *SHAPE, "--count", str(count), "--unitaries", mode]
        run_timed(cmd)
        for state in ("cold", "warm"):
            rates = []
            for _ in range(rounds):
                if state == "cold":
                    _drop_from_page_cache(path)
                with unitarium.open(path) as ds:
                    t0 = time.perf_counter()
                    for a in range(0, len(ds), 65536):
                        ds.unitaries(a, min(len(ds), a + 65536))
                    rates.append(len(ds) / (time.perf_counter() - t0))
            out[f"{mode} {state}"] = summarize(rates)
        shutil.rmtree(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scratch", help="directory for the datasets (default: benchmarks/out)")
    parser.add_argument("--reads-only", action="store_true", help="only the stored vs computed read rates")
    args = parser.parse_args()
    if args.reads_only:
        with scratch_dir(args.scratch) as tmp:
            reads = read_rates(Path(tmp), args.count, args.rounds)
        print(write_json("shards-reads.json", {"machine": machine(), "count": args.count, "reads": reads}))
        for key, value in reads.items():
            print(f"{key:20s} {value['median'] / 1e6:.2f} M/s ({value['min'] / 1e6:.2f}-{value['max'] / 1e6:.2f})")
        return
    cores = len(os.sched_getaffinity(0))
    with scratch_dir(args.scratch) as tmp:
        scratch = Path(tmp)
        disk = [disk_write_rate(scratch) for _ in range(args.rounds)]
        n, r = args.count, args.rounds
        results: dict[str, Any] = {"machine": machine(tmp), "count": n, "disk_write_bytes_per_s": summarize(disk)}
        results["file, 1 worker"] = measure(scratch, "f.db", n, 1, [], r)
        results["file, default workers"] = measure(scratch, "f.db", n, max(1, cores - 1), [], r)
        for w in sorted({1, 2, cores}):
            results[f"directory, {w} worker(s)"] = measure(scratch, "d/", n, w, [], r)
            results[f"directory computed, {w} worker(s)"] = measure(scratch, "c/", n, w, ["--unitaries", "computed"], r)
        unique = ["--unique"]
        results["directory unique random, all workers"] = measure(scratch, "u/", n // 4, cores, unique, r)
        results["file unique random, default workers"] = measure(scratch, "u.db", n // 4, max(1, cores - 1), unique, r)
        results["peak_rss_mib"] = {str(c): peak_rss(scratch, c, cores) for c in (n // 4, 2 * n)}
        results["reads"] = read_rates(scratch, n // 4, r)
    results["derived"] = derive(results, cores)
    print(write_json("shards.json", results))
    report(results)


def derive(results: dict[str, Any], cores: int) -> dict[str, Any]:
    one = results["directory, 1 worker(s)"]
    two = results["directory, 2 worker(s)"]
    allw = results[f"directory, {cores} worker(s)"]
    comp = results[f"directory computed, {cores} worker(s)"]
    comp_one = results["directory computed, 1 worker(s)"]
    disk = results["disk_write_bytes_per_s"]["median"]
    cpu1 = one["cpu_per_record_us"]["median"] * 1e-6
    cpu1c = comp_one["cpu_per_record_us"]["median"] * 1e-6
    stored_bytes = allw["bytes_per_record"]["median"]
    computed_bytes = comp["bytes_per_record"]["median"]
    ideal = 0.9 * cores / cpu1
    derived = {
        "cpu_per_record_2_over_1": two["cpu_per_record_us"]["median"] / one["cpu_per_record_us"]["median"],
        "rate_2_over_1": two["rate"]["median"] / one["rate"]["median"],
        "rate_all_over_target": allw["rate"]["median"] / ideal,
        "stored_bytes_per_s_over_disk": allw["rate"]["median"] * stored_bytes / disk,
        "computed_over_stored_rate": comp["rate"]["median"] / allw["rate"]["median"],
        "computed_bytes_per_record": computed_bytes,
        "stored_bytes_per_record": stored_bytes,
    }
    projection = {}
    for mode, cpu, size in (("stored", cpu1, stored_bytes), ("computed", cpu1c, computed_bytes)):
        cpu_rate = CORES / cpu
        disk_rate = disk / size
        rate = min(cpu_rate, disk_rate)
        projection[mode] = {
            "rate_per_s": rate,
            "bound_by": "cores" if cpu_rate <= disk_rate else "disk",
            "hours_for_3e11": RECORDS / rate / 3600,
            "terabytes_for_3e11": RECORDS * size / 1e12,
        }
    derived[f"projection_{CORES}_cores"] = projection
    return derived


def report(results: dict[str, Any]) -> None:
    for key, value in results.items():
        if isinstance(value, dict) and "rate" in value:
            print(
                f"{key:40s} {value['rate']['median'] / 1e6:6.2f} M/s  cpu {value['cpu_per_record_us']['median']:.3f}"
                f" us/rec  {value['bytes_per_record']['median']:.1f} B/rec"
            )
    print(f"disk: {results['disk_write_bytes_per_s']['median'] / 1e6:.0f} MB/s; peak RSS: {results['peak_rss_mib']}")
    for key, value in results["derived"].items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
