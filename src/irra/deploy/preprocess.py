"""The eval image transform with PIL and numpy only, for engines that run without PyTorch.

Same steps as :func:`irra.data.transforms.build_eval_transform`: RGB, bicubic resize (PIL's,
antialiased) to (H, W), scale to [0, 1], subtract the mean and divide by the std per channel.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from irra.retrieval.files import GalleryError


def preprocess_image(
    image: Image.Image, size: Sequence[int], mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """A PIL image -> (3, H, W) float32, resized to ``size`` = (H, W) and normalised."""
    height, width = int(size[0]), int(size[1])
    resized = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    pixels = np.asarray(resized, dtype=np.float32) / np.float32(255.0)  # (H, W, 3)
    mean_arr = np.asarray(mean, dtype=np.float32)
    std_arr = np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean_arr) / std_arr).transpose(2, 0, 1))


def load_image(
    path: str | os.PathLike[str],
    size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
) -> np.ndarray:
    """An image file -> (3, H, W) float32 (see :func:`preprocess_image`).

    Raises:
        GalleryError: the file cannot be decoded (named in the message).
    """
    try:
        with Image.open(path) as image:
            return preprocess_image(image, size, mean, std)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise GalleryError(
            f"{path}: cannot decode this image ({err}); remove or replace the file and run "
            "again (nothing was written)"
        ) from err
