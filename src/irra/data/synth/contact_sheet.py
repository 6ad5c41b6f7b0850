"""A contact sheet of a CUHK-PEDES-format dataset: identities as rows, images and a caption."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def make_contact_sheet(
    dataset_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    num_ids: int = 8,
    images_per_id: int = 4,
    split: str | None = None,
    ids: Sequence[int] | None = None,
    caption_width: int = 300,
    colors: int | None = 256,
) -> Path:
    """Draw ``num_ids`` identities (rows) x ``images_per_id`` images with the first caption.

    Args:
        dataset_dir: folder with ``reid_raw.json`` and ``imgs/``.
        out_path: PNG to write (parent folders are created).
        num_ids: identities shown, in file order (siblings of a family sit next to each other).
        images_per_id: images per identity row.
        split: only identities of this split (all splits when None).
        ids: show exactly these identities, in this order (overrides ``num_ids`` and ``split``).
        caption_width: width in pixels of the caption column.
        colors: quantise to this many colours to keep the PNG small (None: full colour).

    Returns:
        ``Path(out_path)``.
    """
    root = Path(dataset_dir)
    entries = json.loads((root / "reid_raw.json").read_text())
    rows: dict[int, list[dict]] = {}
    if ids is not None:
        rows = {pid: [] for pid in ids}
        for e in entries:
            if e["id"] in rows:
                rows[e["id"]].append(e)
        missing = [pid for pid, items in rows.items() if not items]
        if missing:
            raise ValueError(f"{root / 'reid_raw.json'} has no identities {missing}")
    else:
        for e in entries:
            if split is not None and e["split"] != split:
                continue
            if e["id"] not in rows and len(rows) == num_ids:
                continue
            rows.setdefault(e["id"], []).append(e)
    if not rows:
        raise ValueError(f"{root / 'reid_raw.json'} has no entries for split {split!r}")
    first = Image.open(root / "imgs" / entries[0]["file_path"])
    w, h = first.size
    pad = 4
    font = ImageFont.load_default(size=13)
    sheet_w = pad + images_per_id * (w + pad) + caption_width + pad
    sheet = Image.new("RGB", (sheet_w, pad + len(rows) * (h + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    chars = max(10, caption_width // 7)
    for r, (pid, items) in enumerate(rows.items()):
        y = pad + r * (h + pad)
        for k, e in enumerate(items[:images_per_id]):
            with Image.open(root / "imgs" / e["file_path"]) as im:
                sheet.paste(im.convert("RGB").resize((w, h)), (pad + k * (w + pad), y))
        text = f"id {pid} ({items[0]['split']}): " + items[0]["captions"][0]
        x = pad + images_per_id * (w + pad) + pad
        draw.multiline_text(
            (x, y + 2), "\n".join(textwrap.wrap(text, chars)), fill=(0, 0, 0), font=font
        )
    if colors is not None:
        sheet = sheet.quantize(
            colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG", optimize=True)
    return out
