"""Image transforms whose randomness comes from an explicit :class:`torch.Generator`.

Eval: resize to (H, W) bicubic -> float tensor in [0, 1] -> normalise with CLIP's mean and std.

Train (the paper's recipe): resize bicubic -> horizontal flip (p 0.5) -> zero-pad 10 -> random
crop (H, W) -> tensor -> normalise -> random erasing (p 0.5, area 0.02-0.4 of the image, aspect
ratio 0.3-3.3).

**What "filled with the mean" means.** The reference erases *after* normalisation and passes
CLIP's mean ``(0.481, 0.458, 0.408)`` as the fill value, i.e. in normalised units; the published
numbers come from that, so it is the default (``erasing_fill="reference"``). With
``erasing_fill="mean"`` the region is filled with 0 in normalised units, which is the dataset mean
pixel colour.

The random ops take the generator as an argument (the actual image ops are
``torchvision.transforms.v2.functional``), so a sample's augmentation depends only on the
generator a dataset derives from ``(seed, epoch, index)``, never on the global RNG or on the
data-loader worker that runs it. Resizing is done on the PIL image (as the reference does);
flip, padding (with 0, black, as padding the PIL image would) and cropping run on the uint8
tensor, before the conversion to float.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "EvalTransform",
    "TrainTransform",
    "build_eval_transform",
    "build_train_transform",
    "sample_erasing_box",
]

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

ErasingFill = Literal["reference", "mean"]


def _resized_uint8(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) uint8: the PIL image resized bicubic (antialiased, as PIL does) to ``size``."""
    resized = F.resize(image, list(size), interpolation=InterpolationMode.BICUBIC, antialias=True)
    return F.to_image(resized).as_subclass(torch.Tensor)


def _normalised(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (3, H, W) -> float32 in [0, 1] -> (x - mean) / std."""
    return F.normalize(F.to_dtype(tensor, torch.float32, scale=True), list(mean), list(std))


@dataclass(frozen=True)
class EvalTransform:
    """Deterministic eval transform: PIL image -> (3, H, W) float, CLIP-normalised."""

    size: tuple[int, int] = (384, 128)
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD

    def __call__(
        self, image: Image.Image, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``image``: RGB PIL image; ``generator`` is accepted and ignored. Returns (3, H, W)."""
        return _normalised(_resized_uint8(image, self.size), self.mean, self.std)


def sample_erasing_box(
    height: int,
    width: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.3, 3.3),
    attempts: int = 10,
) -> tuple[int, int, int, int] | None:
    """A random box ``(top, left, h, w)`` covering ``scale`` of the area, or None after 10 misses.

    The box's area is uniform in ``scale`` times the image area and its aspect ratio h/w is
    log-uniform in ``ratio`` (the same rule as torchvision's RandomErasing).
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        h = int(round(math.sqrt(target * aspect)))
        w = int(round(math.sqrt(target / aspect)))
        if 0 < h < height and 0 < w < width:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    return None


@dataclass(frozen=True)
class TrainTransform:
    """Training augmentation; every random choice is drawn from the ``generator`` argument."""

    size: tuple[int, int] = (384, 128)
    flip_p: float = 0.5
    padding: int = 10
    erasing_p: float = 0.5
    erasing_scale: tuple[float, float] = (0.02, 0.4)
    erasing_ratio: tuple[float, float] = (0.3, 3.3)
    erasing_fill: ErasingFill = "reference"
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD

    def __post_init__(self) -> None:
        if self.erasing_fill not in ("reference", "mean"):
            raise ValueError(
                f"erasing_fill must be 'reference' or 'mean', got {self.erasing_fill!r}"
            )

    def __call__(self, image: Image.Image, generator: torch.Generator) -> torch.Tensor:
        """``image``: RGB PIL image. Returns (3, H, W) float, normalised, augmented."""
        height, width = self.size
        tensor = _resized_uint8(image, self.size)
        if float(torch.rand(1, generator=generator)) < self.flip_p:
            tensor = F.horizontal_flip(tensor)
        if self.padding > 0:
            tensor = F.pad(tensor, [self.padding], fill=0)
            top = int(torch.randint(0, 2 * self.padding + 1, (1,), generator=generator))
            left = int(torch.randint(0, 2 * self.padding + 1, (1,), generator=generator))
            tensor = F.crop(tensor, top, left, height, width)
        tensor = _normalised(tensor, self.mean, self.std)
        if float(torch.rand(1, generator=generator)) < self.erasing_p:
            box = sample_erasing_box(
                height, width, generator, self.erasing_scale, self.erasing_ratio
            )
            if box is not None:
                fill = self.mean if self.erasing_fill == "reference" else (0.0, 0.0, 0.0)
                value = torch.tensor(fill, dtype=tensor.dtype).view(-1, 1, 1)
                tensor = F.erase(tensor, *box, v=value)
        return tensor


def build_eval_transform(
    image_size: tuple[int, int] = (384, 128),
    *,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> EvalTransform:
    """The eval transform for images of ``image_size`` = (H, W)."""
    return EvalTransform(tuple(image_size), tuple(mean), tuple(std))  # type: ignore[arg-type]


def build_train_transform(
    image_size: tuple[int, int] = (384, 128),
    *,
    flip_p: float = 0.5,
    padding: int = 10,
    erasing_p: float = 0.5,
    erasing_scale: tuple[float, float] = (0.02, 0.4),
    erasing_fill: ErasingFill = "reference",
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> TrainTransform:
    """The paper's training augmentation for images of ``image_size`` = (H, W).

    Example:
        >>> t = build_train_transform((384, 128))
        >>> t(Image.new("RGB", (64, 128)), torch.Generator().manual_seed(0)).shape
        torch.Size([3, 384, 128])
    """
    return TrainTransform(
        size=tuple(image_size),  # type: ignore[arg-type]
        flip_p=flip_p,
        padding=padding,
        erasing_p=erasing_p,
        erasing_scale=erasing_scale,
        erasing_fill=erasing_fill,
        mean=tuple(mean),
        std=tuple(std),
    )
