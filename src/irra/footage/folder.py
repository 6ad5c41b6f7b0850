"""A folder of frames in the MOTChallenge sequence layout.

``SEQ/img1/000001.jpg, 000002.jpg, ...`` (the file name is the frame number) with
``SEQ/seqinfo.ini``::

    [Sequence]
    name=MOT17-04   imDir=img1   frameRate=30   seqLength=1050
    imWidth=1920    imHeight=1080   imExt=.jpg

The frame rate, the image folder and the extension come from ``seqinfo.ini`` when it is there;
without it the folder's images are read at ``fps`` (default :data:`DEFAULT_FPS`) and the log
says so. Either the sequence folder or its image folder may be given.
"""

from __future__ import annotations

import configparser
import logging
import os
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from irra.footage.errors import FootageError
from irra.footage.frame import Frame, ReadReport, check_every

logger = logging.getLogger(__name__)

DEFAULT_FPS = 25.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SEQINFO = "seqinfo.ini"


def _read_seqinfo(path: Path) -> dict[str, str]:
    ini = configparser.ConfigParser()
    ini.optionxform = str
    try:
        ini.read_string(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, configparser.Error) as err:
        raise FootageError(
            f"{path}: not a readable seqinfo.ini ({err}); fix it or delete it to read the "
            "frames without it"
        ) from err
    if "Sequence" not in ini:
        raise FootageError(
            f"{path}: has no [Sequence] section; write one (frameRate=..., imDir=img1, "
            "imExt=.jpg) or delete the file"
        )
    return dict(ini["Sequence"])


def _positive(info: dict[str, str], key: str, path: Path) -> float | None:
    if key not in info:
        return None
    try:
        value = float(info[key])
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise FootageError(f"{path}: {key}={info[key]!r} is not a positive number; correct it")
    return value


class FrameFolder:
    """The frames of a MOTChallenge sequence folder.

    Args:
        path: the sequence folder (holding ``img1/`` and ``seqinfo.ini``) or the image folder.
        fps: frame rate when the folder has no ``seqinfo.ini`` (or it gives none).

    Raises:
        FootageError: no such folder, no frame images, file names that are not frame numbers,
            or a malformed ``seqinfo.ini``.

    Example:
        >>> seq = FrameFolder("MOT17/train/MOT17-04-FRCNN")  # doctest: +SKIP
        >>> seq.fps, seq.size, len(seq.files)  # doctest: +SKIP
        (30.0, (1920, 1080), 1050)
    """

    def __init__(self, path: str | os.PathLike[str], *, fps: float | None = None) -> None:
        self.path = Path(path)
        self.report = ReadReport()
        if not self.path.is_dir():
            raise FootageError(f"{self.path}: no such frame folder; check the path")
        info_path = self.path / SEQINFO
        if not info_path.is_file() and (self.path.parent / SEQINFO).is_file():
            info_path = self.path.parent / SEQINFO  # the image folder itself was given
        info = _read_seqinfo(info_path) if info_path.is_file() else {}
        rate = _positive(info, "frameRate", info_path)
        if rate is None:
            rate = fps or DEFAULT_FPS
            reason = f"no {SEQINFO}" if not info else f"{info_path} gives no frameRate"
            logger.warning(
                "%s: %s; reading frames at %g fps (frame times are frame / %g). Fix: write "
                "a %s with frameRate=... (or pass the rate)",
                self.path,
                reason,
                rate,
                rate,
                SEQINFO,
            )
        self.fps: float = rate
        if info and info_path.parent != self.path:  # the image folder itself was given
            images = self.path
        else:
            images = self.path / info.get("imDir", "img1")
            if not info and not images.is_dir():  # a bare folder of numbered frames
                images = self.path
        self.image_dir = images
        self.files = self._frame_files(images, info.get("imExt"))
        self.name = info.get("name", self.path.name)
        self.declared_length = _positive(info, "seqLength", info_path)
        width, height = (
            _positive(info, "imWidth", info_path),
            _positive(info, "imHeight", info_path),
        )
        if width is None or height is None:
            with Image.open(next(iter(self.files.values()))) as first:
                width, height = first.size
        self.size = (int(width), int(height))
        if self.declared_length is not None and int(self.declared_length) != len(self.files):
            logger.warning(
                "%s: seqLength=%d but %d frame files are in %s",
                info_path,
                int(self.declared_length),
                len(self.files),
                images,
            )

    def __repr__(self) -> str:
        return f"FrameFolder({str(self.path)!r}, fps={self.fps:g}, frames={len(self.files)})"

    def _frame_files(self, folder: Path, ext: str | None) -> dict[int, Path]:
        if not folder.is_dir():
            raise FootageError(
                f"{self.path}: no image folder {folder.name}/; a MOTChallenge sequence holds its "
                "frames in img1/000001.jpg, img1/000002.jpg, ..."
            )
        suffixes = (ext.lower(),) if ext else IMAGE_SUFFIXES
        files = sorted(
            p
            for p in folder.iterdir()
            if p.suffix.lower() in suffixes and not p.name.startswith(".")
        )
        if not files:
            raise FootageError(
                f"{folder}: no frame images ({', '.join(suffixes)}); a MOTChallenge sequence "
                "holds img1/000001.jpg, img1/000002.jpg, ..."
            )
        bad = [p.name for p in files if not p.stem.isdigit() or int(p.stem) < 1]
        if bad:
            raise FootageError(
                f"{folder}: frame files must be named by frame number (000001.jpg, ...); found "
                f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}. Rename or move them"
            )
        numbered: dict[int, Path] = {}
        for p in files:
            if int(p.stem) in numbered:
                raise FootageError(
                    f"{folder}: {numbered[int(p.stem)].name} and {p.name} are both frame "
                    f"{int(p.stem)}; keep one"
                )
            numbered[int(p.stem)] = p
        return dict(sorted(numbered.items()))

    def _decode(self, number: int) -> np.ndarray:
        path = self.files[number]
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB"))

    def frames(self, every: int = 1, only: Collection[int] | None = None) -> Iterator[Frame]:
        """Frames ``1, 1 + every, ...`` that exist (those in ``only``, if given); unreadable
        files are skipped and reported."""
        every = check_every(every)
        self.report = report = ReadReport()
        for number in self.files:
            if (number - 1) % every or (only is not None and number not in only):
                continue
            try:
                image = self._decode(number)
            except (OSError, SyntaxError, ValueError) as err:
                report.problems.append(f"{self.files[number]}: cannot read it ({err}); skipped")
                logger.warning("%s", report.problems[-1])
                continue
            report.decoded += 1
            report.last_frame = number
            yield Frame(number, (number - 1) / self.fps, image)
        report.last_frame = max(self.files)
        if report.decoded == 0 and (only is None or any(n in self.files for n in only)):
            raise FootageError(f"{self.image_dir}: none of the frame images could be read")

    def frame(self, number: int) -> Frame:
        """Frame ``number`` (1-based).

        Raises:
            FootageError: there is no such frame file, or it does not decode.
        """
        if number not in self.files:
            raise FootageError(
                f"{self.image_dir}: no frame {number} (frames {min(self.files)}..{max(self.files)})"
            )
        try:
            image = self._decode(number)
        except (OSError, SyntaxError, ValueError) as err:
            raise FootageError(f"{self.files[number]}: cannot read it ({err})") from err
        return Frame(number, (number - 1) / self.fps, image)
