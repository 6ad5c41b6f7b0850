"""Building and updating an index: encode only what is new, then write a new version atomically."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irra.imageio import ImageDecodeError
from irra.inference.protocol import EmbeddingEncoder, Progress
from irra.retrieval.capture import file_capture_time
from irra.retrieval.files import GalleryError, ImageFile, Labels, scan_images
from irra.retrieval.store import ImageRecord, IndexStoreError, Snapshot, is_index, write_version
from irra.retrieval.vectors import (
    build_vector_index,
    check_index_type,
    index_nlist,
    set_nprobe,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildReport:
    """What a build or update did: images encoded, kept from the previous version, dropped."""

    encoded: int
    kept: int
    removed: int
    total: int
    version: Path


def check_same_model(
    manifest: dict[str, Any], encoder: EmbeddingEncoder, where: str | Path
) -> None:
    """Raise unless ``encoder`` holds the model whose fingerprint the index recorded."""
    recorded = manifest["model"]["fingerprint"]
    if recorded != encoder.fingerprint:
        raise IndexStoreError(
            f"{where}: the index was built with another model (sha256 {recorded[:16]}..., from "
            f"{manifest['model'].get('source')}); this model is {encoder.fingerprint[:16]}... "
            f"({encoder.source}). Use the model that built the index, or rebuild it with "
            "irra index --rebuild"
        )


def refuse_footage(manifest: dict[str, Any], where: str | Path) -> None:
    """Raise when the index holds footage (crops are added with ``--video`` / ``--frames``)."""
    if "footage" in manifest:
        raise IndexStoreError(
            f"{where}: holds footage, not an image folder; add footage with irra index --video "
            "FILE / --frames DIR, or use another --out for images"
        )


def encode_files(
    encoder: EmbeddingEncoder,
    paths: Sequence[Path],
    *,
    batch_size: int = 64,
    workers: int = 0,
    progress: Progress | None = None,
) -> np.ndarray:
    """``encoder.encode_images`` with an undecodable file reported as a :class:`GalleryError`."""
    try:
        return encoder.encode_images(
            paths, batch_size=batch_size, workers=workers, progress=progress
        )
    except ImageDecodeError as err:
        raise GalleryError(
            f"{err}; remove or replace the file and run again (nothing was written)"
        ) from err


def make_manifest(
    encoder: EmbeddingEncoder, images_root: Path, index_type: str, vector_index: Any
) -> dict[str, Any]:
    """The manifest fields a writer supplies (model identity, image root, index settings)."""
    return {
        "images_root": str(images_root),
        "model": {
            "fingerprint": encoder.fingerprint,
            "source": encoder.source,
            "engine": encoder.engine,
            "config": encoder.model_config,
        },
        "dim": encoder.dim,
        "metric": "inner_product",
        "index_type": index_type,
        "nlist": index_nlist(vector_index),
        "nprobe": int(vector_index.nprobe) if hasattr(vector_index, "nprobe") else None,
    }


def merge_rows(
    old_records: Sequence[ImageRecord],
    old_vectors: np.ndarray,
    new_records: Sequence[ImageRecord],
    new_vectors: np.ndarray,
    keep: set[str] | None = None,
) -> tuple[list[ImageRecord], np.ndarray]:
    """Old rows (only those whose path is in ``keep``, all when None) overridden by new rows.

    Returns:
        records sorted by path and their vectors (N, D), row i belonging to record i.
    """
    source: dict[str, tuple[int, int]] = {}
    for i, record in enumerate(old_records):
        if keep is None or record.path in keep:
            source[record.path] = (0, i)
    for i, record in enumerate(new_records):
        source[record.path] = (1, i)
    paths = sorted(source)
    tables = (old_records, new_records)
    records = [tables[source[p][0]][source[p][1]] for p in paths]
    dim = old_vectors.shape[1] if len(old_vectors) else new_vectors.shape[1]
    vectors = np.empty((len(paths), dim), dtype=np.float32)
    for row, path in enumerate(paths):
        which, i = source[path]
        vectors[row] = (old_vectors, new_vectors)[which][i]
    return records, vectors


def write_index(
    directory: str | os.PathLike[str],
    encoder: EmbeddingEncoder,
    images_root: Path,
    records: Sequence[ImageRecord],
    vectors: np.ndarray,
    index_type: str,
    nlist: int | None = None,
    nprobe: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Build the FAISS index of ``vectors`` and write it with ``records`` as the live version.

    ``extra`` adds manifest entries (the ``footage`` entry of a footage index).
    """
    vector_index = build_vector_index(vectors, index_type, nlist)
    set_nprobe(vector_index, nprobe)
    manifest = {**make_manifest(encoder, images_root, index_type, vector_index), **(extra or {})}
    return write_version(directory, manifest, records, vector_index)


