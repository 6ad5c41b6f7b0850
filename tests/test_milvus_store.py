"""The Milvus engine against a real server (Milvus Lite's, started by ``milvus_server``).

Every filter, selector and search is checked against a brute-force oracle in numpy
(:meth:`RowSelector.matches`, :func:`passes`), with hostile strings in the data and in the
filters.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable

import numpy as np
import pytest

from irra.retrieval import milvus
from irra.retrieval.milvus import MilvusStore, collection_exists
from irra.retrieval.milvus_expr import prefix_upper_bound, string_literal
from irra.retrieval.query import SearchFilter
from irra.retrieval.store import (
    FORMAT_VERSION,
    ImageRecord,
    IndexStoreError,
    RowSelector,
    VectorStore,
    open_store,
    parse_milvus_uri,
    store_exists,
)

#: The fixtures ``milvus_uri_factory``, ``milvus_uri`` (a real server) and ``free_tcp_port``.
pytest_plugins = ["milvus_server"]

DIM = 16
SETTINGS = {"dim": DIM, "model": {"fingerprint": "m0", "source": "test"}, "index_type": "flat"}
HOSTILE = [
    '" or 1==1 or "',
    "' or 1==1 --",
    'a"b',
    "a'b",
    "back\\slash",
    "ends with \\",
    "%",
    "_",
    "50%_off",
    "line\nbreak",
    "cr\rtab\tend",
    "ünïcödé ✓",
    "{cams}",
    ") or (id >= 0",
]
FOLDERS = ["a/", "a%/", "a_/", "ab/", "a\\b/", "q'\"/", "x/y/", "ü/", "a%b/c_d/"]
CAMERAS = ["c1", "c2", *HOSTILE[:6], None]
IDENTITIES = ["p1", "p2", *HOSTILE[6:], None]
SOURCES = [None, "/v/a.mp4", "/v/b%.mp4", '/v/"c".mp4']


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, DIM) float32 random unit vectors."""
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_records(rng: np.random.Generator, n: int, tag: str = "") -> list[ImageRecord]:
    """``n`` records with every field varied (None included) and hostile strings."""
    records = []
    for i in range(n):
        source = SOURCES[rng.integers(len(SOURCES))]
        records.append(
            ImageRecord(
                path=f"{FOLDERS[rng.integers(len(FOLDERS))]}{tag}{i}.jpg",
                size=int(rng.integers(1, 10**9)),
                mtime_ns=int(rng.integers(0, 2**62)),
                identity=IDENTITIES[rng.integers(len(IDENTITIES))],
                camera=CAMERAS[rng.integers(len(CAMERAS))],
                time=None if rng.random() < 0.2 else float(rng.uniform(1.6e9, 1.7e9)),
                source=source,
                frame=None if source is None else int(rng.integers(1, 10**6)),
                box=None if source is None else tuple(int(v) for v in rng.integers(0, 4000, 4)),
                track=None if source is None or rng.random() < 0.3 else int(rng.integers(0, 5)),
            )
        )
    return records


def passes(where: SearchFilter | None, record: ImageRecord) -> bool:
    """The oracle of a search filter."""
    if where is None:
        return True
    where = where.checked()
    after, before = where.time_range
    moment = record.time
    return (
        (not where.cameras or record.camera in where.cameras)
        and (not where.identities or record.identity in where.identities)
        and (after is None or (moment is not None and moment >= after))
        and (before is None or (moment is not None and moment <= before))
        and (not where.under or record.path.startswith(where.under))
    )


@pytest.fixture(scope="module")
def gallery(milvus_uri_factory: Callable[[], str]):
    """A store of 400 rows (read-only in the tests) and its (ids, records, vectors)."""
    rng = np.random.default_rng(0)
    records = make_records(rng, 400)
    vectors = unit_rows(rng, 400)
    store = MilvusStore.open(milvus_uri_factory(), create=SETTINGS)
    ids = store.append(records, vectors)
    yield store, ids, records, vectors
    store.close()


