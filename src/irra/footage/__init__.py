"""Footage in: frames of videos and MOTChallenge sequences, person boxes, crops, tracks.

Modules (one job each):

* :mod:`irra.footage.frame`: :class:`Frame` and the :class:`FrameSource` protocol.
* :mod:`irra.footage.folder`: :class:`FrameFolder`, a MOTChallenge sequence (``img1/``,
  ``seqinfo.ini``).
* :mod:`irra.footage.video`: :class:`VideoFile` (PyAV) and :func:`write_video`.
* :mod:`irra.footage.detections`: :func:`read_mot`, boxes in the MOTChallenge text format.
* :mod:`irra.footage.crops`: :func:`iter_crops`, crops with their :class:`Provenance`.
* :mod:`irra.footage.tracker`: :func:`track_detections`, a greedy IoU + appearance tracker.
* :mod:`irra.footage.tracks`: :func:`summarise_tracks`, a few representative crops per track;
  :func:`select_detections`, the boxes to keep from a source (tracked, a few per track).
* :mod:`irra.footage.mot_eval`: :func:`clear_mot`, CLEAR-MOT counts against ground truth;
  :func:`truth_of_tracks`, the ground-truth person each track stands for.

Nothing here imports PyTorch; PyAV is imported only when a video is opened or written.
"""

import os
from pathlib import Path

from irra.footage.crops import Crop, CropReport, Provenance, crop, iter_crops, pixel_box
from irra.footage.detections import Detection, DetectionSet, clip_box, read_mot
from irra.footage.errors import FootageError
from irra.footage.folder import FrameFolder
from irra.footage.frame import Frame, FrameSource, ReadReport
from irra.footage.mot_eval import MotCounts, clear_mot, truth_of_tracks
from irra.footage.tracker import Tracker, TrackerConfig, track_detections
from irra.footage.tracks import (
    TrackSummary,
    representatives,
    select_detections,
    summarise_tracks,
)
from irra.footage.video import VIDEO_SUFFIXES, VideoFile, write_video


def open_footage(path: str | os.PathLike[str], *, fps: float | None = None) -> FrameSource:
    """A :class:`FrameFolder` for a folder, else a :class:`VideoFile`.

    Args:
        path: a MOTChallenge sequence folder (or its image folder) or a video file.
        fps: frame rate of a folder without ``seqinfo.ini`` (ignored for videos).
    """
    return FrameFolder(path, fps=fps) if Path(path).is_dir() else VideoFile(path)


__all__ = [
    "VIDEO_SUFFIXES",
    "Crop",
    "CropReport",
    "Detection",
    "DetectionSet",
    "FootageError",
    "Frame",
    "FrameFolder",
    "FrameSource",
    "MotCounts",
    "Provenance",
    "ReadReport",
    "TrackSummary",
    "Tracker",
    "TrackerConfig",
    "VideoFile",
    "clear_mot",
    "clip_box",
    "crop",
    "iter_crops",
    "open_footage",
    "pixel_box",
    "read_mot",
    "representatives",
    "select_detections",
    "summarise_tracks",
    "track_detections",
    "truth_of_tracks",
    "write_video",
]