def build_index(
    encoder: EmbeddingEncoder,
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    index_type: str | None = None,
    nlist: int | None = None,
    nprobe: int | None = None,
    labels: Labels | None = None,
    rebuild: bool = False,
    batch_size: int = 64,
    workers: int = 0,
    progress: Progress | None = None,
) -> BuildReport:
    """Index every image under ``images`` into ``out``, or bring an existing index up to date.

    An existing index keeps the embeddings of images whose size and modification time did not
    change; new and changed images are encoded, deleted ones dropped. The result equals a full
    rebuild. An index of an older format is upgraded (capture times added) without encoding.
    Nothing is written until every image is encoded: an error or an interruption leaves the
    previous version live.

    Args:
        encoder: the model (must be the one that built ``out``, unless ``rebuild``).
        images: gallery folder (searched recursively).
        out: index directory.
        index_type: ``flat`` (exact) or ``ivf`` (approximate); default: the existing index's
            type, else ``flat``.
        nlist, nprobe: IVF cells and cells scanned per query (defaults from the gallery size).
        labels: identity, camera and capture time per relative path (see :func:`read_labels`);
            an image's time is the label's, else its EXIF DateTimeOriginal, else its
            modification time. Labels stored by an earlier run stay when none are given.
        rebuild: ignore an existing index (another model or image folder) and encode all.
        batch_size, workers, progress: see :meth:`EmbeddingEncoder.encode_images`.

    Raises:
        GalleryError: no images, or an image that cannot be decoded.
        IndexStoreError: ``out`` was built with another model or from another folder.
    """
    root = Path(images).resolve()
    files = scan_images(root)
    if not files:
        raise GalleryError(f"{root}: no images found (jpg, jpeg, png, bmp, webp, recursively)")
    old_records: list[ImageRecord] = []
    old_vectors = np.empty((0, encoder.dim), dtype=np.float32)
    if is_index(out) and not rebuild:
        snapshot = Snapshot.open(out, upgrade=True)
        try:
            check_same_model(snapshot.manifest, encoder, out)
            refuse_footage(snapshot.manifest, out)
            if snapshot.manifest["images_root"] != str(root):
                raise IndexStoreError(
                    f"{out}: indexes {snapshot.manifest['images_root']}, not {root}; use another "
                    "--out, or --rebuild to replace it"
                )
            index_type = index_type or snapshot.manifest["index_type"]
            old_records, old_vectors = snapshot.metadata.all(), snapshot.embeddings()
        finally:
            snapshot.metadata.close()
    index_type = check_index_type(index_type or "flat")
    unchanged = {(r.path, r.size, r.mtime_ns) for r in old_records}
    todo = [f for f in files if (f.path, f.size, f.mtime_ns) not in unchanged]
    logger.info(
        "%s: %d images, %d to encode, %d unchanged",
        root,
        len(files),
        len(todo),
        len(files) - len(todo),
    )
    new_vectors = encode_files(
        encoder,
        [root / f.path for f in todo],
        batch_size=batch_size,
        workers=workers,
        progress=progress,
    )
    present = {f.path for f in files}
    records, vectors = merge_rows(
        old_records, old_vectors, [file_record(root, f) for f in todo], new_vectors, keep=present
    )
    records = [r if r.time is not None else _timed(root, r) for r in records]  # format 1
    if labels:
        records = [_labelled(r, labels) for r in records]
    version = write_index(out, encoder, root, records, vectors, index_type, nlist, nprobe)
    removed = len({r.path for r in old_records} - present)
    return BuildReport(len(todo), len(files) - len(todo), removed, len(records), version)


def file_record(root: Path, file: ImageFile) -> ImageRecord:
    """The record of an image file, its capture time read from EXIF or its modification time."""
    time = file_capture_time(root / file.path, file.mtime_ns)
    return ImageRecord(file.path, file.size, file.mtime_ns, time=time)


def _timed(root: Path, record: ImageRecord) -> ImageRecord:
    return dataclasses.replace(record, time=file_capture_time(root / record.path, record.mtime_ns))


def _labelled(record: ImageRecord, labels: Labels) -> ImageRecord:
    label = labels.get(record.path)
    if label is None:
        return record
    time = label.time if label.time is not None else record.time
    return dataclasses.replace(record, identity=label.identity, camera=label.camera, time=time)
