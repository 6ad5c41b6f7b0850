"""Finding gallery images on disk and reading optional identity / camera / time labels."""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from irra.retrieval.capture import parse_time

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


class GalleryError(ValueError):
    """Bad gallery input (folder, image file or labels file); the message names it and the fix."""


@dataclass(frozen=True)
class ImageFile:
    """One image found under the gallery root.

    ``path`` is relative to the root with ``/`` separators (the key of the image in an index);
    ``size`` is in bytes and ``mtime_ns`` the modification time in nanoseconds.
    """

    path: str
    size: int
    mtime_ns: int


def scan_images(root: str | os.PathLike[str]) -> list[ImageFile]:
    """Every image file under ``root`` (recursive), sorted by relative path.

    Files whose extension (case-insensitive) is not one of :data:`IMAGE_EXTENSIONS`, hidden
    files and folders, and symbolic links are skipped (a link could point outside the root).

    Raises:
        GalleryError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise GalleryError(f"{root}: not a folder; pass --images a folder of person crops")
    found: list[ImageFile] = []
    links = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            full = Path(folder) / name
            if full.is_symlink():
                links += 1
                continue
            stat = full.stat()
            rel = full.relative_to(root).as_posix()
            found.append(ImageFile(rel, stat.st_size, stat.st_mtime_ns))
    if links:
        logger.warning("%s: skipped %d symbolic links (index the files they point to)", root, links)
    found.sort(key=lambda f: f.path)
    return found


def stat_image(root: str | os.PathLike[str], rel: str) -> ImageFile:
    """The :class:`ImageFile` of ``root / rel`` (which must be a regular image file)."""
    full = Path(root) / rel
    if full.is_symlink() or not full.is_file():
        raise GalleryError(f"{full}: not a regular file")
    if full.suffix.lower() not in IMAGE_EXTENSIONS:
        raise GalleryError(
            f"{full}: not an image file; supported: {', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    stat = full.stat()
    return ImageFile(Path(rel).as_posix(), stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class Label:
    """What a labels file says about one image; ``time`` in UNIX seconds (UTC)."""

    identity: str | None = None
    camera: str | None = None
    time: float | None = None


Labels = dict[str, Label]
_PATH_KEYS = ("path", "file_path", "img_path")
_ID_KEYS = ("identity", "id", "pid")
_CAMERA_KEYS = ("camera", "cam", "camid")
_TIME_KEYS = ("time",)


def read_labels(path: str | os.PathLike[str]) -> Labels:
    """Identity, camera and capture time of images, keyed by path relative to the gallery root.

    Reads either a CSV file with a header naming a path column (``path``, ``file_path`` or
    ``img_path``) and optional ``identity``/``id``, ``camera``/``cam`` and ``time`` columns, or a
    JSON list of objects with the same keys (the annotation files of CUHK-PEDES, ICFG-PEDES and
    RSTPReid work as they are). ``time`` is ISO 8601 (see :func:`irra.retrieval.capture.parse_time`;
    no offset = UTC).

    Raises:
        GalleryError: unreadable file, no path column, an entry without a path, or a time that
            is not ISO 8601.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise GalleryError(f"{path}: cannot read the labels file ({err})") from err
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise GalleryError(f"{path}: not valid JSON ({err})") from err
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise GalleryError(f"{path}: expected a JSON list of objects, one per image")
    else:
        rows = list(csv.DictReader(text.splitlines()))
    labels: Labels = {}
    for number, row in enumerate(rows):
        rel = _first(row, _PATH_KEYS)
        where = f"entry {number}" if path.suffix.lower() == ".json" else f"line {number + 2}"
        if rel is None:
            raise GalleryError(
                f"{path}: {where} has no image path; name it in a column or key "
                f"{' / '.join(_PATH_KEYS)} (relative to the --images folder)"
            )
        text_time = _first(row, _TIME_KEYS)
        try:
            seconds = parse_time(text_time) if text_time is not None else None
        except ValueError as err:
            raise GalleryError(f"{path}: {where} ({rel}): time {err}") from None
        labels[Path(rel).as_posix()] = Label(
            _first(row, _ID_KEYS), _first(row, _CAMERA_KEYS), seconds
        )
    return labels


def _first(row: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = row.get(key)
        if value is not None and str(value).strip() != "":
            return str(value).strip()
    return None