FILTERS = {
    "none": None,
    "empty": SearchFilter(),
    "camera": SearchFilter(cameras=["c1"]),
    "cameras": SearchFilter(cameras=["c2", 'a"b']),
    "camera hostile": SearchFilter(cameras=['" or 1==1 or "']),
    "camera quote": SearchFilter(cameras=["a'b", "back\\slash", "ends with \\"]),
    "camera unknown": SearchFilter(cameras=["nobody"]),
    "identity": SearchFilter(identities=["p1"]),
    "identity hostile": SearchFilter(identities=["' or 1==1 --", ") or (id >= 0", "{cams}"]),
    "identity wildcards": SearchFilter(identities=["%", "_", "50%_off"]),
    "identity controls": SearchFilter(identities=["line\nbreak", "cr\rtab\tend", "ünïcödé ✓"]),
    "after": SearchFilter(after=1.65e9),
    "before": SearchFilter(before="2023-06-01T00:00:00Z"),
    "between": SearchFilter(after=1.62e9, before=1.64e9),
    "under a": SearchFilter(under="a"),
    "under a%": SearchFilter(under="a%"),
    "under a_": SearchFilter(under="a_/"),
    "under backslash": SearchFilter(under="a\\b"),
    "under quotes": SearchFilter(under="q'\""),
    "under nested wildcards": SearchFilter(under="a%b/c_d"),
    "under unicode": SearchFilter(under="ü"),
    "under missing": SearchFilter(under="nothing here"),
    "all fields": SearchFilter(
        cameras=["c1", "c2"], identities=["p1", "p2"], after=1.6e9, before=1.69e9, under="a"
    ),
}


@pytest.mark.parametrize("name", FILTERS)
def test_milvus_count_matches_the_filter_oracle(gallery, name: str) -> None:
    store, ids, records, _ = gallery
    where = FILTERS[name]
    expected = sum(passes(where, r) for r in records)
    assert store.count(where) == expected


@pytest.mark.parametrize("k", [1, 7, 1000])
@pytest.mark.parametrize("name", FILTERS)
def test_milvus_search_matches_brute_force(gallery, name: str, k: int) -> None:
    store, ids, records, vectors = gallery
    where = FILTERS[name]
    queries = unit_rows(np.random.default_rng(k), 3)
    scores, found = store.search(queries, k, where)
    keep = np.array([passes(where, r) for r in records])
    width = min(k, int(keep.sum()))
    assert scores.shape == found.shape == (3, width)
    assert scores.dtype == np.float32 and found.dtype == np.int64
    for q in range(3):
        exact = np.where(keep, vectors @ queries[q], -np.inf)
        order = np.argsort(-exact, kind="stable")[:width]
        np.testing.assert_array_equal(found[q], ids[order])
        np.testing.assert_allclose(scores[q], exact[order], rtol=0, atol=1e-5)


def test_milvus_round_trip_gives_records_and_vectors_back_exactly(gallery) -> None:
    store, ids, records, vectors = gallery
    assert store.get(ids) == dict(zip(ids.tolist(), records, strict=True))
    assert list(store.rows()) == list(zip(ids.tolist(), records, strict=True))
    order = [int(i) for i in ids[::-7]]
    np.testing.assert_array_equal(store.vectors(order), vectors[::-7])
    assert store.get([-1, 10**6, 2**70]) == {}
    assert store.vectors([]).shape == (0, DIM)
    with pytest.raises(KeyError, match="123456"):
        store.vectors([int(ids[0]), 123456])


def test_milvus_facets_list_cameras_and_time_range(gallery) -> None:
    store, _, records, _ = gallery
    facets = store.facets()
    assert facets.cameras == sorted({r.camera for r in records if r.camera is not None})
    times = [r.time for r in records if r.time is not None]
    assert (facets.first, facets.last) == (min(times), max(times))


