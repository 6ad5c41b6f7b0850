"""Decoding an image file or upload into an 8-bit RGB picture: the one decoder of irra.

Datasets, gallery indexing, the exported encoders' preprocessing and image queries all call
:func:`load_image`, so one image gives the same pixels everywhere. The rules:

* grayscale, 1-bit, palette (with or without transparency), CMYK and YCbCr images are converted
  with Pillow's ``convert('RGB')``;
* an alpha channel (``LA``, ``RGBA``, ``PA``) is dropped, as the reference IRRA code's
  ``convert('RGB')`` does (training data and queries see the colour values, not a background);
* 16-bit and 32-bit integer grayscale (``I;16``, ``I``) is scaled to 8 bits (65535 -> 255, by
  dividing by 257) when it holds values above 255, instead of being clipped; float (``F``) images
  are clipped to 0..255;
* an image whose header claims more than :data:`MAX_PIXELS` pixels is refused before its pixels
  are decoded (a decompression bomb), as are truncated files and files that are not images.

Imports only Pillow and numpy (no PyTorch).
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["MAX_PIXELS", "ImageDecodeError", "load_image"]

#: Most pixels (width x height) a decoded image may have: 50 megapixels, far above a person crop.
MAX_PIXELS = 50_000_000
_HIGH_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class ImageDecodeError(OSError, ValueError):
    """A file or upload that is not a decodable image; the message names it and says why."""


def load_image(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Image.Image:
    """Decode ``source`` (a path, or the bytes of an image file) into an 8-bit RGB PIL image.

    Args:
        source: an image file, or its bytes (an upload).
        name: what to call the image in error messages (default: the path, or ``upload``).

    Returns:
        A loaded ``RGB`` image (the file is closed).

    Raises:
        ImageDecodeError: missing or unreadable file, not an image, truncated, zero-sized, or
            more than :data:`MAX_PIXELS` pixels.
    """
    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    label = name or ("upload" if is_bytes else os.fspath(source))
    try:
        handle = io.BytesIO(bytes(source)) if is_bytes else source
        with Image.open(handle) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(
                    f"{label}: {width}x{height} pixels is more than the {MAX_PIXELS:,} accepted "
                    "(a decompression bomb or not a person crop); resize it first"
                )
            if width == 0 or height == 0:
                raise ImageDecodeError(f"{label}: the image has zero size")
            image.load()
            return _to_rgb(image)
    except ImageDecodeError:
        raise
    except FileNotFoundError as err:
        raise ImageDecodeError(f"{label}: no such file") from err
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(f"{label}: refused as a decompression bomb ({err})") from err
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as err:
        raise ImageDecodeError(f"{label}: cannot read image ({type(err).__name__}: {err})") from err


def _to_rgb(image: Image.Image) -> Image.Image:
    """A loaded image of any mode -> 8-bit RGB (see the module's rules)."""
    if image.mode in _HIGH_BIT_MODES:
        array = np.asarray(image, dtype=np.float64)
        scale = 257.0 if image.mode != "F" and array.max(initial=0) > 255 else 1.0
        array = np.clip(array / scale, 0, 255).round().astype(np.uint8)
        return Image.fromarray(array).convert("RGB")
    return image.convert("RGB")
