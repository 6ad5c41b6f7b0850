"""Writing synthetic street sequences in the MOTChallenge layout.

Layout of ``out_dir``::

    scenes.json                generator, parameters; per sequence: tracks, boxes, detections
    SYNTH-01/seqinfo.ini       [Sequence] name, imDir, frameRate, seqLength, imWidth, imHeight,
                               imExt
    SYNTH-01/img1/000001.jpg   the frames
    SYNTH-01/gt/gt.txt         frame, id, x, y, w, h, 1, 1, visibility   (class 1: pedestrian)
    SYNTH-01/det/det.txt       frame, -1, x, y, w, h, conf, -1, -1, -1
    SYNTH-01/captions.json     {"<track id>": "caption", ...}
    SYNTH-01/SYNTH-01.mp4      the frames as H.264 video (with ``video=True``; yuv420p, or the
                               RGB pixels exactly with ``lossless_video=True``: with PNG frames
                               both sources then give the same pixels)

Ground-truth boxes are the whole body, also where it runs out of the image; detections are
clipped to it. Track ids count from 1 in order of first appearance. Every random choice comes
from generators keyed by ``(seed, stream, sequence, ...)``: the same parameters give the same
bytes, whatever the number of worker processes.
"""

from __future__ import annotations

import configparser
import io
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from irra.data.synth.captions import write_captions
from irra.data.synth.output import check_target, move_into_place, partial_dir
from irra.data.synth.scene import background, camera_effects
from irra.data.synth.scenes.detector import DetectorSimulator
from irra.data.synth.scenes.draw import DrawnFrame, SpriteCache, draw_frames
from irra.data.synth.scenes.plan import TrackPlan, plan_tracks
from irra.data.synth.writer import rng_for
from irra.fileio import atomic_write_text

logger = logging.getLogger(__name__)

GENERATOR = "irra.synthscenes"
GENERATOR_VERSION = 1
META_FILE = "scenes.json"
_BACKGROUND, _PLAN, _POSE, _DETECT, _CAPTION = 11, 12, 13, 14, 15  # random streams
BACKGROUND_KINDS = ("street", "indoor")  # a street 3 times in 4, else a hall or a mall
BACKGROUND_WEIGHTS = (0.75, 0.25)
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class SceneParams:
    """What a set of sequences is drawn from (all of it is recorded in ``scenes.json``)."""

    sequences: int = 3
    frames: int = 300
    width: int = 640
    height: int = 360
    fps: float = 25.0
    seed: int = 0
    image_format: str = "jpg"
    video: bool = False
    lossless_video: bool = False

    def check(self) -> None:
        """Raise ValueError naming the first bad parameter."""
        if self.sequences < 1 or self.frames < 1:
            raise ValueError("sequences and frames must be at least 1")
        if self.height < 120 or self.width < 160:
            raise ValueError(
                f"frames of {self.width}x{self.height} are too small (at least 160x120)"
            )
        if self.width % 2 or self.height % 2:
            raise ValueError(
                f"width and height must be even (H.264), got {self.width}x{self.height}"
            )
        if not 1 <= self.fps <= 120:
            raise ValueError(f"fps must be between 1 and 120, got {self.fps}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")
        if self.image_format not in ("jpg", "png"):
            raise ValueError(f"image_format must be 'jpg' or 'png', got {self.image_format!r}")
        if self.lossless_video and not self.video:
            raise ValueError("lossless_video needs video=True")


def sequence_name(index: int) -> str:
    """Folder name of sequence ``index`` (0-based): ``SYNTH-01``, ``SYNTH-02``..."""
    return f"SYNTH-{index + 1:02d}"


@dataclass(frozen=True)
class PlannedSequence:
    """A planned sequence: its fixed background and its people."""

    name: str
    background: np.ndarray  # (H, W, 3) uint8
    tracks: list[TrackPlan]


def plan_sequence(params: SceneParams, index: int) -> PlannedSequence:
    """Background and people of sequence ``index`` (0-based)."""
    size = (params.width, params.height)
    rng = rng_for(params.seed, _BACKGROUND, index)
    kind = BACKGROUND_KINDS[int(rng.choice(len(BACKGROUND_KINDS), p=BACKGROUND_WEIGHTS))]
    image = camera_effects(background(rng, size, kind), rng)
    tracks = plan_tracks(rng_for(params.seed, _PLAN, index), size, params.frames, params.fps)
    return PlannedSequence(sequence_name(index), np.asarray(image, dtype=np.uint8), tracks)


def draw_sequence(
    params: SceneParams, index: int, seq: PlannedSequence | None = None
) -> Iterator[DrawnFrame]:
    """The frames of sequence ``index`` (0-based), with each frame's people.

    Args:
        params: the scene parameters.
        index: which sequence.
        seq: its plan, when already made (:func:`plan_sequence` of the same arguments).
    """
    seq = seq or plan_sequence(params, index)
    sprites = SpriteCache(seq.tracks, lambda t, p: rng_for(params.seed, _POSE, index, t, p))
    for frame in draw_frames(seq.background, seq.tracks, params.frames, sprites):
        yield frame
        sprites.forget_before(frame.number)


def _seqinfo(name: str, params: SceneParams) -> str:
    ini = configparser.ConfigParser()
    ini.optionxform = str  # keep MOTChallenge's camelCase keys
    ini["Sequence"] = {
        "name": name,
        "imDir": "img1",
        "frameRate": f"{params.fps:g}",
        "seqLength": str(params.frames),
        "imWidth": str(params.width),
        "imHeight": str(params.height),
        "imExt": f".{params.image_format}",
    }
    text = io.StringIO()
    ini.write(text, space_around_delimiters=False)
    return text.getvalue()


