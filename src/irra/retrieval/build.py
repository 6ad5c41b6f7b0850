"""Building and updating an index: the one update path of image folders and footage.

Both builders (:func:`build_index` here, :func:`irra.retrieval.footage.build_footage_index`)
open the store with :func:`open_for_update` (a new index is created, an old-format one
migrated, the model checked, the index settings kept), find what changed, and hand it to
:func:`apply_changes`: rows that went stale are deleted, new rows appended batch by batch as they
are encoded. Nothing is ever rewritten whole: adding N images costs O(N) whatever the index
size, and a row's id never changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irra.imageio import ImageDecodeError
from irra.inference.protocol import EmbeddingEncoder, Progress
from irra.retrieval.capture import file_capture_time
from irra.retrieval.files import GalleryError, ImageFile, Labels, scan_images
from irra.retrieval.store import (
    ImageRecord,
    IndexStoreError,
    RowSelector,
    VectorStore,
    is_milvus,
    open_store,
    store_exists,
)

logger = logging.getLogger(__name__)

#: Images encoded and appended per step: an interrupted build of a large gallery keeps the
#: steps it finished, and its next run encodes only the rest.
APPEND_STEP = 4096


@dataclass(frozen=True)
class BuildReport:
    """What a build or update did: images encoded, kept from before, dropped; rows in all."""

    encoded: int
    kept: int
    removed: int
    total: int
    location: str


def check_same_model(
    settings: dict[str, Any], model: EmbeddingEncoder | dict[str, Any], where: str | Path
) -> None:
    """Raise unless ``model`` (an encoder, or the ``model`` entry of settings) is the model
    whose fingerprint the index recorded."""
    if isinstance(model, dict):
        fingerprint, source = model["fingerprint"], model.get("source")
    else:
        fingerprint, source = model.fingerprint, model.source
    recorded = settings["model"]["fingerprint"]
    if recorded != fingerprint:
        raise IndexStoreError(
            f"{where}: the index was built with another model (sha256 {recorded[:16]}..., from "
            f"{settings['model'].get('source')}); this model is {fingerprint[:16]}... "
            f"({source}). Use the model that built the index, or rebuild it with "
            "irra index --rebuild"
        )


def refuse_footage(settings: dict[str, Any], where: str | Path) -> None:
    """Raise when the index holds footage (crops are added with ``--video`` / ``--frames``)."""
    if "footage" in settings:
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
            f"{err}; remove or replace the file and run again (the images before it are indexed "
            "and are not encoded again)"
        ) from err


def store_settings(
    encoder: EmbeddingEncoder,
    images_root: Path | str,
    index_type: str = "flat",
    nlist: int | None = None,
    nprobe: int | None = None,
    footage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings (manifest) of an index: model identity, image root, index type."""
    settings = {
        "images_root": str(images_root),
        "model": {
            "fingerprint": encoder.fingerprint,
            "source": encoder.source,
            "engine": encoder.engine,
            "config": encoder.model_config,
        },
        "dim": encoder.dim,
        "metric": "inner_product",
        "index_type": index_type,  # each engine checks the types it offers
        "nlist": nlist,
        "nprobe": nprobe,
    }
    if footage is not None:
        settings["footage"] = footage
    return settings


def migrate_if_legacy(out: str | os.PathLike[str]) -> bool:
    """Migrate an index of formats 1-3 at ``out`` to the store (no image encoded again)."""
    if is_milvus(out):
        return False
    from irra.retrieval.embedded import DATABASE
    from irra.retrieval.legacy import is_legacy_index, migrate

    if not is_legacy_index(out) or (Path(out) / DATABASE).exists():
        return False
    migrate(out)
    return True


def open_for_update(
    out: str | os.PathLike[str],
    settings: dict[str, Any],
    *,
    rebuild: bool = False,
    given: Iterable[str] = (),
) -> VectorStore:
    """Open the index at ``out`` for writing, ready for :func:`apply_changes`.

    A new index is created with ``settings``; an index of formats 1-3 is migrated first (no
    image encoded again); with ``rebuild`` every row is removed and ``settings`` replace the
    old ones (ids keep counting: none is given twice). Otherwise the model must be the one
    that built the index, and the index settings not in ``given`` (``index_type``, ``nlist``,
    ``nprobe``) keep their stored values, as do the image root and the footage mode (the
    builders check them).

    Raises:
        IndexStoreError: another model; the location cannot be opened.
    """
    migrate_if_legacy(out)
    store = open_store(out, create=settings, writer=True)
    try:
        old = store.settings()
        if rebuild:
            store.reset(settings)
            return store
        check_same_model(old, settings["model"], out)
        merged = {k: v for k, v in old.items() if k != "format_version"}
        merged["model"] = settings["model"]  # the same weights; their file may have moved
        merged.update({k: settings[k] for k in given})
        if merged != {k: v for k, v in old.items() if k != "format_version"}:
            store.set_settings(merged)
        return store
    except BaseException:
        store.close()
        raise