def test_milvus_store_follows_the_protocol(gallery, milvus_uri: str) -> None:
    store, *_ = gallery
    assert isinstance(store, VectorStore)
    assert store.dim == DIM and store.location.startswith("milvus://")
    assert not store_exists(milvus_uri) and not collection_exists(milvus_uri)
    opened = open_store(milvus_uri, create=SETTINGS)
    try:
        assert isinstance(opened, MilvusStore) and store_exists(milvus_uri)
        assert opened.count() == 0 and list(opened.rows()) == []
        assert opened.search(unit_rows(np.random.default_rng(1), 2), 5)[1].shape == (2, 0)
    finally:
        opened.close()


def test_milvus_records_with_none_and_extreme_values_round_trip(milvus_uri: str) -> None:
    records = [
        ImageRecord("plain.jpg", 0, 0),
        ImageRecord("ü/ñ 'x\" \\.png", 2**62, 2**63 - 1, "", "", 0.0, "", 0, (0, 0, 0, 0), 0),
        ImageRecord("t.jpg", 1, -5, None, "c", 1.234567890123456e9, None, None, None, None),
        ImageRecord("f.jpg", 1, 1, "id", None, -1e-300, "/s.mp4", 7, (1, 2, 3, 4), None),
    ]
    vectors = unit_rows(np.random.default_rng(2), len(records))
    with MilvusStore.open(milvus_uri, create=SETTINGS) as store:
        ids = store.append(records, vectors)
        assert store.get(ids) == dict(zip(ids.tolist(), records, strict=True))
        np.testing.assert_array_equal(store.vectors(ids), vectors)
    with MilvusStore.open(milvus_uri) as reopened:
        assert [r for _, r in reopened.rows()] == records


def test_milvus_ids_increase_and_are_never_reused(milvus_uri: str) -> None:
    rng = np.random.default_rng(3)
    with MilvusStore.open(milvus_uri, create=SETTINGS) as store:
        first = store.append(make_records(rng, 5, "a"), unit_rows(rng, 5))
        assert first.tolist() == list(range(first[0], first[0] + 5))
        removed = store.delete(RowSelector(ids=[int(first[-1]), int(first[-2])]))
        assert [i for i, _ in removed] == first[-2:].tolist()
        second = store.append(make_records(rng, 2, "b"), unit_rows(rng, 2))
        assert second.tolist() == [first[-1] + 1, first[-1] + 2]
        assert store.append([], np.empty((0, DIM), np.float32)).shape == (0,)
    with MilvusStore.open(milvus_uri) as store:
        store.delete(RowSelector(path=""))  # an empty selector deletes nothing
        assert store.count() == 5
        everything = RowSelector(ids=[i for i, _ in store.rows()])
        assert len(store.delete(everything)) == 5 and store.count() == 0
        third = store.append(make_records(rng, 1, "c"), unit_rows(rng, 1))
        assert third[0] == second[-1] + 1 and third[0] < 2**53


def test_milvus_an_existing_path_is_refused(milvus_uri: str) -> None:
    rng = np.random.default_rng(4)
    records = make_records(rng, 3)
    with MilvusStore.open(milvus_uri, create=SETTINGS) as store:
        store.append(records, unit_rows(rng, 3))
        with pytest.raises(IndexStoreError, match="indexed already; delete it first"):
            store.append(records[1:2], unit_rows(rng, 1))
        twice = make_records(rng, 1, "z") * 2
        with pytest.raises(IndexStoreError, match="twice"):
            store.append(twice, unit_rows(rng, 2))
        with pytest.raises(ValueError, match="vectors"):
            store.append(make_records(rng, 2, "w"), unit_rows(rng, 3))
        bad = ImageRecord("bad-\udcff.jpg", 1, 1)  # a lone surrogate: not UTF-8
        with pytest.raises(IndexStoreError, match="UTF-8"):
            store.append([bad], unit_rows(rng, 1))
        with pytest.raises(IndexStoreError, match="UTF-8"):
            store.set_source("/v/\udcff.mp4", {"size": 1})
        with pytest.raises(IndexStoreError, match="at most 65535 bytes"):
            store.append([ImageRecord("x" * 65536, 1, 1)], unit_rows(rng, 1))
        assert store.count() == 3


