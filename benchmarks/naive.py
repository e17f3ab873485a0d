"""The naive approach unitarium replaces (issue #2), re-implemented faithfully as the reference.

    .venv/bin/python benchmarks/naive.py OUT.db --count 40000 --workers 2 [--length 12] [--seed 0]

What a straightforward script does: a ``multiprocessing.Pool``; each worker draws random
circuits over h, t, tdg, cx on 2 qubits, multiplies each circuit gate by gate (``u = np.eye(4)``
then ``u = full_matrix @ u``, with the 4x4 matrix of every gate placement precomputed), and
inserts one row per record (id, circuit text, unitary bytes) into one shared WAL-mode SQLite
file with ``PRAGMA synchronous=OFF``, committing row by row. A busy timeout plus a retry loop
keeps the workers from crashing on "database is locked".

Prints one JSON line: records, seconds (from creating the file to the last commit), rate.
The unitaries are the same as unitarium's for the same circuit (Qiskit's qubit order);
``--check`` verifies a sample of stored rows against unitarium's own circuit products.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sqlite3
import time
from pathlib import Path

import numpy as np

H = np.array([[1, 1], [1, -1]]) / np.sqrt(2)
T = np.diag([1, np.exp(1j * np.pi / 4)])
TDG = T.conj()
I2 = np.eye(2)
# Qiskit's little-endian order: qubit 0 is the least significant bit, so "g on qubit 0" is kron(I, g).
# CX with control 0 and target 1 flips bit 1 when bit 0 is set (and vice versa for cx 1 0).
CX01 = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0]], dtype=complex)
CX10 = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=complex)
GATES = {
    "h 0": np.kron(I2, H),
    "h 1": np.kron(H, I2),
    "t 0": np.kron(I2, T),
    "t 1": np.kron(T, I2),
    "tdg 0": np.kron(I2, TDG),
    "tdg 1": np.kron(TDG, I2),
    "cx 0 1": CX01,
    "cx 1 0": CX10,
}
NAMES = list(GATES)
MATRICES = [GATES[name].astype(complex) for name in NAMES]

_conn: sqlite3.Connection | None = None


def _init(path: str) -> None:
    global _conn
    _conn = sqlite3.connect(path, timeout=60)
    _conn.execute("PRAGMA busy_timeout=60000")
    _conn.execute("PRAGMA synchronous=OFF")


def _insert(row: tuple[int, str, bytes]) -> None:
    assert _conn is not None
    while True:
        try:
            _conn.execute("INSERT INTO unitaries (id, circuit, unitary) VALUES (?, ?, ?)", row)
            _conn.commit()
            return
        except sqlite3.OperationalError as exc:  # "database is locked" despite the timeout: retry
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            _conn.rollback()
            time.sleep(0.001)


def _work(job: tuple[int, int, int, int]) -> int:
    start, stop, length, seed = job
    rng = np.random.default_rng([seed, start])
    for i in range(start, stop):
        gates = rng.integers(0, len(MATRICES), size=length)
        u = np.eye(4, dtype=complex)
        for g in gates:
            u = MATRICES[g] @ u
        _insert((i, "; ".join(NAMES[g] for g in gates), u.tobytes()))
    return stop - start


def create(path: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE unitaries (id INTEGER PRIMARY KEY, circuit TEXT NOT NULL, unitary BLOB NOT NULL)")
    conn.commit()
    conn.close()


def run(path: str, count: int, workers: int, length: int = 12, seed: int = 0, chunk: int = 1000) -> dict[str, float]:
    """Generate ``count`` records into a new file ``path``; returns records, seconds, rate."""
    t0 = time.perf_counter()
    create(path)
    jobs = [(a, min(count, a + chunk), length, seed) for a in range(0, count, chunk)]
    with multiprocessing.Pool(workers, initializer=_init, initargs=(path,)) as pool:
        done = sum(pool.imap_unordered(_work, jobs))
    seconds = time.perf_counter() - t0
    return {"records": done, "seconds": seconds, "rate": done / seconds, "workers": workers}


def check(path: str, sample: int = 200) -> float:
    """Largest entrywise difference between stored unitaries and unitarium's circuit products."""
    import unitarium

    gs = unitarium.make_spec(gates="h,t,tdg,cx", qubits=2, count=1, length=1).gateset
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT circuit, unitary FROM unitaries ORDER BY random() LIMIT ?", (sample,)).fetchall()
    worst = 0.0
    for text, blob in rows:
        u = np.frombuffer(blob, dtype=complex).reshape(4, 4)
        worst = max(worst, float(np.abs(u - unitarium.Circuit.from_text(text, gs).unitary()).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--count", type=int, default=40_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--length", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="verify a sample of rows against unitarium")
    args = parser.parse_args()
    if args.path.exists():
        parser.error(f"{args.path} exists: give a new file")
    result = run(str(args.path), args.count, args.workers, args.length, args.seed)
    if args.check:
        result["max_error"] = check(str(args.path))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
