"""Query parts, filters, thresholds and capture times against brute-force oracles."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from legacy_index import to_legacy
from PIL import Image
from retrieval_fixtures import tiny_model, write_gallery, write_model

from irra.cli import main
from irra.data.transforms import build_eval_transform
from irra.inference import TorchEncoder
from irra.retrieval import (
    ImagePart,
    IndexStoreError,
    Query,
    QueryError,
    Retriever,
    SearchFilter,
    SimilarPart,
    TextPart,
    build_index,
    read_labels,
)
from irra.retrieval.build import store_settings
from irra.retrieval.legacy import METADATA
from irra.retrieval.store import ImageRecord, open_store
from irra.tokenizer import tokenize

TEXT = "a woman in a red coat"
NEGATIVE = "a black backpack"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, model_dir) -> dict:
    root = tmp_path_factory.mktemp("gallery")
    paths = sorted(write_gallery(root / "imgs", 30))
    build_index(
        TorchEncoder.from_checkpoint(model_dir, device="cpu"), root / "imgs", root / "index"
    )
    return {"root": root, "paths": paths}


@pytest.fixture()
def retriever(gallery, model_dir):
    opened = Retriever.open(gallery["root"] / "index", device="cpu")
    yield opened
    opened.close()


# -- an oracle that encodes everything itself, one item at a time --------------------------------


def unit(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.float(), dim=-1)[0].numpy()


def embed_text(text: str) -> np.ndarray:
    model = tiny_model()
    with torch.no_grad():
        return unit(model.encode_text(tokenize([text], model.config.clip.text.context_length)))


def embed_image(path: Path) -> np.ndarray:
    model = tiny_model()
    transform = build_eval_transform(model.config.clip.vision.image_size)
    with Image.open(path) as image, torch.no_grad():
        return unit(model.encode_image(transform(image.convert("RGB"))[None]))


def oracle(root: Path, paths: list[str], query: np.ndarray, k: int, keep=None) -> list[tuple]:
    """(path, score) of the k best of ``paths`` (those ``keep`` accepts) for ``query``."""
    query = query / np.linalg.norm(query)
    scored = [(p, float(embed_image(root / p) @ query)) for p in paths if keep is None or keep(p)]
    return sorted(scored, key=lambda item: -item[1])[:k]


def assert_same(hits, expected) -> None:
    assert [h.path for h in hits] == [p for p, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-5)


# -- query parts --------------------------------------------------------------------------------


def test_an_image_query_equals_brute_force(gallery, retriever, tmp_path):
    probe = tmp_path / "probe.png"
    Image.open(gallery["root"] / "imgs" / gallery["paths"][4]).convert("RGB").save(probe)
    expected = oracle(gallery["root"] / "imgs", gallery["paths"], embed_image(probe), 8)
    assert_same(retriever.search(images=[probe], k=8), expected)
    assert_same(retriever.search(images=[probe.read_bytes()], k=8), expected)  # an upload


def test_a_weighted_combination_equals_brute_force(gallery, retriever):
    root, paths = gallery["root"] / "imgs", gallery["paths"]
    image = root / paths[7]
    similar_id = 11  # ids follow the path order
    vector = (
        2.0 * embed_text(TEXT)
        + 0.5 * embed_image(image)
        + 1.0 * embed_image(root / paths[similar_id])
        - 0.75 * embed_text(NEGATIVE)
    )
    expected = oracle(root, paths, vector, 10)
    query = Query(
        TextPart(TEXT, 2.0),
        images=(ImagePart(image, 0.5),),
        similar=(SimilarPart(similar_id),),
        negatives=(TextPart(NEGATIVE, 0.75),),
    )
    assert_same(retriever.search(query, k=10), expected)
    keywords = retriever.search(
        TextPart(TEXT, 2.0),
        k=10,
        images=[ImagePart(image, 0.5)],
        similar=[similar_id],
        negatives=[TextPart(NEGATIVE, 0.75)],
    )
    assert_same(keywords, expected)


def test_find_similar_puts_the_image_itself_first(gallery, retriever):
    hits = retriever.search(similar=[5], k=3)
    assert hits[0].id == 5 and hits[0].path == gallery["paths"][5]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_old_text_calls_keep_working(gallery, retriever):
    expected = oracle(gallery["root"] / "imgs", gallery["paths"], embed_text(TEXT), 5)
    hits = retriever.search(TEXT, 5)
    assert isinstance(hits, list) and hits.message is None
    assert_same(hits, expected)
    assert_same(retriever.search(TEXT, k=5), expected)


def test_min_score_keeps_only_hits_at_or_above_it(gallery, retriever):
    everything = retriever.search(TEXT, k=30)
    cut = everything[9].score
    kept = retriever.search(TEXT, k=30, min_score=cut)
    assert [h.id for h in kept] == [h.id for h in everything if h.score >= cut]
    none = retriever.search(TEXT, k=30, min_score=1.0)
    assert list(none) == [] and "cosine similarity" in none.message


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _bomb() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


BAD_QUERIES = {
    "no positive part": (dict(negatives=["a hat"]), "no positive part"),
    "nothing at all": (dict(), "no positive part"),
    "empty text": (dict(query="  "), "empty"),
    "unknown similar id": (dict(similar=[30]), "no image with id 30"),
    "negative id": (dict(similar=[-1]), "image id"),
    "id not a number": (dict(similar=["7"]), "image id"),
    "weight not a number": (dict(query=TextPart(TEXT, "heavy")), "must be a number"),
    "weight nan": (dict(images=[ImagePart(b"x", float("nan"))]), r"number in \(0, 100\]"),
    "weight zero": (dict(similar=[SimilarPart(1, 0.0)]), r"number in \(0, 100\]"),
    "not an image": (dict(images=[b"hello, not an image"]), "upload: cannot read image"),
    "truncated": (
        dict(images=[ImagePart(_png(Image.new("RGB", (64, 128)), "JPEG")[:300], name="t.jpg")]),
        "t.jpg: cannot read image",
    ),
    "decompression bomb": (dict(images=[_bomb()]), "decompression bomb"),
    "missing file": (dict(images=["/nonexistent/x.png"]), "no such file"),
    "bad time": (dict(query=TEXT, filter=SearchFilter(after="last tuesday")), "ISO 8601"),
    "after later than before": (
        dict(query=TEXT, filter=SearchFilter(after="2024-05-02", before="2024-05-01")),
        "later than before",
    ),
    "under leaves the folder": (dict(query=TEXT, filter=SearchFilter(under="../x")), "leaves"),
    "under outside the folder": (dict(query=TEXT, filter=SearchFilter(under="/etc")), "not inside"),
    "min score above 1": (dict(query=TEXT, min_score=1.5), r"\[-1, 1\]"),
    "k zero": (dict(query=TEXT, k=0), "k must be"),
}


@pytest.mark.parametrize("case", list(BAD_QUERIES), ids=list(BAD_QUERIES))
def test_bad_queries_raise_a_query_error_saying_what_is_wrong(retriever, case):
    kwargs, message = BAD_QUERIES[case]
    with pytest.raises(QueryError, match=message):
        retriever.search(**kwargs)


def test_a_filter_no_image_passes_gives_an_empty_result_with_a_message(retriever):
    hits = retriever.search(TEXT, filter=SearchFilter(cameras=["no such camera"]))
    assert list(hits) == [] and hits.candidates == 0
    assert "passes the filter" in hits.message


def test_query_and_filter_from_json():
    query = Query.from_dict(
        {"text": "red coat", "text_weight": 2, "similar": [3, {"id": 4, "weight": 0.5}],
         "not": ["hat", {"text": "bag", "weight": 0.25}]}
    )  # fmt: skip
    assert query == Query(
        TextPart("red coat", 2.0),
        (),
        (SimilarPart(3), SimilarPart(4, 0.5)),
        (TextPart("hat"), TextPart("bag", 0.25)),
    )
    checked = SearchFilter.from_dict(
        {"camera": "c1", "identity": ["7", "8"], "after": "2024-05-01T00:00:00Z",
         "before": "2024-05-01T02:00:00+02:00", "under": "./a/b/"}
    )  # fmt: skip
    assert checked.cameras == ("c1",) and checked.identities == ("7", "8")
    assert checked.time_range == (1714521600.0, 1714521600.0)  # 00:00 UTC twice, worked by hand
    assert checked.under == "a/b/"
    for bad, message in (
        ({"text": "x", "color": "red"}, "unknown query field"),
        ({"similar": 3}, "must be a list"),
        ({"similar": [{"weight": 2}]}, "lacks the field 'id'"),
        ([], "JSON object"),
    ):
        with pytest.raises(QueryError, match=message):
            Query.from_dict(bad)
    with pytest.raises(QueryError, match="unknown filter field"):
        SearchFilter.from_dict({"cam": "c1"})
    with pytest.raises(QueryError, match="absolute"):
        SearchFilter.from_dict({"under": "/srv/gallery/site-a"})


# -- filters: exact over the passing images, flat and ivf ----------------------------------------

CAMERAS = ("north", "south", "east", "west")
BASE_TIME = 1_700_000_000.0


@pytest.fixture(scope="module", params=["flat", "ivf"])
def random_index(request, tmp_path_factory, model_dir) -> dict:
    """4,000 random unit vectors written through the store API, with labels per image."""
    kind = request.param
    root = tmp_path_factory.mktemp(f"random-{kind}")
    encoder = TorchEncoder.from_checkpoint(model_dir, device="cpu")
    rng = np.random.default_rng(0)
    count = 4000
    vectors = rng.standard_normal((count, encoder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [
        ImageRecord(
            f"site{i % 5}/day{i % 7}/img{i:05d}.jpg",
            1,
            0,
            identity=str(i % 400),
            camera=CAMERAS[i % 2] if i % 1000 else CAMERAS[2],  # east: 4 images only
            time=BASE_TIME + 60.0 * i,
        )
        for i in range(count)
    ]
    order = sorted(range(count), key=lambda i: records[i].path)  # ids follow the path order
    records, vectors = [records[i] for i in order], vectors[order]
    settings = store_settings(encoder, root, kind, nlist=64, nprobe=2)
    with open_store(root / "index", create=settings, writer=True) as store:
        store.append(records, vectors)  # ids 0..N-1 in path order
    return {"index": root / "index", "records": records, "vectors": vectors, "kind": kind}


FILTERS = {
    "camera, half": (SearchFilter(cameras=["north"]), lambda r: r.camera == "north"),
    "two cameras": (SearchFilter(cameras=["north", "east"]), lambda r: r.camera != "south"),
    "camera, 4 images (< k)": (SearchFilter(cameras=["east"]), lambda r: r.camera == "east"),
    "identities": (SearchFilter(identities=["3", "17"]), lambda r: r.identity in ("3", "17")),
    "time window": (
        SearchFilter(after="2023-11-14T22:13:20Z", before="2023-11-15T00:00:00+00:00"),
        lambda r: BASE_TIME <= r.time <= 1700006400.0,  # worked by hand: 00:00 UTC, 15 Nov
    ),
    "after only": (
        SearchFilter(after=BASE_TIME + 60.0 * 3990),
        lambda r: r.time >= BASE_TIME + 60.0 * 3990,
    ),
    "folder": (SearchFilter(under="site3"), lambda r: r.path.startswith("site3/")),
    "nested folder": (
        SearchFilter(under="site3/day2/"),
        lambda r: r.path.startswith("site3/day2/"),
    ),
    "folder and camera": (
        SearchFilter(under="site1", cameras=["south"]),
        lambda r: r.path.startswith("site1/") and r.camera == "south",
    ),
}


@pytest.mark.parametrize("case", list(FILTERS), ids=list(FILTERS))
def test_a_filter_equals_brute_force_over_the_passing_images(random_index, case):
    search_filter, passes = FILTERS[case]
    records, vectors = random_index["records"], random_index["vectors"]
    retriever = Retriever.open(random_index["index"], device="cpu")
    try:
        for probe in (0, 1234, 3999):
            query = vectors[probe]
            keep = np.array([passes(r) for r in records])
            assert keep.sum() > 0
            ids = np.flatnonzero(keep)
            scores = vectors[ids] @ query
            order = np.lexsort((ids, -scores))[:10]
            hits = retriever.search(similar=[probe], k=10, filter=search_filter)
            assert [h.id for h in hits] == ids[order].tolist(), case
            np.testing.assert_allclose([h.score for h in hits], scores[order], atol=1e-5)
            assert len(hits) == min(10, keep.sum()) and hits.candidates == keep.sum()
            assert all(passes(records[h.id]) for h in hits)
    finally:
        retriever.close()


def test_the_ivf_test_index_has_many_cells(random_index):
    retriever = Retriever.open(random_index["index"], device="cpu")
    try:
        retriever.search("a person", k=1)  # loads the ANN index
        ann = retriever.store._memory.ann
        if random_index["kind"] == "ivf":
            assert ann.nlist == 64 and ann.nprobe == 2
    finally:
        retriever.close()


# -- capture times ------------------------------------------------------------------------------


def _with_exif_time(path: Path, stamp: str, offset: str | None = None) -> None:
    image = Image.open(path).convert("RGB")
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    ifd[0x9003] = stamp
    if offset:
        ifd[0x9011] = offset
    image.save(path, exif=exif)


def test_capture_time_comes_from_labels_else_exif_else_mtime(tmp_path, model_dir):
    images = tmp_path / "imgs"
    images.mkdir()
    for i, name in enumerate(("a.jpg", "b.jpg", "c.jpg", "d.png")):
        Image.new("RGB", (16, 32), (i * 60, 10, 10)).save(images / name)
    _with_exif_time(images / "b.jpg", "2021:03:04 05:06:07")
    _with_exif_time(images / "c.jpg", "2021:03:04 05:06:07", "+02:00")
    os.utime(images / "d.png", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    labels = tmp_path / "labels.csv"
    labels.write_text("path,camera,time\na.jpg,gate,2022-01-02T03:04:05+01:00\nb.jpg,gate,\n")
    encoder = TorchEncoder.from_checkpoint(model_dir, device="cpu")
    build_index(encoder, images, tmp_path / "index", labels=read_labels(labels))
    retriever = Retriever.open(tmp_path / "index", device="cpu")
    times = {h.path: h.time for h in retriever.search("a person", k=4)}
    assert times == {
        "a.jpg": "2022-01-02T02:04:05Z",  # the label's, moved to UTC by hand
        "b.jpg": "2021-03-04T05:06:07Z",  # EXIF without offset: read as UTC
        "c.jpg": "2021-03-04T03:06:07Z",  # EXIF with its +02:00 offset
        "d.png": "2020-09-13T12:26:40Z",  # the modification time, 1.6e9 s
    }
    window = SearchFilter(after="2021-01-01", before="2021-12-31T23:59:59")
    assert {h.path for h in retriever.search("a person", k=4, filter=window)} == {"b.jpg", "c.jpg"}
    retriever.close()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"path": "a.jpg", "time": "noon"}]))
    with pytest.raises(Exception, match=r"bad.json: entry 0 \(a.jpg\): time 'noon' is not an ISO"):
        read_labels(bad)


def test_a_format_1_index_is_refused_then_upgraded_without_encoding(
    tmp_path, model_dir, monkeypatch, capsys
):
    paths = write_gallery(tmp_path / "imgs", 6)
    encoder = TorchEncoder.from_checkpoint(model_dir, device="cpu")
    build_index(encoder, tmp_path / "imgs", tmp_path / "index")
    version = to_legacy(tmp_path / "index")
    # Turn it into a format-1 index: no time column, format_version 1.
    conn = sqlite3.connect(version / METADATA)
    conn.execute("ALTER TABLE images DROP COLUMN time")
    conn.commit()
    conn.close()
    manifest = json.loads((version / "manifest.json").read_text())
    (version / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    with pytest.raises(IndexStoreError, match="format 1 is older.*irra index --out"):
        Retriever.open(tmp_path / "index", device="cpu")
    encoded = []
    original = TorchEncoder.encode_images

    def counting(self, files, **kwargs):
        encoded.extend(files)
        return original(self, files, **kwargs)

    monkeypatch.setattr(TorchEncoder, "encode_images", counting)
    # `irra index --out INDEX`, the command the error names, upgrades it.
    assert main(["index", "--out", str(tmp_path / "index"), "--device", "cpu"]) == 0
    assert encoded == [] and "0 encoded, 6 unchanged" in capsys.readouterr().out
    retriever = Retriever.open(tmp_path / "index", device="cpu")
    hits = retriever.search("a person", k=6)
    assert {h.path for h in hits} == set(paths) and all(h.time for h in hits)
    stamp = dt.datetime.fromisoformat(hits[0].time).timestamp()
    assert stamp == pytest.approx((tmp_path / "imgs" / hits[0].path).stat().st_mtime, abs=1)
    retriever.close()


# -- re-ranking ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["no filter", "camera, half"])
def test_rerank_equals_a_brute_force_neighbour_rescoring(random_index, case):
    records, vectors = random_index["records"], random_index["vectors"]
    search_filter, passes = FILTERS.get(case, (None, lambda r: True))
    query = vectors[77]
    keep = np.array([passes(r) for r in records])
    ids = np.flatnonzero(keep)
    scores = vectors[ids] @ query
    first = ids[np.lexsort((ids, -scores))[:100]]  # the 100 candidates
    everything = vectors @ query
    rescored = []
    for g in first:
        sims = vectors @ vectors[g]
        sims[g] = -np.inf  # not its own neighbour
        near = np.argsort(-sims, kind="stable")[:3]
        rescored.append((everything[g] + 0.5 * everything[near].mean()) / 1.5)
    rescored = np.asarray(rescored)
    order = np.lexsort((first, -rescored))[:10]
    with Retriever.open(random_index["index"], device="cpu") as retriever:
        hits = retriever.search(similar=[77], k=10, filter=search_filter, rerank=True)
    if random_index["kind"] == "ivf":  # its neighbour lists are approximate (2 of 64 cells)
        assert all(passes(records[h.id]) for h in hits) and set(h.id for h in hits) <= set(first)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        return
    assert [h.id for h in hits] == first[order].tolist()
    np.testing.assert_allclose([h.score for h in hits], rescored[order], atol=1e-5)
