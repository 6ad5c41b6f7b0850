"""The retrieval grid frames hits green and misses red and keeps captions inside the picture."""

from __future__ import annotations

from PIL import Image, ImageFont

from irra.viz import RankedItem, _wrap, retrieval_grid


def test_frames_follow_correctness_and_long_captions_wrap(tmp_path):
    path = tmp_path / "p.png"
    Image.new("RGB", (20, 40), (0, 0, 255)).save(path)
    caption = " ".join(["a woman in a red coat with a very long black scarf"] * 6)
    items = [RankedItem(path, 0.9, True), RankedItem(path, 0.5, False), RankedItem(path, 0.1)]
    grid = retrieval_grid([(caption, items)], thumb=(40, 20))
    pad, frame = 6, 3
    width = pad + 3 * (20 + 2 * frame + pad)
    assert grid.width == width
    # the frame's top-left pixel of each cell, found below the caption lines
    column = [grid.getpixel((pad, y)) for y in range(grid.height)]
    top = next(y for y, c in enumerate(column) if c == (30, 160, 60))
    cell = 20 + 2 * frame + pad
    assert grid.getpixel((pad + cell, top)) == (210, 40, 40)
    assert grid.getpixel((pad + 2 * cell, top)) == (160, 160, 160)
    assert grid.getpixel((pad + frame + 5, top + frame + 5)) == (0, 0, 255)  # the image


def test_wrap_keeps_every_word_and_fits_the_width():
    font = ImageFont.load_default(size=13)
    text = "the man wears a purple and orange horizontally striped hoodie and a khaki cap"
    lines = _wrap(text, font, 120)
    assert " ".join(lines) == text
    assert len(lines) > 1
    assert all(font.getlength(line) <= 120 for line in lines)
    assert _wrap("", font, 50) == [""]