SELECTORS = [
    RowSelector(ids=(3, 8, 10**7, -1)),
    RowSelector(path="a%/"),
    RowSelector(path="a_"),
    RowSelector(path="a\\b/"),
    RowSelector(path="q'\"/"),
    RowSelector(sources=("/v/b%.mp4",)),
    RowSelector(tracks=(('/v/"c".mp4', 1), ("/v/a.mp4", 2), ('" or 1==1 or "', 0))),
    RowSelector(identities=("' or 1==1 --", "%")),
    RowSelector(before=1.63e9),
    RowSelector(sources=("/v/a.mp4",), before=1.68e9),
    RowSelector(identities=("p1",), path="x/"),
    RowSelector(ids=tuple(range(60, 120)), identities=("p2", "p1")),
    RowSelector(before=math.nan),
    RowSelector(),
    RowSelector(before=math.inf),
]


def test_milvus_delete_removes_exactly_the_selected_rows(milvus_uri: str) -> None:
    rng = np.random.default_rng(5)
    with MilvusStore.open(milvus_uri, create=SETTINGS) as store:
        store.append(make_records(rng, 300), unit_rows(rng, 300))
        live = dict(store.rows())
        for selector in SELECTORS:
            expected = sorted((i, r) for i, r in live.items() if selector.matches(i, r))
            removed = store.delete(selector)
            assert removed == expected, selector
            live = {i: r for i, r in live.items() if not selector.matches(i, r)}
            assert dict(store.rows()) == live, selector
        assert store.count() == len(live) > 0


@pytest.mark.parametrize("value", HOSTILE)
def test_milvus_hostile_strings_are_stored_and_matched_literally(milvus_uri_factory, value) -> None:
    with MilvusStore.open(milvus_uri_factory(), create=SETTINGS) as store:
        records = [
            ImageRecord(f"{value}/1.jpg", 1, 1, identity=value, camera=value),
            ImageRecord("other/2.jpg", 1, 1, identity="x", camera="x", source=value, track=0),
            ImageRecord(f"{value}x/3.jpg", 1, 1, identity=value + "x", camera="y"),
        ]
        ids = store.append(records, unit_rows(np.random.default_rng(6), 3)).tolist()
        assert store.get(ids) == dict(zip(ids, records, strict=True))
        for where in (SearchFilter(cameras=[value]), SearchFilter(identities=[value])):
            assert store.count(where) == sum(passes(where, r) for r in records) == 1
        under = SearchFilter(under=value).checked()
        expected = sum(r.path.startswith(under.under) for r in records)  # type: ignore[arg-type]
        assert store.count(under) == expected
        assert [i for i, _ in store.delete(RowSelector(tracks=((value, 0),)))] == [ids[1]]
        assert [i for i, _ in store.delete(RowSelector(path=value))] == [ids[0], ids[2]]
        store.set_source(value, {"size": 1, "name": value})
        assert store.sources() == {value: {"size": 1, "name": value}}
        store.set_source(value, None)
        assert store.sources() == {}


