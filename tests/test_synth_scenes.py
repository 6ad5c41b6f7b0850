"""``irra synth scenes``: MOTChallenge layout, determinism, ground truth against the pixels,
simulated detections, captions, the CLI (and that plain ``irra synth`` still works)."""

from __future__ import annotations

import configparser
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from irra.cli import main
from irra.data.synth.scenes import SceneParams, draw_sequence, generate_scenes, plan_sequence
from irra.footage.boxes import iou_matrix

SMALL = SceneParams(sequences=2, frames=60, width=320, height=180, seed=5, image_format="png")


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_rows(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split(",")] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes") / "scenes"
    generate_scenes(out, SMALL)
    return out


def test_writes_the_motchallenge_layout(scenes):
    meta = json.loads((scenes / "scenes.json").read_text())
    assert [s["name"] for s in meta["sequences"]] == ["SYNTH-01", "SYNTH-02"]
    for seq in meta["sequences"]:
        folder = scenes / seq["name"]
        ini = configparser.ConfigParser()
        ini.optionxform = str
        ini.read(folder / "seqinfo.ini")
        info = dict(ini["Sequence"])
        assert info == {
            "name": seq["name"],
            "imDir": "img1",
            "frameRate": "25",
            "seqLength": "60",
            "imWidth": "320",
            "imHeight": "180",
            "imExt": ".png",
        }
        frames = sorted((folder / "img1").iterdir())
        assert [p.name for p in frames] == [f"{k:06d}.png" for k in range(1, 61)]
        with Image.open(frames[0]) as im:
            assert im.size == (320, 180) and im.mode == "RGB"
        gt = read_rows(folder / "gt" / "gt.txt")
        assert len(gt) == seq["boxes"] and all(len(r) == 9 for r in gt)
        assert all(r[6] == 1 and r[7] == 1 and 0 <= r[8] <= 1 for r in gt)
        ids = [int(r[1]) for r in gt]
        assert sorted(set(ids)) == list(range(1, seq["tracks"] + 1))
        first_seen = {}
        for r in sorted(gt, key=lambda r: (r[0], r[1])):
            first_seen.setdefault(int(r[1]), r[0])
        assert sorted(first_seen, key=lambda t: (first_seen[t], t)) == sorted(first_seen)
        det = read_rows(folder / "det" / "det.txt")
        assert len(det) == seq["detections"] and all(len(r) == 10 for r in det)
        assert all(r[1] == -1 and r[7:] == [-1, -1, -1] and 0 < r[6] < 1 for r in det)
        assert all(
            r[2] >= 0 and r[3] >= 0 and r[2] + r[4] <= 320 and r[3] + r[5] <= 180 for r in det
        )
        captions = json.loads((folder / "captions.json").read_text())
        assert sorted(map(int, captions)) == sorted(set(ids))
        assert all(isinstance(c, str) and len(c.split()) >= 5 for c in captions.values())


def test_same_seed_same_bytes_with_video_and_any_workers(tmp_path):
    params = SceneParams(sequences=2, frames=20, width=256, height=144, seed=2, video=True)
    generate_scenes(tmp_path / "a", params)
    generate_scenes(tmp_path / "b", params, workers=2)
    a, b = file_hashes(tmp_path / "a"), file_hashes(tmp_path / "b")
    assert a == b and "SYNTH-02/SYNTH-02.mp4" in a
    other = SceneParams(sequences=2, frames=20, width=256, height=144, seed=3, video=True)
    generate_scenes(tmp_path / "c", other)
    c = file_hashes(tmp_path / "c")
    assert c["SYNTH-01/img1/000001.jpg"] != a["SYNTH-01/img1/000001.jpg"]


def test_ground_truth_boxes_fit_the_drawn_people(scenes):
    """A fully visible person with nobody near: around the box, the pixels that differ from the
    empty background start on the box's top row and lie within its columns (feet aside), to
    within the one pixel of anti-aliasing."""
    background = plan_sequence(SMALL, 0).background.astype(int)
    checked = 0
    for frame in draw_sequence(SMALL, 0):
        saved = np.asarray(Image.open(scenes / "SYNTH-01" / "img1" / f"{frame.number:06d}.png"))
        assert np.array_equal(saved, frame.image)  # the PNG holds the drawn frame
        changed = np.abs(frame.image.astype(int) - background).max(axis=2) > 12
        for person in frame.people:
            x, y, w, h = person.box
            mx, my = w // 2 + 2, h // 4 + 2
            near = np.array([(x - mx, y - my, w + 2 * mx, h + 2 * my)])
            others = np.array([p.box for p in frame.people if p is not person]).reshape(-1, 4)
            inside = x >= mx and y >= my and x + w + mx <= 320 and y + h <= 180
            if person.visibility < 1 or not inside or iou_matrix(near, others).max(initial=0):
                continue
            rows, cols = np.nonzero(changed[y - my : y + int(0.9 * h), x - mx : x + w + mx])
            assert abs(rows.min() + y - my - y) <= 1  # anti-aliased edge pixels
            assert cols.min() + x - mx >= x - 1 and cols.max() + x - mx <= x + w
            checked += 1
    assert checked >= 10


