"""Who walks where in a synthetic street sequence: tracks, trajectories and poses.

Ground plane: a person whose feet are at image row ``y`` is ``PERSPECTIVE * (y - HORIZON * H)``
pixels tall, so people further up the image are further away and smaller. Three kinds of
movement: walking across the view (a side view at a fixed distance), walking towards or away
from the camera (front or back view, growing or shrinking, leaving sideways or appearing in the
distance), and standing about (present at the start or the end of the sequence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from irra.data.synth.attributes import Identity, sample_identity
from irra.data.synth.body import sample_view

HORIZON = 0.45
PERSPECTIVE = 0.7 / (1 - HORIZON)  # 0.7 H tall at the bottom row
FOOT_RANGE = (0.62, 0.97)  # rows (fractions of H) the feet walk on
KINDS = ("across", "depth", "stand")
KIND_WEIGHTS = (0.6, 0.25, 0.15)
POSES = 4  # poses drawn per person (a walking cycle)
FRAMES_PER_POSE = 6  # at 25 frames/s: about four steps a second


@dataclass(frozen=True)
class TrackPlan:
    """One person's path; frame ``start + i`` has the feet at ``(x[i], y[i])``.

    Attributes:
        identity: what the person looks like (and what the caption says).
        view: the view drawn (``left``/``right`` walking across, ``front``/``back`` in depth).
        bag_side: the side a shoulder bag hangs on.
        start: frame number (1-based; may be below 1) of the first position.
        x, y: (n,) float feet position in pixels.
        scale: (n,) float person height in pixels.
        pose: (n,) int index of the pose drawn (0..POSES-1).
    """

    identity: Identity
    view: str
    bag_side: int
    start: int
    x: np.ndarray
    y: np.ndarray
    scale: np.ndarray
    pose: np.ndarray

    @property
    def end(self) -> int:
        """Frame number of the last position."""
        return self.start + len(self.x) - 1


def person_scale(y: np.ndarray | float, height: int) -> np.ndarray:
    """Height in pixels of a person standing at row ``y`` of an image ``height`` rows tall."""
    return PERSPECTIVE * (np.asarray(y, dtype=np.float64) - HORIZON * height)


def _poses(rng: np.random.Generator, n: int, walking: bool) -> np.ndarray:
    if not walking:
        return np.zeros(n, dtype=np.int64)
    phase = int(rng.integers(POSES * FRAMES_PER_POSE))
    return ((np.arange(n) + phase) // FRAMES_PER_POSE) % POSES


def _across(rng: np.random.Generator, start: int, w: int, h: int, fps: float):
    y = h * float(rng.uniform(*FOOT_RANGE))
    s = float(person_scale(y, h))
    direction = 1 if rng.random() < 0.5 else -1
    speed = s * float(rng.uniform(0.55, 1.0)) / fps  # about 1-1.7 m/s for a 1.7 m person
    margin = 0.35 * s
    n = int(math.ceil((w + 2 * margin) / speed)) + 1
    x0 = -margin if direction > 0 else w + margin
    x = x0 + direction * speed * np.arange(n)
    view = "right" if direction > 0 else "left"
    return view, start, x, np.full(n, y), True


def _depth(rng: np.random.Generator, start: int, w: int, h: int, fps: float):
    towards = rng.random() < 0.5
    far, near = h * FOOT_RANGE[0], h * float(rng.uniform(0.85, FOOT_RANGE[1]))
    side = 1 if rng.random() < 0.5 else -1
    x_far = w * float(rng.uniform(0.2, 0.8))
    x_near = w / 2 + side * (w / 2 + 0.4 * float(person_scale(near, h)))  # off the image
    n = int(fps * float(rng.uniform(4.0, 8.0)))
    t = np.linspace(0.0, 1.0, n)
    if not towards:
        t = t[::-1]
    x, y = x_far + (x_near - x_far) * t, far + (near - far) * t
    return ("front" if towards else "back"), start, x, y, True


def _stand(rng: np.random.Generator, length: int, w: int, h: int, fps: float):
    y = h * float(rng.uniform(*FOOT_RANGE))
    n = int(fps * float(rng.uniform(3.0, 10.0)))
    start = 1 if rng.random() < 0.5 else length - n + 1
    sway = 0.04 * float(person_scale(y, h)) * np.sin(np.arange(n) * rng.uniform(0.02, 0.06))
    x = w * float(rng.uniform(0.1, 0.9)) + sway
    return sample_view(rng), start, x, np.full(n, y), False


def plan_tracks(
    rng: np.random.Generator, size: tuple[int, int], length: int, fps: float
) -> list[TrackPlan]:
    """The people of one sequence, in order of entry (some already there at frame 1).

    Args:
        rng: the sequence's generator (identities, paths, poses).
        size: (W, H) of the frames.
        length: number of frames.
        fps: frame rate (walking speeds are in pixels per second).
    """
    w, h = size
    plans: list[TrackPlan] = []
    arrivals_per_frame = 0.7 / fps  # about five people in view at a time
    frame = -int(8 * fps)  # people already walking when the sequence starts
    while True:
        frame += int(rng.geometric(arrivals_per_frame))
        if frame > length:
            break
        kind = KINDS[int(rng.choice(len(KINDS), p=np.asarray(KIND_WEIGHTS)))]
        if kind == "across":
            view, start, x, y, walking = _across(rng, frame, w, h, fps)
        elif kind == "depth":
            view, start, x, y, walking = _depth(rng, frame, w, h, fps)
        else:
            view, start, x, y, walking = _stand(rng, length, w, h, fps)
        ident = sample_identity(rng)
        bag_side = 1 if rng.random() < 0.5 else -1
        poses = _poses(rng, len(x), walking)
        plan = TrackPlan(ident, view, bag_side, start, x, y, person_scale(y, h), poses)
        if plan.end >= 1 and plan.start <= length:
            plans.append(plan)
    return plans
