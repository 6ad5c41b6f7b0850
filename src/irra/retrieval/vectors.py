"""FAISS vector indexes over unit-length embeddings: inner product = cosine similarity.

Two index types:

* ``flat``: exact search (``IndexFlatIP``), every query scans every vector;
* ``ivf``: approximate search for large galleries (``IndexIVFFlat``, inner product): the vectors
  are split into ``nlist`` k-means cells and a query scans the ``nprobe`` nearest cells.

Both keep the vectors themselves, so an index can be rebuilt (another type, more images) without
encoding any image again. Vector ids are row positions 0..N-1.
"""

from __future__ import annotations

import math
import os
from types import ModuleType
from typing import Any

import numpy as np

INDEX_TYPES: tuple[str, ...] = ("flat", "ivf")
#: Largest share of the index that :func:`filtered_search` gathers instead of scanning.
SUBSET_FRACTION = 0.25


def require_faiss() -> ModuleType:
    """The ``faiss`` module, or an ImportError saying how to install it."""
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "irra's image index needs FAISS: pip install 'irra[search]' (or faiss-cpu)"
        ) from err
    return faiss


def check_index_type(name: str) -> str:
    """``name`` if it is a known index type, else ValueError listing the valid ones."""
    if name not in INDEX_TYPES:
        raise ValueError(f"unknown index type '{name}'; valid: {', '.join(INDEX_TYPES)}")
    return name


