"""The whole frame a crop of footage was cut from, read again from its source and sent as JPEG."""

from __future__ import annotations

import io

from PIL import Image

from irra.footage import FootageError, open_footage

#: JPEG quality of served frames: a frame is looked at, not measured (the crops stay lossless).
FRAME_QUALITY = 90


class FrameUnavailable(Exception):
    """The source of a crop cannot give its frame any more (moved, deleted, damaged)."""


def frame_jpeg(source: str, number: int, quality: int = FRAME_QUALITY) -> bytes:
    """Frame ``number`` (1-based) of the video file or frame folder ``source``, JPEG-encoded.

    The frame is decoded by :func:`irra.footage.open_footage`, as when it was indexed, so the
    crop's box lies on the same pixels.

    Raises:
        FrameUnavailable: the source is gone, unreadable, or has no such frame; the message
            names the source and the fix.
    """
    try:
        image = open_footage(source).frame(number).image  # (H, W, 3) uint8 RGB
    except (FootageError, OSError, ValueError) as err:
        raise FrameUnavailable(
            f"frame {number} of {source} cannot be read ({err}); put the footage back where it "
            "was indexed or index it again"
        ) from err
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=quality)
    return out.getvalue()
