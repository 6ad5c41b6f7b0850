"""Head, hair, hat, glasses, scarf, bags and umbrella of a SynthPedes person."""

from __future__ import annotations

from irra.data.synth.attributes import HAIR_COLORS, PALETTE, SKIN_TONES, Identity
from irra.data.synth.body import Body
from irra.data.synth.painter import RGB, Painter, mix, shade

DARK = (34, 30, 32)


def _head_x(body: Body) -> float:
    return 0.012 if body.side else 0.0


def draw_back_hair(p: Painter, body: Body, ident: Identity, stage: str) -> None:
    """Hair that hangs below the head. ``stage`` is "behind" (before the torso) or "over"."""
    if ident.hair_color is None or ident.hair_style in ("short", "bald"):
        return
    hair = HAIR_COLORS[ident.hair_color]
    cx, cy, rx, ry, sy = _head_x(body), body.head_cy, body.head_rx, body.head_ry, body.shoulder_y
    long = ident.hair_style == "long"
    if body.view == "front":
        if long and stage == "behind":
            p.polygon(
                [
                    (-rx * 1.15, cy),
                    (rx * 1.15, cy),
                    (rx * 1.35, sy + 0.07),
                    (-rx * 1.35, sy + 0.07),
                ],
                hair,
                "hair",
            )
        elif long and stage == "over":  # strands falling over the shoulders
            for s in (-1, 1):
                p.limb(
                    [(s * rx * 0.98, cy), (s * rx * 1.12, sy + 0.065)], (0.03, 0.026), hair, "hair"
                )
        return
    if stage != "over":
        return
    if body.view == "back":
        if long:
            p.polygon(
                [(-rx * 1.1, cy), (rx * 1.1, cy), (rx * 1.25, sy + 0.09), (-rx * 1.25, sy + 0.09)],
                hair,
                "hair",
            )
        else:
            tail = [(0.0, cy + 0.01), (0.0, cy + ry + 0.02), (0.006, sy + 0.075)]
            p.limb(tail, (0.036, 0.03, 0.012), hair, "hair")
    elif long:
        p.polygon(
            [
                (cx - rx * 0.2, cy - ry * 0.6),
                (cx - rx * 1.08, cy),
                (cx - rx * 1.15, sy + 0.085),
                (cx - rx * 0.15, sy + 0.06),
            ],
            hair,
            "hair",
        )
    else:
        tail = [
            (cx - rx * 0.9, cy - 0.012),
            (cx - rx * 1.35, cy + 0.04),
            (cx - rx * 1.3, sy + 0.06),
        ]
        p.limb(tail, (0.032, 0.028, 0.012), hair, "hair")


def draw_head(p: Painter, body: Body, ident: Identity) -> None:
    """Head with face (front, side), hair cap, hat and glasses."""
    skin = SKIN_TONES[ident.skin]
    hair = HAIR_COLORS[ident.hair_color] if ident.hair_color is not None else None
    cx, cy, rx, ry = _head_x(body), body.head_cy, body.head_rx, body.head_ry
    eye = mix(DARK, skin, 0.15)
    if body.view == "front":
        if hair is not None:
            p.ellipse(cx, cy - 0.006, rx * 1.1, ry * 1.02, hair, "hair")
            p.ellipse(cx, cy + 0.013, rx * 0.92, ry * 0.88, skin, "skin")
        else:
            p.ellipse(cx, cy, rx, ry, skin, "skin")
        for s in (-1, 1):
            p.ellipse(s * rx * 0.4, cy + 0.01, 0.0065, 0.0065, eye, "skin")
        p.line([(-0.011, cy + 0.04), (0.011, cy + 0.04)], shade(skin, 0.72), 0.004, "skin")
    elif body.view == "back":
        p.ellipse(cx, cy, rx, ry, skin, "skin")
        if hair is not None:
            p.ellipse(cx, cy - 0.005, rx * 1.06, ry * 0.98, hair, "hair")
    else:
        p.ellipse(cx, cy, rx * 0.95, ry, skin, "skin")
        nose_x = cx + rx * 0.88
        p.polygon(
            [(nose_x, cy - 0.004), (nose_x + 0.014, cy + 0.016), (nose_x, cy + 0.02)], skin, "skin"
        )
        if hair is not None:
            p.ellipse(cx - 0.012, cy - 0.008, rx * 0.98, ry * 0.96, hair, "hair")
            p.ellipse(cx + 0.017, cy + 0.015, rx * 0.74, ry * 0.8, skin, "skin")
        p.ellipse(cx + rx * 0.55, cy + 0.008, 0.006, 0.006, eye, "skin")
    if ident.hat_color is not None:
        hat = PALETTE[ident.hat_color]
        p.pieslice(cx, cy - ry * 0.16, rx * 1.14, ry * 0.94, 180, 360, hat, "hat")
        brim = shade(hat, 0.8)
        if body.view == "front":
            p.ellipse(cx, cy - ry * 0.16, rx * 1.16, 0.013, brim, "hat")
        elif body.side:
            y = cy - ry * 0.16
            p.polygon(
                [(cx, y - 0.01), (cx + rx * 1.95, y), (cx + rx * 1.95, y + 0.01), (cx, y + 0.012)],
                brim,
                "hat",
            )
    if ident.glasses and body.view != "back":
        lens = (38, 38, 46)
        if body.view == "front":
            for s in (-1, 1):
                p.ellipse(s * rx * 0.42, cy + 0.009, 0.015, 0.0105, lens, "detail")
            p.line([(-rx * 0.3, cy + 0.007), (rx * 0.3, cy + 0.007)], lens, 0.004, "detail")
        else:
            p.ellipse(cx + rx * 0.62, cy + 0.009, 0.011, 0.0105, lens, "detail")
            p.line([(cx + rx * 0.55, cy + 0.006), (cx - rx * 0.3, cy)], lens, 0.004, "detail")


