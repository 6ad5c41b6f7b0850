"""Checks on an annotation file and its images before anything trains on them.

Two kinds of problems:

* **Fatal** problems raise :class:`DatasetError` at once whatever the mode: the annotation file or
  the ``imgs/`` folder is missing, the file is not JSON or not a JSON list, or the training ids are
  not contiguous ``0..N-1`` after the format's offset (no entry can be dropped to fix that).
* **Entry** problems concern one entry of the list: not an object, a missing key, a value of the
  wrong type, an empty caption list, an empty or non-string caption, an id that is negative after
  the training offset, an image listed twice (the second occurrence is the bad one), an image file
  that does not exist or (with ``check_images``) does not decode.

``on_error="fail"`` (default) checks **every** entry, then raises one :class:`DatasetError` that
lists the first :data:`MAX_LISTED` problems and the total count (so one run shows what to fix).
``on_error="skip"`` drops the bad entries, logs how many, and writes the complete list to
``<run_dir>/skipped_entries.json`` (or, without ``run_dir``, logs each one). Nothing is skipped
silently. In both modes, when ``run_dir`` is given, the full problem list is written there.

Each image is opened once, with no retries; decoding runs on a thread pool (PIL releases the GIL
while decoding) and reports progress through an optional ``progress(done, total)`` callable.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from irra.imageio import ImageDecodeError, load_image

if TYPE_CHECKING:
    from irra.data.formats import DatasetFormat

__all__ = [
    "DatasetError",
    "Issue",
    "ValidationReport",
    "MAX_LISTED",
    "SKIPPED_FILENAME",
    "check_image",
    "check_layout",
    "load_annotation_list",
    "validate_entries",
]

logger = logging.getLogger(__name__)

#: How many problems a :class:`DatasetError` lists in its message.
MAX_LISTED = 10
#: The file (inside ``run_dir``) that lists every skipped or failing entry.
SKIPPED_FILENAME = "skipped_entries.json"

OnError = Literal["fail", "skip"]
ProgressFn = Callable[[int, int], None]

_FIX_ENTRY = "correct this entry in the annotation file, or pass on_error='skip' (--on-error skip)"


class DatasetError(ValueError):
    """An annotation file, its image folder or one of its entries cannot be used."""


@dataclass(frozen=True)
class Issue:
    """One bad entry: its index in the JSON list, its image path (if readable) and the problem."""

    index: int
    image: str | None
    problem: str
    fix: str = _FIX_ENTRY

    def format(self, annotation_path: Path | str) -> str:
        where = f"entry {self.index}" + (f" (image {self.image!r})" if self.image else "")
        return f"{annotation_path}: {where}: {self.problem}. Fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "image": self.image, "problem": self.problem}


@dataclass
class ValidationReport:
    """What :func:`validate_entries` found.

    Attributes:
        annotation_path: the checked file.
        num_entries: entries in the file.
        kept: indices (into the JSON list) of the entries that passed, in file order.
        issues: the bad entries, sorted by index.
        images_checked: whether images were decoded (existence is always checked).
        issues_file: where the full list of issues was written, if anywhere.
    """

    annotation_path: Path
    num_entries: int
    kept: list[int] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    images_checked: bool = True
    issues_file: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.issues

    def describe(self) -> str:
        """A short human-readable verdict."""
        decoded = "images decoded" if self.images_checked else "images not decoded"
        head = f"{self.annotation_path}: {self.num_entries} entries, {decoded}"
        if self.ok:
            return f"{head}: all valid"
        lines = [f"{head}: {len(self.issues)} bad entries, {len(self.kept)} kept"]
        lines += ["  " + issue.format(self.annotation_path) for issue in self.issues[:MAX_LISTED]]
        if len(self.issues) > MAX_LISTED:
            lines.append(f"  ... and {len(self.issues) - MAX_LISTED} more")
        if self.issues_file is not None:
            lines.append(f"  full list: {self.issues_file}")
        return "\n".join(lines)


def check_layout(dataset_dir: Path, fmt: DatasetFormat) -> tuple[Path, Path]:
    """The annotation file and the image folder of ``dataset_dir``; raise if either is missing."""
    annotation = dataset_dir / fmt.annotation_file
    images = dataset_dir / fmt.images_dir
    if not annotation.is_file():
        raise DatasetError(
            f"{annotation}: annotation file not found. Fix: put the {fmt.name} annotation file "
            f"'{fmt.annotation_file}' in {dataset_dir} (layout <root>/{fmt.name}/"
            f"{fmt.annotation_file} and <root>/{fmt.name}/{fmt.images_dir}/)"
        )
    if not images.is_dir():
        raise DatasetError(
            f"{images}: image folder not found (needed by {annotation}). Fix: put the {fmt.name} "
            f"images in {images}, keeping the relative paths of the annotation file"
        )
    return annotation, images


def load_annotation_list(path: Path) -> list[Any]:
    """Parse ``path`` as a JSON list; raise :class:`DatasetError` otherwise."""
    try:
        # utf-8-sig: a byte-order mark (left by some editors) is read, not refused
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path}: not UTF-8 text ({exc}). Fix: restore the original annotation file, or "
            "re-save it as UTF-8"
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}: not valid JSON ({exc}). Fix: restore the original annotation file"
        ) from exc
    except RecursionError as exc:
        raise DatasetError(
            f"{path}: not an annotation file (JSON nested too deeply to read). Fix: restore the "
            "original annotation file"
        ) from exc
    if not isinstance(data, list):
        raise DatasetError(
            f"{path}: expected a JSON list of image entries, found a {type(data).__name__}. "
            "Fix: restore the original annotation file (one list of objects)"
        )
    return data


def check_image(path: Path) -> str | None:
    """Decode ``path`` once (:func:`irra.imageio.load_image`); a problem description or None."""
    if not path.is_file():
        return "image file does not exist"
    try:
        load_image(path)
    except ImageDecodeError as exc:
        return f"image does not decode ({str(exc).removeprefix(f'{path}: ')})"
    return None


def _entry_problem(entry: Any, fmt: DatasetFormat) -> str | None:
    """The first structural problem of one entry, or None."""
    if not isinstance(entry, dict):
        return f"entry is a {type(entry).__name__}, expected a JSON object"
    required = ("split", "id", "captions", fmt.image_key)
    missing = [key for key in required if key not in entry]
    if missing:
        return f"missing key(s) {missing} (present: {sorted(entry)})"
    if not isinstance(entry["split"], str):
        return f"'split' is a {type(entry['split']).__name__}, expected a string"
    pid = entry["id"]
    if isinstance(pid, bool) or not isinstance(pid, int):
        return f"'id' is {pid!r} ({type(pid).__name__}), expected an integer"
    path = entry[fmt.image_key]
    if not isinstance(path, str) or not path.strip():
        return f"'{fmt.image_key}' is {path!r}, expected a non-empty relative path string"
    captions = entry["captions"]
    if not isinstance(captions, list):
        return f"'captions' is a {type(captions).__name__}, expected a list of strings"
    if not captions:
        return "'captions' is an empty list; every image needs at least one caption"
    for k, caption in enumerate(captions):
        if not isinstance(caption, str):
            return f"captions[{k}] is a {type(caption).__name__}, expected a string"
        if not caption.strip():
            return f"captions[{k}] is empty"
    if fmt.split_of(entry["split"]) == "train" and fmt.train_pid(pid) < 0:
        return (
            f"training id {pid} becomes {fmt.train_pid(pid)} after the {fmt.name} offset "
            f"{fmt.train_id_offset:+d}; training ids must map to 0..N-1"
        )
    return None


def _image_label(entry: Any, fmt: DatasetFormat) -> str | None:
    if isinstance(entry, dict) and isinstance(entry.get(fmt.image_key), str):
        return entry[fmt.image_key]
    return None


def _decode_all(
    paths: Sequence[Path], num_workers: int, progress: ProgressFn | None
) -> list[str | None]:
    results: list[str | None] = []
    total = len(paths)
    if progress is not None:
        progress(0, total)
    if num_workers <= 1:
        mapped = map(check_image, paths)
        executor = None
    else:
        executor = ThreadPoolExecutor(max_workers=num_workers)
        mapped = executor.map(check_image, paths, chunksize=64)
    try:
        for done, result in enumerate(mapped, start=1):
            results.append(result)
            if progress is not None:
                progress(done, total)
    finally:
        if executor is not None:
            executor.shutdown(wait=True)
    return results


def _check_train_ids(
    entries: Sequence[Any], kept: Sequence[int], fmt: DatasetFormat, annotation: Path, skipped: int
) -> None:
    pids = {
        fmt.train_pid(entries[i]["id"])
        for i in kept
        if fmt.split_of(entries[i]["split"]) == "train"
    }
    if not pids:
        return
    expected = set(range(max(pids) + 1))
    missing = sorted(expected - pids)
    if missing:
        shown = ", ".join(str(pid) for pid in missing[:20]) + (" ..." if len(missing) > 20 else "")
        extra = f" ({skipped} entries were skipped as bad, which may have removed them)"
        raise DatasetError(
            f"{annotation}: training ids are not contiguous 0..{max(pids)} after the {fmt.name} "
            f"offset {fmt.train_id_offset:+d}: {len(missing)} id(s) have no training image: "
            f"{shown}{extra if skipped else ''}. Fix: give those ids training images, or renumber "
            "the training ids so they run from the first id without gaps"
        )


def _write_issues(run_dir: Path, annotation: Path, issues: Sequence[Issue], mode: str) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / SKIPPED_FILENAME
    payload = {
        "annotation": str(annotation),
        "on_error": mode,
        "count": len(issues),
        "entries": [issue.to_dict() for issue in issues],
    }
    out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return out


def validate_entries(
    entries: Sequence[Any],
    fmt: DatasetFormat,
    annotation_path: Path,
    images_dir: Path,
    *,
    on_error: OnError = "fail",
    check_images: bool = True,
    num_workers: int = 8,
    progress: ProgressFn | None = None,
    run_dir: Path | str | None = None,
) -> ValidationReport:
    """Check every entry of an annotation list (see the module docstring for the rules).

    Args:
        entries: the parsed JSON list.
        fmt: the dataset format (image key, id offset, split naming).
        annotation_path: the file ``entries`` came from (for messages).
        images_dir: the folder image paths are relative to.
        on_error: ``"fail"`` raises after checking everything; ``"skip"`` drops bad entries.
        check_images: decode each image (slow for 34k images); existence is always checked.
        num_workers: decoding threads (1 = in this thread).
        progress: called as ``progress(done, total)`` while images are decoded.
        run_dir: if given, the full problem list is written to ``run_dir/skipped_entries.json``.

    Returns:
        a :class:`ValidationReport` whose ``kept`` lists the usable entries.

    Raises:
        DatasetError: on any problem with ``on_error="fail"``; on non-contiguous training ids in
            both modes.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    annotation_path = Path(annotation_path)
    issues: dict[int, Issue] = {}
    seen: dict[str, int] = {}
    to_open: list[int] = []
    for index, entry in enumerate(entries):
        problem = _entry_problem(entry, fmt)
        label = _image_label(entry, fmt)
        if problem is None:
            key = os.path.normpath(entry[fmt.image_key])
            if key in seen:
                problem = f"image already listed by entry {seen[key]} (duplicate image entry)"
                fix = f"remove one of entries {seen[key]} and {index} (merge their captions)"
                issues[index] = Issue(index, label, problem, fix)
                continue
            seen[key] = index
            to_open.append(index)
        else:
            issues[index] = Issue(index, label, problem)
    paths = [images_dir / entries[i][fmt.image_key] for i in to_open]
    if check_images:
        results = _decode_all(paths, num_workers, progress)
    else:
        results = [None if p.is_file() else "image file does not exist" for p in paths]
    for index, path, result in zip(to_open, paths, results, strict=True):
        if result is not None:
            fix = f"restore the image at {path}, or pass on_error='skip' (--on-error skip)"
            issues[index] = Issue(index, entries[index][fmt.image_key], result, fix)

    ordered = [issues[i] for i in sorted(issues)]
    report = ValidationReport(
        annotation_path=annotation_path,
        num_entries=len(entries),
        kept=[i for i in range(len(entries)) if i not in issues],
        issues=ordered,
        images_checked=check_images,
    )
    if ordered and run_dir is not None:
        report.issues_file = _write_issues(Path(run_dir), annotation_path, ordered, on_error)
    if ordered and on_error == "fail":
        raise DatasetError(
            report.describe()
            + "\nFix the entries listed, or pass on_error='skip' (--on-error skip) to drop them."
        )
    if ordered:
        where = report.issues_file or "the warnings below"
        logger.warning(
            "%s: skipped %d of %d entries (listed in %s)",
            annotation_path,
            len(ordered),
            len(entries),
            where,
        )
        if report.issues_file is None:
            for issue in ordered:
                logger.warning("skipped: %s", issue.format(annotation_path))
    _check_train_ids(entries, report.kept, fmt, annotation_path, len(ordered))
    return report
