"""The three public benchmark formats and one reader for all of them.

All formats are one JSON list of image entries (``split``, ``id``, ``captions`` and the image
path) plus an image folder, laid out as ``<root>/<NAME>/<annotation>`` and
``<root>/<NAME>/imgs/<path>``; ``root`` may also point at the ``<NAME>`` folder itself. A format
differs from another only in a few facts, held by a :class:`DatasetFormat`:

============  =====================  ==========  =================
name          annotation file        image key   train id offset
============  =====================  ==========  =================
CUHK-PEDES    ``reid_raw.json``      file_path   -1 (ids 1..11003)
ICFG-PEDES    ``ICFG-PEDES.json``    file_path   0
RSTPReid      ``data_captions.json`` img_path    0
============  =====================  ==========  =================

Split names other than ``train`` and ``test`` count as ``val``. Entry order is kept everywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from irra.data.validate import (
    DatasetError,
    OnError,
    ProgressFn,
    ValidationReport,
    check_layout,
    load_annotation_list,
    validate_entries,
)

__all__ = [
    "DatasetFormat",
    "FORMATS",
    "SPLITS",
    "PedesData",
    "SplitData",
    "TrainSample",
    "build_splits",
    "get_format",
    "read_dataset",
    "resolve_dataset_dir",
]

logger = logging.getLogger(__name__)

#: Canonical split names, in display order.
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetFormat:
    """What distinguishes one benchmark's files from another's.

    Attributes:
        name: the dataset name, also its folder name under the data root.
        annotation_file: the JSON list's file name inside the dataset folder.
        image_key: the entry key holding the image path (relative to ``images_dir``).
        train_id_offset: added to training ids so they run 0..N-1 (eval ids are kept as is).
        images_dir: the image folder's name inside the dataset folder.
    """

    name: str
    annotation_file: str
    image_key: str
    train_id_offset: int = 0
    images_dir: str = "imgs"

    @staticmethod
    def split_of(raw: str) -> str:
        """``'train'`` and ``'test'`` stay; any other split name means ``'val'``."""
        return raw if raw in ("train", "test") else "val"

    def train_pid(self, file_id: int) -> int:
        """The training class index of a training entry's id."""
        return file_id + self.train_id_offset


FORMATS: dict[str, DatasetFormat] = {
    "CUHK-PEDES": DatasetFormat("CUHK-PEDES", "reid_raw.json", "file_path", train_id_offset=-1),
    "ICFG-PEDES": DatasetFormat("ICFG-PEDES", "ICFG-PEDES.json", "file_path"),
    "RSTPReid": DatasetFormat("RSTPReid", "data_captions.json", "img_path"),
}


def get_format(name: str) -> DatasetFormat:
    """The format called ``name`` (case-insensitive); an unknown name lists the valid ones."""
    for key, fmt in FORMATS.items():
        if key.lower() == name.lower():
            return fmt
    raise KeyError(f"unknown dataset {name!r}; valid names: {', '.join(FORMATS)}")


@dataclass(frozen=True)
class TrainSample:
    """One training sample (one caption of one image)."""

    pid: int
    image_id: int
    image_path: Path
    caption: str


@dataclass
class SplitData:
    """One split as parallel lists, in file order.

    Attributes:
        name: ``'train'``, ``'val'`` or ``'test'``.
        image_paths: absolute image paths, one per image (gallery items).
        image_pids: (num_images) identity of each image; training ids carry the format offset.
        captions: every caption of every image, image by image.
        caption_pids: (num_captions) identity of each caption (= its image's).
        caption_image_index: (num_captions) index into ``image_paths`` of each caption's image.
    """

    name: str
    image_paths: list[Path] = field(default_factory=list)
    image_pids: list[int] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    caption_pids: list[int] = field(default_factory=list)
    caption_image_index: list[int] = field(default_factory=list)

    @property
    def num_ids(self) -> int:
        return len(set(self.image_pids))

    @property
    def num_images(self) -> int:
        return len(self.image_paths)

    @property
    def num_captions(self) -> int:
        return len(self.captions)

    def samples(self) -> list[TrainSample]:
        """One sample per caption; ``image_id`` is the image's index within this split."""
        return [
            TrainSample(pid, image, self.image_paths[image], caption)
            for pid, image, caption in zip(
                self.caption_pids, self.caption_image_index, self.captions, strict=True
            )
        ]


