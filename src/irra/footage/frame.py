"""A decoded frame and what every frame source offers (a frame folder, a video file)."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes:
        number: 1-based frame number (MOTChallenge numbering: the n-th frame of the source).
        time: seconds since the first frame of the source.
        image: (H, W, 3) uint8 RGB pixels.
    """

    number: int
    time: float
    image: np.ndarray


@dataclass
class ReadReport:
    """What a pass over a source met: frames decoded and problems (each naming the file)."""

    decoded: int = 0
    last_frame: int = 0
    problems: list[str] = field(default_factory=list)


class FrameSource(Protocol):
    """A sequence of frames with a frame rate: :class:`FrameFolder` or :class:`VideoFile`.

    ``frames(every)`` yields frames ``1, 1 + every, 1 + 2 * every, ...`` (those that exist);
    ``frame(number)`` reads one frame; ``report`` describes the last pass of ``frames``. With
    ``only``, ``frames`` yields just those frame numbers (a video still decodes every frame but
    converts only those to RGB; a folder reads only their files).
    """

    path: Path
    fps: float
    size: tuple[int, int]  # (W, H)
    report: ReadReport

    def frames(self, every: int = 1, only: Collection[int] | None = None) -> Iterator[Frame]:
        """Decoded frames in order, every ``every``-th one (of those in ``only``, if given)."""
        ...

    def frame(self, number: int) -> Frame:
        """Frame ``number`` (1-based)."""
        ...


def check_every(every: int) -> int:
    """``every`` as a positive int, or a ValueError that says what is accepted."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer (1 = every frame), got {every!r}")
    return every
