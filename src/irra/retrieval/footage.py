"""Indexing footage: person crops of videos and frame folders, with where and when each was seen.

For every source (a video file or a MOTChallenge frame folder) the boxes come from a MOTChallenge
detections file or a person detector. Unless the index is built ``per_frame``, the boxes are
linked into tracks (the file's ids when every box has one, else
:func:`irra.footage.track_detections`) and each track keeps ``per_track`` representative crops
(:func:`irra.footage.select_detections`), so a person walking past for ten seconds is a few
entries, not hundreds. The crops are cut from the decoded frames, stored as PNG (lossless:
cutting the recorded box from the recorded frame gives the stored pixels) under
``INDEX/crops/<source>-<signature>/``, encoded, and appended with their provenance (source,
frame, time, box, track, camera).

Incremental: the manifest lists every indexed source with its signature (path, size,
modification time, detections file, camera, start, sampling); a later run skips the sources
whose signature is unchanged, re-indexes the changed ones (their old rows and crops deleted)
and keeps the others. The crops of a source are appended as they are encoded
(:func:`irra.retrieval.build.apply_changes`); its signature is recorded once all are in. A run
that fails removes what it added of the source it was reading; a run that is killed leaves
that source without a signature, so the next run deletes its rows and reads it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from irra.footage import (
    CropReport,
    Detection,
    DetectionSet,
    FootageError,
    FrameSource,
    iter_crops,
    open_footage,
    read_mot,
    select_detections,
)
from irra.footage.folder import FrameFolder
from irra.footage.frame import check_every
from irra.inference.protocol import EmbeddingEncoder, Progress
from irra.retrieval.build import apply_changes, discard_store, open_for_update, store_settings
from irra.retrieval.store import (
    ImageRecord,
    IndexStoreError,
    RowSelector,
    is_milvus,
    store_exists,
)

logger = logging.getLogger(__name__)

CROPS = "crops"
#: Representative crops kept per track (see :func:`irra.footage.representatives`).
PER_TRACK = 3

#: ``detect(source, every) -> DetectionSet``: boxes of a source from a person detector.
Detect = Callable[[FrameSource, int], DetectionSet]


@dataclass(frozen=True)
class FootageSource:
    """One piece of footage to index.

    Attributes:
        path: a video file or a MOTChallenge sequence folder.
        detections: its MOTChallenge detections file; None: the folder's ``det/det.txt``, or
            the detector given to :func:`build_footage_index`.
        camera: camera name of every crop.
        start: UNIX time (seconds, UTC) of the first frame; None: crops have no capture time.
        fps: frame rate of a folder without ``seqinfo.ini`` (default 25, with a warning).
    """

    path: Path
    detections: Path | None = None
    camera: str | None = None
    start: float | None = None
    fps: float | None = None


@dataclass
class FootageReport:
    """What a footage build did.

    Attributes:
        indexed: sources read in this run; ``kept``: unchanged sources not read again.
        crops: crops stored and encoded in this run; ``total``: entries in the index.
        boxes: boxes read (after sampling) in this run; ``tracks``: tracks they formed.
        clipped, outside: boxes clipped to the frame, boxes outside it dropped.
        problems: what could not be read (truncated videos, unreadable frames, boxes beyond the
            last frame), each naming the file.
    """

    indexed: int = 0
    kept: int = 0
    crops: int = 0
    total: int = 0
    boxes: int = 0
    tracks: int = 0
    clipped: int = 0
    outside: int = 0
    problems: list[str] = field(default_factory=list)
    location: str | None = None


def _file_state(path: Path) -> list[int]:
    """[size, mtime_ns] of a file; of a folder, [file count + total size, newest mtime_ns]."""
    if path.is_file():
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]
    total, newest = 0, 0
    for entry in os.scandir(path):
        if entry.is_file():
            stat = entry.stat()
            total += stat.st_size + 1
            newest = max(newest, stat.st_mtime_ns)
    return [total, newest]


def _detections_file(source: FootageSource, footage: FrameSource, detector: bool) -> Path | None:
    """The detections file of a source: its own, else (without a detector) ``det/det.txt``."""
    if source.detections is not None:
        return source.detections.resolve()
    if isinstance(footage, FrameFolder) and not detector:
        candidate = footage.path / "det" / "det.txt"
        if candidate.is_file():
            return candidate.resolve()
    return None


def signature(
    source: FootageSource, footage: FrameSource, detections: Path | None, settings: dict[str, Any]
) -> dict[str, Any]:
    """What identifies an indexed source: a source with the same signature is not read again."""
    frames = footage.image_dir if isinstance(footage, FrameFolder) else footage.path
    return {
        "path": str(footage.path),
        "state": _file_state(frames),
        "detections": None if detections is None else str(detections),
        "detections_state": None if detections is None else _file_state(detections),
        "camera": source.camera,
        "start": source.start,
        **settings,
    }


def _crop_folder(sig: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(sig, sort_keys=True).encode("utf-8")).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(sig["path"]).stem)[:40] or "source"
    return f"{stem}-{digest}"


def _boxes(
    source: FootageSource,
    footage: FrameSource,
    detections: Path | None,
    detect: Detect | None,
    every: int,
    min_conf: float | None,
) -> DetectionSet:
    if detections is not None:
        return read_mot(detections, frame_size=footage.size, min_conf=min_conf)
    if detect is not None:
        return detect(footage, every)
    raise FootageError(
        f"{source.path}: no boxes to cut people from; pass --detections FILE (MOTChallenge "
        "format) or --detector NAME"
    )


def _kept_boxes(
    source: FootageSource,
    footage: FrameSource,
    detections: Path | None,
    detect: Detect | None,
    settings: dict[str, Any],
    report: FootageReport,
) -> list[Detection]:
    """The boxes of one source to store: sampled, then tracked and summarised unless per frame."""
    every, per_track = settings["every"], settings["per_track"]
    boxes = _boxes(source, footage, detections, detect, every, settings["min_conf"])
    report.clipped += boxes.clipped
    report.outside += boxes.outside
    sampled = [d for d in boxes.detections if (d.frame - 1) % every == 0]
    report.boxes += len(sampled)
    if per_track is None:
        kept = sampled
    else:
        kept = select_detections(sampled, per_track=per_track, frame_size=footage.size)
    report.tracks += len({d.track for d in kept if d.track is not None})
    return kept


def _encode_crops(
    encoder: EmbeddingEncoder,
    source: FootageSource,
    footage: FrameSource,
    kept: list[Detection],
    settings: dict[str, Any],
    folder: Path,
    rel: str,
    crop_report: CropReport,
    batch_size: int,
    on_crop: Callable[[], None],
) -> Iterator[tuple[list[ImageRecord], np.ndarray]]:
    """Store and encode the crops of one source, a batch of records and embeddings at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    records: list[ImageRecord] = []
    pictures: list[Image.Image] = []
    seen: dict[int, int] = {}
    for item in iter_crops(footage, kept, every=settings["every"], report=crop_report):
        prov = item.provenance
        n = seen[prov.frame] = seen.get(prov.frame, -1) + 1
        name = f"{prov.frame:07d}-{n:03d}.png"
        picture = Image.fromarray(item.image)
        picture.save(folder / name, format="PNG", compress_level=1)
        stat = (folder / name).stat()
        time = None if source.start is None else source.start + prov.time
        records.append(
            ImageRecord(
                f"{rel}/{name}",
                stat.st_size,
                stat.st_mtime_ns,
                camera=source.camera,
                time=time,
                source=prov.source,
                frame=prov.frame,
                box=prov.box,
                track=prov.track,
            )
        )
        pictures.append(picture)
        on_crop()
        if len(pictures) >= batch_size:
            yield records, encoder.encode_pictures(pictures)
            records, pictures = [], []
    if pictures:
        yield records, encoder.encode_pictures(pictures)


