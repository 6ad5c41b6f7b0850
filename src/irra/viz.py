"""Pictures people look at: retrieval grids (caption above its ranked gallery images)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from irra.imageio import load_image

GREEN = (30, 160, 60)
RED = (210, 40, 40)
GREY = (160, 160, 160)
BLUE = (40, 90, 200)


@dataclass
class RankedItem:
    """One image in a result row; ``correct`` None means unknown (grey frame).

    An item with a ``label`` is a query image: it is framed blue, captioned with the label and
    not counted in the ranks.
    """

    path: str | os.PathLike[str]
    score: float
    correct: bool | None = None
    label: str | None = None


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _wrap(text: str, font: ImageFont.ImageFont, max_px: int) -> list[str]:
    """Greedy word wrap of ``text`` into lines at most ``max_px`` pixels wide (long words alone)."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= max_px:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines or [""]


def retrieval_grid(
    rows: Sequence[tuple[str, Sequence[RankedItem]]],
    *,
    thumb: tuple[int, int] = (128, 48),
    columns: int | None = None,
) -> Image.Image:
    """Draw each query caption above its ranked images, framed green (correct) or red (wrong).

    Args:
        rows: ``(caption, items)`` pairs, items in rank order.
        thumb: thumbnail (height, width) in pixels.
        columns: images per row (default: the longest row); captions wrap to this width.

    Returns:
        An RGB image.
    """
    th, tw = thumb
    columns = columns or max((len(items) for _, items in rows), default=1)
    pad, frame = 6, 3
    font, small = _font(13), _font(11)
    line_h, label_h = 16, 14
    cell_w = tw + 2 * frame + pad
    width = pad + columns * cell_w
    blocks = []
    for caption, items in rows:
        lines = _wrap(caption, font, width - 2 * pad)
        height = pad + len(lines) * line_h + pad + th + 2 * frame + label_h + pad
        blocks.append((lines, list(items)[:columns], height))
    canvas = Image.new("RGB", (width, sum(b[2] for b in blocks) or 1), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for lines, items, height in blocks:
        ty = y + pad
        for line in lines:
            draw.text((pad, ty), line, fill=(0, 0, 0), font=font)
            ty += line_h
        iy = ty + pad
        rank = 0
        for column, item in enumerate(items):
            x = pad + column * cell_w
            colour = GREY if item.correct is None else (GREEN if item.correct else RED)
            colour = BLUE if item.label is not None else colour
            draw.rectangle([x, iy, x + tw + 2 * frame - 1, iy + th + 2 * frame - 1], fill=colour)
            canvas.paste(load_image(item.path).resize((tw, th)), (x + frame, iy + frame))
            if item.label is None:
                rank += 1
            draw.text(
                (x, iy + th + 2 * frame + 1),
                item.label if item.label is not None else f"#{rank} {item.score:.3f}",
                fill=(60, 60, 60),
                font=small,
            )
        y += height
        draw.line([0, y - 1, width, y - 1], fill=(220, 220, 220))
    return canvas
