"""Filtered search latency: filters keeping 50%, 1% and 0.01% of a gallery, against no filter.

For each gallery size (100k and 1M random unit 512-d embeddings by default) and index type
(flat, ivf), an index is written through irra's store API with one camera name per image
(10,000 cameras, image i on camera i mod 10,000), and single queries are timed end to end the
way ``Retriever.search`` runs a filter: the filter's mask from the metadata columns
(:class:`irra.retrieval.filtering.FilterColumns`), then
:func:`irra.retrieval.vectors.filtered_search` (exact over the passing images). The filters
keep 5,000, 100 and 1 of the cameras.

The reference is the unfiltered *exact* search of the same index (flat: a plain search; ivf:
every cell probed); the goal is no filtered query slower than 2x it. The ivf index's usual
approximate search (default nprobe) is printed too. Query time is measured in one thread.

    OMP_NUM_THREADS=1 python bench/bench_filtered_search.py [--sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from irra.retrieval.filtering import FilterColumns
from irra.retrieval.query import SearchFilter
from irra.retrieval.store import ImageRecord, Snapshot, write_version
from irra.retrieval.vectors import (
    build_vector_index,
    filtered_search,
    require_faiss,
    search_vectors,
)

CAMERAS = 10_000
FILTERS = {"50%": 5_000, "1%": 100, "0.01%": 1}


def unit_rows(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """(count, dim) float32 Gaussian rows scaled to unit length."""
    rows = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 100_000):
        chunk = rng.standard_normal((min(100_000, count - start), dim), dtype=np.float32)
        rows[start : start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return rows


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    ms = 1000 * np.asarray(seconds)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def timed(run, queries: np.ndarray) -> tuple[float, float]:
    """p50/p99 ms of ``run(query)`` over the queries, after one warm-up call."""
    run(queries[0])
    seconds = []
    for query in queries:
        start = time.perf_counter()
        run(query)
        seconds.append(time.perf_counter() - start)
    return percentiles(seconds)


def bench_index(kind: str, vectors: np.ndarray, queries: np.ndarray, k: int, folder: Path):
    """Rows of the table for one index type."""
    count = len(vectors)
    faiss = require_faiss()
    faiss.omp_set_num_threads(2)  # building may use both cores; queries get one
    start = time.perf_counter()
    index = build_vector_index(vectors, kind)
    built = time.perf_counter() - start
    faiss.omp_set_num_threads(1)
    records = [ImageRecord(f"img{i:07d}.jpg", 1, 0, camera=f"c{i % CAMERAS}") for i in range(count)]
    manifest = {"images_root": str(folder), "model": {"fingerprint": "-"}, "index_type": kind}
    write_version(folder / kind, manifest, records, index)
    del records
    snapshot = Snapshot.open(folder / kind)
    start = time.perf_counter()
    columns = FilterColumns(snapshot.metadata)  # what the first filtered search reads
    loaded = time.perf_counter() - start
    index = snapshot.vectors
    rows = []
    default_nprobe = getattr(index, "nprobe", None)
    if default_nprobe is not None:
        approx = timed(lambda q: search_vectors(index, q[None], k), queries)
        rows.append((f"unfiltered, approximate (nprobe {default_nprobe})", approx, None))
        index.nprobe = index.nlist
    exact = timed(lambda q: search_vectors(index, q[None], k), queries)
    rows.append(("unfiltered, exact", exact, 1.0))
    if default_nprobe is not None:
        index.nprobe = default_nprobe
    for name, cameras in FILTERS.items():
        search_filter = SearchFilter(cameras=[f"c{c}" for c in range(cameras)]).checked()

        def run(query: np.ndarray, search_filter: SearchFilter = search_filter):
            return filtered_search(index, query, columns.mask(search_filter), k)

        kept = int(columns.mask(search_filter).sum())
        result = timed(run, queries)
        rows.append((f"filter keeping {name} ({kept:,})", result, result[1] / exact[1]))
    snapshot.metadata.close()
    return built, loaded, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=100, help="per measurement (1M: half)")
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| gallery | index | query | p50 ms | p99 ms | p99 / exact p99 |")
    print("|---|---|---|---:|---:|---:|")
    for size in args.sizes:
        vectors = unit_rows(rng, size, args.dim)
        queries = unit_rows(rng, args.queries if size < 1_000_000 else args.queries // 2, args.dim)
        for kind in ("flat", "ivf"):
            with tempfile.TemporaryDirectory() as tmp:
                built, loaded, rows = bench_index(kind, vectors, queries, args.k, Path(tmp))
            for name, (p50, p99), ratio in rows:
                shown = "" if ratio is None else f"{ratio:.2f}x"
                print(f"| {size:,} | {kind} | {name} | {p50:.2f} | {p99:.2f} | {shown} |")
            print(
                f"| {size:,} | {kind} | (index built in {built:.1f} s; filter columns read in "
                f"{loaded:.2f} s on the first filtered search) | | | |",
                flush=True,
            )


if __name__ == "__main__":
    main()
