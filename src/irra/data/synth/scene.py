"""Backgrounds (gradients, rooms, streets, clutter) and camera effects for SynthPedes."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from irra.data.synth.painter import RGB, mix, shade

BACKGROUNDS = ("gradient", "indoor", "street")


def muted_color(rng: np.random.Generator, lo: float = 0.12, hi: float = 0.5) -> RGB:
    """A random colour with low saturation (so that garments stand out)."""
    c = rng.uniform(35, 225, 3)
    g = c.mean()
    sat = rng.uniform(lo, hi)
    return tuple(int(v) for v in np.clip(g + (c - g) * sat, 0, 255))  # type: ignore[return-value]


def _gradient(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    c0, c1 = (np.array(muted_color(rng), dtype=np.float32) for _ in range(2))
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    img = c0 * (1 - t) + c1 * t
    tilt = rng.uniform(-0.12, 0.12) * np.linspace(-1, 1, w, dtype=np.float32)[None, :, None]
    return np.broadcast_to(img, (h, w, 3)) * (1 + tilt)


def _indoor(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    wall = np.array(muted_color(rng, 0.05, 0.4), dtype=np.float32)
    floor = np.array(muted_color(rng, 0.05, 0.3), dtype=np.float32)
    horizon = int(h * rng.uniform(0.55, 0.82))
    img = np.empty((h, w, 3), dtype=np.float32)
    t = np.linspace(0.9, 1.08, horizon, dtype=np.float32)[:, None, None]
    img[:horizon] = wall * t
    t = np.linspace(0.85, 1.05, h - horizon, dtype=np.float32)[:, None, None]
    img[horizon:] = floor * t
    img[horizon : horizon + max(1, h // 60)] *= 0.7  # skirting board
    return img


def _street(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    sky = np.array(muted_color(rng, 0.1, 0.45), dtype=np.float32)
    ground = np.array(muted_color(rng, 0.0, 0.15), dtype=np.float32)
    horizon = int(h * rng.uniform(0.45, 0.75))
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:horizon] = sky
    img[horizon:] = ground * np.linspace(0.9, 1.1, h - horizon, dtype=np.float32)[:, None, None]
    return img


def _clutter(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int, kind: str
) -> None:
    if kind == "street":  # buildings with windows
        x = -rng.uniform(0, w * 0.3)
        while x < w:
            bw = rng.uniform(0.3, 0.8) * w
            y0 = rng.uniform(0.0, 0.35) * h
            color = muted_color(rng, 0.05, 0.4)
            draw.rectangle([x, y0, x + bw, h * 0.8], fill=color)
            win = shade(color, rng.uniform(0.55, 0.8))
            step = rng.uniform(0.09, 0.16) * w
            for wx in np.arange(x + step * 0.3, x + bw - step * 0.5, step):
                for wy in np.arange(y0 + step * 0.4, h * 0.55, step * 1.4):
                    draw.rectangle([wx, wy, wx + step * 0.5, wy + step * 0.7], fill=win)
            x += bw + rng.uniform(0, 0.15) * w
    elif kind == "indoor" and rng.random() < 0.6:  # a door or a panel
        x0 = rng.uniform(-0.2, 0.8) * w
        draw.rectangle([x0, h * 0.2, x0 + w * 0.35, h * 0.7], fill=muted_color(rng))
    for _ in range(int(rng.integers(0, 4))):  # poles, bins, bushes, posters
        color = muted_color(rng, 0.1, 0.6)
        x0, y0 = rng.uniform(-0.1, 1.0) * w, rng.uniform(0.1, 0.9) * h
        sx, sy = rng.uniform(0.05, 0.3) * w, rng.uniform(0.05, 0.5) * h
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x0 + sx, y0 + sy], fill=color)
        else:
            draw.ellipse([x0, y0, x0 + sx, y0 + sy], fill=color)


def background(
    rng: np.random.Generator, size: tuple[int, int], kind: str | None = None
) -> Image.Image:
    """A background of ``size`` (W, H): gradient, room or street (random when ``kind`` is None),
    plus clutter shapes."""
    w, h = size
    if kind is None:
        kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    elif kind not in BACKGROUNDS:
        raise ValueError(f"background kind {kind!r} is not one of {BACKGROUNDS}")
    arr = {"gradient": _gradient, "indoor": _indoor, "street": _street}[kind](rng, w, h)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    _clutter(ImageDraw.Draw(img), rng, w, h, kind)
    return img


def ground_shadow(img: Image.Image, x: float, y: float, rx: float, ry: float) -> None:
    """Darken an elliptical patch (the person's shadow) in place."""
    color = img.getpixel((int(min(max(x, 0), img.width - 1)), int(min(max(y, 0), img.height - 1))))
    ImageDraw.Draw(img).ellipse([x - rx, y - ry, x + rx, y + ry], fill=mix(color, (0, 0, 0), 0.3))


def camera_effects(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Mild lighting change, colour cast, blur and sensor noise (colours stay nameable)."""
    if rng.random() < 0.35:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.75))))
    arr = np.asarray(img, dtype=np.float32)
    gain = rng.uniform(0.92, 1.08) * (1 + rng.uniform(-0.03, 0.03, 3))
    ramp = 1 + rng.uniform(-0.06, 0.06) * np.linspace(-1, 1, arr.shape[1])
    arr = arr * (ramp[:, None] * gain[None, :]).astype(np.float32) + 0.5
    sigma = rng.uniform(0.0, 4.0)
    if sigma > 0.5:
        arr += rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(sigma)
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "RGB")
