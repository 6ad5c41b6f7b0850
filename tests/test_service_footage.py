"""Footage over HTTP: results carry their provenance, and ``/api/images/{id}/frame`` serves the
frame a hit came from, checked against the frame decoded directly from the source."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from retrieval_fixtures import stored_rows, write_gallery, write_model

from irra.data.synth.scenes import SceneParams, generate_scenes
from irra.inference import TorchEncoder
from irra.retrieval import Retriever, build_index
from irra.retrieval.capture import format_time, parse_time
from irra.retrieval.footage import FootageSource, build_footage_index

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
av = pytest.importorskip("av")
from fastapi.testclient import TestClient  # noqa: E402

from irra.service import create_app  # noqa: E402

PARAMS = SceneParams(sequences=1, frames=30, width=320, height=180, seed=5, video=True)
START = "2024-05-01T14:00:00Z"
QUERY = "a woman in a red coat"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A frame-folder index (camera "gate", with times), an mp4 index and an image index."""
    base = tmp_path_factory.mktemp("footage_routes")
    generate_scenes(base / "scenes", PARAMS)
    sequence = base / "scenes" / "SYNTH-01"
    encoder = TorchEncoder.from_checkpoint(write_model(base / "model"), device="cpu")
    folder = FootageSource(sequence, camera="gate", start=parse_time(START))
    build_footage_index(encoder, [folder], base / "frames")
    video = FootageSource(sequence / "SYNTH-01.mp4", detections=sequence / "det" / "det.txt")
    build_footage_index(encoder, [video], base / "video")
    write_gallery(base / "imgs", 3)
    build_index(encoder, base / "imgs", base / "images")
    return {"frames": base / "frames", "video": base / "video", "images": base / "images"}


def _client(index: Path) -> TestClient:
    return TestClient(create_app(Retriever.open(index, device="cpu")))


def _records(index: Path) -> dict:
    """Every record of the index by id, read from its metadata store."""
    return dict(stored_rows(index))


def _direct_frame(source: Path, number: int) -> np.ndarray:
    """Frame ``number`` (1-based) read without irra: the n-th decoded video frame, or the file."""
    if source.is_dir():
        with Image.open(source / "img1" / f"{number:06d}.jpg") as image:
            return np.asarray(image.convert("RGB"))
    with av.open(str(source)) as container:
        for n, frame in enumerate(container.decode(video=0), start=1):
            if n == number:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"{source} has no frame {number}")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, dB."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse)) if mse else float("inf")


def _jpeg(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("kind", ["frames", "video"])
def test_hits_carry_provenance_and_their_whole_frame(built, kind):
    index = built[kind]
    records = _records(index)
    client = _client(index)
    response = client.post("/api/search", json={"query": QUERY, "k": 5})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 5
    for hit in results:
        stored = records[hit["id"]]  # the provenance in the metadata store
        assert hit["source"] == stored.source and hit["frame"] == stored.frame
        assert tuple(hit["box"]) == tuple(stored.box) and hit["track"] == stored.track
        assert hit["frame_url"] == f"/api/images/{hit['id']}/frame"
        served = client.get(hit["frame_url"])
        assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
        expected = _direct_frame(Path(stored.source), stored.frame)
        got = _jpeg(served.content)
        assert got.shape == expected.shape
        assert _psnr(got, expected) > 32  # JPEG quality 90 of that frame
        other = stored.frame + 1 if stored.frame < PARAMS.frames else stored.frame - 1
        assert _psnr(got, expected) > _psnr(got, _direct_frame(Path(stored.source), other))
        # the stored crop (lossless) is the box of that same frame
        x, y, w, h = hit["box"]
        with Image.open(index / stored.path) as crop:
            assert np.array_equal(np.asarray(crop.convert("RGB")), expected[y : y + h, x : x + w])


def test_the_upload_route_carries_provenance(built):
    index = built["frames"]
    records = _records(index)
    first = next(iter(records.values()))
    with open(index / first.path, "rb") as photo:
        response = _client(index).post(
            "/api/search/upload", files={"image": ("crop.png", photo, "image/png")}, data={"k": 3}
        )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 3
    for hit in results:
        stored = records[hit["id"]]
        assert (hit["source"], hit["frame"], hit["track"]) == (
            stored.source,
            stored.frame,
            stored.track,
        )
        assert tuple(hit["box"]) == tuple(stored.box)


def test_facets_and_filters_cover_footage(built):
    records = _records(built["frames"])
    times = sorted(r.time for r in records.values())
    client = _client(built["frames"])
    facets = client.get("/api/facets").json()
    assert facets["cameras"] == ["gate"]
    assert parse_time(facets["first_time"]) == pytest.approx(times[0], abs=1e-3)
    assert parse_time(facets["last_time"]) == pytest.approx(times[-1], abs=1e-3)
    middle = times[len(times) // 2]
    after = client.post(
        "/api/search",
        json={"query": QUERY, "k": 50, "after": format_time(middle, milliseconds=True)},
    ).json()["results"]
    assert after and all(records[h["id"]].time >= middle for h in after)
    none = client.post("/api/search", json={"query": QUERY, "camera": ["hall"]}).json()
    assert none["results"] == []


def test_frames_that_cannot_be_served_are_404_with_a_reason(built, tmp_path):
    client = _client(built["images"])
    refused = client.get("/api/images/0/frame")
    assert refused.status_code == 404 and "not a crop of footage" in refused.json()["detail"]
    assert _client(built["frames"]).get("/api/images/999999/frame").status_code == 404
    # footage moved away after indexing: a 404 naming the source, never a 500
    index = tmp_path / "index"
    shutil.copytree(built["video"], index)
    records = _records(index)
    source = Path(next(iter(records.values())).source)
    moved = source.with_suffix(".moved")
    source.rename(moved)
    try:
        gone = _client(index).get(f"/api/images/{next(iter(records))}/frame")
    finally:
        moved.rename(source)
    assert gone.status_code == 404 and str(source) in gone.json()["detail"]
