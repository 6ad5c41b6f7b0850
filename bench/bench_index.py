"""Query latency of the image index on random galleries: exact (flat) vs approximate (ivf).

Galleries of N random unit-length 512-d embeddings (10k, 100k, 1M by default); queries are
answered one at a time, as the server does. Prints p50/p99 latency per query for both index
types, the build time, and recall@10 of the ivf index against the exact top 10.

Random vectors are the hard case for an approximate index: every point is about as far from a
query as every other, so recall is lower than on real embeddings, which cluster.

    OMP_NUM_THREADS=1 python bench/bench_index.py [--sizes 10000 100000 1000000] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from irra.retrieval.vectors import build_vector_index, require_faiss, search_vectors, set_nprobe


def unit_rows(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """(count, dim) float32 Gaussian rows scaled to unit length."""
    rows = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 100_000):
        chunk = rng.standard_normal((min(100_000, count - start), dim), dtype=np.float32)
        rows[start : start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return rows


def latencies(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query seconds and the (Q, k) ids, one query per search call."""
    seconds = np.empty(len(queries))
    ids = np.empty((len(queries), k), dtype=np.int64)
    for i, query in enumerate(queries):
        start = time.perf_counter()
        _, found = search_vectors(index, query[None], k)
        seconds[i] = time.perf_counter() - start
        ids[i] = found[0]
    return seconds, ids


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the true top-k ids that were found."""
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="FAISS threads")
    parser.add_argument("--nprobe-sweep", type=int, nargs="*", default=[8, 32, 128])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    require_faiss().omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    queries = unit_rows(rng, args.queries, args.dim)
    print(
        f"dim {args.dim}, {args.queries} queries one at a time, top {args.k}, "
        f"{args.threads} FAISS thread(s)"
    )
    header = (
        f"{'N':>9} {'index':>14} {'build s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'vs flat':>8} {'recall@10':>9}"
    )
    print(header)
    for size in args.sizes:
        gallery = unit_rows(rng, size, args.dim)
        start = time.perf_counter()
        flat = build_vector_index(gallery, "flat")
        flat_build = time.perf_counter() - start
        flat_s, truth = latencies(flat, queries, args.k)
        flat_p50 = np.percentile(flat_s, 50)
        row = (
            f"{size:>9} {'flat':>14} {flat_build:>8.1f} {flat_p50 * 1e3:>8.2f} "
            f"{np.percentile(flat_s, 99) * 1e3:>8.2f} {1.0:>7.2f}x {1.0:>9.3f}"
        )
        print(row, flush=True)
        del flat
        start = time.perf_counter()
        ivf = build_vector_index(gallery, "ivf")
        ivf_build = time.perf_counter() - start
        default = int(ivf.nprobe)
        for nprobe in sorted({default, *args.nprobe_sweep}):
            if nprobe > ivf.nlist:
                continue
            set_nprobe(ivf, nprobe)
            ivf_s, found = latencies(ivf, queries, args.k)
            p50 = np.percentile(ivf_s, 50)
            name = f"ivf {nprobe}/{ivf.nlist}" + ("*" if nprobe == default else "")
            print(
                f"{size:>9} {name:>14} {ivf_build:>8.1f} {p50 * 1e3:>8.2f} "
                f"{np.percentile(ivf_s, 99) * 1e3:>8.2f} {flat_p50 / p50:>7.2f}x "
                f"{recall_at(found, truth):>9.3f}",
                flush=True,
            )
        del ivf, gallery
    print(
        "ivf nprobe/nlist: cells scanned per query / cells; * = the default irra index uses; "
        "vs flat = flat p50 / this p50"
    )


if __name__ == "__main__":
    main()