@dataclass
class PedesData:
    """A dataset read from disk: its splits (only those present) and the validation report."""

    format: DatasetFormat
    dataset_dir: Path
    splits: dict[str, SplitData]
    report: ValidationReport | None = None

    def split(self, name: str) -> SplitData:
        """The split ``name``; raise listing the present splits if it is absent."""
        if name not in self.splits:
            raise KeyError(
                f"{self.format.name} in {self.dataset_dir} has no {name!r} split; "
                f"present: {', '.join(self.splits) or 'none'}"
            )
        return self.splits[name]

    @property
    def train(self) -> SplitData | None:
        return self.splits.get("train")

    @property
    def val(self) -> SplitData | None:
        return self.splits.get("val")

    @property
    def test(self) -> SplitData | None:
        return self.splits.get("test")

    @property
    def num_classes(self) -> int:
        """Number of training identities (the ID classifier's width); 0 without a train split."""
        return self.train.num_ids if self.train is not None else 0

    def summary(self) -> list[dict[str, int | str]]:
        """One row per present split: ``{'split', 'ids', 'images', 'captions'}``."""
        return [
            {"split": s.name, "ids": s.num_ids, "images": s.num_images, "captions": s.num_captions}
            for s in self.splits.values()
        ]

    def summary_table(self) -> str:
        """The summary as an aligned text table."""
        rows = [["split", "ids", "images", "captions"]]
        rows += [[str(row[k]) for k in rows[0]] for row in self.summary()]
        widths = [max(len(row[c]) for row in rows) for c in range(4)]
        lines = [
            "  ".join(
                cell.ljust(w) if c == 0 else cell.rjust(w)
                for c, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return f"{self.format.name} ({self.dataset_dir})\n" + "\n".join(lines)


def resolve_dataset_dir(root: Path | str, fmt: DatasetFormat) -> Path:
    """``<root>/<NAME>`` if it exists, else ``root`` itself if it holds the annotation file."""
    root = Path(root).expanduser()
    nested = root / fmt.name
    if nested.is_dir():
        return nested
    if (root / fmt.annotation_file).is_file() or (root / fmt.images_dir).is_dir():
        return root
    raise DatasetError(
        f"{fmt.name} not found under {root}: neither {nested} nor "
        f"{root / fmt.annotation_file} exists. Fix: pass --root pointing at the folder that "
        f"contains {fmt.name}/ (or at {fmt.name}/ itself)"
    )


def build_splits(entries: list[dict], fmt: DatasetFormat, images_dir: Path) -> dict[str, SplitData]:
    """Group validated entries by split (file order kept); training ids get the format offset."""
    images_dir = Path(images_dir).resolve()
    splits: dict[str, SplitData] = {}
    for entry in entries:
        name = fmt.split_of(entry["split"])
        split = splits.setdefault(name, SplitData(name))
        pid = fmt.train_pid(entry["id"]) if name == "train" else entry["id"]
        image_index = len(split.image_paths)
        split.image_paths.append(images_dir / entry[fmt.image_key])
        split.image_pids.append(pid)
        for caption in entry["captions"]:
            split.captions.append(caption)
            split.caption_pids.append(pid)
            split.caption_image_index.append(image_index)
    return {name: splits[name] for name in SPLITS if name in splits}


def read_dataset(
    name: str,
    root: Path | str,
    *,
    on_error: OnError = "fail",
    check_images: bool = True,
    num_workers: int = 8,
    progress: ProgressFn | None = None,
    run_dir: Path | str | None = None,
) -> PedesData:
    """Read and validate a benchmark dataset.

    Args:
        name: one of :data:`FORMATS` (case-insensitive).
        root: the data root holding ``<NAME>/``, or the ``<NAME>/`` folder itself.
        on_error, check_images, num_workers, progress, run_dir: see
            :func:`irra.data.validate.validate_entries`.

    Returns:
        a :class:`PedesData` with the splits present in the file.

    Raises:
        KeyError: unknown ``name``.
        DatasetError: missing files or bad entries (see :mod:`irra.data.validate`).

    Example:
        >>> data = read_dataset("CUHK-PEDES", "~/datasets")  # doctest: +SKIP
        >>> data.train.samples()[0].caption  # doctest: +SKIP
    """
    fmt = get_format(name)
    dataset_dir = resolve_dataset_dir(root, fmt)
    annotation, images_dir = check_layout(dataset_dir, fmt)
    entries = load_annotation_list(annotation)
    report = validate_entries(
        entries,
        fmt,
        annotation,
        images_dir,
        on_error=on_error,
        check_images=check_images,
        num_workers=num_workers,
        progress=progress,
        run_dir=run_dir,
    )
    splits = build_splits([entries[i] for i in report.kept], fmt, images_dir)
    data = PedesData(fmt, dataset_dir, splits, report)
    logger.info("%s", data.summary_table())
    return data
