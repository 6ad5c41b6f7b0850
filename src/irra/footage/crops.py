"""Cutting person crops out of frames, each with where and when it was seen.

A box ``(x, y, w, h)`` of float pixels becomes the integer pixel rectangle
``round(x) <= u < round(x + w)``, ``round(y) <= v < round(y + h)`` clipped to the frame (round
half to even, as Python's ``round``); that rectangle is what the crop holds and what its
:class:`Provenance` records, so cutting ``box`` from frame ``frame`` of ``source`` again gives
the same pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from irra.footage.detections import Box, Detection, DetectionSet
from irra.footage.frame import FrameSource

logger = logging.getLogger(__name__)

PixelBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class Provenance:
    """Where a crop comes from.

    Attributes:
        source: the video file or frame folder.
        frame: 1-based frame number.
        time: seconds since the first frame of the source.
        box: (x, y, w, h) integer pixels of the crop in the frame.
        track: the track id, or None.
    """

    source: str
    frame: int
    time: float
    box: PixelBox
    track: int | None = None


@dataclass(frozen=True)
class Crop:
    """A person crop: ``image`` (h, w, 3) uint8 RGB, its provenance and detection confidence."""

    image: np.ndarray
    provenance: Provenance
    conf: float


@dataclass
class CropReport:
    """What :func:`iter_crops` skipped: boxes of frames the source does not have."""

    beyond: int = 0
    beyond_frames: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def pixel_box(box: Box, size: tuple[int, int]) -> PixelBox | None:
    """The integer rectangle of ``box`` inside a frame of ``size`` (W, H); None if empty."""
    x, y, w, h = box
    x0, y0 = max(round(x), 0), max(round(y), 0)
    x1, y1 = min(round(x + w), size[0]), min(round(y + h), size[1])
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def crop(image: np.ndarray, box: PixelBox) -> np.ndarray:
    """The pixels of ``box`` (from :func:`pixel_box`) in ``image`` (H, W, 3), as a copy."""
    x, y, w, h = box
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > image.shape[1] or y + h > image.shape[0]:
        raise ValueError(f"box {box} is not inside the {image.shape[1]}x{image.shape[0]} frame")
    return image[y : y + h, x : x + w].copy()


def iter_crops(
    source: FrameSource,
    detections: DetectionSet | list[Detection],
    *,
    every: int = 1,
    report: CropReport | None = None,
) -> Iterator[Crop]:
    """Crops of every detection in the frames of ``source`` (frames ``1, 1 + every, ...``).

    Detections of frames after the source's last frame are counted in ``report`` and logged
    (the detections file is probably for another video); so are the source's read problems.

    Args:
        source: a :class:`~irra.footage.folder.FrameFolder` or
            :class:`~irra.footage.video.VideoFile`.
        detections: boxes (their ``track`` goes into the provenance).
        every: frame sampling step.
        report: filled in as the crops are produced.
    """
    report = report if report is not None else CropReport()
    items = detections.detections if isinstance(detections, DetectionSet) else detections
    by_frame: dict[int, list[Detection]] = {}
    for d in items:
        by_frame.setdefault(d.frame, []).append(d)
    name = str(source.path)
    for frame in source.frames(every, only=by_frame.keys()):
        h, w = frame.image.shape[:2]
        for d in by_frame.get(frame.number, ()):
            box = pixel_box(d.box, (w, h))
            if box is None:
                continue
            prov = Provenance(name, frame.number, frame.time, box, d.track)
            yield Crop(crop(frame.image, box), prov, d.conf)
    last = source.report.last_frame
    beyond = sorted(f for f in by_frame if f > last)
    report.problems.extend(source.report.problems)
    if beyond:
        report.beyond = sum(len(by_frame[f]) for f in beyond)
        report.beyond_frames = beyond
        message = (
            f"{report.beyond} detection(s) in frames {beyond[0]}..{beyond[-1]} are beyond the "
            f"last frame ({last}) of {name}; skipped. Check that the detections belong to it"
        )
        report.problems.append(message)
        logger.warning("%s", message)
