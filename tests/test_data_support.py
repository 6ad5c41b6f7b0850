"""Helpers shared by the tests/test_data_*.py files: tiny datasets written under tmp_path."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

#: The real CUHK-PEDES val annotation (3,078 images, 6,158 captions; not redistributable, so not
#: in the repository): the file named by IRRA_CUHK_VAL_JSON, else
#: shared/data/cuhkpedes_val_reid.json in the folder that holds the repository.
REAL_CUHK_VAL = Path(
    os.environ.get("IRRA_CUHK_VAL_JSON")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "cuhkpedes_val_reid.json"
)
REAL_CUHK_VAL_ABSENT = (
    f"the real CUHK-PEDES val annotation is not at {REAL_CUHK_VAL}; set IRRA_CUHK_VAL_JSON to "
    "the path of cuhkpedes_val_reid.json to run this test"
)


def png_bytes(size: tuple[int, int] = (4, 8), color: tuple[int, int, int] = (90, 30, 200)) -> bytes:
    """A small encoded PNG image (width, height)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_images(images_dir: Path, rel_paths: Sequence[str], data: bytes | None = None) -> None:
    """Write the same encoded image at every relative path (fast for thousands of files)."""
    data = png_bytes() if data is None else data
    for rel in rel_paths:
        path = images_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def make_entries(
    splits: dict[str, dict[int, int]], image_key: str, captions_per_image: int = 2
) -> list[dict]:
    """Entries: ``splits[split][pid] = number of images``; captions are distinct sentences."""
    entries = []
    for split, ids in splits.items():
        for pid, count in ids.items():
            for k in range(count):
                path = f"{split}/{pid:05d}_{k}.png"
                captions = [
                    f"a person number {pid} seen {k} time in {split} caption {c}"
                    for c in range(captions_per_image)
                ]
                entries.append({"split": split, "id": pid, "captions": captions, image_key: path})
    return entries


def write_dataset(
    root: Path, name: str, annotation: str, image_key: str, entries: list, images: bool = True
) -> Path:
    """Write ``<root>/<name>/<annotation>`` and the images of ``entries``; returns the folder."""
    folder = root / name
    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    (folder / annotation).write_text(json.dumps(entries), encoding="utf-8")
    if images:
        paths = [
            e[image_key]
            for e in entries
            if isinstance(e, dict) and isinstance(e.get(image_key), str)
        ]
        write_images(folder / "imgs", paths)
    return folder


def test_write_dataset_writes_every_image(tmp_path: Path) -> None:
    entries = make_entries({"train": {0: 2, 1: 1}}, "file_path")
    folder = write_dataset(tmp_path, "X", "a.json", "file_path", entries)
    assert sorted(p.name for p in (folder / "imgs" / "train").iterdir()) == [
        "00000_0.png",
        "00000_1.png",
        "00001_0.png",
    ]
