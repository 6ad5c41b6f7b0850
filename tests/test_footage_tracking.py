"""Box overlap, greedy matching, the tracker, CLEAR-MOT counts and the track summariser: hand-made
cases with known answers, then ``irra synth scenes`` ground truth as the oracle."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from irra.data.synth.scenes import SceneParams, generate_scenes
from irra.footage import (
    Detection,
    Tracker,
    TrackerConfig,
    clear_mot,
    read_mot,
    representatives,
    select_detections,
    summarise_tracks,
    track_detections,
    truth_of_tracks,
)
from irra.footage.boxes import greedy_match, iou_matrix


def test_iou_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 5]])
    b = np.array([[5, 0, 10, 10], [0, 0, 10, 10], [20, 20, 5, 5]])
    expected = [[50 / 150, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert iou_matrix(a, b) == pytest.approx(np.array(expected))
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_greedy_match_by_hand():
    score = np.array([[0.9, 0.8, 0.0], [0.85, 0.1, 0.0], [0.0, 0.0, -np.inf]])
    # 0.9 takes (0, 0); row 1's best column is gone, so it gets column 1 at 0.1 (the optimal
    # assignment would pair (0, 1) and (1, 0) for 1.65: greedy differs where choices compete)
    assert sorted(greedy_match(score)) == [(0, 0), (1, 1)]  # -inf never matches
    assert sorted(greedy_match(score, 0.5)) == [(0, 0)]
    assert greedy_match(np.zeros((0, 3)), 0.1) == []


def det(frame: int, x: float, track: int | None = None, y: float = 0.0, conf: float = 1.0):
    return Detection(frame, (x, y, 10.0, 30.0), conf, track)


def test_two_people_crossing_keep_their_ids():
    """A walks right and B left at 4 px a frame on one row; they overlap fully at frame 6.
    Without motion the boxes of frame 7 match whichever track is nearest; with it, each keeps
    its own."""
    boxes = [det(f, 4.0 * f, None) for f in range(1, 12)] + [
        det(f, 48.0 - 4.0 * (f - 1), None) for f in range(1, 12)
    ]
    out = track_detections(boxes, TrackerConfig(min_length=1))
    ids = defaultdict(set)
    for d in out:
        ids[boxes.index(replace(d, track=None)) // 11].add(d.track)
    assert all(len(v) == 1 for v in ids.values()) and ids[0] != ids[1]


def test_tracker_gaps_confidence_and_frame_order():
    tracker = Tracker(TrackerConfig(max_gap=3, new_track_conf=0.5))
    first = tracker.update(1, np.array([[0.0, 0, 10, 30]]), np.array([0.9]))
    assert tracker.update(4, np.array([[0.0, 0, 10, 30]])) == first  # 3 frames later: same
    assert tracker.update(8, np.array([[0.0, 0, 10, 30]])) != first  # 4 frames: a new track
    assert tracker.update(9, np.array([[50.0, 0, 10, 30]]), np.array([0.3])) == [None]
    with pytest.raises(ValueError, match="frames must increase"):
        tracker.update(9, np.zeros((0, 4)))
    short = track_detections([det(1, 0), det(2, 0), det(5, 80)], TrackerConfig(min_length=2))
    assert [d.frame for d in short] == [1, 2]


def test_embeddings_tell_apart_a_person_who_enters_where_another_left():
    boxes = [det(f, 0.0) for f in range(1, 6)] + [det(f, 0.0) for f in range(7, 12)]
    features = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)  # two people, cosine 0
    by_box = track_detections(boxes, TrackerConfig(min_length=1))
    assert len({d.track for d in by_box}) == 1  # by box overlap it is one person
    config = TrackerConfig(min_length=1, embed_weight=0.5, min_similarity=0.5)
    by_look = track_detections(boxes, config, features)
    assert [d.track for d in by_look] == [1] * 5 + [2] * 5


def test_embeddings_decide_between_overlapping_boxes():
    tracker = Tracker(TrackerConfig(embed_weight=0.8))
    tracker.update(1, np.array([[0.0, 0, 10, 30]]), embeddings=np.array([[0.0, 1.0]]))
    # the box that overlaps more looks different; the one that looks the same wins the track
    ids = tracker.update(2, np.array([[0.0, 0, 10, 30], [2.0, 0, 10, 30]]), None, np.eye(2))
    assert ids[1] == 1 and ids[0] != 1


def test_clear_mot_by_hand():
    truth = [det(f, 0, 1) for f in (1, 2, 3)] + [det(f, 100, 2) for f in (1, 2, 3)]
    tracked = [
        det(1, 0, 7),
        det(2, 0, 7),
        det(3, 0, 8),  # gt 1 changes from 7 to 8: one switch
        det(1, 100, 9),
        det(3, 100, 9),  # gt 2 missed in frame 2, found again by 9: no switch
        det(2, 300, 5),  # matches nothing: a false positive
    ]
    counts = clear_mot(truth, tracked)
    assert (counts.gt, counts.matches, counts.misses) == (6, 5, 1)
    assert (counts.false_positives, counts.id_switches) == (1, 1)
    assert counts.mota == pytest.approx(1 - 3 / 6)
    with pytest.raises(ValueError, match="track id"):
        clear_mot(truth, [det(1, 0, None)])


def test_truth_of_tracks_by_hand():
    truth = [det(f, 0, 1) for f in (1, 2, 3)] + [det(f, 100, 2) for f in (1, 2, 3)]
    tracked = [
        det(1, 0, 7),
        det(2, 1, 7),
        det(3, 100, 7),  # 7 covers person 1 twice, person 2 once: person 1
        det(1, 100, 9),  # 9 covers person 2 once
        det(2, 300, 5),  # 5 never covers anyone
        det(3, 0, 4),
        det(2, 100, 4),  # 4 covers each once: the tie goes to the smaller id
    ]
    assert truth_of_tracks(truth, tracked) == {4: 1, 5: None, 7: 1, 9: 2}


def test_representatives_by_hand():
    # frames 1..9 cut into three parts: 1-3, 4-6, 7-9
    track = [
        Detection(1, (10, 10, 10, 30), 0.9, 1),
        Detection(2, (10, 10, 10, 40), 0.8, 1),  # part 1: 0.8 * 40/40 beats 0.9 * 30/40
        Detection(4, (10, 10, 10, 40), 0.5, 1),
        Detection(5, (10, 10, 10, 40), 0.6, 1),  # part 2: best confidence
        Detection(8, (0, 10, 10, 40), 0.9, 1),  # part 3: at the left border, halved: 0.45
        Detection(9, (30, 10, 10, 36), 0.5, 1),  # 0.5 * 36 / 40 = 0.45: a tie, earlier wins
    ]
    chosen = representatives(track, 3, frame_size=(100, 100))
    assert [d.frame for d in chosen] == [2, 5, 8]
    assert [d.frame for d in representatives(track, 1)] == [8]  # no border: 0.9 wins
    assert [d.frame for d in representatives(track[:1], 3)] == [1]
    summary = summarise_tracks(track + [Detection(3, (0, 0, 5, 5), 1.0, 2)], per_track=2)
    assert [(s.track, s.first_frame, s.last_frame, s.length) for s in summary] == [
        (1, 1, 9, 6),
        (2, 3, 3, 1),
    ]
    with pytest.raises(ValueError, match="no track id"):
        summarise_tracks([Detection(1, (0, 0, 5, 5))])


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tracking") / "scenes"
    generate_scenes(out, SceneParams(sequences=2, frames=200, width=480, height=270, seed=11))
    return out


def identity_errors(truth: list[Detection], tracked: list[Detection]) -> tuple[int, int]:
    """(splits, merges) between equal boxes: ground-truth tracks given more than one id, and
    tracker ids given to more than one ground-truth track."""
    gt_id = {(d.frame, d.box): d.track for d in truth}
    ids_of_gt, gts_of_id = defaultdict(set), defaultdict(set)
    for d in tracked:
        g = gt_id[(d.frame, d.box)]
        ids_of_gt[g].add(d.track)
        gts_of_id[d.track].add(g)
    splits = sum(len(v) - 1 for v in ids_of_gt.values())
    merges = sum(len(v) - 1 for v in gts_of_id.values())
    return splits, merges


@pytest.mark.parametrize("name", ["SYNTH-01", "SYNTH-02"])
def test_tracker_recovers_ground_truth_tracks(scenes, name):
    # the ground truth as a detector would see it: in the frame, no slivers at the border
    gt_file = scenes / name / "gt" / "gt.txt"
    truth = read_mot(gt_file, frame_size=(480, 270), min_size=8).detections
    anonymous = [replace(d, track=None) for d in truth]
    tracked = track_detections(anonymous, TrackerConfig(min_length=1))
    counts = clear_mot(truth, tracked)
    assert counts.matches == counts.gt and counts.false_positives == 0
    splits, merges = identity_errors(truth, tracked)
    assert (counts.id_switches, splits, merges) == (0, 0, 0)
    # with an appearance feature per person (the oracle's identity) nothing is confused
    ids = sorted({d.track for d in truth})
    features = np.eye(len(ids))[[ids.index(d.track) for d in truth]]
    seen = track_detections(anonymous, TrackerConfig(min_length=1, embed_weight=0.5), features)
    assert identity_errors(truth, seen) == (0, 0) and clear_mot(truth, seen).id_switches == 0


def test_tracker_on_simulated_detections(scenes):
    for name in ("SYNTH-01", "SYNTH-02"):
        truth = read_mot(scenes / name / "gt" / "gt.txt", frame_size=(480, 270)).detections
        dets = read_mot(scenes / name / "det" / "det.txt", frame_size=(480, 270))
        counts = clear_mot(truth, track_detections(dets.detections, TrackerConfig()))
        raw = clear_mot(truth, [replace(d, track=k) for k, d in enumerate(dets.detections)])
        assert counts.mota > 0.55 and counts.id_switches <= 0.03 * counts.matches
        # tracking removes false positives (short tracks) and keeps the detections' recall
        assert counts.false_positives < raw.false_positives
        assert counts.matches >= 0.97 * raw.matches


def test_selecting_boxes_uses_the_files_ids_or_the_tracker(scenes):
    gt = read_mot(scenes / "SYNTH-01" / "gt" / "gt.txt", frame_size=(480, 270), min_size=8)
    every = select_detections(gt, per_track=None)
    assert sorted(every, key=lambda d: (d.frame, d.line)) == sorted(
        gt.detections, key=lambda d: (d.frame, d.line)
    )
    kept = select_detections(gt, per_track=2, frame_size=(480, 270))
    ids = {d.track for d in gt.detections}
    per_id = defaultdict(list)
    for d in kept:
        per_id[d.track].append(d.frame)
    assert set(per_id) == ids and all(1 <= len(v) <= 2 for v in per_id.values())
    assert [d.frame for d in kept] == sorted(d.frame for d in kept)
    dets = read_mot(scenes / "SYNTH-01" / "det" / "det.txt", frame_size=(480, 270))
    tracked = track_detections(dets.detections)
    chosen = select_detections(dets, per_track=3, frame_size=(480, 270))
    assert {d.track for d in chosen} == {d.track for d in tracked}
    assert len(chosen) <= 3 * len({d.track for d in tracked}) < len(dets.detections)


def test_every_tracked_person_maps_back_to_its_ground_truth(scenes):
    truth = read_mot(scenes / "SYNTH-02" / "gt" / "gt.txt", frame_size=(480, 270)).detections
    tracked = track_detections([replace(d, track=None) for d in truth if d.box[2] >= 8])
    mapping = truth_of_tracks(truth, tracked)
    assert sorted(v for v in mapping.values() if v is not None) == sorted({d.track for d in truth})