def build_footage_index(
    encoder: EmbeddingEncoder,
    sources: Sequence[FootageSource],
    out: str | os.PathLike[str],
    *,
    every: int = 1,
    per_frame: bool = False,
    per_track: int = PER_TRACK,
    min_conf: float | None = None,
    detect: Detect | None = None,
    detector: str | None = None,
    index_type: str | None = None,
    nlist: int | None = None,
    nprobe: int | None = None,
    rebuild: bool = False,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> FootageReport:
    """Add footage to the index in ``out`` (created if needed): crops, embeddings, provenance.

    Args:
        encoder: the model (the one that built ``out``, unless ``rebuild``).
        sources: videos and frame folders, each with its detections, camera and start time.
        out: index folder.
        every: read frames 1, 1 + every, ...
        per_frame: store every box as its own entry (no tracks); else ``per_track`` crops of
            each track. An index is one or the other.
        min_conf: drop boxes of a detections file below this confidence.
        detect: boxes for sources without a detections file (see :mod:`irra.footage.detector`),
            ``detector`` its name for the signature.
        index_type, nlist, nprobe: see :func:`irra.retrieval.build_index`.
        rebuild: replace the index (another model, another mode) instead of adding to it.
        batch_size: crops per forward pass.
        progress: ``progress(done, total)`` per crop stored (total = boxes to crop this run).

    Raises:
        FootageError: a source or detections file that cannot be used (named, with the fix).
        IndexStoreError: ``out`` is an image-folder index, or was built with another model or
            mode.
    """
    if is_milvus(out):
        raise IndexStoreError(
            f"{out}: footage is indexed into a folder (its crops are stored beside the rows); "
            "use --out DIR"
        )
    out = Path(out)
    if not sources:
        raise FootageError("no footage given; pass --video FILE or --frames DIR")
    if per_track < 1:
        raise ValueError(f"per_track must be at least 1 (--per-track), got {per_track}")
    every = check_every(every)
    mode = None if per_frame else per_track
    settings = {"every": every, "per_track": mode, "min_conf": min_conf, "detector": detector}
    given = [k for k, v in (("index_type", index_type), ("nlist", nlist), ("nprobe", nprobe)) if v]
    wanted = store_settings(
        encoder, out.resolve(), index_type or "flat", nlist, nprobe, footage={"per_track": mode}
    )
    report = FootageReport()
    plans = []
    opened = [open_footage(source.path.resolve(), fps=source.fps) for source in sources]
    fresh = not store_exists(out)
    store = open_for_update(out, wanted, rebuild=rebuild, given=given)
    created: list[Path] = []
    try:
        _check_footage_index(store.settings(), out, mode)
        old_sources = store.sources()
        for source, footage in zip(sources, opened, strict=True):
            detections = _detections_file(source, footage, detect is not None)
            sig = signature(source, footage, detections, settings)
            if any(sig["path"] == planned["path"] for *_, planned in plans):
                raise FootageError(f"{footage.path}: given twice in one run; name each source once")
            previous = {k: v for k, v in old_sources.get(sig["path"], {}).items() if k != "crops"}
            if previous == sig:
                report.kept += 1
                logger.info("%s: unchanged since the last run; kept", footage.path)
                continue
            plans.append((source, footage, detections, sig))
        prepared = []
        for source, footage, detections, sig in plans:
            kept = _kept_boxes(source, footage, detections, detect, settings, report)
            prepared.append((source, footage, kept, CropReport(), sig))
        total = sum(len(p[2]) for p in prepared)
        done = [0]

        def tick() -> None:
            done[0] += 1
            if progress is not None:
                progress(done[0], total)

        for source, footage, kept, crop_report, sig in prepared:
            rel = f"{CROPS}/{_crop_folder(sig)}"
            folder = out / rel
            shutil.rmtree(folder, ignore_errors=True)  # left by a run that was cut short
            created.append(folder)
            stale = store.delete(RowSelector(sources=[sig["path"]]))
            store.set_source(sig["path"], None)
            remove_crop_files(out, [record for _, record in stale])
            batches = _encode_crops(
                encoder, source, footage, kept, settings, folder, rel, crop_report, batch_size, tick
            )
            try:
                _, added = apply_changes(store, [], batches)
            except BaseException:  # what this source added so far goes: no half source stays
                store.delete(RowSelector(sources=[sig["path"]]))
                raise
            store.set_source(sig["path"], {**sig, "crops": _crop_folder(sig)})
            report.crops += added
            report.problems.extend(crop_report.problems)
            report.indexed += 1
        if progress is not None and done[0] < total:
            progress(total, total)
        report.total = store.count()
        if not report.total:
            raise FootageError(
                "no person crop to index: the detections give no box inside the frames read "
                f"({report.boxes} boxes read, {report.outside} outside the frame); check the "
                "detections file or lower the detector's threshold"
            )
        used = {s["crops"] for s in store.sources().values()}
    except BaseException:
        used = {s.get("crops") for s in store.sources().values()}
        for folder in created:
            if folder.name not in used:
                shutil.rmtree(folder, ignore_errors=True)
        store.close()
        if fresh:
            discard_store(out)
        raise
    store.close()
    report.location = str(out)
    _remove_unused_crops(out / CROPS, used)
    return report


def _check_footage_index(settings: dict[str, Any], out: Path, mode: int | None) -> None:
    """Refuse an image-folder index, or a footage index of the other mode."""
    old = settings.get("footage")
    if not isinstance(old, dict):
        raise IndexStoreError(
            f"{out}: indexes the images under {settings['images_root']}, not footage; "
            "use another --out for footage, or --rebuild to replace it"
        )
    if old.get("per_track") != mode:
        was = "per frame" if old.get("per_track") is None else "by track"
        now = "per frame" if mode is None else "by track"
        raise IndexStoreError(
            f"{out}: was built {was} ({old.get('per_track')} crops per track), this run indexes "
            f"{now}; keep the same --per-frame setting, or --rebuild"
        )


def remove_crop_files(index: Path, records: Sequence[ImageRecord]) -> None:
    """Delete the stored crop files of deleted footage rows (and folders left empty)."""
    folders = set()
    for record in records:
        if record.source is None or not record.path.startswith(f"{CROPS}/"):
            continue
        path = index / record.path
        path.unlink(missing_ok=True)
        folders.add(path.parent)
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty


def _remove_unused_crops(crops_root: Path, used: set[str]) -> None:
    if not crops_root.is_dir():
        return
    for entry in crops_root.iterdir():
        if entry.is_dir() and entry.name not in used:
            shutil.rmtree(entry, ignore_errors=True)
