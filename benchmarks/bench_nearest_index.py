"""Should `ds.nearest` use an approximate nearest-neighbour library? (issue #14: "faiss, usearch,
hnswlib: measure and choose"). Exact `ds.nearest` (one BLAS product per query batch) against
hnswlib and usearch on the same embedding, in one run: build time, time per query, and recall@k
of the ANN results after exact re-ranking of `4k` candidates.

    pip install hnswlib usearch        # benchmark-only: unitarium does not depend on them
    python benchmarks/bench_nearest_index.py [--count 200000] [--queries 500] [--k 10]

The embedding is the one `search/nearest.py` uses for k-d trees: the real entries of
vec(U) vec(U)^dag, whose Euclidean distances order records exactly as the phase-invariant
distance sqrt(2d - 2|tr(U^dag V)|) does. Table: random 2-qubit Clifford+T circuits of length
1 to 20 (stored unitaries); queries: Haar-random unitaries (seeded).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import unitarium
from unitarium.search.nearest import _embed

from _common import machine, scratch_dir, write_json


def haar(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = (rng.normal(size=(n, d, d)) + 1j * rng.normal(size=(n, d, d))) / np.sqrt(2)
    q, r = np.linalg.qr(z)
    diag = np.diagonal(r, axis1=1, axis2=2)
    return q * (diag / np.abs(diag))[:, None, :]


def exact(ds: unitarium.Dataset, queries: np.ndarray, k: int) -> tuple[list[list[int]], float]:
    ds.nearest(queries[:2], k=k)  # builds the in-memory table once
    t0 = time.perf_counter()
    found = ds.nearest(queries, k=k)
    per_query = (time.perf_counter() - t0) / len(queries)
    return [[m.record.id for m in row] for row in found], per_query


def rerank(table: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int) -> list[list[int]]:
    """The exact k best of each query's candidates, by |tr(U^dag V)| (ties: lower id)."""
    out = []
    for q, cand in zip(queries, candidates, strict=True):
        cand = np.unique(cand[cand >= 0])
        score = np.abs(np.einsum("ij,nij->n", np.conj(q), table[cand]))
        order = np.lexsort((cand, -score))[:k]
        out.append(cand[order].tolist())
    return out


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return statistics.mean(len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    import hnswlib
    from usearch.index import Index

    with scratch_dir() as tmp:
        path = Path(tmp) / "table.db"
        spec = unitarium.make_spec(gates="clifford+t", qubits=2, count=args.count, length="1:20", seed=5)
        unitarium.generate(path, spec, workers=1)
        with unitarium.open(path) as ds:
            table = ds.unitaries().astype(np.complex128)
            queries = haar(args.queries, 4, seed=11)
            truth, exact_s = exact(ds, queries, args.k)
    vectors = _embed(table).astype(np.float32)
    qvec = _embed(queries).astype(np.float32)
    results = {"machine": machine(), "count": args.count, "queries": args.queries, "k": args.k}
    results["exact"] = {"per_query_us": exact_s * 1e6, "recall": 1.0}
    wide = 4 * args.k

    t0 = time.perf_counter()
    hnsw = hnswlib.Index(space="l2", dim=vectors.shape[1])
    hnsw.init_index(max_elements=len(vectors), ef_construction=200, M=16, random_seed=1)
    hnsw.add_items(vectors, np.arange(len(vectors)), num_threads=1)
    build = time.perf_counter() - t0
    hnsw.set_ef(max(64, wide))
    hnsw.set_num_threads(1)
    t0 = time.perf_counter()
    labels, _ = hnsw.knn_query(qvec, k=wide)
    ranked = rerank(table, queries, labels.astype(np.int64), args.k)
    per = (time.perf_counter() - t0) / len(queries)
    results["hnswlib"] = {"build_s": build, "per_query_us": per * 1e6, "recall": recall(ranked, truth)}

    t0 = time.perf_counter()
    index = Index(ndim=vectors.shape[1], metric="l2sq", dtype="f32")
    index.add(np.arange(len(vectors)), vectors, threads=1)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    matches = index.search(qvec, wide, threads=1)
    ranked = rerank(table, queries, np.asarray(matches.keys, dtype=np.int64), args.k)
    per = (time.perf_counter() - t0) / len(queries)
    results["usearch"] = {"build_s": build, "per_query_us": per * 1e6, "recall": recall(ranked, truth)}

    print(write_json("nearest_index.json", results))
    print(f"{args.count:,} records, {args.queries} Haar queries, k={args.k} (ANN: {wide} candidates re-ranked)")
    for name in ("exact", "hnswlib", "usearch"):
        r = results[name]
        build = f", build {r['build_s']:.1f} s" if "build_s" in r else ""
        print(f"{name:8s} {r['per_query_us']:9.1f} us/query, recall@{args.k} {r['recall']:.3f}{build}")


if __name__ == "__main__":
    main()
