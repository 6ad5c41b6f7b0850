"""Frame sources: a MOTChallenge frame folder and a video file, read back against the frames
``irra synth scenes`` drew (pixel-equal from PNG frames, near-equal from the mp4), and their
errors on bad input."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from irra.data.synth.scenes import SceneParams, draw_sequence, generate_scenes
from irra.footage import FootageError, FrameFolder, VideoFile, open_footage, write_video

PARAMS = SceneParams(
    sequences=1, frames=30, width=320, height=180, seed=4, image_format="png", video=True
)


@pytest.fixture(scope="module")
def seq(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("footage") / "scenes"
    generate_scenes(out, PARAMS)
    return out / "SYNTH-01"


@pytest.fixture(scope="module")
def drawn() -> list[np.ndarray]:
    return [f.image for f in draw_sequence(PARAMS, 0)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse)) if mse else float("inf")


def test_frame_folder_gives_the_drawn_pixels(seq, drawn):
    folder = FrameFolder(seq)
    assert folder.fps == 25 and folder.size == (320, 180) and len(folder.files) == 30
    frames = list(folder.frames())
    assert [f.number for f in frames] == list(range(1, 31))
    assert [f.time for f in frames] == pytest.approx([k / 25 for k in range(30)])
    for frame, image in zip(frames, drawn, strict=True):
        assert frame.image.dtype == np.uint8 and np.array_equal(frame.image, image)
    assert [f.number for f in folder.frames(every=7)] == [1, 8, 15, 22, 29]
    assert np.array_equal(folder.frame(12).image, drawn[11])
    with pytest.raises(FootageError, match="no frame 31"):
        folder.frame(31)
    inner = FrameFolder(seq / "img1")  # the image folder itself: seqinfo.ini from its parent
    assert inner.fps == 25 and len(inner.files) == 30


def test_video_gives_near_equal_frames_with_times(seq, drawn):
    video = open_footage(seq / "SYNTH-01.mp4")
    assert isinstance(video, VideoFile)
    assert video.fps == 25 and video.size == (320, 180) and video.num_frames == 30
    frames = list(video.frames())
    assert [f.number for f in frames] == list(range(1, 31))
    assert [f.time for f in frames] == pytest.approx([k / 25 for k in range(30)], abs=1e-6)
    for frame, image in zip(frames, drawn, strict=True):
        assert frame.image.shape == image.shape and frame.image.dtype == np.uint8
        assert psnr(frame.image, image) > 30  # H.264 at crf 18 with 4:2:0 chroma
    assert video.report.decoded == 30 and not video.report.problems
    sampled = list(video.frames(every=7))
    assert [f.number for f in sampled] == [1, 8, 15, 22, 29]
    assert np.array_equal(sampled[2].image, frames[14].image)
    assert np.array_equal(video.frame(10).image, frames[9].image)


def test_truncated_video_yields_what_decodes_and_reports_the_rest(seq, tmp_path, caplog):
    data = (seq / "SYNTH-01.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    video = VideoFile(cut)
    with caplog.at_level(logging.WARNING):
        frames = list(video.frames())
    assert 0 < len(frames) < 30
    assert [f.number for f in frames] == list(range(1, len(frames) + 1))
    assert video.report.problems and str(cut) in video.report.problems[0]
    assert str(cut) in caplog.text


def test_bad_video_files_are_clear_errors(tmp_path):
    with pytest.raises(FootageError, match="no such video"):
        VideoFile(tmp_path / "missing.mp4")
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(FootageError, match=r"zero\.mp4: the video file is empty"):
        VideoFile(tmp_path / "zero.mp4")
    (tmp_path / "text.mp4").write_bytes(b"not a video at all\n" * 50)
    with pytest.raises(FootageError, match=r"text\.mp4: cannot read it as a video"):
        VideoFile(tmp_path / "text.mp4")
    import av

    with av.open(str(tmp_path / "empty.mp4"), "w", format="mp4") as out:  # header, no frames
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        out.start_encoding()
    with pytest.raises(FootageError, match=r"empty\.mp4: no video stream"):
        VideoFile(tmp_path / "empty.mp4")
    with pytest.raises(ValueError, match="odd"):
        write_video(tmp_path / "odd.mp4", [np.zeros((9, 8, 3), np.uint8)], 25)
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "none.mp4", [], 25)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "empty.mp4",
        "text.mp4",
        "zero.mp4",
    ]  # nothing half-written left behind


def test_folder_without_seqinfo_falls_back_and_says_so(seq, tmp_path, caplog):
    bare = tmp_path / "bare"
    shutil.copytree(seq / "img1", bare / "img1")
    with caplog.at_level(logging.WARNING):
        folder = FrameFolder(bare)
    assert folder.fps == 25 and "seqinfo.ini" in caplog.text and str(bare) in caplog.text
    assert folder.size == (320, 180)
    slow = FrameFolder(bare / "img1", fps=10)  # a bare folder of numbered frames
    assert [f.time for f in slow.frames(every=10)] == pytest.approx([0.0, 1.0, 2.0])


def test_bad_frame_folders_are_clear_errors(seq, tmp_path, caplog):
    with pytest.raises(FootageError, match="no such frame folder"):
        FrameFolder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FootageError, match="no frame images"):
        FrameFolder(tmp_path / "empty")
    named = tmp_path / "named"
    named.mkdir()
    Image.new("RGB", (8, 8)).save(named / "000001.png")
    Image.new("RGB", (8, 8)).save(named / "frame_b.png")
    with pytest.raises(FootageError, match=r"named by frame number.*frame_b\.png"):
        FrameFolder(named)
    broken = tmp_path / "broken"
    shutil.copytree(seq, broken, ignore=shutil.ignore_patterns("*.mp4"))
    ini = broken / "seqinfo.ini"
    ini.write_text(ini.read_text().replace("frameRate=25", "frameRate=fast"))
    with pytest.raises(FootageError, match=r"seqinfo\.ini: frameRate='fast' is not a positive"):
        FrameFolder(broken)
    ini.write_text("name=x\n")
    with pytest.raises(FootageError, match=r"seqinfo\.ini"):
        FrameFolder(broken)
    ini.write_text("[Sequence]\nframeRate=25\nimDir=img1\nimExt=.png\nimWidth=320\nimHeight=180\n")
    (broken / "img1" / "000003.png").write_bytes(b"garbage")
    folder = FrameFolder(broken)
    with caplog.at_level(logging.WARNING):
        numbers = [f.number for f in folder.frames()]
    assert numbers == [k for k in range(1, 31) if k != 3]
    assert "000003.png" in folder.report.problems[0] and "000003.png" in caplog.text
    with pytest.raises(FootageError, match=r"000003\.png: cannot read"):
        folder.frame(3)


def test_a_lossless_video_decodes_to_its_input_and_a_default_one_close_to_it(tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (36, 64, 3), dtype=np.uint8) for _ in range(12)]
    images[5][:] = (255, 0, 128)  # saturated colours survive too
    write_video(tmp_path / "exact.mp4", images, 25, lossless=True)
    decoded = [f.image for f in VideoFile(tmp_path / "exact.mp4").frames()]
    assert len(decoded) == 12
    assert all(np.array_equal(a, b) for a, b in zip(images, decoded, strict=True))
    smooth = [np.full((36, 64, 3), (40 + 10 * k, 120, 200 - 5 * k), np.uint8) for k in range(12)]
    write_video(tmp_path / "lossy.mp4", smooth, 25)
    lossy = [f.image for f in VideoFile(tmp_path / "lossy.mp4").frames()]
    diff = max(int(np.abs(a.astype(int) - b).max()) for a, b in zip(smooth, lossy, strict=True))
    assert 0 < diff <= 8  # yuv420p: near, never equal


def test_reading_one_frame_of_a_video_seeks_to_the_same_pixels(tmp_path):
    """130 frames with a key frame every 50: frames on both sides of the key frames read alone
    equal the frames of a full pass."""
    rng = np.random.default_rng(0)
    images = [
        np.full((48, 64, 3), k, np.uint8) + rng.integers(0, 40, (48, 64, 3), dtype=np.uint8)
        for k in range(130)
    ]
    assert write_video(tmp_path / "v.mp4", images, 25) == 130
    video = VideoFile(tmp_path / "v.mp4")
    everything = list(video.frames())
    for number in (1, 2, 49, 50, 51, 52, 100, 101, 130):
        frame = video.frame(number)
        assert frame.number == number and frame.time == pytest.approx((number - 1) / 25)
        assert np.array_equal(frame.image, everything[number - 1].image)
    with pytest.raises(FootageError, match="fewer than 131 frames"):
        video.frame(131)
    with pytest.raises(FootageError, match="start at 1"):
        video.frame(0)
