"""Reading person boxes in the MOTChallenge text format.

One box per line, comma separated: ``frame, id, x, y, w, h, conf, ...`` (``det/det.txt`` of
public detections and tracker output: ``id`` is -1 when there is none, and three world
coordinates follow; ``gt/gt.txt``: column 7 is a 0/1 "consider" flag, then class and visibility).
Columns after the seventh are ignored. ``x, y`` is the top-left corner and ``w, h`` the size,
in pixels, read as written (as Python MOT tools do): the box covers ``x <= u < x + w``.

Every malformed line is an error naming the file and the line; given the frame size, boxes that
reach outside the frame are clipped to it and counted, and boxes wholly outside are dropped and
counted.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from irra.footage.errors import FootageError

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
FORMAT = "frame, id, x, y, w, h[, conf, ...] (MOTChallenge)"
MAX_LISTED = 5  # malformed lines quoted in one error


@dataclass(frozen=True)
class Detection:
    """One box of one frame.

    Attributes:
        frame: 1-based frame number.
        box: (x, y, w, h) float pixels, top-left corner and size.
        conf: detection confidence (1.0 when the file has no seventh column).
        track: the file's identity, or None where it holds -1 (no track yet).
        line: line number in the file it came from (0 when made in code).
    """

    frame: int
    box: Box
    conf: float = 1.0
    track: int | None = None
    line: int = 0


@dataclass
class DetectionSet:
    """The boxes of a file, in file order, and what reading it changed.

    Attributes:
        path: the file.
        detections: the kept boxes.
        clipped: boxes that reached outside the frame, clipped to it.
        outside: boxes wholly outside the frame (or below ``min_size`` once clipped), dropped.
        below_conf: boxes under ``min_conf``, dropped.
    """

    path: Path
    detections: list[Detection] = field(default_factory=list)
    clipped: int = 0
    outside: int = 0
    below_conf: int = 0

    @property
    def has_tracks(self) -> bool:
        """True when every box carries a track id (the file is tracker output or ground truth)."""
        return bool(self.detections) and all(d.track is not None for d in self.detections)

    def by_frame(self) -> dict[int, list[Detection]]:
        """Boxes grouped by frame number (each list in file order)."""
        out: dict[int, list[Detection]] = defaultdict(list)
        for d in self.detections:
            out[d.frame].append(d)
        return dict(out)


def clip_box(box: Box, size: tuple[int, int]) -> Box | None:
    """``box`` cut to the frame of ``size`` (W, H); None when nothing of it is inside."""
    x, y, w, h = box
    if x >= 0 and y >= 0 and x + w <= size[0] and y + h <= size[1]:
        return box  # inside: kept as written (recomputing w, h could round it)
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(size[0])), min(y + h, float(size[1]))
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def _parse(fields: list[str], path: Path, number: int) -> Detection:
    """One line's fields -> Detection; ValueError with the reason when malformed."""
    if len(fields) < 6:
        raise ValueError(f"{len(fields)} fields, at least 6 are needed")
    try:
        values = [float(v) for v in fields[:7]]
    except ValueError:
        bad = next(v for v in fields[:7] if not _is_number(v))
        raise ValueError(f"{bad.strip()!r} is not a number") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError("a value is not finite (nan or inf)")
    frame, track = values[0], values[1]
    if frame != int(frame) or frame < 1:
        raise ValueError(f"frame {fields[0].strip()} is not a frame number (1, 2, ...)")
    if track != int(track) or (track < 0 and track != -1):
        raise ValueError(f"id {fields[1].strip()} is not a track id (-1 or a whole number >= 0)")
    w, h = values[4], values[5]
    if w <= 0 or h <= 0:
        raise ValueError(f"box size {w:g} x {h:g} is not positive")
    conf = values[6] if len(values) > 6 else 1.0
    return Detection(
        frame=int(frame),
        box=(values[2], values[3], w, h),
        conf=conf,
        track=None if track == -1 else int(track),
        line=number,
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_mot(
    path: str | os.PathLike[str],
    *,
    frame_size: tuple[int, int] | None = None,
    min_conf: float | None = None,
    min_size: float = 1.0,
) -> DetectionSet:
    """Read a MOTChallenge detections, tracks or ground-truth file.

    Args:
        path: the text file.
        frame_size: (W, H) of the frames: boxes are clipped to it (counted in ``clipped``) and
            boxes wholly outside are dropped (``outside``). None keeps boxes as written.
        min_conf: drop boxes with a lower confidence (counted in ``below_conf``).
        min_size: after clipping, drop boxes narrower or lower than this many pixels.

    Returns:
        a :class:`DetectionSet`.

    Raises:
        FootageError: the file is missing or not text, or lines are malformed (the first few
            are quoted with their line numbers and the reason).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise FootageError(f"{path}: no such detections file; check the path") from err
    except (OSError, UnicodeDecodeError) as err:
        raise FootageError(
            f"{path}: cannot read it as text ({err}); give a MOTChallenge file: {FORMAT}"
        ) from err
    result = DetectionSet(path)
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            det = _parse(line.split(","), path, number)
        except ValueError as err:
            problems.append(f"line {number}: {err}: {line[:80]!r}")
            continue
        if min_conf is not None and det.conf < min_conf:
            result.below_conf += 1
            continue
        if frame_size is not None:
            clipped = clip_box(det.box, frame_size)
            if clipped is None or clipped[2] < min_size or clipped[3] < min_size:
                result.outside += 1
                continue
            if clipped != det.box:
                result.clipped += 1
                det = replace(det, box=clipped)
        result.detections.append(det)
    if problems:
        listed = "; ".join(problems[:MAX_LISTED])
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise FootageError(
            f"{path}: {len(problems)} malformed line(s): {listed}{more}. Each line must be "
            f"{FORMAT}; fix or delete these lines"
        )
    if result.clipped or result.outside:
        logger.info(
            "%s: %d box(es) clipped to the %dx%d frame, %d outside it dropped",
            path,
            result.clipped,
            *(frame_size or (0, 0)),
            result.outside,
        )
    return result
