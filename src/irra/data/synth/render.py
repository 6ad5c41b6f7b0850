"""Drawing a SynthPedes person (Pillow + numpy): garments, pose, layout and the final image.

The identity's attributes decide every colour and garment; the random generator only decides
the view, pose, placement, background and camera effects.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from irra.data.synth import accessories as acc
from irra.data.synth.attributes import PALETTE, SKIN_TONES, Identity
from irra.data.synth.body import VIEWS, Body, make_body, sample_view
from irra.data.synth.painter import RGB, Painter, Point, labels_array, mix, shade
from irra.data.synth.scene import background, camera_effects, ground_shadow

#: Hem height (person units) of each upper garment.
HEM_Y = {
    "t-shirt": 0.5,
    "shirt": 0.495,
    "jacket": 0.51,
    "coat": 0.72,
    "sweater": 0.505,
    "hoodie": 0.515,
    "dress": 0.7,
}
DENIM = {"blue": (44, 84, 170)}  # jeans colours differ a little from the flat palette


@dataclass(frozen=True)
class Rendered:
    """One drawn image.

    Attributes:
        image: RGB image of the requested size.
        labels: (H, W) uint8 part ids (see ``painter.PARTS``) of the visible parts, or None.
        view: the view drawn (``front``, ``back``, ``left``, ``right``).
    """

    image: Image.Image
    labels: np.ndarray | None
    view: str


def _torso(body: Body, ident: Identity) -> list[Point]:
    """Outline of the upper garment (and the skirt of a dress)."""
    sy, sw, ww, hw, wy = body.shoulder_y, body.sw, body.ww, body.hw, body.waist_y
    t = ident.upper_type
    hem_y = HEM_Y[t]
    if body.side:
        d = sw
        front = d * (1.08 if body.male else 1.16)
        back_hem, front_hem = {"coat": (d * 1.25, d * 1.3), "dress": (hw * 1.45, hw * 1.6)}.get(
            t, (hw * 1.0, hw * 1.05)
        )
        return [
            (-0.03, sy - 0.012),
            (-d * 0.9, sy + 0.004),
            (-d, sy + 0.06),
            (-d * 0.93, wy),
            (-back_hem, hem_y),
            (front_hem, hem_y),
            (d * 0.96, wy),
            (front, sy + 0.085),
            (d * 0.82, sy + 0.01),
            (0.03, sy - 0.01),
        ]
    hem_w = {"coat": hw * 1.22, "dress": hw * 1.55}.get(t, max(ww, hw) * 1.03)
    waist = (ww * 1.04, wy - (0.01 if t == "dress" else 0.0))
    half = [
        (0.034, sy - 0.012),
        (sw - 0.016, sy),
        (sw, sy + 0.03),
        (sw * 0.96, sy + 0.09),
        waist,
        (hem_w, hem_y),
    ]
    return [(-x, y) for x, y in half] + [(x, y) for x, y in reversed(half)]


def _pattern(p: Painter, body: Body, ident: Identity, outline: list[Point]) -> None:
    if ident.pattern == "solid" or ident.pattern_color is None:
        return
    c, sy, hem = PALETTE[ident.pattern_color], body.shoulder_y, HEM_Y[ident.upper_type]
    if ident.pattern == "logo":
        if body.view != "front":
            return  # a print on the chest shows from the front only
        x, y, r = 0.0, sy + 0.095, 0.038 * body.bw
        shape = zlib.crc32(f"{ident.upper_color}/{ident.pattern_color}".encode()) % 3
        if shape == 0:
            p.ellipse(x, y, r, r, c, "upper")
        elif shape == 1:
            p.polygon(
                [(x, y - r * 1.1), (x + r * 1.1, y + r * 0.8), (x - r * 1.1, y + r * 0.8)],
                c,
                "upper",
            )
        else:
            p.polygon(
                [
                    (x - r, y - r * 0.8),
                    (x + r, y - r * 0.8),
                    (x + r, y + r * 0.8),
                    (x - r, y + r * 0.8),
                ],
                c,
                "upper",
            )
        return
    if ident.pattern == "horizontal stripes":
        mask = p.stripes_mask(sy, hem, 0.042, 0.015, horizontal=True)
    elif ident.pattern == "vertical stripes":
        mask = p.stripes_mask(sy, hem, 0.036, 0.013, horizontal=False)
    else:  # plaid: thin lines both ways
        mask = p.stripes_mask(sy, hem, 0.05, 0.009, horizontal=True)
        mask.paste(255, (0, 0), p.stripes_mask(sy, hem, 0.05, 0.009, horizontal=False))
    p.fill_pattern([outline], mask, c)


def _garment_details(p: Painter, body: Body, ident: Identity, skin: RGB) -> None:
    c, t, sy = PALETTE[ident.upper_color], ident.upper_type, body.shoulder_y
    dark, hem = shade(c, 0.78), HEM_Y[t]
    front = body.view == "front"
    if t == "t-shirt" and not body.side:
        p.pieslice(0, sy - 0.012, 0.03, 0.022 if front else 0.01, 0, 180, skin, "skin")
    elif t == "shirt" and front:
        light = mix(c, (255, 255, 255), 0.3)
        for s in (-1, 1):
            p.polygon(
                [(0, sy + 0.012), (s * 0.036, sy - 0.012), (s * 0.03, sy + 0.024)], light, "upper"
            )
        p.line([(0, sy + 0.012), (0, hem - 0.005)], dark, 0.005, "upper")
    elif t in ("jacket", "coat") and front:
        for s in (-1, 1):
            lapel = [(s * 0.034, sy - 0.012), (s * 0.05, sy + 0.05), (0, sy + 0.085)]
            p.polygon(lapel, dark, "upper")
        if t == "jacket":
            p.line([(0, sy + 0.02), (0, hem)], dark, 0.006, "upper")
        else:
            for s in (-1, 1):
                for k in range(3):
                    p.ellipse(s * 0.03, sy + 0.13 + k * 0.09, 0.006, 0.006, dark, "upper")
    elif t in ("sweater", "hoodie"):
        hw = max(body.ww, body.hw) * 1.03 if not body.side else body.hw * 1.02
        p.polygon([(-hw, hem - 0.022), (hw, hem - 0.022), (hw, hem), (-hw, hem)], dark, "upper")
        if t == "hoodie" and front:
            for s in (-1, 1):
                p.line(
                    [(s * 0.014, sy - 0.002), (s * 0.016, sy + 0.07)],
                    (235, 235, 230),
                    0.005,
                    "upper",
                )
            pocket = [
                (-0.05, hem - 0.1),
                (0.05, hem - 0.1),
                (0.065, hem - 0.025),
                (-0.065, hem - 0.025),
            ]
            p.polygon(pocket, c, "upper", outline=dark)
        elif t == "hoodie" and body.view == "back":
            p.ellipse(0, sy + 0.035, 0.062, 0.045, dark, "upper")


def _legs(p: Painter, body: Body, ident: Identity, skin: RGB) -> None:
    lt = ident.lower_type
    lc = PALETTE[ident.lower_color] if ident.lower_color is not None else None
    if lt == "jeans" and ident.lower_color in DENIM:
        lc = DENIM[ident.lower_color]
    shoes = PALETTE[ident.shoe_color]
    for k, (hip, knee, ankle) in enumerate(body.legs):
        f = 0.9 if (body.side and k == 0) else 1.0
        if lt in ("trousers", "jeans") and lc is not None:
            widen = 1.2 if lt == "trousers" else 1.1
            p.limb([hip, knee, ankle], [w * widen for w in body.leg_w], shade(lc, f), "lower")
            if lt == "jeans" and not body.side:
                p.line([knee, ankle], shade(lc, 1.18 * f), 0.006, "lower")
        else:
            p.limb([hip, knee, ankle], [w * 0.85 for w in body.leg_w], shade(skin, f), "skin")
            if lt == "shorts" and lc is not None:
                end = (hip[0] + (knee[0] - hip[0]) * 0.85, hip[1] + (knee[1] - hip[1]) * 0.85)
                p.limb([hip, end], [w * 1.3 for w in body.leg_w[:2]], shade(lc, f), "lower")
        dx = 0.024 if body.side else 0.0
        rx = 0.05 if body.side else 0.034
        p.ellipse(ankle[0] + dx, ankle[1] + 0.026, rx, 0.024, shade(shoes, f), "shoes")
    if lc is None:
        return
    wy, ww, hw, hy = body.waist_y, body.ww, body.hw, body.hip_y
    if lt == "skirt":
        flare = 1.4 if body.side else 1.5
        pts = [
            (-ww * 1.05, wy - 0.01),
            (ww * 1.08, wy - 0.01),
            (hw * flare, 0.69),
            (-hw * flare, 0.69),
        ]
        p.polygon(pts, lc, "lower", outline=shade(lc, 0.8))
    elif body.side:
        p.polygon(
            [(-ww, wy - 0.01), (ww * 1.05, wy - 0.01), (hw, hy + 0.06), (-hw * 1.05, hy + 0.06)],
            lc,
            "lower",
        )
    else:
        pts = [
            (-ww * 1.02, wy - 0.01),
            (ww * 1.02, wy - 0.01),
            (hw, hy + 0.02),
            (hw * 0.9, hy + 0.07),
        ]
        pts += [(0, hy + 0.075), (-hw * 0.9, hy + 0.07), (-hw, hy + 0.02)]
        p.polygon(pts, lc, "lower")


def _arm(p: Painter, body: Body, ident: Identity, k: int, skin: RGB, f: float) -> None:
    shoulder, elbow, hand = body.arms[k]
    c = shade(PALETTE[ident.upper_color], f)
    skin = shade(skin, f)
    w = body.arm_w
    if ident.sleeve == "long":
        p.limb([shoulder, elbow, hand], [x * 1.12 for x in w], c, "upper")
        if ident.upper_type in ("sweater", "hoodie"):
            cuff = (elbow[0] + (hand[0] - elbow[0]) * 0.85, elbow[1] + (hand[1] - elbow[1]) * 0.85)
            p.limb([cuff, hand], [w[2] * 1.15, w[2] * 1.15], shade(c, 0.8), "upper")
    else:
        p.limb([shoulder, elbow, hand], [x * 0.9 for x in w], skin, "skin")
        end = (
            shoulder[0] + (elbow[0] - shoulder[0]) * 0.5,
            shoulder[1] + (elbow[1] - shoulder[1]) * 0.5,
        )
        p.limb([shoulder, end], [w[0] * 1.2, w[1] * 1.25], c, "upper")
    p.ellipse(hand[0], hand[1] + 0.008, 0.019, 0.021, skin, "skin")


def draw_person(p: Painter, body: Body, ident: Identity, bag_side: int) -> None:
    """Paint ``ident`` in the pose ``body`` with ``p``, back to front (far limbs first).

    ``bag_side`` (+1 or -1) is the side a shoulder bag hangs on in front and back views.
    """
    skin = SKIN_TONES[ident.skin]
    upper = PALETTE[ident.upper_color]
    if body.side:
        _arm(p, body, ident, 0, skin, 0.84)
    acc.draw_backpack(p, body, ident, "behind")
    acc.draw_back_hair(p, body, ident, "behind")
    if ident.upper_type == "hoodie" and body.view == "front":
        p.ellipse(
            0,
            body.head_cy + body.head_ry * 0.75,
            body.head_rx * 1.45,
            0.05,
            shade(upper, 0.8),
            "upper",
        )
    _legs(p, body, ident, skin)
    neck_x = 0.024 if not body.side else 0.022
    p.polygon(
        [
            (-neck_x, body.head_cy),
            (neck_x, body.head_cy),
            (neck_x, body.shoulder_y + 0.01),
            (-neck_x, body.shoulder_y + 0.01),
        ],
        skin,
        "skin",
    )
    outline = _torso(body, ident)
    p.polygon(outline, upper, "upper", outline=shade(upper, 0.8))
    _pattern(p, body, ident, outline)
    _garment_details(p, body, ident, skin)
    acc.draw_backpack(p, body, ident, "over")
    acc.draw_back_hair(p, body, ident, "over")
    acc.draw_head(p, body, ident)
    acc.draw_scarf(p, body, ident)
    for k in (0, 1) if not body.side else (1,):
        _arm(p, body, ident, k, skin, 1.0)
    acc.draw_carried(p, body, ident, bag_side)


def render_person(
    ident: Identity,
    rng: np.random.Generator,
    image_size: tuple[int, int] = (192, 80),
    *,
    view: str | None = None,
    with_labels: bool = False,
) -> Rendered:
    """Draw ``ident`` in a random pose, place and background.

    Args:
        ident: what to draw.
        rng: the per-image generator (view, pose, layout, background, camera effects).
        image_size: (H, W) of the result.
        view: force a view (one of ``body.VIEWS``); random when None.
        with_labels: also return the (H, W) part-label map of the final image.
    """
    h, w = image_size
    if h < 16 or w < 8:
        raise ValueError(f"image_size {image_size} is too small (at least 16 x 8)")
    view = sample_view(rng) if view is None else view
    if view not in VIEWS:
        raise ValueError(f"view {view!r} is not one of {VIEWS}")
    ss = 2 if h >= 160 else 3  # draw supersampled, then downscale for anti-aliasing
    cw, ch = w * ss, h * ss
    canvas = background(rng, (w, h)).resize((cw, ch), Image.Resampling.NEAREST)
    extra_top = 0.12 if ident.umbrella_color is not None else 0.0
    scale = ch * float(rng.uniform(0.8, 0.93)) / (1.0 + extra_top)
    scale = min(scale, cw / 0.5)
    slack = ch - scale * (1.0 + extra_top)
    top = slack * float(rng.uniform(0.25, 0.85)) + extra_top * scale
    cx = cw / 2 + float(rng.uniform(-0.06, 0.06)) * cw
    body = make_body(ident, rng, view)
    bag_side = 1 if rng.random() < 0.5 else -1
    ground_shadow(canvas, cx, top + 0.975 * scale, 0.15 * scale, 0.025 * scale)
    painter = Painter(canvas, cx, top, scale, -1 if view == "left" else 1, with_labels)
    draw_person(painter, body, ident, bag_side)
    image = canvas.resize((w, h), Image.Resampling.BOX)
    image = camera_effects(image, rng)
    return Rendered(image=image, labels=labels_array(painter.labels, (w, h)), view=view)