def test_visibility_counts_occlusion_and_the_image_edge(scenes):
    cut = free = hidden = 0
    for seq in ("SYNTH-01", "SYNTH-02"):
        rows = read_rows(scenes / seq / "gt" / "gt.txt")
        for frame in {int(r[0]) for r in rows}:
            here = [r for r in rows if r[0] == frame]
            boxes = np.array([r[2:6] for r in here])
            iou = iou_matrix(boxes, boxes) - np.eye(len(here))
            for i, (_, _, x, y, w, h, _, _, vis) in enumerate(here):
                if x < 0 or y < 0 or x + w > 320 or y + h > 180:
                    assert vis < 1  # part of the body is outside the image
                    cut += 1
                elif iou[i].max(initial=0) == 0:
                    assert vis == 1  # nobody overlaps the box
                    free += 1
                elif any(
                    iou[i, j] > 0.3 and here[j][3] + here[j][5] > y + h for j in range(len(here))
                ):
                    hidden += vis < 1  # someone nearer (feet lower) covers much of the box
    assert cut and free and hidden


def test_detections_miss_jitter_and_fire_falsely(scenes):
    hits = misses = visible = false_pos = exact = 0
    for seq in ("SYNTH-01", "SYNTH-02"):
        gt = read_rows(scenes / seq / "gt" / "gt.txt")
        det = read_rows(scenes / seq / "det" / "det.txt")
        for frame in range(1, 61):
            g = [r for r in gt if r[0] == frame]
            d = [r for r in det if r[0] == frame]
            iou = iou_matrix(np.array([r[2:6] for r in g]), np.array([r[2:6] for r in d]))
            for i, r in enumerate(g):
                if r[8] >= 0.6:
                    visible += 1
                    found = iou.shape[1] and iou[i].max() >= 0.5
                    hits += bool(found)
                    misses += not found
            false_pos += sum(1 for j in range(len(d)) if not len(g) or iou[:, j].max() < 0.3)
            exact += sum(1 for j in range(len(d)) if len(g) and iou[:, j].max() > 0.999)
    assert 0.8 < hits / visible < 0.99, (hits, visible)
    assert misses > 0 and false_pos > 0
    assert exact < 0.05 * hits  # boxes jitter


def test_cli_scenes_reuse_overwrite_and_preview(tmp_path):
    out, preview = tmp_path / "sc", tmp_path / "frame.jpg"
    argv = ["synth", "scenes", "--out", str(out), "--sequences", "1", "--frames", "12"]
    argv += ["--height", "144", "--video", "--no-progress"]
    assert main([*argv, "--preview", str(preview)]) == 0
    assert (out / "SYNTH-01" / "SYNTH-01.mp4").stat().st_size > 0
    with Image.open(out / "SYNTH-01" / "img1" / "000001.jpg") as im:
        assert im.size == (256, 144)  # 16:9 of --height
    with Image.open(preview) as im:
        assert im.size == (256, 144) and im.format == "JPEG"
    before = (out / "scenes.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "scenes.json").stat().st_mtime_ns == before  # reused
    assert main([*argv, "--seed", "1"]) == 2  # other scenes in the way
    assert main([*argv, "--seed", "1", "--overwrite"]) == 0
    bad = ["synth", "scenes", "--out", str(tmp_path / "bad"), "--height", "101"]
    assert main(bad) == 2  # odd and too small
    assert not (tmp_path / "bad").exists()


def test_plain_synth_still_needs_out(tmp_path, caplog):
    assert main(["synth"]) == 2
    assert "--out" in caplog.text
    out = tmp_path / "pedes"
    argv = ["synth", "--out", str(out), "--ids", "3", "--images-per-id", "1"]
    assert main([*argv, "--height", "64", "--width", "32", "--workers", "1", "--no-progress"]) == 0
    assert len(json.loads((out / "reid_raw.json").read_text())) == 3