def test_milvus_prefix_bound_keeps_exactly_the_strings_with_the_prefix() -> None:
    rng = np.random.default_rng(7)
    alphabet = ["a", "b", "/", "%", "_", "\\", "'", '"', "0", "\U0010ffff", "\ud7ff", "\ue000"]
    words = ["".join(rng.choice(alphabet, rng.integers(0, 5))) for _ in range(2000)]
    for prefix in ["a", "a/", "\U0010ffff", "a\U0010ffff", "\ud7ff", "%_", *words[:50]]:
        bound = prefix_upper_bound(prefix)
        for word in words:
            inside = prefix <= word and (bound is None or word < bound)
            assert inside == word.startswith(prefix), (prefix, word, bound)
    assert prefix_upper_bound("\U0010ffff\U0010ffff") is None
    assert string_literal('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


def test_milvus_settings_and_sources_round_trip(milvus_uri: str) -> None:
    with MilvusStore.open(milvus_uri, create=SETTINGS) as store:
        assert store.settings() == {**SETTINGS, "format_version": FORMAT_VERSION}
        changed = {**SETTINGS, "images_root": "/data/gallery 'x'"}
        store.set_settings(changed)
        assert store.settings() == {**changed, "format_version": FORMAT_VERSION}
        with pytest.raises(IndexStoreError, match="needs a new index"):
            store.set_settings({**SETTINGS, "index_type": "hnsw"})
        signature = {"size": 10, "mtime_ns": 3, "frames": [1, 2]}
        store.set_source("/v/a.mp4", signature)
        store.set_source("/v/b.mp4", signature)
        store.set_source("/v/a.mp4", {**signature, "size": 11})
        store.set_source("/v/never.mp4", None)
        assert store.sources() == {"/v/a.mp4": {**signature, "size": 11}, "/v/b.mp4": signature}


def test_milvus_update_and_reset(milvus_uri: str) -> None:
    rng = np.random.default_rng(8)
    with MilvusStore.open(milvus_uri, create=SETTINGS) as store:
        vectors = unit_rows(rng, 3)
        ids = store.append(make_records(rng, 3), vectors)
        renamed = ImageRecord("renamed.jpg", 5, 6, identity="p9")
        store.update([int(ids[1])], [renamed])
        assert store.get([int(ids[1])]) == {int(ids[1]): renamed}
        np.testing.assert_array_equal(store.vectors(ids), vectors)
        with pytest.raises(KeyError):
            store.update([10**9], [renamed])
        store.set_source("/v/a.mp4", {"size": 1})
        store.reset({**SETTINGS, "dim": 8})
        assert (store.dim, store.count(), store.sources()) == (8, 0, {})
        new = store.append([renamed], np.eye(1, 8, dtype=np.float32))
        assert new[0] > ids[-1]


def test_milvus_a_second_client_sees_writes_at_once(milvus_uri: str) -> None:
    rng = np.random.default_rng(9)
    with (
        MilvusStore.open(milvus_uri, create=SETTINGS) as writer,
        MilvusStore.open(milvus_uri) as reader,
    ):
        assert reader.refresh() is False
        vectors = unit_rows(rng, 4)
        ids = writer.append(make_records(rng, 4), vectors)
        assert reader.refresh() is True and reader.refresh() is False
        assert reader.search(vectors[:1], 1)[1].tolist() == [[ids[0]]]
        writer.delete(RowSelector(ids=[int(ids[0])]))
        assert ids[0] not in reader.search(vectors[:1], 4)[1]
        report = writer.compact()
        assert report.rows == 3 and reader.count() == 3


@pytest.mark.parametrize(
    ("settings", "searched"),
    [
        ({"index_type": "hnsw", "hnsw_m": 8, "hnsw_ef_construction": 40}, {"ef": 64}),
        ({"index_type": "ivf", "nlist": 4}, {"nprobe": 4}),
    ],
)
def test_milvus_approximate_indexes_are_built_and_searched(
    milvus_uri: str, settings: dict, searched: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(10)
    vectors = unit_rows(rng, 200)
    with MilvusStore.open(milvus_uri, create={**SETTINGS, **settings}) as store:
        assert store._index.search == searched
        records = make_records(rng, 200)
        ids = store.append(records, vectors)
        found = store.search(vectors[:5], 1)[1]
        assert found[:, 0].tolist() == ids[:5].tolist()
        where = SearchFilter(cameras=["c1"])
        keep = np.array([passes(where, r) for r in records])
        queries = unit_rows(rng, 4)
        exact = np.where(keep, queries @ vectors.T, -np.inf)
        order = np.argsort(-exact, axis=1)[:, :5]
        for gather in (milvus.EXACT_ROWS, 0):  # scored from the stored vectors; by the server
            monkeypatch.setattr(milvus, "EXACT_ROWS", gather)
            scores, found = store.search(queries, 5, where)
            np.testing.assert_array_equal(found, ids[order])
            np.testing.assert_allclose(scores, np.take_along_axis(exact, order, 1), atol=1e-5)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"index_type": "ivf-pq"}, "not offered on Milvus; valid: flat, ivf, ivf-sq8, hnsw"),
        ({"index_type": "flat", "nlist": 8}, "nlist=8 has no effect on a flat index"),
        ({"index_type": "hnsw", "nprobe": 8}, "nprobe=8 has no effect on a hnsw index"),
        ({"index_type": "hnsw", "hnsw_m": 0}, "hnsw_m must be a positive integer"),
        ({"dim": 0}, "embedding width"),
    ],
)
def test_milvus_bad_index_settings_are_refused(milvus_uri: str, settings, message) -> None:
    with pytest.raises(IndexStoreError, match=message):
        MilvusStore.open(milvus_uri, create={**SETTINGS, **settings})
    assert not collection_exists(milvus_uri)


