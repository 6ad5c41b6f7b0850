"""The eval image transform with PIL and numpy only, for engines that run without PyTorch.

Same steps as :func:`irra.data.transforms.build_eval_transform`: decode to RGB
(:func:`irra.imageio.load_image`), bicubic resize (PIL's, antialiased) to (H, W), scale to
[0, 1], subtract the mean and divide by the std per channel.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from irra.imageio import load_image


def preprocess_image(
    image: Image.Image, size: Sequence[int], mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """An RGB PIL image -> (3, H, W) float32, resized to ``size`` = (H, W) and normalised."""
    height, width = int(size[0]), int(size[1])
    resized = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    pixels = np.asarray(resized, dtype=np.float32) / np.float32(255.0)  # (H, W, 3)
    mean_arr = np.asarray(mean, dtype=np.float32)
    std_arr = np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean_arr) / std_arr).transpose(2, 0, 1))


def load_pixels(
    path: str | os.PathLike[str],
    size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
) -> np.ndarray:
    """An image file -> (3, H, W) float32 (see :func:`preprocess_image`).

    Raises:
        ImageDecodeError: the file is not a decodable image (named in the message).
    """
    return preprocess_image(load_image(path), size, mean, std)