def default_nlist(count: int) -> int:
    """Number of IVF cells for ``count`` vectors: about sqrt(N), with >= 39 vectors per cell."""
    return max(1, min(round(math.sqrt(count)), count // 39))


def default_nprobe(nlist: int) -> int:
    """Cells scanned per query by default: 1/16 of the cells, at least 8 (or all of them)."""
    return min(nlist, max(8, nlist // 16))


def build_vector_index(vectors: np.ndarray, index_type: str, nlist: int | None = None) -> Any:
    """A FAISS index holding ``vectors`` (N, D) float32 at ids 0..N-1.

    Args:
        vectors: (N, D) float32, unit-length rows.
        index_type: ``flat`` or ``ivf``.
        nlist: IVF cells (default :func:`default_nlist`); ignored for ``flat``.

    Returns:
        A ``faiss.Index`` (``IndexFlatIP`` or trained ``IndexIVFFlat``).
    """
    faiss = require_faiss()
    check_index_type(index_type)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = nlist or default_nlist(count)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234  # k-means is seeded: the same vectors give the same cells
        index.cp.max_points_per_centroid = 64  # train on a sample of at most 64 nlist vectors
        index.cp.niter = 10
        index.train(vectors)
        index.nprobe = default_nprobe(nlist)
    if count:
        index.add(vectors)
    return index


def index_nlist(index: Any) -> int | None:
    """IVF cells of ``index``, or None for a flat index."""
    return int(index.nlist) if hasattr(index, "nlist") else None


def set_nprobe(index: Any, nprobe: int | None) -> None:
    """Set the cells scanned per query of an IVF index (no effect on a flat index)."""
    if nprobe is not None and hasattr(index, "nprobe"):
        if nprobe < 1:
            raise ValueError(f"nprobe must be >= 1, got {nprobe}")
        index.nprobe = min(int(nprobe), int(index.nlist))


def all_vectors(index: Any) -> np.ndarray:
    """Every stored vector, (N, D) float32 in id order."""
    if index.ntotal == 0:
        return np.empty((0, index.d), dtype=np.float32)
    if hasattr(index, "make_direct_map"):
        index.make_direct_map()
    return np.asarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)


def search_vectors(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner products of each query.

    Args:
        queries: (Q, D) float32.
        k: results per query (at most N are returned).

    Returns:
        scores (Q, k') float32 descending and ids (Q, k') int64, k' = min(k, N); an IVF index
        may return fewer hits than k', padded with id -1.
    """
    k = min(int(k), int(index.ntotal))
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if k <= 0:
        empty = np.empty((len(queries), 0))
        return empty.astype(np.float32), empty.astype(np.int64)
    scores, ids = index.search(queries, k)
    return scores, ids


def write_vector_index(index: Any, path: str | os.PathLike[str]) -> None:
    """Write ``index`` to ``path`` (callers write into a temporary folder first)."""
    require_faiss().write_index(index, os.fspath(path))


def read_vector_index(path: str | os.PathLike[str]) -> Any:
    """Read an index written by :func:`write_vector_index`."""
    return require_faiss().read_index(os.fspath(path))


def stored_rows(index: Any, ids: np.ndarray) -> np.ndarray:
    """The stored vectors of ``ids``, (n, D) float32, without copying the others.

    A flat index is read in place; an ivf index is given a direct map (ids -> list positions,
    8 bytes per vector) on first use.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if len(ids) == 0:
        return np.empty((0, index.d), dtype=np.float32)
    if hasattr(index, "get_xb"):  # IndexFlat: a view of its storage
        faiss = require_faiss()
        flat = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d)
        return np.asarray(flat).reshape(index.ntotal, index.d)[ids]
    if hasattr(index, "make_direct_map") and index.direct_map.type == 0:  # NoMap
        index.make_direct_map()
    return np.asarray(index.reconstruct_batch(ids), dtype=np.float32)


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of one query's ``scores`` (n,) over ``ids`` (n,), best first.

    Ties are broken by the lower id. Returns (k',) scores and (k',) ids, k' = min(k, n).
    """
    k = min(k, len(scores))
    if k == 0:
        return np.empty(0, np.float32), np.empty(0, np.int64)
    best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    order = np.lexsort((ids[best], -scores[best]))
    best = best[order]
    return scores[best].astype(np.float32), ids[best].astype(np.int64)


def search_subset(index: Any, query: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Exact top-``k`` of one query (D,) among the vectors ``ids`` (n,): gather, multiply, select.

    Costs O(n D) whatever the index type: the fast path when a filter keeps few images.

    Returns:
        (k',) float32 scores, best first, and their (k',) int64 ids.
    """
    rows = stored_rows(index, ids)
    scores = rows @ np.asarray(query, dtype=np.float32)
    return top_k(scores, np.asarray(ids, dtype=np.int64), k)


def search_selected(
    index: Any, query: np.ndarray, keep: np.ndarray, k: int
) -> tuple[np.ndarray, ...]:
    """Exact top-``k`` of one query (D,) among the vectors whose ``keep`` (N,) bool entry is set.

    FAISS skips the other vectors while it scans (an ``IDSelectorBitmap``); an ivf index scans
    every cell, so the result is exact for both index types. Costs about one unfiltered exact
    scan: the path when a filter keeps many images.

    Returns:
        (k',) float32 scores, best first, and their (k',) int64 ids, k' = min(k, keep.sum()).
    """
    faiss = require_faiss()
    k = min(int(k), int(np.count_nonzero(keep)))
    if k == 0:
        return np.empty(0, np.float32), np.empty(0, np.int64)
    bits = np.packbits(np.asarray(keep, dtype=bool), bitorder="little")
    selector = faiss.IDSelectorBitmap(len(keep), faiss.swig_ptr(bits))
    if hasattr(index, "nlist"):
        params = faiss.SearchParametersIVF(sel=selector, nprobe=int(index.nlist))
    else:
        params = faiss.SearchParameters(sel=selector)
    query = np.ascontiguousarray(np.asarray(query, dtype=np.float32)[None])
    scores, ids = index.search(query, k, params=params)
    found = ids[0] >= 0
    return scores[0][found], ids[0][found]


def filtered_search(
    index: Any, query: np.ndarray, keep: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` of one query (D,) among the vectors ``keep`` (N,) bool lets through.

    Few kept vectors (at most :data:`SUBSET_FRACTION` of the index) are gathered and scored
    directly (:func:`search_subset`); more are scanned by FAISS with a selector
    (:func:`search_selected`). Either way the cost stays below about one exact scan of the whole
    index, and k results come back whenever k vectors pass.
    """
    ids = np.flatnonzero(keep)
    if len(ids) <= SUBSET_FRACTION * max(1, index.ntotal):
        return search_subset(index, query, ids, k)
    return search_selected(index, query, keep, k)
