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
