"""One conformance suite for every store engine (embedded and Milvus), brute force as the oracle.

Random appends, deletes (by id and by every selector) and metadata updates are applied to a
store and, in parallel, to a plain list of the rows that should be there; after each step every
search (unfiltered and with each filter, k below and above the passing count) must equal a
brute-force ranking of those rows, and ids must stay the same through appends, deletes,
compaction and reopening. The Milvus runs talk to a real Milvus Lite server the tests start on
loopback (``tests/milvus_server.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from milvus_server import milvus_uri_factory  # noqa: F401 - the session's server

from irra.retrieval.query import SearchFilter
from irra.retrieval.store import ImageRecord, RowSelector, VectorStore, open_store

DIM = 8
CAMERAS = ("north", "south", "east")


def settings() -> dict:
    return {
        "model": {"fingerprint": "f" * 64, "source": None, "engine": "torch", "config": {}},
        "dim": DIM,
        "images_root": "/gallery",
        "metric": "inner_product",
        "index_type": "flat",
        "nlist": None,
        "nprobe": None,
    }


@pytest.fixture(params=["embedded", "milvus"])
def location(request, tmp_path) -> Iterator[Callable[[], str]]:
    """A fresh store location of each engine (the same one when called again)."""
    if request.param == "embedded":
        where = str(tmp_path / "index")
    else:
        where = request.getfixturevalue("milvus_uri_factory")()
    yield lambda: where


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    rows = rng.standard_normal((count, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def make_records(rng: np.random.Generator, start: int, count: int) -> list[ImageRecord]:
    out = []
    for i in range(start, start + count):
        footage = i % 3 == 0
        out.append(
            ImageRecord(
                f"site{i % 4}/img{i:05d}.jpg",
                100 + i,
                10**9 + i,
                identity=None if i % 7 == 0 else f"p{i % 11}",
                camera=None if i % 13 == 0 else CAMERAS[int(rng.integers(3))],
                time=None if i % 17 == 0 else 1.7e9 + 60.0 * i,
                source=f"/footage/cam{i % 2}.mp4" if footage else None,
                frame=i if footage else None,
                box=(i, 2 * i, 10, 20) if footage else None,
                track=i % 5 if footage else None,
            )
        )
    return out


FILTERS: dict[str, tuple[SearchFilter, Callable[[ImageRecord], bool]]] = {
    "camera": (SearchFilter(cameras=["north"]), lambda r: r.camera == "north"),
    "cameras, one unknown": (
        SearchFilter(cameras=["east", "nowhere"]),
        lambda r: r.camera == "east",
    ),
    "identities": (SearchFilter(identities=["p3", "p5"]), lambda r: r.identity in ("p3", "p5")),
    "time window": (
        SearchFilter(after=1.7e9 + 60.0 * 20, before=1.7e9 + 60.0 * 90),
        lambda r: r.time is not None and 1.7e9 + 1200 <= r.time <= 1.7e9 + 5400,
    ),
    "folder": (SearchFilter(under="site2"), lambda r: r.path.startswith("site2/")),
    "folder and camera": (
        SearchFilter(under="site1", cameras=["south"]),
        lambda r: r.path.startswith("site1/") and r.camera == "south",
    ),
    "nothing passes": (SearchFilter(cameras=["nowhere"]), lambda r: False),
}


def brute_force(rows: dict, query: np.ndarray, k: int, passes=None) -> tuple[list, np.ndarray]:
    ids = [i for i, (r, _) in rows.items() if passes is None or passes(r)]
    if not ids:
        return [], np.empty(0)
    scores = np.array([rows[i][1] @ query for i in ids])
    order = np.lexsort((ids, -scores))[:k]
    return [ids[o] for o in order], scores[order]


def check_searches(store: VectorStore, rows: dict, rng: np.random.Generator) -> None:
    queries = unit(rng, 3)
    for query in queries:
        for k in (1, 5, 200):
            want_ids, want_scores = brute_force(rows, query, k)
            scores, ids = store.search(query[None], k)
            got = ids[0][ids[0] >= 0]
            np.testing.assert_allclose(scores[0][: len(got)], want_scores, atol=1e-5)
            assert _same_ranking(got, scores[0], want_ids, want_scores)
        for name, (search_filter, passes) in FILTERS.items():
            checked = search_filter.checked()
            for k in (3, 500):
                want_ids, want_scores = brute_force(rows, query, k, passes)
                scores, ids = store.search(query[None], k, checked)
                got = ids[0][ids[0] >= 0]
                assert len(got) == len(want_ids), name
                np.testing.assert_allclose(scores[0][: len(got)], want_scores, atol=1e-5)
                assert _same_ranking(got, scores[0], want_ids, want_scores), name
            passing = sum(passes(r) for r, _ in rows.values())
            assert store.count(checked) == passing, name
    assert store.count() == len(rows)


def _same_ranking(got, got_scores, want_ids, want_scores) -> bool:
    """Equal ids in order, except that ids of equal scores may swap."""
    if list(got) == list(want_ids):
        return True
    return sorted(got) == sorted(want_ids) and np.allclose(
        np.sort(got_scores[: len(got)]), np.sort(want_scores), atol=1e-5
    )


SELECTORS: list[tuple[str, Callable[[dict], RowSelector]]] = [
    ("ids", lambda rows: RowSelector(ids=list(rows)[:3] + [10**9])),
    ("path", lambda rows: RowSelector(path="site3/img0")),
    (
        "paths",
        lambda rows: RowSelector(paths=[rows[i][0].path for i in list(rows)[-2:]] + ["nope.jpg"]),
    ),
    ("source", lambda rows: RowSelector(sources=["/footage/cam1.mp4"])),
    ("tracks", lambda rows: RowSelector(tracks=[("/footage/cam0.mp4", 2), ("/nowhere", 1)])),
    ("identity", lambda rows: RowSelector(identities=["p4"])),
    ("before", lambda rows: RowSelector(before=1.7e9 + 60.0 * 40)),
    ("source and before", lambda rows: RowSelector(sources=["/footage/cam0.mp4"], before=2e9)),
    ("nothing", lambda rows: RowSelector(identities=["nobody"])),
]


def test_store_conformance_random_appends_deletes_and_searches_equal_brute_force_milvus(
    location,
):
    """(The name carries `milvus` so that `pytest -k milvus` selects the Milvus runs too.)"""
    rng = np.random.default_rng(7)
    store = open_store(location(), create=settings(), writer=True)
    rows: dict[int, tuple[ImageRecord, np.ndarray]] = {}
    given: set[int] = set()
    made = 0
    try:
        for step, (name, select) in enumerate(SELECTORS):
            count = int(rng.integers(20, 60))
            records, vectors = make_records(rng, made, count), unit(rng, count)
            made += count
            ids = store.append(records, vectors)
            assert len(ids) == count and not given & set(ids.tolist())  # never given twice
            given |= set(ids.tolist())
            rows.update({int(i): (r, v) for i, r, v in zip(ids, records, vectors, strict=True)})
            assert store.get(ids.tolist()) == dict(zip(ids.tolist(), records, strict=True))
            np.testing.assert_array_equal(store.vectors(ids.tolist()), vectors)

            selector = select(rows)
            deleted = store.delete(selector)
            want = sorted(i for i, (r, _) in rows.items() if selector.matches(i, r))
            assert [i for i, _ in deleted] == want, name
            assert all(rows[i][0] == r for i, r in deleted), name
            for i in want:
                del rows[i]
            if step == 3:  # a metadata update keeps ids and vectors
                some = list(rows)[:4]
                new = [ImageRecord(rows[i][0].path, 1, 2, identity="relabelled") for i in some]
                store.update(some, new)
                rows.update({i: (r, rows[i][1]) for i, r in zip(some, new, strict=True)})
            store.maintain()
            check_searches(store, rows, rng)
        assert store.get([10**9, -1]) == {}
        with pytest.raises(KeyError, match=str(min(given - set(rows)))):
            store.vectors([min(given - set(rows))])
        assert dict(store.rows()) == {i: r for i, (r, _) in rows.items()}

        facets = store.facets()
        assert facets.cameras == sorted({r.camera for r, _ in rows.values()} - {None})
        times = [r.time for r, _ in rows.values() if r.time is not None]
        assert (facets.first, facets.last) == (min(times), max(times))

        store.compact()
        check_searches(store, rows, rng)
        more_records, more_vectors = make_records(rng, made, 5), unit(rng, 5)
        more = store.append(more_records, more_vectors)
        assert min(more.tolist()) > max(given)  # after a compaction too
        rows.update(
            {int(i): (r, v) for i, r, v in zip(more, more_records, more_vectors, strict=True)}
        )
    finally:
        store.close()
    reopened = open_store(location())
    try:
        assert {i for i, _ in reopened.rows()} == set(rows)
        check_searches(reopened, rows, rng)
    finally:
        reopened.close()


def test_store_settings_and_sources_round_trip_milvus(location):
    store = open_store(location(), create=settings(), writer=True)
    try:
        assert {k: v for k, v in store.settings().items() if k != "format_version"} == settings()
        assert store.settings()["format_version"] == 4
        signature = {"path": "/footage/cam0.mp4", "state": [1, 2], "crops": "cam0-abc"}
        store.set_source("/footage/cam0.mp4", signature)
        assert store.sources() == {"/footage/cam0.mp4": signature}
        store.set_source("/footage/cam0.mp4", None)
        assert store.sources() == {}
        store.append(
            make_records(np.random.default_rng(0), 0, 3), unit(np.random.default_rng(0), 3)
        )
        new = {**settings(), "index_type": "flat", "images_root": "/elsewhere"}
        store.reset(new)
        assert store.count() == 0 and store.settings()["images_root"] == "/elsewhere"
        ids = store.append(
            make_records(np.random.default_rng(1), 0, 2), unit(np.random.default_rng(1), 2)
        )
        assert min(ids) >= 3  # ids keep counting after a reset
    finally:
        store.close()


def test_a_reader_sees_another_writers_appends_and_deletes_milvus(location):
    rng = np.random.default_rng(3)
    writer = open_store(location(), create=settings(), writer=True)
    reader = open_store(location())
    try:
        ids = writer.append(make_records(rng, 0, 30), unit(rng, 30))
        query = writer.vectors([int(ids[4])])
        assert reader.search(query, 1)[1][0].tolist() == [ids[4]]
        writer.delete(RowSelector(ids=[int(ids[4])]))
        assert int(ids[4]) not in reader.search(query, 30)[1][0].tolist()
        new = writer.append(make_records(rng, 30, 1), query)
        assert reader.search(query, 1)[1][0].tolist() == new.tolist()
    finally:
        reader.close()
        writer.close()
