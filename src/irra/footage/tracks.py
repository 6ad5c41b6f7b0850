"""A track stored once: a few representative crops instead of one per frame.

The track's time span (first to last frame) is cut into ``per_track`` equal parts, and each part
gives its best box: the highest ``quality = conf * size * edge``, where ``size`` is the box
height over the track's tallest box (a person far away or half-detected shows less) and
``edge`` is :data:`EDGE_PENALTY` for a box touching the frame border (probably cut off), else 1.
Ties go to the earlier frame. Parts without a box give nothing, so a short track may keep fewer.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from irra.footage.detections import Detection, DetectionSet
from irra.footage.tracker import TrackerConfig, track_detections

logger = logging.getLogger(__name__)

EDGE_PENALTY = 0.5
EDGE_MARGIN = 1.0  # pixels: a box this close to the border touches it


@dataclass(frozen=True)
class TrackSummary:
    """One track: its id, frame span, number of boxes and representative detections."""

    track: int
    first_frame: int
    last_frame: int
    length: int
    representatives: list[Detection]


def quality(det: Detection, tallest: float, frame_size: tuple[int, int] | None) -> float:
    """How good a crop ``det`` makes (see the module docstring)."""
    x, y, w, h = det.box
    score = det.conf * (h / tallest if tallest > 0 else 1.0)
    if frame_size is not None:
        fw, fh = frame_size
        m = EDGE_MARGIN
        if x <= m or y <= m or x + w >= fw - m or y + h >= fh - m:
            score *= EDGE_PENALTY
    return score


def representatives(
    track: list[Detection], per_track: int = 3, frame_size: tuple[int, int] | None = None
) -> list[Detection]:
    """Up to ``per_track`` detections of one track, spread over its time span, best first in
    each part; returned in frame order.

    Args:
        track: the boxes of one track (any order).
        per_track: how many to keep (at least 1).
        frame_size: (W, H), to penalise boxes cut by the border; None ignores borders.
    """
    if per_track < 1:
        raise ValueError(f"per_track must be at least 1, got {per_track}")
    if not track:
        return []
    first, last = min(d.frame for d in track), max(d.frame for d in track)
    tallest = max(d.box[3] for d in track)
    span = last - first + 1
    parts: dict[int, list[Detection]] = defaultdict(list)
    for d in track:
        parts[min(per_track - 1, (d.frame - first) * per_track // span)].append(d)
    chosen = [
        max(ds, key=lambda d: (quality(d, tallest, frame_size), -d.frame))
        for _, ds in sorted(parts.items())
    ]
    return sorted(chosen, key=lambda d: d.frame)


def summarise_tracks(
    detections: list[Detection],
    per_track: int = 3,
    frame_size: tuple[int, int] | None = None,
) -> list[TrackSummary]:
    """One :class:`TrackSummary` per track id, in order of track id.

    Raises:
        ValueError: a detection has no track id (run :func:`~irra.footage.tracker.
            track_detections` first).
    """
    by_track: dict[int, list[Detection]] = defaultdict(list)
    for d in detections:
        if d.track is None:
            raise ValueError(f"detection of frame {d.frame} has no track id; track them first")
        by_track[d.track].append(d)
    return [
        TrackSummary(
            track=tid,
            first_frame=min(d.frame for d in ds),
            last_frame=max(d.frame for d in ds),
            length=len(ds),
            representatives=representatives(ds, per_track, frame_size),
        )
        for tid, ds in sorted(by_track.items())
    ]


def select_detections(
    detections: DetectionSet | list[Detection],
    *,
    per_track: int | None = 3,
    frame_size: tuple[int, int] | None = None,
    config: TrackerConfig | None = None,
) -> list[Detection]:
    """The boxes to keep from footage: each with a track id, a few per track.

    Tracks are the file's ids when every box has one (tracker output, ground truth), else
    :func:`~irra.footage.tracker.track_detections` links the boxes.

    Args:
        detections: the boxes of one source.
        per_track: representatives kept per track; None keeps every box (one crop per frame).
        frame_size: (W, H), so that boxes cut by the border are less likely to be kept.
        config: tracker settings, for boxes without ids.

    Returns:
        the kept boxes, with ``track`` set, in frame order.
    """
    items = detections.detections if isinstance(detections, DetectionSet) else detections
    if items and all(d.track is not None for d in items):
        tracked = sorted(items, key=lambda d: d.frame)
        how = "the file's track ids"
    else:
        tracked = track_detections(items, config)
        how = "the tracker"
    if per_track is None:
        return tracked
    kept = [d for s in summarise_tracks(tracked, per_track, frame_size) for d in s.representatives]
    logger.info(
        "%d boxes in %d tracks (by %s) -> %d kept, %d per track at most",
        len(tracked),
        len({d.track for d in tracked}),
        how,
        len(kept),
        per_track,
    )
    return sorted(kept, key=lambda d: d.frame)
