"""``POST /api/search`` and ``/api/search/upload`` against independent oracles.

The JSON route must return what :meth:`Retriever.search` returns for the same query built by hand;
an upload must return what ``irra search --image FILE`` prints for the same file; every bad input
of the issue gets a 4xx with a message, and uploads never touch the disk.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from retrieval_fixtures import write_gallery, write_model
from test_data_hostile import IMAGES

from irra.cli import main
from irra.retrieval import ImagePart, Query, Retriever, SearchFilter, SimilarPart, TextPart

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402

from irra.service import create_app  # noqa: E402
from irra.service.upload import MAX_UPLOAD_BYTES  # noqa: E402

QUERY = "a woman in a red dress with a black backpack"
CAMERAS = ("gate", "hall", "yard")
COUNT = 24


def _time(i: int) -> str:
    return f"2024-05-{1 + i // 6:02d}T{i % 24:02d}:15:00Z"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """(index, images, paths): built by ``irra index`` with a labels file of cameras and times."""
    base = tmp_path_factory.mktemp("search_routes")
    model = write_model(base / "model")
    paths = write_gallery(base / "imgs", COUNT)
    rows = [f"{p},{i % 5},{CAMERAS[i % 3]},{_time(i)}" for i, p in enumerate(paths)]
    (base / "labels.csv").write_text("path,identity,camera,time\n" + "\n".join(rows) + "\n")
    argv = ["index", "--checkpoint", str(model), "--images", str(base / "imgs")]
    argv += ["--out", str(base / "index"), "--labels", str(base / "labels.csv"), "--workers", "0"]
    assert main(argv) == 0
    return base / "index", base / "imgs", paths


@pytest.fixture(scope="module")
def retriever(built) -> Retriever:
    return Retriever.open(built[0], device="cpu")


@pytest.fixture(scope="module")
def client(retriever) -> TestClient:
    return TestClient(create_app(retriever))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _same(results: list[dict], hits) -> None:
    assert [r["id"] for r in results] == [h.id for h in hits]
    assert [r["rank"] for r in results] == list(range(1, len(hits) + 1))
    for row, hit in zip(results, hits, strict=True):
        assert row["score"] == pytest.approx(hit.score, abs=1e-6)
        assert (row["path"], row["camera"], row["time"]) == (hit.path, hit.camera, hit.time)
        assert row["identity"] == hit.identity and row["url"] == f"/api/images/{hit.id}"


# JSON body -> the same search through the Python API, built by hand
JSON_CASES = {
    "old text body": (
        {"query": QUERY, "k": 5},
        dict(query=QUERY, k=5),
    ),
    "text, weighted negative and similar": (
        {"query": QUERY, "query_weight": 2, "not": [{"text": "a backpack", "weight": 0.5}],
         "similar": [3, {"id": 7, "weight": 1.5}], "k": 8},
        dict(query=Query(TextPart(QUERY, 2.0), similar=(SimilarPart(3), SimilarPart(7, 1.5)),
                         negatives=(TextPart("a backpack", 0.5),)), k=8),
    ),
    "similar only, camera and time filters": (
        {"similar": [4], "camera": ["gate", "yard"], "after": "2024-05-02",
         "before": "2024-05-04T12:00:00+02:00", "k": 20},
        dict(query=Query(similar=(4,)), k=20,
             filter=SearchFilter(("gate", "yard"), (), "2024-05-02", "2024-05-04T12:00:00+02:00")),
    ),
    "identity, folder, min score, rerank": (
        {"query": QUERY, "identity": ["1", "2"], "under": "cam1", "min_score": -0.5,
         "rerank": True, "k": 3},
        dict(query=QUERY, k=3, filter=SearchFilter((), ("1", "2"), under="cam1"),
             min_score=-0.5, rerank=True),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(JSON_CASES), ids=list(JSON_CASES))
def test_json_search_equals_the_python_api(client, retriever, case):
    body, call = JSON_CASES[case]
    response = client.post("/api/search", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    hits = retriever.search(**call)
    assert len(hits) > 0
    _same(answer["results"], hits)
    assert answer["k"] == body["k"] and answer["candidates"] == hits.candidates
    assert answer["query"] == body.get("query")


def test_a_camera_filter_returns_only_that_camera_and_fewer_than_k(client, built):
    answer = client.post("/api/search", json={"query": QUERY, "camera": ["hall"], "k": 50}).json()
    assert {r["camera"] for r in answer["results"]} == {"hall"}
    assert len(answer["results"]) == COUNT // 3 == answer["candidates"]


def test_find_similar_puts_the_image_itself_first(client):
    answer = client.post("/api/search", json={"similar": [11], "k": 3}).json()
    assert answer["results"][0]["id"] == 11
    assert answer["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_a_filter_no_image_passes_gives_an_empty_result_with_a_message(client):
    for body in (
        {"query": QUERY, "camera": ["nowhere"]},
        {"query": QUERY, "after": "2030-01-01"},
        {"query": QUERY, "min_score": 1.0},
    ):
        response = client.post("/api/search", json=body)
        assert response.status_code == 200
        assert response.json()["results"] == [] and response.json()["message"], body


def test_an_upload_equals_the_cli_image_query(client, built, tmp_path, capsys):
    index, images, paths = built
    picture = Image.fromarray(np.random.default_rng(5).integers(0, 256, (90, 45, 3), np.uint8))
    query_file = tmp_path / "witness.png"
    picture.save(query_file)
    capsys.readouterr()
    argv = ["search", "--index", str(index), "--device", "cpu", "--image", str(query_file)]
    argv += ["--weight", "2", "--camera", "gate", "--camera", "hall", "-k", "6", "--json"]
    assert main(argv + ["--not", "a backpack", QUERY]) == 0
    expected = json.loads(capsys.readouterr().out)
    response = client.post(
        "/api/search/upload",
        files={"image": ("witness.png", query_file.read_bytes(), "image/png")},
        data={"image_weight": "2", "camera": ["gate", "hall"], "k": "6", "not": "a backpack",
              "query": QUERY},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == [e["id"] for e in expected]
    assert [r["score"] for r in results] == pytest.approx([e["score"] for e in expected], abs=1e-6)
    assert {r["camera"] for r in results} <= {"gate", "hall"}


def test_upload_weights_of_similar_and_not_equal_the_json_route(client, built, tmp_path):
    index, images, paths = built
    picture = Image.fromarray(np.random.default_rng(6).integers(0, 256, (90, 45, 3), np.uint8))
    expected = client.post(
        "/api/search/upload",
        files={"image": ("q.png", _png(picture))},
        data={"similar": ["3", "8"], "similar_weight": ["2.5"], "not": ["a hat", "a bag"],
              "not_weight": ["1", "0.5"], "k": "8"},
    )  # fmt: skip
    assert expected.status_code == 200, expected.text
    unweighted = client.post(
        "/api/search/upload",
        files={"image": ("q.png", _png(picture))},
        data={"similar": ["3", "8"], "not": ["a hat", "a bag"], "k": "8"},
    )
    # the oracle: the Python API with the same weighted parts (tested against brute force)
    with Retriever.open(index, device="cpu") as retriever:
        hits = retriever.search(
            Query(
                None,
                (ImagePart(_png(picture)),),
                (SimilarPart(3, 2.5), SimilarPart(8, 1.0)),
                (TextPart("a hat", 1.0), TextPart("a bag", 0.5)),
            ),
            k=8,
        )
    assert [r["id"] for r in expected.json()["results"]] == [h.id for h in hits]
    got = [r["score"] for r in expected.json()["results"]]
    assert got == pytest.approx([h.score for h in hits], abs=1e-6)
    assert got != pytest.approx([r["score"] for r in unweighted.json()["results"]], abs=1e-6)


def test_an_indexed_file_uploaded_finds_itself_first(client, built):
    index, images, paths = built
    data = (images / paths[9]).read_bytes()
    response = client.post("/api/search/upload", files={"image": (paths[9], data)}, data={"k": 2})
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["path"] == paths[9]


@pytest.mark.parametrize("case", list(IMAGES), ids=list(IMAGES))
def test_each_hostile_upload_is_searched_or_refused_with_a_message(client, case):
    content, accepted = IMAGES[case]
    response = client.post("/api/search/upload", files={"image": ("q.png", content)})
    if accepted:
        assert response.status_code == 200, response.text
        assert len(response.json()["results"]) == 10
    else:
        assert response.status_code == 422, response.text
        assert "upload 'q.png'" in response.json()["detail"]


def test_an_upload_over_the_cap_is_refused_with_413(client):
    big = b"\x89PNG" + bytes(MAX_UPLOAD_BYTES)
    response = client.post("/api/search/upload", files={"image": ("big.png", big)})
    assert response.status_code == 413 and "MiB" in response.json()["detail"]

    def chunks():  # no Content-Length: the cap holds while the body streams in
        yield b"--x\r\nContent-Disposition: form-data; name=image; filename=a.png\r\n\r\n"
        for _ in range(MAX_UPLOAD_BYTES // 65536 + 2):
            yield bytes(65536)

    streamed = client.post(
        "/api/search/upload",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert streamed.status_code == 413


def test_an_upload_is_never_spooled_to_disk(client, monkeypatch):
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 256, (800, 900, 3), np.uint8))
    data = _png(picture)
    assert 1024 * 1024 < len(data) < MAX_UPLOAD_BYTES  # past Starlette's 1 MiB in-memory spool

    def refuse(self):  # type: ignore[no-untyped-def]
        raise AssertionError("an upload was written to a temporary file")

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", refuse)
    response = client.post("/api/search/upload", files={"image": ("big.png", data)})
    assert response.status_code == 200, response.text


BAD_JSON = {
    "unknown similar id": ({"similar": [COUNT]}, 404, f"no image with id {COUNT}"),
    "time not ISO 8601": ({"query": QUERY, "after": "yesterday"}, 422, "ISO 8601"),
    "after later than before": (
        {"query": QUERY, "after": "2024-06-01", "before": "2024-05-01"}, 422, "later than",
    ),
    "weight not a number": ({"query": QUERY, "query_weight": "heavy"}, 422, "query_weight"),
    "weight zero": ({"query": QUERY, "not": [{"text": "x", "weight": 0}]}, 422, "weight"),
    "no positive part": ({"not": ["a backpack"]}, 422, "no positive part"),
    "nothing at all": ({}, 422, "no positive part"),
    "cancelling negative": ({"query": "red", "not": ["red"]}, 422, "cancel"),
    "folder leaving the gallery": ({"query": QUERY, "under": "a/../../b"}, 422, "leaves"),
    "min score above 1": ({"query": QUERY, "min_score": 2}, 422, "min_score"),
    "unknown field": ({"query": QUERY, "colour": "red"}, 422, "colour"),
    "negative id in an object": (
        {"similar": [{"id": -1}]}, 422, "similar.0.id: Input should be greater than or equal to 0",
    ),
    "text not a string": ({"query": QUERY, "not": [5]}, 422, "not.0: Input should be a valid str"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_JSON), ids=list(BAD_JSON))
def test_each_bad_json_query_gets_a_4xx_with_a_message(client, case):
    body, status, words = BAD_JSON[case]
    response = client.post("/api/search", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_bad_upload_requests_get_a_4xx_with_a_message(client):
    png = _png(Image.new("RGB", (8, 16), (1, 2, 3)))
    cases = [
        (dict(data={"query": QUERY}), 415, "multipart"),
        (dict(files={"other": ("q.png", png)}), 422, "image"),
        (dict(files={"image": ("q.png", png)}, data={"after": "soon"}), 422, "ISO 8601"),
        (dict(files={"image": ("q.png", png)}, data={"k": "ten"}), 422, "k"),
        (dict(files={"image": ("q.png", png)}, data={"similar": str(COUNT + 5)}), 404, "no image"),
        (dict(files={"image": ("q.png", png)}, data={"k": ["1", "2"]}), 422, "once"),
        (dict(files={"image": ("q.png", png)}, data={"image_weight": ["1", "2"]}), 422, "one per"),
        (dict(files={"image": ("q.png", png)}, data={"not_weight": "2"}), 422, "0 negative text"),
        (
            dict(files={"image": ("q.png", png)}, data={"similar": "1", "similar_weight": "-1"}),
            422,
            "similar_weight",
        ),
        (dict(files={"image": ("q.png", png), "query": ("t.txt", b"red")}), 422, "not a file"),
    ]
    for kwargs, status, words in cases:
        if "files" not in kwargs:
            response = client.post("/api/search/upload", json=kwargs["data"])
        else:
            response = client.post("/api/search/upload", **kwargs)
        assert response.status_code == status, (kwargs.get("data"), response.text)
        assert words in response.json()["detail"]


def test_facets_list_the_cameras_and_time_range(client):
    facets = client.get("/api/facets").json()
    assert facets["cameras"] == sorted(CAMERAS)
    assert facets["first_time"] == min(_time(i) for i in range(COUNT))
    assert facets["last_time"] == max(_time(i) for i in range(COUNT))
