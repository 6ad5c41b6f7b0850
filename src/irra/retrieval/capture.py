"""Capture times: reading them (ISO 8601 text, EXIF, file times) and writing them back as text.

A capture time is stored as UNIX seconds (float, UTC). Text is ISO 8601 as Python's
``datetime.fromisoformat`` reads it (``2024-05-01``, ``2024-05-01T14:30:00``,
``2024-05-01 14:30:00+02:00``, ``...Z``); a time without a UTC offset, like an EXIF time, is
read as UTC, and a date alone is its midnight.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path

from PIL import Image

__all__ = ["file_capture_time", "format_time", "parse_time"]

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011


def parse_time(text: str) -> float:
    """ISO 8601 ``text`` -> UNIX seconds; ValueError saying what is accepted otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an ISO 8601 time (give text such as 2024-05-01T14:30)")
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 time; write e.g. 2024-05-01, 2024-05-01T14:30:00 or "
            "2024-05-01T14:30:00+02:00 (no offset = UTC)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def format_time(seconds: float | None, *, milliseconds: bool = False) -> str | None:
    """UNIX seconds -> ISO 8601 in UTC (``2024-05-01T14:30:00Z``, or with ``milliseconds``
    ``2024-05-01T14:30:00.040Z``: the frames of a video), or None."""
    if seconds is None:
        return None
    moment = dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    spec = "milliseconds" if milliseconds else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def exif_time(path: str | os.PathLike[str]) -> float | None:
    """EXIF DateTimeOriginal of an image file (with OffsetTimeOriginal when present), or None.

    Reads only the file's header; a file without EXIF, or with a malformed time, gives None.
    """
    try:
        with Image.open(path) as image:
            ifd = image.getexif().get_ifd(_EXIF_IFD)
            stamp, offset = ifd.get(_DATETIME_ORIGINAL), ifd.get(_OFFSET_TIME_ORIGINAL)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    if not isinstance(stamp, str):
        return None
    try:  # EXIF writes "YYYY:MM:DD HH:MM:SS"
        moment = dt.datetime.strptime(stamp.strip("\0 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    tz = dt.timezone.utc
    if isinstance(offset, str):
        with contextlib.suppress(ValueError):
            tz = dt.datetime.strptime(offset.strip("\0 "), "%z").tzinfo or tz
    return moment.replace(tzinfo=tz).timestamp()


def file_capture_time(path: str | os.PathLike[str], mtime_ns: int | None = None) -> float:
    """The capture time of an image file: EXIF DateTimeOriginal, else its modification time."""
    found = exif_time(path)
    if found is not None:
        return found
    if mtime_ns is None:
        mtime_ns = Path(path).stat().st_mtime_ns
    return mtime_ns / 1e9
