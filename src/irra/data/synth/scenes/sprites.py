"""A SynthPedes person drawn once, without a background, to be composited into video frames.

A sprite holds colour premultiplied by its alpha (the person on black), an alpha map that also
carries a soft ground shadow, and the person's own mask (the shadow excluded), from which the
ground-truth box and the visible fraction are measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from irra.data.synth.attributes import Identity
from irra.data.synth.body import make_body
from irra.data.synth.painter import Painter
from irra.data.synth.render import draw_person

#: Shadow opacity (0..1) under the feet.
SHADOW_ALPHA = 0.35
#: A pixel belongs to the person's mask when its coverage is at least this.
MASK_COVERAGE = 0.5


@dataclass(frozen=True)
class Sprite:
    """One pose of one person at one height.

    Attributes:
        color: (h, w, 3) float32, colour premultiplied by ``alpha`` (0..255).
        alpha: (h, w) float32 coverage 0..1 (person and shadow).
        mask: (h, w) bool, the person's pixels (no shadow).
        foot: (x, y) of the point between the feet, in sprite pixels: where it stands.
        box: (x, y, w, h) of the person's mask in sprite pixels.
        scale: the person's height in pixels (head top to soles, before hair and hats).
    """

    color: np.ndarray
    alpha: np.ndarray
    mask: np.ndarray
    foot: tuple[float, float]
    box: tuple[int, int, int, int]
    scale: float

    def resized(self, scale: float) -> Sprite:
        """The sprite redrawn at person height ``scale`` by resampling (area down, bilinear up)."""
        h, w = self.alpha.shape
        factor = scale / self.scale
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        color = np.stack([_resize(self.color[..., c], size) for c in range(3)], axis=-1)
        person = _resize(self.mask.astype(np.float32), size)
        foot = (self.foot[0] * size[0] / w, self.foot[1] * size[1] / h)
        return _make(color, _resize(self.alpha, size), person, foot, scale)


def _resize(channel: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(channel.astype(np.float32), "F")
    reduce = size[0] < channel.shape[1]
    method = Image.Resampling.BOX if reduce else Image.Resampling.BILINEAR
    return np.asarray(image.resize(size, method), dtype=np.float32)


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the set pixels of ``mask`` (exclusive ends)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("sprite too small: no pixel is covered by the person")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _make(
    color: np.ndarray,
    alpha: np.ndarray,
    person: np.ndarray,
    foot: tuple[float, float],
    scale: float,
) -> Sprite:
    """A sprite trimmed to its visible pixels."""
    x0, y0, x1, y1 = _bounds(alpha > 0)
    mask = person[y0:y1, x0:x1] >= MASK_COVERAGE
    bx0, by0, bx1, by1 = _bounds(mask)
    return Sprite(
        color=np.clip(color[y0:y1, x0:x1], 0, 255),
        alpha=np.clip(alpha[y0:y1, x0:x1], 0, 1),
        mask=mask,
        foot=(foot[0] - x0, foot[1] - y0),
        box=(bx0, by0, bx1 - bx0, by1 - by0),
        scale=float(scale),
    )


def render_sprite(
    ident: Identity, rng: np.random.Generator, height: int, view: str, bag_side: int
) -> Sprite:
    """Draw ``ident`` about ``height`` pixels tall in a random pose of ``view``.

    Args:
        ident: who to draw.
        rng: decides the pose (stride, arm swing), as for a SynthPedes image.
        height: the person's height in pixels, head to soles (at least 16).
        view: ``front``, ``back``, ``left`` or ``right``.
        bag_side: the side a shoulder bag hangs on (+1 or -1); keep it fixed for one person.
    """
    if height < 16:
        raise ValueError(f"a sprite must be at least 16 pixels tall, got {height}")
    ss = 2 if height >= 160 else 3  # drawn supersampled, reduced for anti-aliasing
    extra_top = 0.14 if ident.umbrella_color is not None else 0.02
    scale = height * ss
    cw, ch = int(scale * 0.8) + 2, int(scale * (1.06 + extra_top)) + 2
    canvas = Image.new("RGB", (cw, ch), (0, 0, 0))
    top = extra_top * scale
    painter = Painter(canvas, cw / 2, top, scale, -1 if view == "left" else 1, True)
    draw_person(painter, make_body(ident, rng, view), ident, bag_side)
    assert painter.labels is not None
    person = (np.asarray(painter.labels) > 0).astype(np.float32)
    foot = (cw / 2, top + 0.975 * scale)
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    shadow = ((xx - foot[0]) / (0.15 * scale)) ** 2 + ((yy - foot[1]) / (0.025 * scale)) ** 2 <= 1
    alpha = np.maximum(person, shadow * SHADOW_ALPHA)
    color = np.asarray(canvas, dtype=np.float32) * person[..., None]  # shadow colour is black
    size = (round(cw / ss), round(ch / ss))
    channels = np.stack([_resize(color[..., c], size) for c in range(3)], axis=-1)
    foot = (foot[0] / ss, foot[1] / ss)
    return _make(channels, _resize(alpha, size), _resize(person, size), foot, height)