def _save(image: np.ndarray, path: Path) -> None:
    if path.suffix == ".png":
        Image.fromarray(image).save(path, format="PNG", optimize=False)
    else:
        Image.fromarray(image).save(path, format="JPEG", quality=95, optimize=False)


def write_sequence(
    params: SceneParams, index: int, root: Path, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Draw sequence ``index`` into ``root/<name>/``; returns its counts for ``scenes.json``."""
    name = sequence_name(index)
    folder = root / name
    seq = plan_sequence(params, index)
    (folder / "img1").mkdir(parents=True)
    detector = DetectorSimulator(
        rng_for(params.seed, _DETECT, index), (params.width, params.height)
    )
    gt: list[tuple[int, int, tuple[int, int, int, int], float]] = []
    det_lines: list[str] = []
    seen: dict[int, int] = {}  # plan index -> track id, in order of first appearance

    def frames() -> Iterator[np.ndarray]:
        for frame in draw_sequence(params, index, seq):
            _save(frame.image, folder / "img1" / f"{frame.number:06d}.{params.image_format}")
            for person in frame.people:
                seen.setdefault(person.track, len(seen) + 1)
                gt.append((frame.number, seen[person.track], person.box, person.visibility))
            for d in detector(frame.people):
                x, y, w, h = d.box
                det_lines.append(
                    f"{frame.number},-1,{x:.2f},{y:.2f},{w:.2f},{h:.2f},{d.conf:.3f},-1,-1,-1\n"
                )
            if progress is not None:
                progress(1)
            yield frame.image

    if params.video:
        from irra.footage.video import write_video

        write_video(folder / f"{name}.mp4", frames(), params.fps, lossless=params.lossless_video)
    else:
        for _ in frames():
            pass
    gt.sort(key=lambda r: (r[1], r[0]))  # MOTChallenge ground truth is sorted by id, then frame
    (folder / "gt").mkdir()
    (folder / "gt" / "gt.txt").write_text(
        "".join(f"{f},{t},{x},{y},{w},{h},1,1,{v:.4f}\n" for f, t, (x, y, w, h), v in gt)
    )
    (folder / "det").mkdir()
    (folder / "det" / "det.txt").write_text("".join(det_lines))
    captions = {}
    for plan_index, track_id in sorted(seen.items(), key=lambda kv: kv[1]):
        plan = seq.tracks[plan_index]
        rng = rng_for(params.seed, _CAPTION, index, plan_index)
        captions[str(track_id)] = write_captions(plan.identity, plan.view, rng, 1)[0]
    (folder / "captions.json").write_text(json.dumps(captions, indent=1) + "\n")
    (folder / "seqinfo.ini").write_text(_seqinfo(name, params))
    return {"name": name, "tracks": len(seen), "boxes": len(gt), "detections": len(det_lines)}


@dataclass(frozen=True)
class ScenesSummary:
    """What :func:`generate_scenes` wrote (``sequences``: name, tracks, boxes, detections)."""

    out_dir: Path
    sequences: list[dict[str, Any]]
    seconds: float = 0.0
    reused: bool = False


def _run(job: tuple[SceneParams, int, str]) -> dict[str, Any]:
    params, index, root = job
    return write_sequence(params, index, Path(root))


def generate_scenes(
    out_dir: str | os.PathLike[str],
    params: SceneParams | None = None,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> ScenesSummary:
    """Draw synthetic street sequences in the MOTChallenge layout under ``out_dir``.

    Args:
        out_dir: target folder; built in a hidden sibling folder and renamed into place, so it
            is complete or absent. If it already holds the same sequences they are reused.
        params: what to draw (:class:`SceneParams`; defaults: 3 sequences of 300 frames,
            640x360, 25 fps, seed 0, JPEG frames, no video).
        workers: processes, one sequence each (1 = here); does not change the output.
        overwrite: replace sequences made with other parameters.
        progress: ``progress(done_frames, total_frames)``, per frame with one worker, per
            sequence with several.

    Example:
        >>> generate_scenes("data/scenes", SceneParams(sequences=2, video=True))  # doctest: +SKIP
    """
    params = params or SceneParams()
    params.check()
    record = {"version": GENERATOR_VERSION, **asdict(params)}
    out = Path(out_dir)
    start = time.perf_counter()
    if check_target(
        out,
        record,
        overwrite,
        meta_file=META_FILE,
        generator=GENERATOR,
        complete_file=META_FILE,
        what="synthetic scenes",
    ):
        logger.info("%s already holds these synthetic scenes; reusing them", out)
        meta = json.loads((out / META_FILE).read_text())
        return ScenesSummary(out, meta["sequences"], time.perf_counter() - start, reused=True)
    tmp = partial_dir(out)
    total = params.sequences * params.frames
    try:
        tmp.mkdir(parents=True)
        sequences = _write_all(params, tmp, workers, total, progress)
        meta = {"generator": GENERATOR, "params": record, "sequences": sequences}
        atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=1) + "\n")
        move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    logger.info("wrote %d sequences to %s in %.1f s", len(sequences), out, seconds)
    return ScenesSummary(out, sequences, seconds)


def _write_all(
    params: SceneParams, tmp: Path, workers: int, total: int, progress: ProgressFn | None
) -> list[dict[str, Any]]:
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    if workers <= 1 or params.sequences == 1:
        return [write_sequence(params, i, tmp, step) for i in range(params.sequences)]
    jobs = [(params, i, str(tmp)) for i in range(params.sequences)]
    with multiprocessing.get_context("spawn").Pool(min(workers, params.sequences)) as pool:
        results = []
        for result in pool.imap(_run, jobs):
            results.append(result)
            step(params.frames)
    return results
