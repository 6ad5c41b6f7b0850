"""The torchvision person detector: weights from a local file (never a download), thresholds,
batching, clear errors, and indexing footage with it."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torchvision

from irra.cli import main
from irra.data.synth.scenes import SceneParams, generate_scenes
from irra.footage import FootageError, open_footage
from irra.footage.detector import DETECTORS, PersonDetector, check_detector, keep_people
from tests.retrieval_fixtures import stored_rows, write_model

NAME = "ssdlite320_mobilenet_v3_large"  # the smallest of the list: a 14 MB state dict


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random SSDlite whose class scores favour "person" (COCO class 1) at every anchor, so
    that it finds people (of random boxes) as a trained one would."""
    torch.manual_seed(0)
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=91
    )
    state = model.state_dict()
    for key, value in state.items():
        if re.fullmatch(r"head\.classification_head\.module_list\.\d+\.1\.bias", key):
            value.view(-1, 91)[:, 1] += 8.0  # (anchors, classes)
    path = tmp_path_factory.mktemp("det") / "ssdlite.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "scenes"
    generate_scenes(out, SceneParams(sequences=1, frames=8, width=320, height=180, seed=1))
    return out / "SYNTH-01"


def test_keep_people_applies_class_confidence_and_height():
    boxes = np.array([[10, 20, 30, 80], [0, 0, 50, 10], [5, 5, 25, 105], [1, 1, 2, 90.0]])
    scores = np.array([0.9, 0.95, 0.4, 0.8])
    labels = np.array([1, 1, 1, 3])  # the last is a car
    kept = keep_people(boxes, scores, labels, conf=0.5, min_height=24)
    # row 1 is 10 px tall, row 2 scores 0.4, row 3 is not a person
    assert kept.tolist() == [[10, 20, 20, 60, 0.9]]
    assert len(keep_people(boxes, scores, labels, conf=0.3, min_height=24)) == 2


def test_weights_load_from_a_file_and_batches_give_the_same_boxes(weights, scenes):
    frames = [f.image for f in open_footage(scenes).frames()][:5]
    one = PersonDetector(NAME, weights, device="cpu", conf=0.0, min_height=0, batch_size=1)
    three = PersonDetector(NAME, weights, device="cpu", conf=0.0, min_height=0, batch_size=3)
    a, b = one.detect(frames), three.detect(frames)
    assert len(a) == len(b) == 5
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape and x.shape[1] == 5
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-3)
    assert all(len(rows) for rows in a)
    for conf, height in ((0.98, 0), (0.0, 40)):  # scores here are about 0.97
        strict = PersonDetector(NAME, weights, device="cpu", conf=conf, min_height=height)
        for loose, rows in zip(a, strict.detect(frames), strict=True):
            assert np.all(rows[:, 4] >= conf) and np.all(rows[:, 3] >= height)
            # the thresholds only remove rows: each kept row is one of the unfiltered rows
            assert len(rows) < len(loose) or conf == 0 == height
            assert all(np.abs(loose - row).max(axis=1).min() < 1e-3 for row in rows)


def test_unknown_names_and_bad_weights_are_clear_errors(weights, tmp_path):
    with pytest.raises(FootageError, match="unknown detector 'yolo'; valid: " + DETECTORS[0]):
        check_detector("yolo")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(FootageError, match="junk.pth: cannot read detector weights"):
        PersonDetector(NAME, junk, device="cpu")
    with pytest.raises(FootageError, match="ssdlite.pth: not weights of fasterrcnn_mobilenet"):
        PersonDetector("fasterrcnn_mobilenet_v3_large_320_fpn", weights, device="cpu")
    with pytest.raises(FootageError, match="missing.pth: no such detector weights file"):
        PersonDetector(NAME, tmp_path / "missing.pth", device="cpu")


def test_cli_indexes_footage_with_the_detector(weights, scenes, tmp_path, caplog):
    model = write_model(tmp_path / "model")
    args = ["index", "--checkpoint", str(model), "--out", str(tmp_path / "index")]
    args += ["--device", "cpu", "--frames", str(scenes), "--per-frame"]
    assert main([*args, "--detector", "yolo"]) == 2
    assert "unknown detector 'yolo'; valid:" in caplog.text
    detector = ["--detector", NAME, "--detector-weights", str(weights)]
    detector += ["--detector-conf", "0", "--min-box-height", "30"]
    assert main([*args, *detector]) == 0
    records = [record for _, record in stored_rows(tmp_path / "index")]
    expected = PersonDetector(NAME, weights, device="cpu", conf=0.0, min_height=30)
    found = expected.detect([f.image for f in open_footage(scenes).frames()])
    assert len(records) == sum(len(rows) for rows in found) > 0  # not det/det.txt's boxes
    assert all(r.box[3] >= 29 for r in records)  # 30 px, rounded to whole pixels
