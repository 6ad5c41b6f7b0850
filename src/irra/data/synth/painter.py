"""A small drawing surface in *person units* that also paints a part-label map.

Person units: ``y`` runs from 0 (top of the head) to 1 (soles), ``x`` is 0 on the body's axis
and grows towards the person's front (side views) or the image's right (front and back views).
Every primitive paints RGB and, when labels are on, the part id of what it draws, so the label
map holds the part that is visible at each pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw

Point = tuple[float, float]
RGB = tuple[int, int, int]

#: Part ids of the label map.
PARTS: dict[str, int] = {
    "background": 0,
    "skin": 1,
    "hair": 2,
    "upper": 3,
    "lower": 4,
    "shoes": 5,
    "bag": 6,
    "hat": 7,
    "scarf": 8,
    "umbrella": 9,
    "detail": 10,
}


def shade(rgb: Sequence[int], factor: float) -> RGB:
    """``rgb`` scaled by ``factor`` and clipped to 0..255."""
    return tuple(int(min(255, max(0, round(c * factor)))) for c in rgb)  # type: ignore[return-value]


def mix(a: Sequence[int], b: Sequence[int], t: float) -> RGB:
    """Linear blend ``(1 - t) * a + t * b``."""
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


class Painter:
    """Draws on an RGB canvas with a person-unit transform.

    Args:
        canvas: the RGB image to draw on (already holding the background).
        cx: canvas x of the body axis (pixels).
        top: canvas y of the top of the head (pixels).
        scale: pixels per person unit (the person's height in pixels).
        flip: -1 mirrors x (a person facing left).
        with_labels: also paint a part-label map (``self.labels``, mode "L").
    """

    def __init__(
        self, canvas: Image.Image, cx: float, top: float, scale: float, flip: int, with_labels: bool
    ) -> None:
        self.image = canvas
        self.cx, self.top, self.scale, self.flip = cx, top, scale, flip
        self._draw = ImageDraw.Draw(canvas)
        self.labels = Image.new("L", canvas.size, 0) if with_labels else None
        self._ldraw = ImageDraw.Draw(self.labels) if self.labels is not None else None

    def px(self, x: float, y: float) -> Point:
        """Canvas pixel of person point ``(x, y)``."""
        return (self.cx + self.flip * x * self.scale, self.top + y * self.scale)

    def polygon(
        self, pts: Sequence[Point], rgb: RGB, part: str, outline: RGB | None = None
    ) -> None:
        """Filled polygon; ``outline`` draws a 1-unit-pixel darker rim."""
        xy = [self.px(x, y) for x, y in pts]
        width = max(1, round(self.scale * 0.004)) if outline is not None else 0
        self._draw.polygon(xy, fill=rgb, outline=outline, width=width)
        if self._ldraw is not None:
            self._ldraw.polygon(xy, fill=PARTS[part])

    def ellipse(self, x: float, y: float, rx: float, ry: float, rgb: RGB, part: str) -> None:
        """Filled axis-aligned ellipse centred at ``(x, y)`` with radii ``rx, ry``."""
        (x0, y0), (x1, y1) = self.px(x - rx, y - ry), self.px(x + rx, y + ry)
        box = [min(x0, x1), y0, max(x0, x1), y1]
        self._draw.ellipse(box, fill=rgb)
        if self._ldraw is not None:
            self._ldraw.ellipse(box, fill=PARTS[part])

    def pieslice(
        self,
        x: float,
        y: float,
        rx: float,
        ry: float,
        start: float,
        end: float,
        rgb: RGB,
        part: str,
    ):
        """Filled elliptical sector (angles in degrees, clockwise from +x, as Pillow draws)."""
        (x0, y0), (x1, y1) = self.px(x - rx, y - ry), self.px(x + rx, y + ry)
        if self.flip < 0:
            start, end = 180 - end, 180 - start
        box = [min(x0, x1), y0, max(x0, x1), y1]
        self._draw.pieslice(box, start, end, fill=rgb)
        if self._ldraw is not None:
            self._ldraw.pieslice(box, start, end, fill=PARTS[part])

    def line(self, pts: Sequence[Point], rgb: RGB, width: float, part: str) -> None:
        """Polyline ``width`` person units thick (at least one pixel)."""
        xy = [self.px(x, y) for x, y in pts]
        w = max(1, round(width * self.scale))
        self._draw.line(xy, fill=rgb, width=w, joint="curve")
        if self._ldraw is not None:
            self._ldraw.line(xy, fill=PARTS[part], width=w, joint="curve")

    def limb(self, pts: Sequence[Point], widths: Sequence[float], rgb: RGB, part: str) -> None:
        """A tapered limb through ``pts`` with full ``widths`` (one per point) and round joints."""
        for (p0, w0), (p1, w1) in zip(
            zip(pts[:-1], widths[:-1], strict=True),
            zip(pts[1:], widths[1:], strict=True),
            strict=True,
        ):
            self.polygon(segment_quad(p0, p1, w0, w1), rgb, part)
        for p, w in zip(pts, widths, strict=True):
            self.ellipse(p[0], p[1], w / 2, w / 2, rgb, part)

    def fill_pattern(self, region: Sequence[Sequence[Point]], mask: Image.Image, rgb: RGB) -> None:
        """Paint ``rgb`` where ``mask`` (mode "L", canvas size) is set, inside ``region`` polygons.

        The label map is unchanged: pattern pixels belong to the garment under them.
        """
        clip = Image.new("L", self.image.size, 0)
        draw = ImageDraw.Draw(clip)
        for poly in region:
            draw.polygon([self.px(x, y) for x, y in poly], fill=255)
        self.image.paste(rgb, (0, 0), ImageChops.multiply(clip, mask))

    def stripes_mask(
        self, y0: float, y1: float, period: float, thickness: float, horizontal: bool
    ) -> Image.Image:
        """Mask of parallel stripes (person units), horizontal or vertical."""
        mask = Image.new("L", self.image.size, 0)
        draw = ImageDraw.Draw(mask)
        w, h = self.image.size
        if horizontal:
            y = y0 + period * 0.5
            while y < y1:
                (_, a), (_, b) = self.px(0, y), self.px(0, y + thickness)
                draw.rectangle([0, a, w, max(a, b - 1)], fill=255)
                y += period
        else:
            half = int(math.ceil(w / (self.scale * period))) + 2
            for k in range(-half, half + 1):
                x = k * period - thickness / 2
                xa, xb = sorted((self.px(x, 0)[0], self.px(x + thickness, 0)[0]))
                draw.rectangle([xa, 0, max(xa, xb - 1), h], fill=255)
        return mask


def segment_quad(p0: Point, p1: Point, w0: float, w1: float) -> list[Point]:
    """The four corners of a tapered band from ``p0`` (width ``w0``) to ``p1`` (width ``w1``)."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    n = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / n, dx / n
    return [
        (p0[0] + nx * w0 / 2, p0[1] + ny * w0 / 2),
        (p1[0] + nx * w1 / 2, p1[1] + ny * w1 / 2),
        (p1[0] - nx * w1 / 2, p1[1] - ny * w1 / 2),
        (p0[0] - nx * w0 / 2, p0[1] - ny * w0 / 2),
    ]


def polar(origin: Point, length: float, angle_deg: float) -> Point:
    """Point ``length`` from ``origin`` at ``angle_deg`` from straight down (+ turns to +x)."""
    a = math.radians(angle_deg)
    return (origin[0] + length * math.sin(a), origin[1] + length * math.cos(a))


def labels_array(labels: Image.Image | None, size: tuple[int, int]) -> np.ndarray | None:
    """Label map resized to ``size`` (W, H) by nearest neighbour, as a (H, W) uint8 array."""
    if labels is None:
        return None
    return np.asarray(labels.resize(size, Image.Resampling.NEAREST), dtype=np.uint8)
