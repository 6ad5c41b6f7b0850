"""FAISS ANN indexes over unit-length embeddings keyed by row id: inner product = cosine.

Every index type is a FAISS inverted-file index, so that rows are added and removed by id
(``add_with_ids`` / ``remove_ids``, no rebuild) and read back by id (a hash-table direct map):

* ``flat``: one cell holding every vector (fp32): exact search, 4 D bytes per vector;
* ``ivf``: ``nlist`` k-means cells of fp32 vectors; a query scans the ``nprobe`` nearest cells;
* ``ivf-sq8``: the same cells with 8-bit scalar-quantised vectors (D bytes per vector);
* ``ivf-pq``: the same cells with product-quantised vectors (:data:`PQ_BYTES` bytes per vector).

The quantised types give approximate scores; :class:`irra.retrieval.embedded.EmbeddedStore`
re-scores their candidates with the exact vectors it keeps on disk. Below
:data:`MIN_TRAIN_ROWS` rows an approximate type without an explicit ``nlist`` is built as
``flat``: k-means and quantisers need data, and an exact scan of a small gallery is fast.
"""

from __future__ import annotations

import math
import os
from types import ModuleType
from typing import Any

import numpy as np

INDEX_TYPES: tuple[str, ...] = ("flat", "ivf", "ivf-sq8", "ivf-pq")
#: Types whose stored vectors are exact (fp32): their scores need no re-scoring.
EXACT_STORAGE: tuple[str, ...] = ("flat", "ivf")
#: Bytes per vector of ``ivf-pq`` (sub-quantisers of 8 bits).
PQ_BYTES = 64
#: Fewest rows an approximate type is trained on (without an explicit nlist).
MIN_TRAIN_ROWS = 10_000
#: Largest share of the rows that :func:`filtered_search` gathers instead of scanning.
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
        raise ValueError(
            f"index type '{name}' is not offered for an index folder; valid: "
            f"{', '.join(INDEX_TYPES)} (hnsw: a Milvus index only)"
        )
    return name


