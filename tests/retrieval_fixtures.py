"""Shared by the retrieval, server and browser tests: a tiny model and a generated gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from irra.data.transforms import build_eval_transform
from irra.model import IRRA, CLIPConfig, IRRAConfig, TextConfig, VisionConfig, save_model
from irra.tokenizer import tokenize

IMAGE_SIZE = (64, 32)


def tiny_model(seed: int = 0) -> IRRA:
    """A randomly initialised IRRA small enough to encode a gallery in a second on CPU."""
    torch.manual_seed(seed)
    clip = CLIPConfig(
        embed_dim=32,
        vision=VisionConfig(IMAGE_SIZE, patch_size=16, width=32, layers=1, heads=2),
        text=TextConfig(context_length=32, width=32, layers=1, heads=2),
    )
    return IRRA(IRRAConfig(clip=clip, loss_names=("sdm",))).eval()


def write_model(folder: Path, seed: int = 0) -> Path:
    """Save :func:`tiny_model` in irra's format under ``folder``; returns the model folder."""
    return save_model(tiny_model(seed), folder)


def draw_image(path: Path, seed: int) -> None:
    """A random blocky picture (distinct per seed), in the format of the file extension."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(8, 4, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize((40, 80), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def write_gallery(root: Path, count: int, start: int = 0) -> list[str]:
    """``count`` images under ``root`` in nested folders and every supported format."""
    extensions = (".jpg", ".png", ".bmp", ".webp", ".JPEG")
    paths = []
    for i in range(start, start + count):
        rel = f"cam{i % 3}/p{i:04d}{extensions[i % len(extensions)]}"
        draw_image(root / rel, seed=i)
        paths.append(rel)
    return paths


def brute_force_ranking(model: IRRA, root: Path, paths: list[str], text: str) -> list[tuple]:
    """(path, cosine) of every image, best first, encoding one image at a time."""
    transform = build_eval_transform(model.config.clip.vision.image_size)
    with torch.no_grad():
        query = model.encode_text(tokenize([text], model.config.clip.text.context_length))
        query = torch.nn.functional.normalize(query, dim=-1)[0]
        scores = []
        for rel in paths:
            with Image.open(root / rel) as image:
                pixels = transform(image.convert("RGB"))[None]
            feat = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1)[0]
            scores.append((rel, float(feat @ query)))
    return sorted(scores, key=lambda item: -item[1])


def stored_rows(index: Path | str) -> list[tuple[int, object]]:
    """Every (id, record) of the index at ``index``, in id order."""
    from irra.retrieval.store import open_store

    store = open_store(index)
    try:
        return list(store.rows())
    finally:
        store.close()


def rows_by_path(index: Path | str) -> tuple[list[str], np.ndarray]:
    """The paths of the index, sorted, and their stored vectors (N, D) in that order."""
    from irra.retrieval.store import open_store

    store = open_store(index)
    try:
        rows = sorted(store.rows(), key=lambda row: row[1].path)
        return [r.path for _, r in rows], store.vectors([i for i, _ in rows])
    finally:
        store.close()


def stored_vectors(index: Path | str, ids: list[int]) -> np.ndarray:
    """The stored vectors (n, D) of ``ids`` in the index at ``index``."""
    from irra.retrieval.store import open_store

    store = open_store(index)
    try:
        return store.vectors(ids)
    finally:
        store.close()
