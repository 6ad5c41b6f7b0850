"""The embedded store's own promises: a full disk fails an append cleanly, compaction reclaims
space, the ANN checkpoint is reused and retrained as the rows grow, the approximate types find
their neighbours, and migration keeps every id."""

from __future__ import annotations

import numpy as np
import pytest
from legacy_index import to_legacy

from irra.retrieval.embedded import DATABASE, EmbeddedStore
from irra.retrieval.legacy import migrate
from irra.retrieval.query import SearchFilter
from irra.retrieval.store import ImageRecord, IndexStoreError, RowSelector, open_store
from irra.retrieval.vectors import index_type_of


def settings(dim: int, index_type: str = "flat", nlist: int | None = None) -> dict:
    return {
        "model": {"fingerprint": "e" * 64, "source": None, "engine": "torch", "config": {}},
        "dim": dim,
        "images_root": "/gallery",
        "metric": "inner_product",
        "index_type": index_type,
        "nlist": nlist,
        "nprobe": None,
    }


def clustered(count: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors around count/10 random centres (people seen several times)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, count // 10), dim)).astype(np.float32)
    rows = centres[rng.integers(len(centres), size=count)] + 0.35 * rng.standard_normal(
        (count, dim)
    ).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def records(start: int, count: int) -> list[ImageRecord]:
    return [
        ImageRecord(f"img{i:06d}.jpg", i, i, camera=f"c{i % 4}")
        for i in range(start, start + count)
    ]


def test_a_full_disk_fails_the_append_and_leaves_the_store_as_it_was(tmp_path):
    store = EmbeddedStore.open(tmp_path / "index", create=settings(64), writer=True)
    vectors = clustered(200, 64, 0)
    store.append(records(0, 200), vectors)
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages + 3}")  # what a full disk gives SQLite
    with pytest.raises(IndexStoreError, match="disk is full.*nothing of this write was stored"):
        store.append(records(200, 500), clustered(500, 64, 1))
    assert store.count() == 200  # nothing half-visible
    scores, ids = store.search(vectors[:1], 3)
    assert ids[0][0] == 0
    store.close()
    with open_store(tmp_path / "index") as reader:
        assert reader.count() == 200 and reader.search(vectors[:1], 1)[1][0][0] == 0


def database_bytes(index) -> int:
    """The database with its write-ahead log."""
    return sum(p.stat().st_size for p in index.glob(f"{DATABASE}*"))


def test_compaction_reclaims_the_space_of_deleted_rows(tmp_path):
    store = EmbeddedStore.open(tmp_path / "index", create=settings(128), writer=True)
    vectors = clustered(3000, 128, 2)
    store.append(records(0, 3000), vectors)
    store.checkpoint()
    full = database_bytes(tmp_path / "index")
    store.delete(RowSelector(ids=list(range(0, 3000, 3)) + list(range(1, 3000, 3))))
    report = store.compact()
    assert report.rows == 1000 and report.bytes_after < report.bytes_before
    assert database_bytes(tmp_path / "index") < full / 2
    assert [i for i, _ in store.rows()] == list(range(2, 3000, 3))  # ids unchanged
    assert len(list((tmp_path / "index").glob("ann-*.faiss"))) == 1
    store.close()


def test_the_checkpoint_is_reused_and_retrained_as_the_rows_grow(tmp_path):
    dim = 32
    store = EmbeddedStore.open(tmp_path / "index", create=settings(dim, "ivf"), writer=True)
    store.append(records(0, 12_000), clustered(12_000, dim, 3))
    store.checkpoint()
    (first,) = (tmp_path / "index").glob("ann-*.faiss")
    with EmbeddedStore.open(tmp_path / "index") as reader:
        reader.search(clustered(1, dim, 9), 5)
        assert index_type_of(reader._memory.ann) == "ivf"
        nlist = reader._memory.ann.nlist
        assert reader._memory.trained == 12_000
    store.append(records(12_000, 40_000), clustered(40_000, dim, 4))
    store.checkpoint()  # 52,000 rows > 4 x 12,000: the cells are trained again
    (second,) = (tmp_path / "index").glob("ann-*.faiss")
    assert second != first
    with EmbeddedStore.open(tmp_path / "index") as reader:
        reader.search(clustered(1, dim, 9), 5)
        assert reader._memory.trained == 52_000 and reader._memory.ann.nlist > nlist
    store.close()


@pytest.mark.parametrize("index_type", ["ivf", "ivf-sq8", "ivf-pq"])
def test_approximate_types_find_most_true_neighbours_with_exact_scores(tmp_path, index_type):
    dim, count = 64, 10_000
    vectors = clustered(count, dim, 5)
    store = EmbeddedStore.open(tmp_path / "index", create=settings(dim, index_type), writer=True)
    store.append(records(0, count), vectors)
    store.checkpoint()
    queries = vectors[:50] + 0.1 * np.random.default_rng(6).standard_normal((50, dim))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    scores, ids = store.search(queries, 10)
    assert index_type_of(store._memory.ann) == index_type
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact, strict=True)])
    assert recall >= 0.8, recall
    found = ids >= 0
    truth = np.einsum("qd,qkd->qk", queries, vectors[np.where(found, ids, 0)])
    np.testing.assert_allclose(scores[found], truth[found], atol=1e-5)  # re-scored exactly
    keep = store.search(queries[:5], 10, where=SearchFilter(cameras=["c1"]).checked())
    assert all(int(i) % 4 == 1 for i in keep[1].ravel() if i >= 0)
    store.close()


def test_migration_keeps_every_id_and_ranking(tmp_path):
    vectors = clustered(500, 16, 7)
    with EmbeddedStore.open(tmp_path / "index", create=settings(16), writer=True) as store:
        store.append(records(0, 500), vectors)
        before = store.search(vectors[:3], 10)
        rows_before = dict(store.rows())
    to_legacy(tmp_path / "index")  # row i of the old format: path order = id order here
    assert migrate(tmp_path / "index") == 500
    assert not (tmp_path / "index" / "CURRENT").exists()
    with open_store(tmp_path / "index") as store:
        assert dict(store.rows()) == rows_before
        after = store.search(vectors[:3], 10)
        np.testing.assert_array_equal(after[1], before[1])
        assert store.append(records(500, 1), vectors[:1]).tolist() == [500]
