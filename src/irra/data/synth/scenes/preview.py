"""A picture of one written frame with its ground-truth boxes and track ids (for docs)."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from irra.data.synth.scenes.writer import sequence_name
from irra.fileio import atomic_write
from irra.footage.detections import read_mot

COLORS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48))


def write_preview(
    scenes_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    sequence: int = 0,
    frame: int | None = None,
) -> Path:
    """Draw the ``gt/gt.txt`` boxes of one frame over it and save it (JPEG or PNG by suffix).

    Args:
        scenes_dir: the output of :func:`generate_scenes`.
        out: image file to write.
        sequence: 0-based sequence index.
        frame: frame number; the middle frame when None.

    Returns:
        ``out`` as a Path.
    """
    folder = Path(scenes_dir) / sequence_name(sequence)
    frames = sorted((folder / "img1").iterdir())
    if frame is None:
        frame = int(frames[len(frames) // 2].stem)
    image_path = next(p for p in frames if int(p.stem) == frame)
    with Image.open(image_path) as im:
        image = im.convert("RGB")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(10, image.height // 30))
    for det in read_mot(folder / "gt" / "gt.txt").by_frame().get(frame, []):
        x, y, w, h = det.box
        color = COLORS[(det.track or 0) % len(COLORS)]
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=color, width=2)
        draw.text((x + 3, y + 2), str(det.track), fill=color, font=font)
    out = Path(out)
    fmt = "PNG" if out.suffix.lower() == ".png" else "JPEG"
    atomic_write(out, lambda handle: image.save(handle, format=fmt, quality=85))
    return out
