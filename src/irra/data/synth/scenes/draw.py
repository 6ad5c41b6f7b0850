"""Compositing a planned sequence into frames, with the ground truth of every frame.

Each person is drawn once per pose (:mod:`sprites`) and pasted into every frame they are in,
farthest first, so nearer people occlude farther ones. The box of a person is the box of their
whole body, also where it runs past the image edge (as MOTChallenge ground truth does); the
visibility is the fraction of their body's pixels that are inside the image and not hidden by
someone nearer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from irra.data.synth.scenes.plan import POSES, TrackPlan
from irra.data.synth.scenes.sprites import Sprite, render_sprite


@dataclass(frozen=True)
class GroundTruth:
    """One person in one frame: ``box`` (x, y, w, h) in pixels, ``visibility`` 0..1."""

    track: int
    box: tuple[int, int, int, int]
    visibility: float


@dataclass(frozen=True)
class DrawnFrame:
    """Frame ``number`` (1-based): ``image`` (H, W, 3) uint8 RGB and its people."""

    number: int
    image: np.ndarray
    people: list[GroundTruth]


SpriteFn = Callable[[int, int], Sprite]


def _intersect(x: int, y: int, w: int, h: int, size: tuple[int, int]):
    """Frame slice and sprite slice of a ``w`` x ``h`` sprite at ``(x, y)``; None if outside."""
    fw, fh = size
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, fw), min(y + h, fh)
    if x0 >= x1 or y0 >= y1:
        return None
    frame = (slice(y0, y1), slice(x0, x1))
    sprite = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
    return frame, sprite


def draw_frames(
    background: np.ndarray, tracks: list[TrackPlan], length: int, sprite: SpriteFn
) -> Iterator[DrawnFrame]:
    """Frames ``1..length`` of ``tracks`` walking over ``background``.

    Args:
        background: (H, W, 3) uint8 RGB, the same in every frame (a fixed camera).
        tracks: the planned people; their position in the list is their index for ``sprite``.
        length: number of frames.
        sprite: ``sprite(track_index, pose)`` the drawn pose at the track's largest size.

    Yields:
        Every frame in order; ``people`` holds the ``track`` index (0-based, into ``tracks``)
        of everyone at least partly inside the image.
    """
    h, w = background.shape[:2]
    base = background.astype(np.float32)
    owner = np.zeros((h, w), dtype=np.int32)
    for number in range(1, length + 1):
        canvas = base.copy()
        owner.fill(0)
        here = [k for k, t in enumerate(tracks) if t.start <= number <= t.end]
        here.sort(key=lambda k: (tracks[k].y[number - tracks[k].start], k))  # far to near
        placed = []
        for z, k in enumerate(here, start=1):
            plan, i = tracks[k], number - tracks[k].start
            spr = sprite(k, int(plan.pose[i]))
            if abs(spr.scale - plan.scale[i]) > 0.5:
                spr = spr.resized(float(plan.scale[i]))
            ox, oy = round(plan.x[i] - spr.foot[0]), round(plan.y[i] - spr.foot[1])
            sh, sw = spr.alpha.shape
            cut = _intersect(ox, oy, sw, sh, (w, h))
            if cut is None:
                continue
            fr, sp = cut
            alpha = spr.alpha[sp][..., None]
            canvas[fr] = canvas[fr] * (1.0 - alpha) + spr.color[sp]
            owner[fr][spr.mask[sp]] = z
            bx, by, bw, bh = spr.box
            box = (ox + bx, oy + by, bw, bh)
            if _intersect(*box, (w, h)) is not None:
                placed.append((k, z, fr, box, int(spr.mask.sum())))
        people = [
            GroundTruth(k, box, float(np.count_nonzero(owner[fr] == z)) / total)
            for k, z, fr, box, total in placed
        ]
        people.sort(key=lambda g: g.track)
        image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
        yield DrawnFrame(number, image, people)


class SpriteCache:
    """Draws each (track, pose) once, at the track's largest size, on first use.

    Args:
        tracks: the sequence's planned people.
        rng_for_pose: ``rng_for_pose(track_index, pose)``, the generator of that pose.
    """

    def __init__(
        self, tracks: list[TrackPlan], rng_for_pose: Callable[[int, int], np.random.Generator]
    ) -> None:
        self._tracks = tracks
        self._rng = rng_for_pose
        self._sprites: dict[tuple[int, int], Sprite] = {}

    def __call__(self, track: int, pose: int) -> Sprite:
        """The sprite of ``pose`` (0..POSES-1) of track ``track``."""
        key = (track, pose % POSES)
        if key not in self._sprites:
            plan = self._tracks[track]
            scale = max(16, round(float(plan.scale.max())))
            self._sprites[key] = render_sprite(
                plan.identity, self._rng(*key), scale, plan.view, plan.bag_side
            )
        return self._sprites[key]

    def forget_before(self, number: int) -> None:
        """Drop the sprites of tracks that ended before frame ``number`` (memory)."""
        for key in [k for k in self._sprites if self._tracks[k[0]].end < number]:
            del self._sprites[key]
