"""Footage in the index: crops with provenance, tracks stored once, search by track, increments,
interruptions, filters, and the CLI as a user runs it."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from irra.cli import main
from irra.data.synth.scenes import SceneParams, generate_scenes
from irra.footage import FootageError, open_footage, read_mot
from irra.inference import TorchEncoder
from irra.retrieval import IndexStoreError, Retriever, SearchFilter, build_index
from irra.retrieval.capture import parse_time
from irra.retrieval.footage import FootageSource, build_footage_index
from irra.retrieval.legacy import METADATA
from tests.legacy_index import to_legacy
from tests.retrieval_fixtures import stored_rows, stored_vectors, write_gallery, write_model

PARAMS = SceneParams(
    sequences=2,
    frames=40,
    width=320,
    height=180,
    seed=3,
    image_format="png",
    video=True,
    lossless_video=True,  # the mp4 decodes to the PNG frames' pixels
)
START = "2024-05-01T14:00:00+02:00"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes") / "scenes"
    generate_scenes(out, PARAMS)
    return out


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> TorchEncoder:
    return TorchEncoder.from_checkpoint(write_model(tmp_path_factory.mktemp("model")), device="cpu")


def seq(scenes: Path, n: int) -> Path:
    return scenes / f"SYNTH-{n:02d}"


def records_of(index: Path) -> list:
    return [record for _, record in stored_rows(index)]


def test_tracks_are_stored_once_with_crops_that_match_their_frames(scenes, encoder, tmp_path):
    start = parse_time(START)
    source = FootageSource(seq(scenes, 1), camera="gate", start=start)
    report = build_footage_index(encoder, [source], tmp_path / "index", per_track=2)
    records = records_of(tmp_path / "index")
    assert report.total == len(records) == report.crops > 0
    per_track = Counter(r.track for r in records)
    assert max(per_track.values()) <= 2 and len(per_track) == report.tracks
    footage = open_footage(seq(scenes, 1))
    boxes = read_mot(seq(scenes, 1) / "det" / "det.txt", frame_size=footage.size).detections
    for r in records:
        assert r.source == str(seq(scenes, 1).resolve()) and r.camera == "gate"
        assert r.time == pytest.approx(start + (r.frame - 1) / footage.fps)
        x, y, w, h = r.box
        frame = footage.frame(r.frame).image  # provenance: cut the box from the frame again
        with Image.open(tmp_path / "index" / r.path) as stored:
            assert np.array_equal(np.asarray(stored), frame[y : y + h, x : x + w])
        # the box is a detection of that frame, rounded to pixels
        assert any(
            d.frame == r.frame and (round(d.box[0]), round(d.box[1])) == (x, y) for d in boxes
        )


def test_search_returns_the_best_crop_of_each_track(scenes, encoder, tmp_path):
    build_footage_index(encoder, [FootageSource(seq(scenes, 1))], tmp_path / "index")
    rows = stored_rows(tmp_path / "index")
    records = [record for _, record in rows]
    vectors = stored_vectors(tmp_path / "index", [i for i, _ in rows])
    query = encoder.encode_texts(["a person in a red coat"])[0]
    scores = vectors @ query
    best: dict[int, tuple[float, int]] = {}  # brute force: each track's best crop
    for i, r in enumerate(records):
        if r.track not in best or scores[i] > best[r.track][0]:
            best[r.track] = (float(scores[i]), i)
    expected = sorted(best.values(), key=lambda item: -item[0])[:5]
    with Retriever.open(tmp_path / "index", device="cpu") as retriever:
        hits = retriever.search("a person in a red coat", k=5)
    # the random tiny model scores some crops almost alike: compare scores, then tracks
    assert [h.score for h in hits] == pytest.approx([s for s, _ in expected], abs=1e-5)
    assert len({h.track for h in hits}) == 5
    assert all(h.score == pytest.approx(best[h.track][0], abs=1e-5) for h in hits)
    hit = hits[0].to_dict()
    record = records[hit["id"]]
    assert (hit["source"], hit["frame"], tuple(hit["box"]), hit["track"]) == (
        record.source,
        record.frame,
        record.box,
        record.track,
    )
    assert hit["time"] is None  # no --start: no capture time


def test_per_frame_stores_every_box_and_searches_crops(scenes, encoder, tmp_path):
    report = build_footage_index(
        encoder, [FootageSource(seq(scenes, 1))], tmp_path / "index", per_frame=True, every=2
    )
    footage = open_footage(seq(scenes, 1))
    boxes = read_mot(seq(scenes, 1) / "det" / "det.txt", frame_size=footage.size).detections
    sampled = [d for d in boxes if d.frame % 2 == 1]
    records = records_of(tmp_path / "index")
    assert report.total == len(records) == len(sampled)
    assert sorted(r.frame for r in records) == sorted(d.frame for d in sampled)
    with Retriever.open(tmp_path / "index", device="cpu") as retriever:
        assert retriever.per_track is None
        assert len(retriever.search("a person", k=len(records))) == len(records)


def test_the_mp4_gives_the_same_entries_and_results_as_the_frame_folder(scenes, encoder, tmp_path):
    """A lossless mp4 of PNG frames: the same crops, pixel for pixel, and the same ranking."""
    det = seq(scenes, 1) / "det" / "det.txt"
    build_footage_index(encoder, [FootageSource(seq(scenes, 1))], tmp_path / "a")
    video = seq(scenes, 1) / "SYNTH-01.mp4"
    build_footage_index(encoder, [FootageSource(video, detections=det)], tmp_path / "b")
    a, b = records_of(tmp_path / "a"), records_of(tmp_path / "b")
    assert [(r.frame, r.box, r.track) for r in a] == [(r.frame, r.box, r.track) for r in b]
    assert {r.source for r in b} == {str(video.resolve())}
    for ra, rb in zip(a, b, strict=True):
        assert rb.time == pytest.approx(ra.time) if ra.time is not None else rb.time is None
        with Image.open(tmp_path / "a" / ra.path) as ca, Image.open(tmp_path / "b" / rb.path) as cb:
            assert np.array_equal(np.asarray(ca), np.asarray(cb))
    caption = json.loads((seq(scenes, 1) / "captions.json").read_text())["1"]
    with (
        Retriever.open(tmp_path / "a", device="cpu") as ra,
        Retriever.open(tmp_path / "b", device="cpu") as rb,
    ):
        hits_a, hits_b = ra.search(caption, k=10), rb.search(caption, k=10)
    assert [(h.id, h.track, h.frame, h.box) for h in hits_a] == [
        (h.id, h.track, h.frame, h.box) for h in hits_b
    ]
    assert [h.score for h in hits_a] == [h.score for h in hits_b]


def test_a_second_run_reads_only_new_footage_and_equals_one_run(scenes, encoder, tmp_path):
    one, two = FootageSource(seq(scenes, 1)), FootageSource(seq(scenes, 2))
    first = build_footage_index(encoder, [one], tmp_path / "index")
    calls = []
    original = encoder.encode_pictures

    def counting(pictures):
        calls.append(len(pictures))
        return original(pictures)

    encoder.encode_pictures = counting
    try:
        second = build_footage_index(encoder, [one, two], tmp_path / "index")
        assert (second.kept, second.indexed) == (1, 1)
        assert sum(calls) == second.crops == second.total - first.total
        calls.clear()
        third = build_footage_index(encoder, [one, two], tmp_path / "index")
        assert (third.kept, third.indexed, calls) == (2, 0, [])
    finally:
        del encoder.encode_pictures
    build_footage_index(encoder, [one, two], tmp_path / "full")
    inc, full = records_of(tmp_path / "index"), records_of(tmp_path / "full")
    assert [(r.source, r.frame, r.box, r.track) for r in inc] == [
        (r.source, r.frame, r.box, r.track) for r in full
    ]
    assert len(list((tmp_path / "index" / "crops").iterdir())) == 2


def test_an_interrupted_run_leaves_the_previous_index(scenes, encoder, tmp_path):
    build_footage_index(encoder, [FootageSource(seq(scenes, 1))], tmp_path / "index")
    before = stored_rows(tmp_path / "index")
    crops_before = sorted(p.name for p in (tmp_path / "index" / "crops").iterdir())

    def broken(pictures):
        raise KeyboardInterrupt

    encoder.encode_pictures = broken
    try:
        with pytest.raises(KeyboardInterrupt):
            build_footage_index(encoder, [FootageSource(seq(scenes, 2))], tmp_path / "index")
    finally:
        del encoder.encode_pictures
    assert stored_rows(tmp_path / "index") == before
    assert sorted(p.name for p in (tmp_path / "index" / "crops").iterdir()) == crops_before
    with Retriever.open(tmp_path / "index", device="cpu") as retriever:
        assert {h.source for h in retriever.search("a person", k=50)} == {
            str(seq(scenes, 1).resolve())
        }


def test_camera_and_time_filters_apply_to_footage(scenes, encoder, tmp_path):
    start = parse_time("2024-05-01T12:00:00")
    sources = [
        FootageSource(seq(scenes, 1), camera="north", start=start),
        FootageSource(seq(scenes, 2), camera="south", start=start + 3600),
    ]
    build_footage_index(encoder, sources, tmp_path / "index")
    with Retriever.open(tmp_path / "index", device="cpu") as retriever:
        south = retriever.search("a person", k=100, filter=SearchFilter(cameras=["south"]))
        assert south and {h.camera for h in south} == {"south"}
        assert {h.source for h in south} == {str(seq(scenes, 2).resolve())}
        early = SearchFilter(before="2024-05-01T12:00:00.500")  # frames 1..13 at 25 fps
        hits = retriever.search("a person", k=100, filter=early)
        assert hits and all(h.camera == "north" and h.frame <= 13 for h in hits)
        assert hits[0].time.endswith("Z") and "." in hits[0].time  # milliseconds


def test_a_format_2_image_index_is_migrated_then_searched(tmp_path, encoder):
    write_gallery(tmp_path / "imgs", 4)
    build_index(encoder, tmp_path / "imgs", tmp_path / "index")
    version = to_legacy(tmp_path / "index")
    conn = sqlite3.connect(version / METADATA)
    for column in ("source", "frame", "box_x", "box_y", "box_w", "box_h", "track"):
        conn.execute(f"ALTER TABLE images DROP COLUMN {column}")
    conn.commit()
    conn.close()
    manifest = json.loads((version / "manifest.json").read_text())
    (version / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2}))
    with pytest.raises(IndexStoreError, match="format 2 is older.*irra index --out"):
        Retriever.open(tmp_path / "index", device="cpu")
    assert main(["index", "--out", str(tmp_path / "index"), "--device", "cpu"]) == 0
    with Retriever.open(tmp_path / "index", device="cpu") as retriever:
        hits = retriever.search("a person", k=4)
    assert len(hits) == 4
    assert all(h.source is None and h.box is None and h.track is None for h in hits)
    assert {"source", "frame", "box", "track"} <= set(hits[0].to_dict())


def test_image_and_footage_indexes_are_not_mixed(scenes, encoder, tmp_path):
    write_gallery(tmp_path / "imgs", 3)
    build_index(encoder, tmp_path / "imgs", tmp_path / "images")
    with pytest.raises(IndexStoreError, match="not footage; use another --out"):
        build_footage_index(encoder, [FootageSource(seq(scenes, 1))], tmp_path / "images")
    build_footage_index(encoder, [FootageSource(seq(scenes, 1))], tmp_path / "footage")
    with pytest.raises(IndexStoreError, match="holds footage"):
        build_index(encoder, tmp_path / "imgs", tmp_path / "footage")
    with pytest.raises(IndexStoreError, match="keep the same --per-frame setting"):
        build_footage_index(
            encoder, [FootageSource(seq(scenes, 2))], tmp_path / "footage", per_frame=True
        )


def test_cli_indexes_footage_and_search_prints_provenance(scenes, tmp_path, capsys, caplog):
    model = write_model(tmp_path / "model")
    index = tmp_path / "index"
    args = ["index", "--checkpoint", str(model), "--out", str(index), "--device", "cpu"]
    video = seq(scenes, 2) / "SYNTH-02.mp4"
    footage = ["--frames", str(seq(scenes, 1)), "--video", str(video)]
    dets = ["--detections", str(seq(scenes, 1) / "det" / "det.txt")]
    assert main([*args, *footage, *dets]) == 2  # one detections file for two sources
    assert "1 --detections for 2 --video/--frames" in caplog.text
    dets += ["--detections", str(seq(scenes, 2) / "det" / "det.txt")]
    more = ["--camera", "c3", "--start", START]
    assert main([*args, *footage, *dets, *more]) == 0
    assert "2 source(s) read, 0 unchanged" in capsys.readouterr().out
    assert main([*args, *footage, *dets, *more]) == 0
    assert "0 source(s) read, 2 unchanged" in capsys.readouterr().out
    search = ["search", "--index", str(index), "a person", "-k", "3", "--json", "--device", "cpu"]
    assert main(search) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and len({(h["source"], h["track"]) for h in hits}) == 3
    assert {"source", "frame", "time", "box", "track", "camera"} <= set(hits[0])
    assert hits[0]["camera"] == "c3" and hits[0]["time"].startswith("2024-05-01T12:00")
    assert main([*args, "--images", str(tmp_path), *footage[:2]]) == 2
    assert "without --video/--frames" in caplog.text


def test_bad_footage_input_is_a_clear_error_and_writes_nothing(scenes, encoder, tmp_path):
    video = tmp_path / "cam.mp4"
    shutil.copy(seq(scenes, 1) / "SYNTH-01.mp4", video)
    with pytest.raises(FootageError, match="cam.mp4: no boxes to cut people from; pass --det"):
        build_footage_index(encoder, [FootageSource(video)], tmp_path / "index")
    bad = tmp_path / "det.txt"
    bad.write_text("1,-1,10,10,20,40,0.9\n2,-1,ten,10,20,40,0.9\n")
    with pytest.raises(FootageError, match=r"det.txt: 1 malformed line\(s\): line 2: 'ten'"):
        build_footage_index(encoder, [FootageSource(video, bad)], tmp_path / "index")
    outside = tmp_path / "outside.txt"
    outside.write_text("1,-1,1000,1000,20,40,0.9\n")
    with pytest.raises(FootageError, match="no person crop to index"):
        build_footage_index(encoder, [FootageSource(video, outside)], tmp_path / "index")
    twice = [FootageSource(seq(scenes, 1)), FootageSource(seq(scenes, 1))]
    with pytest.raises(FootageError, match="SYNTH-01: given twice in one run"):
        build_footage_index(encoder, twice, tmp_path / "index")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(FootageError, match="empty.mp4: the video file is empty"):
        build_footage_index(encoder, [FootageSource(empty, bad)], tmp_path / "index")
    assert not (tmp_path / "index" / "store.sqlite").exists()
    assert not any((tmp_path / "index" / "crops").glob("*/*"))


def test_a_truncated_video_indexes_what_decodes_and_reports_the_rest(scenes, encoder, tmp_path):
    whole = seq(scenes, 1) / "SYNTH-01.mp4"
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    det = seq(scenes, 1) / "det" / "det.txt"
    # the mp4 keeps its index at the front (faststart): the first half opens and decodes
    report = build_footage_index(
        encoder, [FootageSource(cut, det)], tmp_path / "index", per_frame=True
    )
    records = records_of(tmp_path / "index")
    last = max(r.frame for r in records)
    assert last < PARAMS.frames and report.total == len(records) > 0
    assert any("cut.mp4" in p and "probably truncated" in p for p in report.problems)
    assert any("cut.mp4" in p and "beyond the last frame" in p for p in report.problems)
    with pytest.raises(ValueError, match="every must be a positive integer"):
        build_footage_index(encoder, [FootageSource(cut, det)], tmp_path / "x", every=0)


def test_deleting_footage_removes_its_rows_and_crop_files(scenes, encoder, tmp_path, capsys):
    one, two = seq(scenes, 1), seq(scenes, 2)
    index = tmp_path / "index"
    build_footage_index(encoder, [FootageSource(one), FootageSource(two)], index)
    rows = stored_rows(index)
    pngs = {p.relative_to(index).as_posix() for p in (index / "crops").rglob("*.png")}
    assert pngs == {r.path for _, r in rows}  # every stored crop belongs to a row
    source = str(one.resolve())
    track = next(r.track for _, r in rows if r.source == source)
    capsys.readouterr()
    assert main(["delete", "--index", str(index), "--track", f"{one}:{track}"]) == 0
    in_track = {i for i, r in rows if (r.source, r.track) == (source, track)}
    assert f"deleted {len(in_track)} rows" in capsys.readouterr().out
    assert main(["delete", "--index", str(index), "--source", str(two)]) == 0
    left = stored_rows(index)
    assert {i for i, _ in left} == {i for i, r in rows if r.source == source} - in_track
    pngs = {p.relative_to(index).as_posix() for p in (index / "crops").rglob("*.png")}
    assert pngs == {r.path for _, r in left}  # the deleted crops left the disk
    with Retriever.open(index, device="cpu") as retriever:
        hits = retriever.search("a person", k=100)
    assert {h.id for h in hits} <= {i for i, _ in left} and hits
    # the next run reads the second camera again (its rows are gone, its signature stays)
    report = build_footage_index(encoder, [FootageSource(one), FootageSource(two)], index)
    assert report.kept == 2 and report.total == len(left)


def test_a_format_3_footage_index_is_migrated_keeping_ids_and_sources(scenes, encoder, tmp_path):
    one, two = FootageSource(seq(scenes, 1)), FootageSource(seq(scenes, 2))
    index = tmp_path / "index"
    build_footage_index(encoder, [one, two], index)
    with Retriever.open(index, device="cpu") as retriever:
        before = [(h.path, h.score) for h in retriever.search("a person in a red coat", k=20)]
    to_legacy(index)  # format 3: ids are row positions in path order
    positions = dict(stored_rows_legacy(index))
    assert main(["index", "--out", str(index), "--frames", str(one.path), "--device", "cpu"]) == 0
    rows = stored_rows(index)
    assert {r.path: i for i, r in rows} == positions  # row i of the old format is id i
    with Retriever.open(index, device="cpu") as retriever:
        after = [(h.path, h.score) for h in retriever.search("a person in a red coat", k=20)]
    assert [p for p, _ in after] == [p for p, _ in before]
    report = build_footage_index(encoder, [one, two], index)
    assert (report.kept, report.indexed) == (2, 0)  # the signatures came across


def stored_rows_legacy(index: Path) -> list[tuple[str, int]]:
    """(path, position) of a legacy index's rows, read from its metadata database."""
    version = index / (index / "CURRENT").read_text().strip()
    conn = sqlite3.connect(version / METADATA)
    try:
        return [(p, i) for i, p in conn.execute("SELECT id, path FROM images ORDER BY id")]
    finally:
        conn.close()
