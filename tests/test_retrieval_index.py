"""Index build, update, search and atomicity against brute-force oracles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from retrieval_fixtures import (
    brute_force_ranking,
    draw_image,
    rows_by_path,
    tiny_model,
    write_gallery,
    write_model,
)

import irra
from irra.inference import TorchEncoder
from irra.retrieval import (
    GalleryError,
    IndexStoreError,
    Label,
    QueryError,
    Retriever,
    build_index,
    read_labels,
    scan_images,
)
from irra.retrieval.embedded import EmbeddedStore

QUERY = "a man in a black jacket with a red backpack"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture()
def encoder(model_dir: Path) -> TorchEncoder:
    return TorchEncoder.from_checkpoint(model_dir, device="cpu")


def test_scan_finds_every_image_format_recursively_and_skips_links(tmp_path):
    paths = write_gallery(tmp_path, 10)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    os.symlink(tmp_path / paths[0], tmp_path / "link.jpg")
    assert [f.path for f in scan_images(tmp_path)] == sorted(paths)


@pytest.mark.parametrize("index_type", ["flat", "ivf"])
def test_search_equals_a_brute_force_ranking(tmp_path, encoder, index_type):
    paths = write_gallery(tmp_path / "imgs", 60)
    nprobe = 10_000 if index_type == "ivf" else None  # all cells: the IVF index becomes exact
    build_index(
        encoder,
        tmp_path / "imgs",
        tmp_path / "index",
        index_type=index_type,
        nprobe=nprobe,
        batch_size=7,
    )
    expected = brute_force_ranking(encoder.model, tmp_path / "imgs", paths, QUERY)
    retriever = Retriever.open(tmp_path / "index", device="cpu")
    hits = retriever.search(QUERY, k=10)
    assert [h.path for h in hits] == [p for p, _ in expected[:10]]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected[:10]], atol=1e-5)
    assert [h.rank for h in hits] == list(range(1, 11))
    assert retriever.image_path(hits[0].id) == (tmp_path / "imgs" / hits[0].path).resolve()
    assert len(retriever.search(QUERY, k=1000)) == 60


def test_incremental_update_equals_a_full_rebuild(tmp_path, encoder, monkeypatch):
    gallery = tmp_path / "imgs"
    paths = write_gallery(gallery, 30)
    build_index(encoder, gallery, tmp_path / "index")
    for rel in paths[:4]:
        (gallery / rel).unlink()
    write_gallery(gallery, 5, start=100)
    draw_image(gallery / paths[12], seed=999)  # a .bmp: same size, new content and mtime
    os.utime(gallery / paths[12], ns=(10**18, 10**18))

    encoded: list[int] = []
    original = TorchEncoder.encode_images

    def counting(self, files, **kwargs):
        encoded.append(len(files))
        return original(self, files, **kwargs)

    monkeypatch.setattr(TorchEncoder, "encode_images", counting)
    report = build_index(encoder, gallery, tmp_path / "index")
    assert (report.encoded, report.removed, report.total) == (6, 4, 31)
    assert encoded == [6]
    build_index(encoder, gallery, tmp_path / "fresh")

    inc_paths, inc_vectors = rows_by_path(tmp_path / "index")
    full_paths, full_vectors = rows_by_path(tmp_path / "fresh")
    assert inc_paths == full_paths == sorted(p.path for p in scan_images(gallery))
    np.testing.assert_allclose(inc_vectors, full_vectors, atol=1e-5)
    a = Retriever.open(tmp_path / "index", device="cpu").search(QUERY, 31)
    b = Retriever.open(tmp_path / "fresh", device="cpu").search(QUERY, 31)
    assert [h.path for h in a] == [h.path for h in b]


def test_retriever_add_equals_indexing_the_folder_again(tmp_path, encoder):
    gallery = tmp_path / "imgs"
    write_gallery(gallery, 12)
    build_index(encoder, gallery, tmp_path / "index")
    added = write_gallery(gallery, 3, start=50)
    retriever = Retriever.open(tmp_path / "index", device="cpu")
    assert retriever.add([gallery / added[0], added[1], Path(added[2])]) == 15
    build_index(encoder, gallery, tmp_path / "fresh")
    assert rows_by_path(tmp_path / "index")[0] == rows_by_path(tmp_path / "fresh")[0]
    assert [h.path for h in retriever.search(QUERY, 15)] == [
        h.path for h in Retriever.open(tmp_path / "fresh", device="cpu").search(QUERY, 15)
    ]
    outside = tmp_path / "elsewhere.png"
    draw_image(outside, 1)
    with pytest.raises(GalleryError, match="outside the indexed folder"):
        retriever.add([outside])


def test_an_interrupted_build_leaves_the_previous_index_usable(tmp_path, encoder, monkeypatch):
    gallery = tmp_path / "imgs"
    write_gallery(gallery, 20)
    build_index(encoder, gallery, tmp_path / "index")
    before = [
        (h.path, h.score)
        for h in Retriever.open(tmp_path / "index", device="cpu").search(QUERY, 20)
    ]
    write_gallery(gallery, 5, start=200)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the user pressed Ctrl-C while the new rows were written

    monkeypatch.setattr(EmbeddedStore, "append", crash)
    with pytest.raises(KeyboardInterrupt):
        build_index(encoder, gallery, tmp_path / "index")
    monkeypatch.undo()
    after = [
        (h.path, h.score)
        for h in Retriever.open(tmp_path / "index", device="cpu").search(QUERY, 25)
    ]
    assert after == before
    assert not [p for p in (tmp_path / "index").iterdir() if p.name.endswith(".tmp")]

    (gallery / "cam0" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(GalleryError, match="broken.png"):
        build_index(encoder, gallery, tmp_path / "index")
    assert len(Retriever.open(tmp_path / "index", device="cpu")) == 20


def test_an_index_refuses_a_different_model(tmp_path, encoder):
    write_gallery(tmp_path / "imgs", 5)
    build_index(encoder, tmp_path / "imgs", tmp_path / "index")
    other = write_model(tmp_path / "other", seed=1)
    with pytest.raises(IndexStoreError, match="another model"):
        Retriever.open(tmp_path / "index", checkpoint=other, device="cpu")
    with pytest.raises(IndexStoreError, match="--rebuild"):
        build_index(
            TorchEncoder.from_checkpoint(other, device="cpu"), tmp_path / "imgs", tmp_path / "index"
        )
    report = build_index(
        TorchEncoder.from_checkpoint(other, device="cpu"),
        tmp_path / "imgs",
        tmp_path / "index",
        rebuild=True,
    )
    assert report.encoded == 5
    assert len(Retriever.open(tmp_path / "index", checkpoint=other, device="cpu")) == 5


def test_the_fingerprint_identifies_the_weights_not_the_file(tmp_path):
    a = TorchEncoder.from_checkpoint(write_model(tmp_path / "a.safetensors", seed=0), device="cpu")
    b = TorchEncoder.from_checkpoint(write_model(tmp_path / "b", seed=0), device="cpu")
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != TorchEncoder(tiny_model(seed=1)).fingerprint


def test_bad_queries_are_refused_with_a_reason(tmp_path, encoder):
    write_gallery(tmp_path / "imgs", 3)
    build_index(encoder, tmp_path / "imgs", tmp_path / "index")
    retriever = Retriever.open(tmp_path / "index", device="cpu")
    for text, k, message in [
        ("", 5, "empty"),
        ("   ", 5, "empty"),
        ("x" * (irra.retrieval.MAX_QUERY_CHARS + 1), 5, "at most"),
        (QUERY, 0, "k must be"),
        (QUERY, irra.retrieval.MAX_K + 1, "k must be"),
        (QUERY, 2.5, "k must be"),
    ]:
        with pytest.raises(QueryError, match=message):
            retriever.search(text, k)
    with pytest.raises(KeyError):
        retriever.image_path(3)


def test_missing_or_empty_folders_fail_early(tmp_path, encoder):
    with pytest.raises(GalleryError, match="not a folder"):
        build_index(encoder, tmp_path / "nope", tmp_path / "index")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GalleryError, match="no images"):
        build_index(encoder, tmp_path / "empty", tmp_path / "index")
    with pytest.raises(IndexStoreError, match="not an irra index"):
        Retriever.open(tmp_path / "empty", device="cpu")


def test_labels_from_csv_and_annotation_json_reach_the_results(tmp_path, encoder):
    paths = write_gallery(tmp_path / "imgs", 4)
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(
        "path,identity,camera\n" + "".join(f"{p},id{i},c{i % 2}\n" for i, p in enumerate(paths))
    )
    json_file = tmp_path / "reid_raw.json"
    json_file.write_text(json.dumps([{"file_path": paths[0], "id": 7, "captions": []}]))
    assert read_labels(json_file) == {paths[0]: Label("7", None)}
    build_index(encoder, tmp_path / "imgs", tmp_path / "index", labels=read_labels(csv_file))
    hits = Retriever.open(tmp_path / "index", device="cpu").search(QUERY, 4)
    assert {(h.path, h.identity, h.camera) for h in hits} == {
        (p, f"id{i}", f"c{i % 2}") for i, p in enumerate(paths)
    }
    (tmp_path / "bad.csv").write_text("identity\n3\n")
    with pytest.raises(GalleryError, match="line 2 has no image path"):
        read_labels(tmp_path / "bad.csv")