def discard_store(out: str | os.PathLike[str]) -> None:
    """Remove a store this run created and could not fill (a failed first build)."""
    if is_milvus(out):
        from irra.retrieval.milvus import MilvusStore

        store = MilvusStore.open(str(out))
        try:
            store.drop()
        finally:
            store.close()
        return
    from irra.retrieval.embedded import DATABASE, LOCK

    for name in (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", LOCK):
        (Path(out) / name).unlink(missing_ok=True)
    for entry in Path(out).glob("ann-*.faiss"):
        entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        Path(out).rmdir()


def apply_changes(
    store: VectorStore,
    stale: Sequence[int],
    batches: Iterable[tuple[Sequence[ImageRecord], np.ndarray]],
) -> tuple[int, int]:
    """The one update path: delete the ``stale`` ids, then append each batch as it comes.

    Returns:
        (rows deleted, rows appended).
    """
    deleted = len(store.delete(RowSelector(ids=list(stale)))) if stale else 0
    appended = 0
    for records, vectors in batches:
        appended += len(store.append(records, vectors))
    store.maintain()
    return deleted, appended


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

    Images whose size and modification time did not change keep their rows and ids; new
    images are encoded and appended, changed ones replaced (a new id), deleted ones removed.
    An index of an older format is migrated first (no image is encoded again).

    Args:
        encoder: the model (must be the one that built ``out``, unless ``rebuild``).
        images: gallery folder (searched recursively).
        out: index folder, or ``milvus://HOST:PORT/COLLECTION``.
        index_type: one of :data:`irra.retrieval.vectors.INDEX_TYPES`; default: the existing
            index's type, else ``flat``.
        nlist, nprobe: IVF cells and cells scanned per query (defaults from the gallery size).
        labels: identity, camera and capture time per relative path (see :func:`read_labels`);
            an image's time is the label's, else its EXIF DateTimeOriginal, else its
            modification time. Labels stored by an earlier run stay when none are given.
        rebuild: remove every row (another model or image folder) and encode all.
        batch_size, workers, progress: see :meth:`EmbeddingEncoder.encode_images`.

    Raises:
        GalleryError: no images, or an image that cannot be decoded.
        IndexStoreError: ``out`` was built with another model or from another folder.
    """
    root = Path(images).resolve()
    files = scan_images(root)
    if not files:
        raise GalleryError(f"{root}: no images found (jpg, jpeg, png, bmp, webp, recursively)")
    given = [k for k, v in (("index_type", index_type), ("nlist", nlist), ("nprobe", nprobe)) if v]
    settings = store_settings(encoder, root, index_type or "flat", nlist, nprobe)
    fresh = not store_exists(out)
    store = open_for_update(out, settings, rebuild=rebuild, given=given)
    try:
        old = store.settings()
        refuse_footage(old, out)
        if old["images_root"] != str(root):
            raise IndexStoreError(
                f"{out}: indexes {old['images_root']}, not {root}; use another --out, or "
                "--rebuild to replace it"
            )
        rows = {record.path: (i, record) for i, record in store.rows()}
        present = {f.path for f in files}
        todo = [f for f in files if (f.path, f.size, f.mtime_ns) not in _states(rows)]
        logger.info(
            "%s: %d images, %d to encode, %d unchanged",
            root,
            len(files),
            len(todo),
            len(files) - len(todo),
        )
        batches = _encoded_batches(
            encoder, store, root, todo, rows, labels, batch_size, workers, progress
        )
        gone = [i for path, (i, _) in rows.items() if path not in present]
        removed, _ = apply_changes(store, gone, batches)
        if labels:
            _relabel(store, labels)
        total = store.count()
    except BaseException:
        store.close()
        if fresh:
            discard_store(out)
        raise
    store.close()
    return BuildReport(len(todo), len(files) - len(todo), removed, total, str(out))


def _states(rows: dict[str, tuple[int, ImageRecord]]) -> set[tuple[str, int, int]]:
    return {(r.path, r.size, r.mtime_ns) for _, r in rows.values()}


def _encoded_batches(
    encoder: EmbeddingEncoder,
    store: VectorStore,
    root: Path,
    todo: list[ImageFile],
    rows: dict[str, tuple[int, ImageRecord]],
    labels: Labels | None,
    batch_size: int,
    workers: int,
    progress: Progress | None,
) -> Iterable[tuple[list[ImageRecord], np.ndarray]]:
    """Encode ``todo`` a step at a time; a changed image's old row is deleted just before its
    new one is appended (its path is taken until then)."""
    for start in range(0, len(todo), APPEND_STEP):
        step = todo[start : start + APPEND_STEP]

        def tick(done: int, _total: int, offset: int = start) -> None:
            if progress is not None:
                progress(offset + done, len(todo))

        paths = [root / f.path for f in step]
        vectors = encode_files(
            encoder, paths, batch_size=batch_size, workers=workers, progress=tick
        )
        replaced = [rows[f.path][0] for f in step if f.path in rows]
        if replaced:
            store.delete(RowSelector(ids=replaced))
        records = [file_record(root, f) for f in step]
        if labels:
            records = [_labelled(r, labels) for r in records]
        yield records, vectors


def _relabel(store: VectorStore, labels: Labels) -> None:
    """Give rows the identity, camera and time of ``labels`` where they differ (same ids)."""
    ids, records = [], []
    for i, record in store.rows():
        new = _labelled(record, labels)
        if new != record:
            ids.append(i)
            records.append(new)
    if ids:
        store.update(ids, records)


def file_record(root: Path, file: ImageFile) -> ImageRecord:
    """The record of an image file, its capture time read from EXIF or its modification time."""
    time = file_capture_time(root / file.path, file.mtime_ns)
    return ImageRecord(file.path, file.size, file.mtime_ns, time=time)


def _labelled(record: ImageRecord, labels: Labels) -> ImageRecord:
    label = labels.get(record.path)
    if label is None:
        return record
    time = label.time if label.time is not None else record.time
    return dataclasses.replace(record, identity=label.identity, camera=label.camera, time=time)