def test_milvus_unreachable_server_is_an_error_naming_host_and_port(free_tcp_port: int) -> None:
    port = free_tcp_port
    start = time.monotonic()
    with pytest.raises(IndexStoreError) as caught:
        MilvusStore.open(f"milvus://127.0.0.1:{port}/people", create=SETTINGS)
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "cannot reach the Milvus server" in message
    with pytest.raises(IndexStoreError, match=f"127.0.0.1:{port}"):
        store_exists(f"milvus://127.0.0.1:{port}/people")


@pytest.mark.parametrize(
    "uri",
    [
        "milvus://",
        "milvus://host/people",
        "milvus://host:0/people",
        "milvus://host:70000/people",
        "milvus://host:19530/",
        "milvus://host:19530/1people",
        "milvus://host:19530/peo-ple",
        'milvus://host:19530/p" or 1==1',
        "milvus://user:pw@host:19530/people",
        "milvus://host:19530/a/b",
    ],
)
def test_milvus_malformed_uris_are_refused(uri: str) -> None:
    with pytest.raises(IndexStoreError, match="milvus://HOST:PORT/COLLECTION"):
        MilvusStore.open(uri, create=SETTINGS)


def test_milvus_collections_not_made_by_irra_are_refused(milvus_uri: str) -> None:
    from pymilvus import MilvusClient

    host, port, name = parse_milvus_uri(milvus_uri)
    client = MilvusClient(f"http://{host}:{port}", dedicated=True)
    try:
        client.create_collection(name, dimension=DIM)
        with pytest.raises(IndexStoreError, match="was not made by irra"):
            MilvusStore.open(milvus_uri)
        with pytest.raises(IndexStoreError, match="was not made by irra"):
            MilvusStore.open(milvus_uri, create=SETTINGS)
        client.drop_collection(name)
        with MilvusStore.open(milvus_uri, create=SETTINGS):
            pass
        client.upsert(
            name + "_irra",
            [{"key": "format_version", "kind": "state", "value": "3", "dummy": [1, 0]}],
        )
        with pytest.raises(
            IndexStoreError, match=f"index format 3, this irra reads {FORMAT_VERSION}"
        ):
            MilvusStore.open(milvus_uri)
        client.upsert(
            name + "_irra",
            [
                {
                    "key": "format_version",
                    "kind": "state",
                    "value": str(FORMAT_VERSION),
                    "dummy": [1, 0],
                },
                {
                    "key": "settings",
                    "kind": "state",
                    "value": json.dumps({"dim": DIM}),
                    "dummy": [1, 0],
                },
            ],
        )
        with pytest.raises(IndexStoreError, match="fingerprint"):
            MilvusStore.open(milvus_uri)
    finally:
        client.close()


def test_milvus_missing_collection_without_settings_is_an_error(milvus_uri: str) -> None:
    with pytest.raises(IndexStoreError, match="no collection .* irra index"):
        MilvusStore.open(milvus_uri)


def test_milvus_without_pymilvus_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(IndexStoreError, match=r"pip install 'irra\[milvus\]'"):
        MilvusStore.open("milvus://127.0.0.1:19530/people")
