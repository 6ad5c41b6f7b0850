"""A simulated person detector: what ``det/det.txt`` holds for a synthetic sequence.

It sees the ground truth and errs the way real detectors do (the public detections of
MOTChallenge show all of these):

* **misses** grow as a person is hidden: always found above :data:`SURE_VISIBILITY` visible
  (but for a small base rate), never below :data:`MIN_VISIBILITY`; a miss tends to last a few
  frames (it continues with probability :data:`MISS_PERSISTENCE`);
* **jitter**: box centre and size move by a few percent of the box from frame to frame;
* **confidence** grows with visibility;
* **false positives**: scattered person-sized boxes on the background (about one every
  ``1 / FALSE_RATE`` frames) and a few recurring ones on fixed clutter (a pole, a sign) that
  fire in some frames, all with low confidence.

Boxes are clipped to the image, as a detector's are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from irra.data.synth.scenes.draw import GroundTruth
from irra.data.synth.scenes.plan import FOOT_RANGE, person_scale

MIN_VISIBILITY = 0.15
SURE_VISIBILITY = 0.5
BASE_MISS = 0.06
MISS_PERSISTENCE = 0.5
JITTER = (0.03, 0.03, 0.05, 0.04)  # std of x, y (of the centre), w, h as fractions of w, h
FALSE_RATE = 0.12
RECURRING_FALSE = 2
RECURRING_RATE = 0.25


@dataclass(frozen=True)
class SimulatedDetection:
    """``box`` (x, y, w, h) float pixels inside the image, ``conf`` 0..1."""

    box: tuple[float, float, float, float]
    conf: float


def _clip(x: float, y: float, w: float, h: float, size: tuple[int, int]):
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(size[0]), x + w), min(float(size[1]), y + h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


class DetectorSimulator:
    """Turns each frame's ground truth into detections; call it on frames in order.

    Args:
        rng: the sequence's detection generator (the only source of randomness).
        size: (W, H) of the frames.
    """

    def __init__(self, rng: np.random.Generator, size: tuple[int, int]) -> None:
        self.rng = rng
        self.size = size
        self._missing: set[int] = set()
        self._recurring = [self._random_box() for _ in range(RECURRING_FALSE)]

    def _random_box(self) -> tuple[float, float, float, float]:
        w, h = self.size
        foot = h * float(self.rng.uniform(*FOOT_RANGE))
        bh = float(person_scale(foot, h)) * float(self.rng.uniform(0.7, 1.1))
        bw = bh * float(self.rng.uniform(0.3, 0.5))
        return (float(self.rng.uniform(0, w - bw)), foot - bh, bw, bh)

    def _detected(self, person: GroundTruth) -> bool:
        v = person.visibility
        p = (1 - BASE_MISS) * float(
            np.clip((v - MIN_VISIBILITY) / (SURE_VISIBILITY - MIN_VISIBILITY), 0, 1)
        )
        if person.track in self._missing:
            p *= 1 - MISS_PERSISTENCE
        found = bool(self.rng.random() < p)
        (self._missing.discard if found else self._missing.add)(person.track)
        return found

    def _jittered(self, person: GroundTruth) -> SimulatedDetection | None:
        x, y, w, h = person.box
        ex, ey, ew, eh = self.rng.standard_normal(4) * np.asarray(JITTER)
        nw, nh = w * (1 + ew), h * (1 + eh)
        cx, cy = x + w / 2 + ex * w, y + h / 2 + ey * h
        box = _clip(cx - nw / 2, cy - nh / 2, nw, nh, self.size)
        if box is None:
            return None
        conf = float(
            np.clip(0.45 + 0.5 * person.visibility + 0.08 * self.rng.standard_normal(), 0.05, 0.99)
        )
        return SimulatedDetection(box, conf)

    def __call__(self, people: list[GroundTruth]) -> list[SimulatedDetection]:
        """Detections of one frame, given its ground truth."""
        out = [d for p in people if self._detected(p) and (d := self._jittered(p)) is not None]
        false_boxes = [self._random_box() for _ in range(int(self.rng.poisson(FALSE_RATE)))]
        false_boxes += [b for b in self._recurring if self.rng.random() < RECURRING_RATE]
        for b in false_boxes:
            box = _clip(*b, self.size)
            if box is not None:
                out.append(SimulatedDetection(box, float(self.rng.uniform(0.05, 0.45))))
        return out
