"""MOTChallenge boxes: parsing hand-written files, malformed lines, clipping counted by hand,
crops cut from frames with their provenance, and detections beyond the last frame."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from irra.footage import (
    CropReport,
    Detection,
    FootageError,
    FrameFolder,
    crop,
    iter_crops,
    pixel_box,
    read_mot,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_reads_detections_tracks_and_ground_truth(tmp_path):
    path = write(
        tmp_path / "det.txt",
        "1,-1,10.5,20,30,60.25,0.9,-1,-1,-1\n\n1,3,0,0,5,5,1,1,0.75\n2, 7, 1, 2, 3, 4\n",
    )
    dets = read_mot(path)
    assert dets.detections == [
        Detection(1, (10.5, 20.0, 30.0, 60.25), 0.9, None, 1),
        Detection(1, (0.0, 0.0, 5.0, 5.0), 1.0, 3, 3),
        Detection(2, (1.0, 2.0, 3.0, 4.0), 1.0, 7, 4),
    ]
    assert not dets.has_tracks
    assert sorted(dets.by_frame()) == [1, 2] and len(dets.by_frame()[1]) == 2
    assert read_mot(write(tmp_path / "gt.txt", "1,1,0,0,5,5,1,1,1\n")).has_tracks
    filtered = read_mot(path, min_conf=0.95)
    assert len(filtered.detections) == 2 and filtered.below_conf == 1


def test_malformed_lines_are_named_with_their_numbers(tmp_path):
    path = write(
        tmp_path / "bad.txt",
        "1,-1,0,0,10,10,0.5\n"  # 1 fine
        "1,-1,0,0,10\n"  # 2 too few fields
        "2,-1,a,0,10,10,0.5\n"  # 3 not a number
        "0,-1,0,0,10,10,0.5\n"  # 4 frame 0
        "3,-1,0,0,-4,10,0.5\n"  # 5 negative width
        "3,-1,0,nan,4,10,0.5\n"  # 6 nan
        "2.5,-1,0,0,4,10,0.5\n"  # 7 fractional frame
        "3,-2,0,0,4,10,0.5\n",  # 8 id -2
    )
    with pytest.raises(FootageError) as err:
        read_mot(path)
    message = str(err.value)
    assert message.startswith(f"{path}: 7 malformed line(s)")
    for number, reason in [
        (2, "5 fields"),
        (3, "'a' is not a number"),
        (4, "frame 0"),
        (5, "box size -4 x 10"),
        (6, "a value is not finite"),
    ]:
        assert f"line {number}: {reason}" in message
    assert "(and 2 more)" in message and "line 7" not in message  # five are quoted
    assert "frame, id, x, y, w, h" in message  # the expected format, to fix them


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(FootageError, match="no such detections file"):
        read_mot(tmp_path / "missing.txt")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(FootageError, match=r"binary\.txt: cannot read it as text"):
        read_mot(tmp_path / "binary.txt")


def test_boxes_outside_the_frame_are_clipped_and_counted(tmp_path):
    # a 100 x 50 frame; expected boxes worked out by hand
    path = write(
        tmp_path / "det.txt",
        "1,-1,10,10,20,20,0.9\n"  # inside: kept as is
        "1,-1,-5,10,20,20,0.9\n"  # left edge: x -5..15 -> 0..15
        "1,-1,90,40,20,20,0.9\n"  # bottom-right corner: 90..110 x 40..60 -> 90..100 x 40..50
        "1,-1,120,10,20,20,0.9\n"  # wholly right of the frame: dropped
        "1,-1,10,-30,20,30.5,0.9\n",  # top: y -30..0.5 -> 0..0.5, under 1 pixel: dropped
    )
    dets = read_mot(path, frame_size=(100, 50))
    assert [d.box for d in dets.detections] == [
        (10, 10, 20, 20),
        (0, 10, 15, 20),
        (90, 40, 10, 10),
    ]
    assert (dets.clipped, dets.outside) == (2, 2)
    assert [d.line for d in dets.detections] == [1, 2, 3]


def test_pixel_boxes_and_crops():
    assert pixel_box((10.4, 5.6, 20.2, 10.0), (100, 50)) == (10, 6, 21, 10)  # 10..31, 6..16
    assert pixel_box((-3.0, -2.0, 10.0, 10.0), (100, 50)) == (0, 0, 7, 8)
    assert pixel_box((99.7, 10.0, 5.0, 5.0), (100, 50)) is None
    image = np.arange(50 * 100 * 3, dtype=np.uint32).reshape(50, 100, 3).astype(np.uint8)
    piece = crop(image, (10, 6, 21, 10))
    assert piece.shape == (10, 21, 3) and np.array_equal(piece, image[6:16, 10:31])
    piece[:] = 0
    assert image[6, 10].any()  # a copy, not a view
    with pytest.raises(ValueError, match="not inside"):
        crop(image, (95, 0, 10, 10))


@pytest.fixture()
def sequence(tmp_path) -> Path:
    """Three 40 x 30 PNG frames of random pixels, at 5 fps."""
    seq = tmp_path / "seq"
    (seq / "img1").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in (1, 2, 3):
        pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(seq / "img1" / f"{k:06d}.png")
    (seq / "seqinfo.ini").write_text("[Sequence]\nframeRate=5\nseqLength=3\nimExt=.png\n")
    return seq


def test_crops_carry_their_provenance_and_beyond_frames_are_reported(sequence, caplog):
    dets = read_mot(
        write(
            sequence / "det.txt",
            "1,4,2.2,3.7,10,12,0.8\n"
            "3,-1,30,20,20,20,0.6\n"  # runs off the right and bottom
            "9,-1,0,0,5,5,0.5\n"
            "12,-1,0,0,5,5,0.5\n"
            "12,-1,1,1,5,5,0.5\n",
        ),
        frame_size=(40, 30),
    )
    report = CropReport()
    with caplog.at_level(logging.WARNING):
        crops = list(iter_crops(FrameFolder(sequence), dets, report=report))
    assert len(crops) == 2
    first, second = crops
    assert first.provenance.frame == 1 and first.provenance.time == 0.0
    assert first.provenance.box == (2, 4, 10, 12) and first.provenance.track == 4
    assert first.conf == 0.8 and first.provenance.source == str(sequence)
    assert second.provenance.frame == 3 and second.provenance.time == pytest.approx(0.4)
    assert second.provenance.box == (30, 20, 10, 10) and second.provenance.track is None
    for c in crops:  # cutting the recorded box from the frame file again gives the crop
        x, y, w, h = c.provenance.box
        frame = np.asarray(Image.open(sequence / "img1" / f"{c.provenance.frame:06d}.png"))
        assert np.array_equal(c.image, frame[y : y + h, x : x + w])
    assert report.beyond == 3 and report.beyond_frames == [9, 12]
    assert "beyond the last frame (3)" in caplog.text
    assert [c.provenance.frame for c in iter_crops(FrameFolder(sequence), dets, every=2)] == [1, 3]
