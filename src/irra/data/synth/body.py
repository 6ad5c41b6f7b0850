"""Body proportions and per-image pose of a SynthPedes person, in person units."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from irra.data.synth.attributes import Identity
from irra.data.synth.painter import Point, polar

#: front, back, and side views facing the image's left or right.
VIEWS = ("front", "back", "left", "right")
VIEW_WEIGHTS = (0.4, 0.3, 0.15, 0.15)

Limb = tuple[Point, Point, Point]


@dataclass(frozen=True)
class Body:
    """Where everything is for one image. Side views face +x (the painter mirrors "left").

    ``legs`` and ``arms`` are ``(hip|shoulder, knee|elbow, ankle|hand)`` triples, the far or
    image-left limb first, then the near or image-right one.
    """

    view: str
    male: bool
    bw: float  # build width factor
    head_cy: float
    head_rx: float
    head_ry: float
    shoulder_y: float
    waist_y: float
    hip_y: float
    ankle_y: float
    sw: float  # half shoulder width (front) / half chest depth (side)
    ww: float  # half waist width
    hw: float  # half hip width
    legs: tuple[Limb, Limb]
    arms: tuple[Limb, Limb]
    leg_w: tuple[float, float, float]
    arm_w: tuple[float, float, float]
    umbrella_arm: int | None  # index of the arm that holds an umbrella

    @property
    def side(self) -> bool:
        """True for the two profile views."""
        return self.view in ("left", "right")


def sample_view(rng: np.random.Generator) -> str:
    """A random view with :data:`VIEW_WEIGHTS`."""
    return VIEWS[int(rng.choice(len(VIEWS), p=np.asarray(VIEW_WEIGHTS)))]


def make_body(ident: Identity, rng: np.random.Generator, view: str) -> Body:
    """Proportions from the identity, pose (stride, arm swing) from ``rng``."""
    if view not in VIEWS:
        raise ValueError(f"view {view!r} is not one of {VIEWS}")
    male = ident.gender == "male"
    bw = {"slim": 0.88, "average": 1.0, "heavy": 1.2}[ident.build]
    head_ry = 0.062 * {"short": 1.05, "average": 1.0, "tall": 0.94}[ident.height]
    head_cy = head_ry + 0.004
    shoulder_y, waist_y, hip_y, ankle_y = 0.175, 0.45, 0.49, 0.925
    side = view in ("left", "right")
    if side:
        sw, ww, hw = 0.058 * bw, 0.052 * bw, 0.06 * bw
    else:
        sw = (0.114 if male else 0.098) * bw
        ww = (0.082 if male else 0.068) * bw**1.4
        hw = (0.086 if male else 0.094) * bw
    leg_len = ankle_y - hip_y
    ua, fa = 0.15, 0.135  # upper arm and forearm lengths
    arm_w = tuple(w * bw**0.6 for w in (0.046, 0.04, 0.033))
    leg_w = tuple(w * bw**0.8 for w in (0.06, 0.05, 0.04))
    umbrella_arm = 1 if ident.umbrella_color is not None else None
    if side:
        phi = float(rng.uniform(4, 26)) * (1 if rng.random() < 0.5 else -1)
        legs = []
        for ang in (-phi, phi):
            hip = (0.0, hip_y)
            ankle = polar(hip, leg_len, ang)
            knee = polar(hip, leg_len * 0.47, ang * 0.85)
            legs.append((hip, knee, ankle))
        theta = -phi * float(rng.uniform(0.6, 1.0))
        arms = []
        for ang in (-theta, theta):
            shoulder = (0.0, shoulder_y + 0.02)
            elbow = polar(shoulder, ua, ang)
            hand = polar(elbow, fa, ang + float(rng.uniform(5, 28)))
            arms.append((shoulder, elbow, hand))
    else:
        stride = float(rng.uniform(-1, 1))
        legs = []
        for k, sgn in enumerate((-1, 1)):
            hx = sgn * 0.042 * bw
            lift = 0.022 * max(0.0, stride if k == 0 else -stride)
            ankle = (hx + sgn * float(rng.uniform(0.0, 0.02)), ankle_y - lift)
            knee = (hx + (ankle[0] - hx) * 0.47, hip_y + (ankle[1] - hip_y) * 0.47)
            legs.append(((hx, hip_y), knee, ankle))
        arms = []
        for k, sgn in enumerate((-1, 1)):
            shoulder = (sgn * (sw - 0.02), shoulder_y + 0.022)
            out = float(rng.uniform(3, 10)) + (bw - 1) * 30
            elbow = polar(shoulder, ua, sgn * out)
            swing = abs(stride) if k == 0 else abs(stride) * 0.7
            hand = polar(elbow, fa * (1 - 0.18 * swing), sgn * (out + float(rng.uniform(0, 8))))
            arms.append((shoulder, elbow, hand))
    if umbrella_arm is not None:  # bend the arm up to hold the shaft in front of the chest
        shoulder = arms[umbrella_arm][0]
        sgn = 1 if side else (-1 if umbrella_arm == 0 else 1)
        elbow = polar(shoulder, ua, sgn * (14 if side else 8))
        hand = polar(elbow, fa * 0.9, sgn * (150 if side else 165))
        arms[umbrella_arm] = (shoulder, elbow, hand)
    return Body(
        view=view,
        male=male,
        bw=bw,
        head_cy=head_cy,
        head_rx=head_ry * (0.8 if male else 0.76),
        head_ry=head_ry,
        shoulder_y=shoulder_y,
        waist_y=waist_y,
        hip_y=hip_y,
        ankle_y=ankle_y,
        sw=sw,
        ww=ww,
        hw=hw,
        legs=(legs[0], legs[1]),
        arms=(arms[0], arms[1]),
        leg_w=leg_w,  # type: ignore[arg-type]
        arm_w=arm_w,  # type: ignore[arg-type]
        umbrella_arm=umbrella_arm,
    )