def default_nlist(count: int) -> int:
    """Number of IVF cells for ``count`` vectors: about sqrt(N), with >= 39 vectors per cell."""
    return max(1, min(round(math.sqrt(count)), count // 39))


def default_nprobe(nlist: int) -> int:
    """Cells scanned per query by default: 1/16 of the cells, at least 8 (or all of them)."""
    return min(nlist, max(8, nlist // 16))


def build_vector_index(
    vectors: np.ndarray,
    index_type: str,
    nlist: int | None = None,
    ids: np.ndarray | None = None,
) -> Any:
    """A FAISS index of ``index_type`` trained on and holding ``vectors``.

    Args:
        vectors: (N, D) float32, unit-length rows.
        index_type: one of :data:`INDEX_TYPES`.
        nlist: IVF cells (default :func:`default_nlist`); ignored for ``flat``.
        ids: (N,) int64 row ids (default 0..N-1).

    Returns:
        A trained ``faiss.IndexIVF`` with a hash-table direct map (reconstruct / remove by id).
    """
    faiss = require_faiss()
    check_index_type(index_type)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    if index_type != "flat" and (count == 0 or (nlist is None and count < MIN_TRAIN_ROWS)):
        index_type = "flat"
    if index_type == "ivf-pq" and count < 256 * 39:  # 256 codes per sub-quantiser
        index_type = "ivf"
    cells = 1 if index_type == "flat" else max(1, min(nlist or default_nlist(count), count or 1))
    quantizer = faiss.IndexFlatIP(dim)
    ip = faiss.METRIC_INNER_PRODUCT
    if index_type in ("flat", "ivf"):
        index = faiss.IndexIVFFlat(quantizer, dim, cells, ip)
    elif index_type == "ivf-sq8":
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, cells, faiss.ScalarQuantizer.QT_8bit, ip
        )
    else:
        index = faiss.IndexIVFPQ(quantizer, dim, cells, PQ_BYTES, 8, ip)
    index.cp.seed = 1234  # k-means is seeded: the same vectors give the same cells
    index.cp.max_points_per_centroid = 64  # train on a sample of at most 64 nlist vectors
    index.cp.niter = 10
    if cells == 1 and index_type in ("flat", "ivf"):  # one cell: nothing to learn
        index.quantizer.add(np.zeros((1, dim), dtype=np.float32))
        index.is_trained = True
    else:
        index.train(vectors)
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    index.nprobe = default_nprobe(cells)
    if count:
        add_vectors(index, vectors, np.arange(count) if ids is None else ids)
    return index


def index_type_of(index: Any) -> str:
    """The :data:`INDEX_TYPES` name of a FAISS index built by :func:`build_vector_index`."""
    faiss = require_faiss()
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivf-pq"
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return "ivf-sq8"
    return "flat" if index.nlist == 1 else "ivf"


def index_nlist(index: Any) -> int | None:
    """IVF cells of ``index``, or None for a flat index."""
    return None if index_type_of(index) == "flat" else int(index.nlist)


def set_nprobe(index: Any, nprobe: int | None) -> None:
    """Set the cells scanned per query (capped at nlist; no effect on a flat index)."""
    if nprobe is not None:
        if nprobe < 1:
            raise ValueError(f"nprobe must be >= 1, got {nprobe}")
        index.nprobe = min(int(nprobe), int(index.nlist))


def add_vectors(index: Any, vectors: np.ndarray, ids: np.ndarray) -> None:
    """Add (N, D) ``vectors`` under (N,) int64 ``ids``."""
    if len(ids):
        index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32),
            np.ascontiguousarray(ids, dtype=np.int64),
        )


def remove_vectors(index: Any, ids: np.ndarray) -> int:
    """Remove the vectors of ``ids`` (absent ids are ignored); returns how many went."""
    if not len(ids):
        return 0
    faiss = require_faiss()
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    return int(index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))


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
    """Write ``index`` to ``path`` (callers write a temporary file and rename it)."""
    require_faiss().write_index(index, os.fspath(path))


def read_vector_index(path: str | os.PathLike[str]) -> Any:
    """Read an index written by :func:`write_vector_index`."""
    return require_faiss().read_index(os.fspath(path))


def stored_rows(index: Any, ids: np.ndarray) -> np.ndarray:
    """The stored vectors of ``ids`` (n,), (n, D) float32 (decoded: approximate for the
    quantised types)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if len(ids) == 0:
        return np.empty((0, index.d), dtype=np.float32)
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


def search_selected(
    index: Any, query: np.ndarray, keep_ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of one query (D,) among the vectors of ``keep_ids`` (sorted int64), by FAISS.

    FAISS skips the other vectors while it scans every cell (an ``IDSelectorBitmap`` over the
    ids), so the result is the exact top k among the passing vectors for the fp32 types (and
    by the quantised score for the others). Costs about one exact scan: the path when a
    filter keeps many rows.

    Returns:
        (k',) float32 scores, best first, and their (k',) int64 ids, k' = min(k, len(keep_ids)).
    """
    faiss = require_faiss()
    if not len(keep_ids) or k <= 0:
        return np.empty(0, np.float32), np.empty(0, np.int64)
    size = int(keep_ids[-1]) + 1
    bits = np.zeros((size + 7) // 8, dtype=np.uint8)
    np.bitwise_or.at(bits, keep_ids >> 3, (1 << (keep_ids & 7)).astype(np.uint8))
    selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))  # n: bytes
    params = faiss.SearchParametersIVF(sel=selector, nprobe=int(index.nlist))
    query = np.ascontiguousarray(np.asarray(query, dtype=np.float32)[None])
    scores, ids = index.search(query, min(k, len(keep_ids)), params=params)
    found = ids[0] >= 0
    return scores[0][found], ids[0][found]
