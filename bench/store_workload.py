"""The workload of ``bench_store.py``, shared by its "after" run and its "before" worker.

A gallery of ``n`` rows (:func:`embedding_like.clustered_vectors`) plus the rows appended later,
queries like the demo model's texts, a camera per row so that camera filters keep 50%, 1% and
0.01% of the rows, the exact top k of every query under every filter (numpy brute force, the
oracle of recall@k), the metadata of each row, and the timing and memory helpers. It imports
no irra module: the worker runs it against an older irra.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from embedding_like import clustered_vectors, queries_like

#: Camera names c0..c9999; row i is on camera (i * CAMERA_STEP) mod CAMERAS (a permutation of
#: every block of CAMERAS rows: cameras do not follow identities or time).
CAMERAS = 10_000
CAMERA_STEP = 7919
#: Filter name -> cameras it keeps (c0 .. c{m-1}): the share of rows that pass.
FILTERS: dict[str, int] = {"50%": 5_000, "1%": 100, "0.01%": 1}
#: Rows of each timed append, and how many appends are timed (the median is reported).
APPEND_ROWS = 1_000
APPENDS = 3
DELETE_ROWS = 1_000
K = 10
#: Scores closer than this to the k-th best count as ties in recall@k (float32 rounding).
TIE = 1e-5
#: Environment variables that keep OpenMP and BLAS to one thread (set to 1 before numpy loads).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: Seconds since the epoch of row 0's capture time (row i: + i seconds).
TIME0 = 1_700_000_000.0


def one_thread() -> None:
    """Pin every compute library this process uses to one thread.

    OpenMP and BLAS read their variables (:data:`THREAD_VARS`) when numpy is imported: the
    scripts set them first thing; this pins FAISS (and PyTorch, if imported).
    """
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:  # the oracle alone runs without FAISS
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


@dataclass
class Gallery:
    """``rows`` gallery rows and :data:`APPENDS` x :data:`APPEND_ROWS` more to append.

    Attributes:
        vectors: (rows + extra, D) float32 unit rows; labels: (rows + extra,) identities.
        queries: (Q, D) float32 unit rows like text queries of gallery identities.
    """

    rows: int
    vectors: np.ndarray
    labels: np.ndarray
    queries: np.ndarray

    @property
    def extra(self) -> int:
        return len(self.vectors) - self.rows


def make_gallery(rows: int, queries: int, dim: int = 512, seed: int = 0) -> Gallery:
    """The gallery of ``rows`` rows (a prefix of the same gallery of more rows)."""
    total = rows + APPENDS * APPEND_ROWS
    vectors, labels = clustered_vectors(total, dim, seed)
    texts, _ = queries_like(queries, rows, dim, seed)
    return Gallery(rows, vectors, labels, texts)


def camera_codes(rows: np.ndarray) -> np.ndarray:
    """(n,) camera numbers of row indices ``rows`` (n,)."""
    return (np.asarray(rows, dtype=np.int64) * CAMERA_STEP) % CAMERAS


def filter_cameras(name: str) -> list[str]:
    """The camera names that filter ``name`` keeps."""
    return [f"c{c}" for c in range(FILTERS[name])]


def make_records(record_type: Callable[..., Any], gallery: Gallery, start: int, stop: int):
    """Records of rows ``start..stop-1`` built with ``record_type`` (an ``ImageRecord`` class):
    a unique path, the identity, the camera and a capture time."""
    cameras = camera_codes(np.arange(start, stop))
    return [
        record_type(
            path=f"gallery/{i:08d}.jpg", size=1000 + i % 997, mtime_ns=i,
            identity=f"p{int(gallery.labels[i])}", camera=f"c{int(c)}", time=TIME0 + i,
        )
        for i, c in zip(range(start, stop), cameras, strict=True)
    ]  # fmt: skip


@dataclass
class Truth:
    """The exact top k of every query under one filter: rows (Q, k') and their scores (Q, k'),
    best first (k' = min(k, rows passing))."""

    rows: np.ndarray
    scores: np.ndarray


def exact_top(gallery: Gallery, k: int = K, chunk: int = 100_000) -> dict[str, Truth]:
    """The oracle: the exact top k among the gallery rows passing no filter ("none") and each
    of :data:`FILTERS`, by brute force over chunks of rows."""
    queries, count = gallery.queries, len(gallery.queries)
    best = dict.fromkeys(["none", *FILTERS], Truth(np.empty((count, 0), np.int64),
                                                   np.empty((count, 0), np.float32)))  # fmt: skip
    for start in range(0, gallery.rows, chunk):
        rows = np.arange(start, min(gallery.rows, start + chunk))
        scores = queries @ gallery.vectors[rows].T
        codes = camera_codes(rows)
        for name, kept in best.items():
            keep = slice(None) if name == "none" else np.flatnonzero(codes < FILTERS[name])
            merged = np.concatenate([kept.scores, scores[:, keep]], axis=1)
            at = np.concatenate(
                [kept.rows, np.broadcast_to(rows[keep], (count, len(rows[keep])))], 1
            )
            take = min(k, merged.shape[1])
            if take < merged.shape[1]:
                part = np.argpartition(-merged, take - 1, axis=1)[:, :take]
                merged, at = np.take_along_axis(merged, part, 1), np.take_along_axis(at, part, 1)
            order = np.argsort(-merged, axis=1, kind="stable")
            best[name] = Truth(
                np.take_along_axis(at, order, 1), np.take_along_axis(merged, order, 1)
            )
    return best


def doomed_rows(rows: int) -> np.ndarray:
    """The (DELETE_ROWS,) gallery rows that the benchmark deletes (the same before and after)."""
    return np.random.default_rng(rows).choice(rows, DELETE_ROWS, replace=False)


def recall(found: np.ndarray, truth: Truth, gallery: Gallery, name: str) -> float:
    """recall@k of ``found`` (Q, k) gallery rows (-1: none) under filter ``name``.

    A found row counts when it passes the filter and its exact score is at least the k-th best
    exact score less :data:`TIE` (rows of equal scores are interchangeable in a top k); the
    count per query is capped at k' (the size of the exact top k).
    """
    wanted = truth.rows.shape[1]
    if wanted == 0:
        return 1.0
    hits = []
    for query, rows, kth in zip(gallery.queries, found, truth.scores[:, -1], strict=True):
        rows = np.unique(rows[(rows >= 0) & (rows < gallery.rows)])
        if name != "none":
            rows = rows[camera_codes(rows) < FILTERS[name]]
        good = int(np.count_nonzero(gallery.vectors[rows] @ query >= kth - TIE))
        hits.append(min(good, wanted))
    return float(np.mean(hits) / wanted)


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of ``call()``."""
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def per_query(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray):
    """Time ``search(query) -> (k,) row indices`` one query at a time, after one warm-up call.

    Returns:
        (p50 ms, p99 ms) and the (Q, K) found rows (-1 padded).
    """
    search(queries[0])
    seconds, found = [], np.full((len(queries), K), -1, np.int64)
    for i, query in enumerate(queries):
        spent, rows = timed(lambda q=query: search(q))
        seconds.append(spent)
        found[i, : len(rows)] = rows[:K]
    ms = 1000 * np.asarray(seconds)
    return (float(np.percentile(ms, 50)), float(np.percentile(ms, 99))), found


def rss_bytes() -> int:
    """Resident memory of this process, after a garbage collection and a malloc trim."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: no trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak: an upper bound


@dataclass
class SearchRow:
    """One search measurement: recall@K against the oracle and per-query latency."""

    filter: str
    kept: int
    recall: float
    p50_ms: float
    p99_ms: float


@dataclass
class Result:
    """Every figure of one (code, engine, index type, rows) store. None: not measured."""

    code: str
    engine: str
    index_type: str
    rows: int
    build_s: float | None = None
    append_ms: float | None = None
    append_seen_ms: float | None = None
    delete_ms: float | None = None
    delete_seen_ms: float | None = None
    compact_s: float | None = None
    open_s: float | None = None
    memory_bytes: int | None = None
    disk_bytes: int | None = None
    searches: list[SearchRow] = field(default_factory=list)
    note: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        searches = [SearchRow(**s) for s in data.get("searches", [])]
        return cls(**{**data, "searches": searches})


def kept_rows(gallery: Gallery) -> dict[str, int]:
    """Rows passing no filter and each of :data:`FILTERS`."""
    codes = camera_codes(np.arange(gallery.rows))
    return {"none": gallery.rows, **{n: int((codes < m).sum()) for n, m in FILTERS.items()}}


def row_lookup(ids: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Map store ids back to gallery rows, given the ascending (n,) ids of rows 0..n-1."""
    order = np.asarray(ids, dtype=np.int64)
    if len(order) > 1 and not (np.diff(order) > 0).all():
        raise ValueError("the store gave ids that do not ascend with the rows")

    def rows(found: np.ndarray) -> np.ndarray:
        found = np.asarray(found, dtype=np.int64)
        at = np.searchsorted(order, found).clip(0, len(order) - 1)
        return np.where(order[at] == found, at, -1)

    return rows


def sizes_checked(sizes: Sequence[int]) -> list[int]:
    """Sizes ascending, each at least :data:`DELETE_ROWS` + 1."""
    if any(s <= DELETE_ROWS for s in sizes):
        raise SystemExit(f"--sizes: every size must exceed {DELETE_ROWS} rows (deleted later)")
    return sorted(set(sizes))
