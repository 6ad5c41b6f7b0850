"""An ivf index of many cells against brute force: exact when every cell is scanned, and with
fewer cells equal to a brute-force search of the vectors in the cells nearest to the query."""

from __future__ import annotations

import numpy as np
import pytest

from irra.retrieval.vectors import (
    build_vector_index,
    default_nprobe,
    index_nlist,
    search_vectors,
    set_nprobe,
)

pytest.importorskip("faiss")


def unit_rows(count: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def ivf():
    vectors = unit_rows(3000, 16, seed=0)
    index = build_vector_index(vectors, "ivf", nlist=24)
    return index, vectors


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, kind="stable")[:k]


@pytest.mark.parametrize("nprobe", [1, 3, 8, 24])
def test_ivf_search_equals_brute_force_over_the_probed_cells(ivf, nprobe):
    index, vectors = ivf
    assert index_nlist(index) == 24
    set_nprobe(index, nprobe)
    assert index.nprobe == nprobe
    queries, k = unit_rows(40, 16, seed=1), 10
    scores, ids = search_vectors(index, queries, k)

    centroids = index.quantizer.reconstruct_n(0, 24)
    cell_of = np.argmax(vectors @ centroids.T, axis=1)  # each vector sits in its nearest cell
    assert len(set(cell_of.tolist())) == 24  # really many cells
    for q, query in enumerate(queries):
        probed = top_k(centroids @ query, nprobe)
        members = np.flatnonzero(np.isin(cell_of, probed))
        all_scores = vectors[members] @ query
        want = members[top_k(all_scores, k)]
        assert ids[q].tolist() == want.tolist(), q
        np.testing.assert_allclose(scores[q], np.sort(all_scores)[::-1][:k], rtol=1e-5, atol=1e-6)
    if nprobe == 24:  # every cell: exact search over the whole gallery
        exact = np.stack([top_k(vectors @ query, k) for query in queries])
        assert np.array_equal(ids, exact)


def test_fewer_probed_cells_find_fewer_true_neighbours(ivf):
    index, vectors = ivf
    queries = unit_rows(100, 16, seed=2)
    exact = {q: set(top_k(vectors @ query, 10).tolist()) for q, query in enumerate(queries)}
    recalls = []
    for nprobe in (1, 4, 24):
        set_nprobe(index, nprobe)
        _, ids = search_vectors(index, queries, 10)
        recalls.append(np.mean([len(exact[q] & set(ids[q].tolist())) / 10 for q in exact]))
    assert recalls[0] < recalls[1] < recalls[2] == 1.0


def test_set_nprobe_is_capped_at_nlist_and_refuses_zero(ivf):
    index, _ = ivf
    set_nprobe(index, 1000)
    assert index.nprobe == 24
    with pytest.raises(ValueError, match="nprobe must be >= 1"):
        set_nprobe(index, 0)
    set_nprobe(index, None)  # None keeps the current value
    assert index.nprobe == 24
    assert default_nprobe(24) == 8  # at least 8 cells (24 // 16 = 1)
