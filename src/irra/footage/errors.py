"""The one error type of footage input: its message names the file, what is wrong and the fix."""

from __future__ import annotations


class FootageError(ValueError):
    """Footage, a detections file or a frame folder that cannot be used as given."""