def draw_scarf(p: Painter, body: Body, ident: Identity) -> None:
    """A band around the neck, with a hanging end when seen from the front or side."""
    if ident.scarf_color is None:
        return
    c, sy = PALETTE[ident.scarf_color], body.shoulder_y
    x0 = -0.035 if body.side else -0.044
    band = [(x0, sy - 0.03), (0.044, sy - 0.03), (0.048, sy + 0.014), (x0 - 0.004, sy + 0.014)]
    p.polygon(band, c, "scarf", outline=shade(c, 0.8))
    if body.view != "back":
        tx = 0.04 if body.side else 0.018
        p.limb([(tx, sy), (tx + 0.008, sy + 0.145)], (0.03, 0.027), c, "scarf")


def _bag_box(p: Painter, x0: float, y0: float, x1: float, y1: float, color: RGB) -> None:
    p.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color, "bag", outline=shade(color, 0.7))


def draw_backpack(p: Painter, body: Body, ident: Identity, stage: str) -> None:
    """Backpack: "behind" the torso (side bulk, front edges) or "over" it (back view, straps)."""
    if ident.bag_type != "backpack" or ident.bag_color is None:
        return
    c, sy, sw = PALETTE[ident.bag_color], body.shoulder_y, body.sw
    dark = shade(c, 0.86)
    if stage == "behind":
        if body.side:
            _bag_box(p, -sw - 0.085, sy + 0.02, -sw * 0.5, sy + 0.265, c)
        elif body.view == "front":
            _bag_box(p, -sw - 0.014, sy + 0.035, sw + 0.014, sy + 0.24, c)
        return
    if body.view == "back":
        _bag_box(p, -sw * 0.74, sy + 0.02, sw * 0.74, sy + 0.28, c)
        _bag_box(p, -sw * 0.42, sy + 0.19, sw * 0.42, sy + 0.26, dark)
        p.line([(-0.02, sy + 0.02), (0.0, sy + 0.0), (0.02, sy + 0.02)], dark, 0.008, "bag")
    elif body.view == "front":
        for s in (-1, 1):
            p.line([(s * sw * 0.52, sy + 0.0), (s * sw * 0.56, sy + 0.21)], c, 0.02, "bag")
    else:
        strap = [(-sw * 0.4, sy - 0.002), (sw * 0.78, sy + 0.07), (sw * 0.45, sy + 0.2)]
        p.line(strap, c, 0.017, "bag")


def draw_carried(p: Painter, body: Body, ident: Identity, bag_side: int) -> None:
    """Handbag (in a hand), shoulder bag (strap across the body, bag at the hip), umbrella."""
    if ident.bag_type == "handbag" and ident.bag_color is not None:
        c = PALETTE[ident.bag_color]
        k = 0 if body.umbrella_arm == 1 else 1
        hx, hy = body.arms[k][2]
        _bag_box(p, hx - 0.038, hy + 0.032, hx + 0.038, hy + 0.102, c)
        p.line(
            [(hx - 0.022, hy + 0.034), (hx, hy), (hx + 0.022, hy + 0.034)],
            shade(c, 0.7),
            0.007,
            "bag",
        )
    elif ident.bag_type == "shoulder bag" and ident.bag_color is not None:
        c, sy, sw, hw = PALETTE[ident.bag_color], body.shoulder_y, body.sw, body.hw
        if body.side:
            p.line([(-sw * 0.5, sy - 0.002), (sw * 0.35, 0.42)], shade(c, 0.85), 0.013, "bag")
            _bag_box(p, -0.04, 0.415, 0.055, 0.515, c)
        else:
            s = bag_side
            bx = s * (hw + 0.035)
            p.line([(-s * sw * 0.62, sy + 0.0), (bx, 0.42)], shade(c, 0.85), 0.013, "bag")
            _bag_box(p, bx - 0.04, 0.415, bx + 0.04, 0.51, c)
    if ident.umbrella_color is not None and body.umbrella_arm is not None:
        c = PALETTE[ident.umbrella_color]
        hx, hy = body.arms[body.umbrella_arm][2]
        ux, uy, rx, ry = (hx * 0.3 if not body.side else 0.03), -0.02, 0.2, 0.095
        p.line([(hx, hy + 0.02), (ux, uy - ry * 0.85)], (60, 60, 60), 0.007, "umbrella")
        p.pieslice(ux, uy, rx, ry, 180, 360, c, "umbrella")
        for t in (-0.55, 0.0, 0.55):
            p.line([(ux, uy - ry), (ux + t * rx, uy)], shade(c, 0.78), 0.004, "umbrella")
