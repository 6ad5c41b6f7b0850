"""Eval / train transforms: shapes, normalisation values, and generator-driven randomness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from irra.data.transforms import (
    build_eval_transform,
    build_train_transform,
    sample_erasing_box,
)

# CLIP's normalisation constants, written out here independently of the code under test.
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])
SIZE = (24, 12)  # (H, W)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gradient_image(width: int = 10, height: int = 20) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float64)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float64)[:, None, None]
    array = np.concatenate(
        [
            np.broadcast_to(x, (height, width, 1)),
            np.broadcast_to(y, (height, width, 1)),
            np.full((height, width, 1), 40.0),
        ],
        axis=2,
    )
    return Image.fromarray(array.astype(np.uint8))


def test_constant_image_normalises_to_hand_computed_value() -> None:
    color = (200, 100, 50)
    out = build_eval_transform(SIZE)(Image.new("RGB", (7, 31), color))
    assert out.shape == (3, 24, 12) and out.dtype == torch.float32
    expected = (torch.tensor(color, dtype=torch.float32) / 255.0 - MEAN) / STD
    # e.g. red: (200/255 - 0.48145466) / 0.26862954 = 1.1274...
    assert abs(float(expected[0]) - 1.12742) < 1e-4
    torch.testing.assert_close(out, expected.view(3, 1, 1).expand(3, 24, 12), atol=1e-5, rtol=0)


def test_train_transform_without_augmentation_equals_eval() -> None:
    image = _gradient_image()
    plain = build_train_transform(SIZE, flip_p=0.0, padding=0, erasing_p=0.0)
    torch.testing.assert_close(plain(image, _gen(0)), build_eval_transform(SIZE)(image))


def test_flip_mirrors_the_image() -> None:
    image = _gradient_image()
    flip = build_train_transform(SIZE, flip_p=1.0, padding=0, erasing_p=0.0)
    expected = build_eval_transform(SIZE)(ImageOps.mirror(image))
    torch.testing.assert_close(flip(image, _gen(3)), expected, atol=1e-5, rtol=0)


def test_pad_and_crop_fill_borders_with_black() -> None:
    color = (250, 250, 250)
    t = build_train_transform(SIZE, flip_p=0.0, padding=10, erasing_p=0.0)
    inside = ((torch.tensor(color) / 255.0 - MEAN) / STD).view(3, 1)
    black = (-MEAN / STD).view(3, 1)
    saw_padding = False
    for seed in range(20):
        out = t(Image.new("RGB", (12, 24), color), _gen(seed)).reshape(3, -1)
        is_inside = (out - inside).abs().amax(0) < 1e-4
        is_black = (out - black).abs().amax(0) < 1e-4
        assert bool((is_inside | is_black).all())
        saw_padding |= bool(is_black.any())
    assert saw_padding


def test_pad_crop_is_a_window_of_the_zero_padded_image() -> None:
    image = _gradient_image(12, 24)  # already (H, W) = SIZE: resizing keeps it
    base = build_eval_transform(SIZE)(image)
    black = (-MEAN / STD).view(3, 1, 1)
    padded = black.expand(3, 44, 32).clone()
    padded[:, 10:34, 10:22] = base
    t = build_train_transform(SIZE, flip_p=0.0, padding=10, erasing_p=0.0)
    offsets = set()
    for seed in range(12):
        out = t(image, _gen(seed))
        matches = [
            (top, left)
            for top in range(21)
            for left in range(21)
            if torch.allclose(out, padded[:, top : top + 24, left : left + 12], atol=1e-5)
        ]
        assert matches, f"seed {seed}: output is no window of the padded image"
        offsets.add(matches[0])
    assert len(offsets) > 1


@pytest.mark.parametrize(("fill", "expected"), [("reference", MEAN), ("mean", torch.zeros(3))])
def test_random_erasing_fills_region_with_documented_value(fill: str, expected) -> None:
    t = build_train_transform(
        (40, 40),
        flip_p=0.0,
        padding=0,
        erasing_p=1.0,
        erasing_fill=fill,  # type: ignore[arg-type]
    )
    color = (255, 0, 255)
    keep = ((torch.tensor(color) / 255.0 - MEAN) / STD).view(3, 1, 1)
    for seed in range(10):
        out = t(Image.new("RGB", (40, 40), color), _gen(seed))
        erased = (out - expected.view(3, 1, 1)).abs().amax(0) < 1e-6
        untouched = (out - keep).abs().amax(0) < 1e-4
        assert bool((erased ^ untouched).all())
        rows, cols = torch.nonzero(erased, as_tuple=True)
        h = int(rows.max() - rows.min() + 1)
        w = int(cols.max() - cols.min() + 1)
        assert int(erased.sum()) == h * w  # one rectangle
        assert 0.02 * 1600 * 0.8 <= h * w <= 0.4 * 1600 * 1.2  # area scale (with rounding)


def test_same_generator_same_output_regardless_of_global_rng() -> None:
    t = build_train_transform(SIZE)
    image = _gradient_image()
    torch.manual_seed(1)
    a = t(image, _gen(42))
    torch.manual_seed(2)
    torch.rand(100)
    b = t(image, _gen(42))
    torch.testing.assert_close(a, b)
    outputs = {t(image, _gen(s)).sum().item() for s in range(8)}
    assert len(outputs) > 1


def test_erasing_box_is_none_when_no_box_fits() -> None:
    assert sample_erasing_box(1, 50, _gen(0)) is None
    box = sample_erasing_box(30, 20, _gen(0))
    assert box is not None
    top, left, h, w = box
    assert 0 <= top <= 30 - h and 0 <= left <= 20 - w


def test_unknown_erasing_fill_is_rejected() -> None:
    with pytest.raises(ValueError, match="erasing_fill"):
        build_train_transform(SIZE, erasing_fill="zeros")  # type: ignore[arg-type]
