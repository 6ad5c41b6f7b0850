"""Video files through PyAV (FFmpeg): reading frames with their times, writing an mp4.

Reading decodes every frame (inter-coded video cannot skip any) and converts to RGB only the
frames asked for. A file that stops decoding part-way (truncated, corrupt) yields the frames
that decode and reports the rest in :attr:`VideoFile.report`; a file with no decodable frame, no
video stream, or that is not a video is a :class:`FootageError` naming it.

Needs the ``video`` extra (``pip install 'irra[video]'``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from irra.footage.errors import FootageError
from irra.footage.frame import Frame, ReadReport, check_every

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
_INSTALL = "install the video extra: pip install 'irra[video]'"


def _av() -> Any:
    try:
        import av
    except ImportError as err:  # pragma: no cover - the extra is installed in the tests
        raise FootageError(f"reading or writing video needs PyAV; {_INSTALL}") from err
    return av


class VideoFile:
    """Frames of a video file (mp4, avi, mkv... whatever FFmpeg reads).

    Args:
        path: the video file.

    Raises:
        FootageError: the file is missing, empty, not a video, or has no video stream.

    Example:
        >>> video = VideoFile("cam3.mp4")  # doctest: +SKIP
        >>> for frame in video.frames(every=5):  # doctest: +SKIP
        ...     print(frame.number, frame.time, frame.image.shape)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.report = ReadReport()
        av = _av()
        if not self.path.is_file():
            raise FootageError(f"{self.path}: no such video file; check the path")
        if self.path.stat().st_size == 0:
            raise FootageError(f"{self.path}: the video file is empty (0 bytes); copy it again")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise FootageError(
                        f"{self.path}: no video stream (an empty or audio-only file); "
                        "give a file that holds video"
                    )
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                self.fps = float(rate) if rate else 25.0
                self.size = (int(stream.codec_context.width), int(stream.codec_context.height))
                self.num_frames: int | None = int(stream.frames) or None
        except av.FFmpegError as err:
            raise FootageError(
                f"{self.path}: cannot read it as a video ({err}); check that it is an "
                "mp4/avi/mkv file and not damaged"
            ) from err

    def __repr__(self) -> str:
        return f"VideoFile({str(self.path)!r}, fps={self.fps:g}, size={self.size})"

    def frames(self, every: int = 1, only: Collection[int] | None = None) -> Iterator[Frame]:
        """Decoded frames ``1, 1 + every, ...`` (those in ``only``, if given); problems land in
        :attr:`report`.

        Raises:
            FootageError: no frame at all decodes.
        """
        every = check_every(every)
        self.report = ReadReport()
        yield from self._decode(every, self.report, only)
        for problem in self.report.problems:
            logger.warning("%s", problem)

    def _decode(
        self, every: int, report: ReadReport, only: Collection[int] | None = None
    ) -> Iterator[Frame]:
        av = _av()
        number, first = 0, None
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            decoded = container.decode(stream)
            while True:
                try:
                    frame = next(decoded)
                except StopIteration:
                    break
                except av.FFmpegError as err:
                    report.problems.append(
                        f"{self.path}: decoding stopped after frame {number} ({err}); the file "
                        "is truncated or damaged, later frames are skipped"
                    )
                    break
                number += 1
                if first is None:
                    first = frame.time
                time = (
                    frame.time - first
                    if frame.time is not None and first is not None
                    else (number - 1) / self.fps
                )
                report.decoded, report.last_frame = number, number
                if (number - 1) % every == 0 and (only is None or number in only):
                    yield Frame(number, float(time), frame.to_ndarray(format="rgb24"))
        if number == 0:
            raise FootageError(
                f"{self.path}: no frame decodes (an empty or damaged video); check the file"
            )
        if self.num_frames is not None and number < self.num_frames and not report.problems:
            report.problems.append(
                f"{self.path}: {number} of the {self.num_frames} frames the file lists decoded; "
                "it is probably truncated"
            )

    def frame(self, number: int) -> Frame:
        """Frame ``number`` (1-based), the same as the ``number``-th of :meth:`frames`.

        A constant-rate video (its duration, frame count and rate agree) seeks to the key frame
        before it and decodes from there; any other video is decoded from the start.

        Raises:
            FootageError: the video has fewer frames.
        """
        if number < 1:
            raise FootageError(f"{self.path}: frame numbers start at 1, got {number}")
        found = self._seek(number)
        if found is not None:
            return found
        for frame in self._decode(1, ReadReport()):
            if frame.number == number:
                return frame
        raise FootageError(f"{self.path}: has fewer than {number} frames")

    def _seek(self, number: int) -> Frame | None:
        """Frame ``number`` found through its timestamp, or None where that is not sure."""
        av = _av()
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                rate, base = stream.average_rate, stream.time_base
                if not (self.num_frames and stream.duration and rate and base):
                    return None
                if abs(float(stream.duration * base * rate) - self.num_frames) >= 1:
                    return None  # variable frame rate: timestamps do not give frame numbers
                first = next(container.decode(stream)).pts
                if first is None:
                    return None
                target = first + round((number - 1) / (float(rate) * base))
                container.seek(target, stream=stream, backward=True)
                for frame in container.decode(stream):
                    if frame.pts is None:
                        return None
                    seconds = float((frame.pts - first) * base)
                    at = round(seconds * float(rate)) + 1
                    if at == number:
                        return Frame(number, seconds, frame.to_ndarray(format="rgb24"))
                    if at > number:
                        return None
        except (av.FFmpegError, StopIteration):
            return None
        return None


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    crf: int = 18,
    lossless: bool = False,
) -> int:
    """Encode RGB frames as an H.264 mp4 (one encoder thread: same input, same bytes).

    By default the video is yuv420p, as cameras and players have it: decoding gives pixels
    close to, not equal to, the input. ``lossless`` stores RGB itself (x264's RGB encoder at
    quantiser 0): decoding gives the input back bit for bit, in a file about ten times larger
    (synthetic scenes) that common players do not show.

    Args:
        path: the ``.mp4`` to write (written under a temporary name, then renamed).
        frames: (H, W, 3) uint8 RGB arrays, all of one even width and height.
        fps: frame rate.
        crf: x264 quality (0 .. 51; 18 looks lossless); not used with ``lossless``.
        lossless: store the RGB pixels exactly.

    Returns:
        the number of frames written.
    """
    av = _av()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    count = 0
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            rate = Fraction(fps).limit_denominator(1001)
            if lossless:
                stream = out.add_stream("libx264rgb", rate=rate)
                stream.pix_fmt = "rgb24"
                stream.options = {"qp": "0", "preset": "veryfast"}
            else:
                stream = out.add_stream("libx264", rate=rate)
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            stream.codec_context.thread_count = 1  # x264's output depends on its thread count
            stream.codec_context.gop_size = max(1, round(2 * fps))  # a key frame every 2 s
            for image in frames:
                if count == 0:
                    stream.height, stream.width = image.shape[:2]
                    if stream.width % 2 or stream.height % 2:
                        raise ValueError(f"frame size {image.shape[1]}x{image.shape[0]} is odd")
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    out.mux(packet)
                count += 1
            if count == 0:
                raise ValueError(f"no frames to write to {path}")
            for packet in stream.encode():
                out.mux(packet)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count
