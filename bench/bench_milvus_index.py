"""Milvus index types through irra's store: build time, query latency and recall@k against exact.

For each index type (flat, hnsw, ivf) a collection is filled through
:class:`irra.retrieval.milvus.MilvusStore` with embedding-like vectors
(:func:`embedding_like.clustered_vectors`, 512-d) and one of 100 camera names per row, flushed
(the server seals the rows into a segment and builds its index there; unsealed rows are
searched by brute force), then single queries (:func:`embedding_like.queries_like`) are timed
end to end, without and with a filter keeping 1% of the rows. Recall@k is the share of the
exact top k (NumPy) that the store returns; "short" counts the queries that got fewer than k.

Start a server first (Milvus Lite's, or point ``--server`` at a cluster)::

    milvus-lite server --data-dir /tmp/milvus-bench --host 127.0.0.1 --port 19540 &
    OMP_NUM_THREADS=1 python bench/bench_milvus_index.py --server 127.0.0.1:19540 --rows 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from embedding_like import clustered_vectors, queries_like  # noqa: E402

from irra.retrieval.milvus import MilvusStore  # noqa: E402
from irra.retrieval.query import SearchFilter  # noqa: E402
from irra.retrieval.store import ImageRecord  # noqa: E402

TYPES = {
    "flat": {"index_type": "flat"},
    "hnsw": {"index_type": "hnsw", "hnsw_m": 16, "hnsw_ef_construction": 200, "hnsw_ef": 64},
    "ivf": {"index_type": "ivf", "nlist": 128, "nprobe": 8},
}
CAMERAS = 100


def exact_top(vectors: np.ndarray, keep: np.ndarray, query: np.ndarray, k: int) -> set[int]:
    """Row numbers of the exact top ``k`` of ``query`` among the rows where ``keep``."""
    scores = np.where(keep, vectors @ query, -np.inf)
    return set(np.argsort(-scores)[:k].tolist())


def run(server: str, rows: int, queries: int, k: int, name: str) -> None:
    vectors, _ = clustered_vectors(rows)
    asked, _ = queries_like(queries, rows)
    cameras = np.arange(rows) % CAMERAS
    records = [ImageRecord(f"g/{i}.jpg", 1, 1, camera=f"cam{c}") for i, c in enumerate(cameras)]
    settings = {"dim": vectors.shape[1], "model": {"fingerprint": "bench"}, **TYPES[name]}
    uri = f"milvus://{server}/bench_{name}_{int(time.time())}"
    with MilvusStore.open(uri, create=settings) as store:
        start = time.perf_counter()
        ids = store.append(records, vectors)
        appended = time.perf_counter() - start
        start = time.perf_counter()
        store._client.flush(store.collection)
        flushed = time.perf_counter() - start
        row_of = {int(i): n for n, i in enumerate(ids)}
        for label, where, keep in (
            ("no filter", None, np.ones(rows, bool)),
            ("1% camera", SearchFilter(cameras=["cam7"]), cameras == 7),
        ):
            store.search(asked[:1], k, where)  # warm-up
            seconds, hits, short = [], 0, 0
            wanted = min(k, int(keep.sum()))
            for query in asked:
                start = time.perf_counter()
                _, found = store.search(query[None], k, where)
                seconds.append(time.perf_counter() - start)
                got = {row_of[int(i)] for i in found[0] if i >= 0}
                short += len(got) < wanted
                hits += len(got & exact_top(vectors, keep, query, k))
            ms = 1000 * np.asarray(seconds)
            print(
                f"{name:5s} {label:10s} append {appended:6.1f} s  flush+index {flushed:6.1f} s  "
                f"query p50 {np.percentile(ms, 50):6.1f} ms  p99 {np.percentile(ms, 99):6.1f} ms  "
                f"recall@{k} {hits / (len(asked) * wanted):.3f}  short {short}/{len(asked)}"
            )
        for collection in (store.collection, store.meta):  # free the server's memory
            store._client.drop_collection(collection)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="HOST:PORT of a Milvus server")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--types", nargs="+", default=list(TYPES), choices=list(TYPES))
    args = parser.parse_args()
    for name in args.types:
        run(args.server, args.rows, args.queries, args.k, name)


if __name__ == "__main__":
    main()
