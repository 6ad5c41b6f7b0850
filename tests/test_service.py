"""The HTTP API and the CLI commands around an index, checked against the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from retrieval_fixtures import brute_force_ranking, write_gallery, write_model

from irra.cli import main
from irra.retrieval import MAX_K, MAX_QUERY_CHARS, Retriever

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from irra.service import create_app  # noqa: E402
from irra.service.app import MAX_BODY_BYTES  # noqa: E402

QUERY = "a woman in a red dress with a black backpack"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str], Path]:
    """(index, images, paths, model) built through ``irra index``."""
    base = tmp_path_factory.mktemp("service")
    model = write_model(base / "model")
    paths = write_gallery(base / "imgs", 25)
    code = main(
        [
            "index",
            "--checkpoint",
            str(model),
            "--images",
            str(base / "imgs"),
            "--out",
            str(base / "index"),
            "--workers",
            "0",
            "--batch-size",
            "8",
        ]
    )
    assert code == 0
    return base / "index", base / "imgs", paths, model


@pytest.fixture(scope="module")
def client(built) -> TestClient:
    return TestClient(create_app(Retriever.open(built[0], device="cpu")))


def test_search_api_returns_the_brute_force_ranking(built, client):
    index, images, paths, model = built
    response = client.post("/api/search", json={"query": QUERY, "k": 5})
    assert response.status_code == 200
    body = response.json()
    retriever = Retriever.open(index, device="cpu")
    expected = brute_force_ranking(retriever.encoder.model, images, paths, QUERY)[:5]
    assert [r["path"] for r in body["results"]] == [p for p, _ in expected]
    assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4, 5]
    top = body["results"][0]
    picture = client.get(top["url"])
    assert picture.status_code == 200
    assert picture.content == (images / top["path"]).read_bytes()


def test_bad_requests_get_a_4xx_with_a_message(client):
    cases = [
        ({"query": "", "k": 5}, "empty"),
        ({"query": "   ", "k": 5}, "empty"),
        ({"query": "a" * (MAX_QUERY_CHARS + 1), "k": 5}, "at most"),
        ({"query": QUERY, "k": 0}, "k must be"),
        ({"query": QUERY, "k": MAX_K + 1}, "k must be"),
        ({"query": QUERY, "k": "ten"}, None),
        ({"k": 3}, None),
        ({"query": QUERY, "k": 3, "extra": 1}, None),
    ]
    for payload, message in cases:
        response = client.post("/api/search", json=payload)
        assert 400 <= response.status_code < 500, payload
        assert response.json()["detail"]
        if message:
            assert message in response.json()["detail"]
    assert client.post("/api/search", content=b"{not json").status_code == 422
    huge = client.post(
        "/api/search",
        content=b"x" * (MAX_BODY_BYTES + 1),
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413

    def chunks():  # no Content-Length: the cap holds while the body streams in
        yield b'{"query": "'
        for _ in range(MAX_BODY_BYTES // 4096 + 2):
            yield b"a" * 4096
        yield b'"}'

    streamed = client.post(
        "/api/search", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413 and str(MAX_BODY_BYTES) in streamed.json()["detail"]


def test_only_indexed_images_are_served(built, client):
    assert client.get("/api/images/25").status_code == 404
    assert client.get("/api/images/-1").status_code == 404
    for attempt in [
        "/api/images/..%2F..%2Fmodel%2Firra.json",
        "/api/images/../../etc/passwd",
        "/api/images/%2e%2e",
        "/api/images/0.5",
        "/api/images/1e3",
    ]:
        response = client.get(attempt)
        assert 400 <= response.status_code < 500, attempt


def test_health_openapi_and_page(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["images"] == 25
    schema = client.get("/openapi.json").json()
    assert {"/api/search", "/api/images/{image_id}", "/api/health"} <= set(schema["paths"])
    page = client.get("/")
    assert page.status_code == 200 and 'id="query"' in page.text and 'id="k"' in page.text


def test_search_cli_prints_json_and_draws_a_grid(built, tmp_path, capsys):
    index, images, paths, model = built
    capsys.readouterr()
    assert (
        main(
            [
                "search",
                "--index",
                str(index),
                "--device",
                "cpu",
                QUERY,
                "-k",
                "3",
                "--json",
                "--grid",
                str(tmp_path / "grid.png"),
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    expected = [h.path for h in Retriever.open(index, device="cpu").search(QUERY, 3)]
    assert [r["path"] for r in rows] == expected
    assert set(rows[0]) == {"rank", "id", "path", "score", "identity", "camera", "time"} | {
        "source",
        "frame",
        "box",
        "track",
    }
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.width > 3 * 48
    assert main(["search", "--index", str(index), "--device", "cpu", QUERY]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 10 and lines[0].split()[0] == "1"
    assert main(["search", "--index", str(index), "  "]) == 2
    assert main(["search", "--index", str(tmp_path), QUERY]) == 2


def test_index_cli_updates_without_its_arguments(built, tmp_path, capsys):
    index, images, paths, model = built
    capsys.readouterr()
    assert main(["index", "--out", str(index)]) == 0
    assert "0 encoded, 25 unchanged, 0 removed" in capsys.readouterr().out
    assert main(["index", "--out", str(tmp_path / "new")]) == 2
