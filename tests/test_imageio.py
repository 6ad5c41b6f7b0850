"""The one image decoder: every mode to 8-bit RGB by one rule, bad files refused naming them."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from irra.data.transforms import EvalTransform
from irra.imageio import MAX_PIXELS, ImageDecodeError, load_image
from irra.inference.pixels import load_pixels


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def _sixteen_bit(value: int) -> Image.Image:
    return Image.new("I;16", (4, 6), value)


# name -> (image, the RGB value of its first pixel, worked out by hand)
MODES = {
    "16-bit full scale": (_sixteen_bit(65535), (255, 255, 255)),
    "16-bit mid": (_sixteen_bit(257 * 100), (100, 100, 100)),
    "16-bit small values are not stretched": (_sixteen_bit(200), (200, 200, 200)),
    "palette": (Image.new("P", (4, 6), 0), None),
    "la drops alpha": (Image.new("LA", (4, 6), (90, 0)), (90, 90, 90)),
    "rgba drops alpha": (Image.new("RGBA", (4, 6), (10, 20, 30, 0)), (10, 20, 30)),
}


@pytest.mark.parametrize("case", list(MODES), ids=list(MODES))
def test_every_mode_becomes_8bit_rgb_by_one_rule(case) -> None:
    image, expected = MODES[case]
    if image.mode == "P":
        image.putpalette([7, 140, 250] + [0, 0, 0] * 255)
        expected = (7, 140, 250)
    decoded = load_image(_png(image), name=case)
    assert decoded.mode == "RGB" and decoded.size == (4, 6)
    assert tuple(int(v) for v in np.asarray(decoded)[0, 0]) == expected


def test_cmyk_white_decodes_to_white() -> None:
    decoded = load_image(_png(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG"))
    assert np.abs(np.asarray(decoded).astype(int) - 255).max() <= 2


def test_a_path_and_its_bytes_decode_to_the_same_pixels(tmp_path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(_png(_sixteen_bit(40000)))
    assert np.array_equal(np.asarray(load_image(path)), np.asarray(load_image(path.read_bytes())))


def test_numpy_and_torch_preprocessing_agree_on_a_16bit_image(tmp_path) -> None:
    path = tmp_path / "a.png"
    image = Image.new("I;16", (16, 40))
    image.putdata([(i * 977) % 65536 for i in range(16 * 40)])
    image.save(path)
    transform = EvalTransform(size=(32, 16))
    via_torch = transform(load_image(path)).numpy()
    via_numpy = load_pixels(path, (32, 16), transform.mean, transform.std)
    assert torch.allclose(torch.from_numpy(via_numpy), torch.from_numpy(via_torch), atol=0.05)


BAD = {
    "empty": b"",
    "text": b"not an image at all",
    "truncated jpeg": _png(Image.new("RGB", (64, 128), (9, 80, 200)), "JPEG")[:300],
    "bomb header": _png_header(60_000, 60_000),
    "just over the pixel cap": _png_header(MAX_PIXELS // 1000 + 1, 1000),
    "zero size": _png_header(0, 10),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_bytes_are_refused_naming_the_source(case) -> None:
    with pytest.raises(ImageDecodeError, match=f"^{case}: "):
        load_image(BAD[case], name=case)


def test_a_missing_file_is_named(tmp_path) -> None:
    with pytest.raises(ImageDecodeError, match="nope.png: no such file"):
        load_image(tmp_path / "nope.png")
