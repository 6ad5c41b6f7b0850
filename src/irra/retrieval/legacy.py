"""Indexes of formats 1-3 (before stable ids): read once, to migrate them to the store.

Layout::

    INDEX/CURRENT               name of the live version
    INDEX/v-<id>/manifest.json  format, model identity, image root, index type, counts
    INDEX/v-<id>/vectors.faiss  the embeddings (FAISS index, ids = row positions in path order)
    INDEX/v-<id>/meta.sqlite    one row per image
    INDEX/crops/                the crops of a footage index

:func:`migrate` turns such a folder into an :class:`~irra.retrieval.embedded.EmbeddedStore`
without encoding any image again: row position i becomes id i, so links made before keep
pointing at the same image. Format 1 had no capture times (read from the files then); formats
1 and 2 had no footage provenance.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from irra.retrieval.store import ImageRecord, IndexStoreError

logger = logging.getLogger(__name__)

FORMAT = "irra-index"
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
METADATA = "meta.sqlite"
#: The settings a legacy manifest carries over to the store.
_SETTINGS = ("images_root", "model", "dim", "metric", "index_type", "nlist", "nprobe")
_COLUMNS = (
    "path", "size", "mtime_ns", "identity", "camera", "time", "source", "frame",
    "box_x", "box_y", "box_w", "box_h", "track",
)  # fmt: skip


def is_legacy_index(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds an index of format 1-3 (a ``CURRENT`` pointer)."""
    return (Path(directory) / CURRENT).is_file()


def legacy_format(directory: str | os.PathLike[str]) -> int | str:
    """The format number of a legacy index (``'1-3'`` when its manifest cannot be read)."""
    try:
        return int(read_manifest(current_version(directory))["format_version"])
    except (IndexStoreError, KeyError, TypeError, ValueError):
        return "1-3"


def current_version(directory: str | os.PathLike[str]) -> Path:
    """The folder of the live version of the legacy index in ``directory``.

    Raises:
        IndexStoreError: the pointer is unreadable or names a missing or invalid version.
    """
    directory = Path(directory)
    pointer = directory / CURRENT
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, ValueError) as err:
        raise IndexStoreError(
            f"{pointer}: cannot read ({err}); rebuild the index with irra index --rebuild"
        ) from err
    version = directory / name
    valid = name.startswith("v-") and "/" not in name and "\\" not in name and ".." not in name
    if not valid or not (version / MANIFEST).is_file():
        raise IndexStoreError(
            f"{pointer}: names a missing or invalid version '{name}'; rebuild the index with "
            "irra index --rebuild"
        )
    return version


def read_manifest(version: Path) -> dict[str, Any]:
    """The manifest of a legacy version folder, checked."""
    path = version / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:  # ValueError: not UTF-8 or not JSON
        raise IndexStoreError(
            f"{path}: cannot read the index manifest ({type(err).__name__}: {err}); rebuild the "
            "index with irra index --rebuild"
        ) from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexStoreError(f"{path}: not an irra index manifest")
    number = manifest.get("format_version")
    if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 3:
        raise IndexStoreError(
            f"{path}: index format {number!r} is not one this irra migrates (1-3); "
            "rebuild the index with irra index --rebuild"
        )
    model = manifest.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("fingerprint"), str):
        raise IndexStoreError(
            f"{path}: index manifest lacks the model's fingerprint; rebuild the index with "
            "irra index --rebuild"
        )
    return manifest


def read_legacy(directory: Path) -> tuple[dict[str, Any], list[ImageRecord], np.ndarray]:
    """The manifest, records (row order) and (N, D) embeddings of a legacy index."""
    from irra.retrieval.vectors import read_vector_index

    version = current_version(directory)
    manifest = read_manifest(version)
    try:
        conn = sqlite3.connect(f"{(version / METADATA).resolve().as_uri()}?mode=ro", uri=True)
        try:
            present = {row[1] for row in conn.execute("PRAGMA table_info(images)")}
            fields = ", ".join(c if c in present else "NULL" for c in _COLUMNS)
            rows = conn.execute(f"SELECT {fields} FROM images ORDER BY id").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise IndexStoreError(
            f"{version / METADATA}: truncated or corrupted metadata database ({err}); rebuild "
            "the index with irra index --rebuild"
        ) from err
    try:
        index = read_vector_index(version / VECTORS)
        if hasattr(index, "make_direct_map"):
            index.make_direct_map()
        vectors = np.asarray(index.reconstruct_n(0, index.ntotal), np.float32)
    except (RuntimeError, OSError, ValueError) as err:  # faiss raises RuntimeError
        raise IndexStoreError(
            f"{version / VECTORS}: truncated or corrupted vector file ({err}); rebuild the "
            "index with irra index --rebuild"
        ) from err
    if len(vectors) != len(rows):
        raise IndexStoreError(
            f"{version}: {len(vectors)} vectors for {len(rows)} records; rebuild the index "
            "with irra index --rebuild"
        )
    records = []
    for row in rows:
        box = None if row[8] is None else (int(row[8]), int(row[9]), int(row[10]), int(row[11]))
        records.append(ImageRecord(*row[:8], box=box, track=row[12]))
    return manifest, records, vectors.reshape(len(rows), -1)


def migrate(directory: str | os.PathLike[str]) -> int:
    """Turn the legacy index in ``directory`` into a store in place; returns its row count.

    Row i of the old version becomes id i. The new database is written beside the old
    version and renamed into place before the old files are removed: a migration cut short
    leaves the old index as it was, and running it again starts over.
    """
    from irra.retrieval.capture import file_capture_time
    from irra.retrieval.embedded import DATABASE
    from irra.retrieval.sqlite_rows import create_database

    directory = Path(directory)
    manifest, records, vectors = read_legacy(directory)
    settings = {key: manifest.get(key) for key in _SETTINGS}
    settings["dim"] = int(settings.get("dim") or vectors.shape[1])
    footage = manifest.get("footage")
    if isinstance(footage, dict):
        settings["footage"] = {"per_track": footage.get("per_track")}
    elif manifest["format_version"] == 1:  # format 1 had no capture times: read the files
        root = Path(manifest["images_root"])
        records = [
            r if r.time is not None else _timed(r, file_capture_time(root / r.path, r.mtime_ns))
            for r in records
        ]
    sources = footage.get("sources", []) if isinstance(footage, dict) else []
    tmp = directory / f".{DATABASE}.migrating"
    tmp.unlink(missing_ok=True)
    create_database(tmp, settings, records, vectors, {s["path"]: s for s in sources})
    os.replace(tmp, directory / DATABASE)
    (directory / CURRENT).unlink()
    for entry in directory.iterdir():
        if entry.is_dir() and entry.name.startswith(("v-", ".tmp-")):
            shutil.rmtree(entry, ignore_errors=True)
    logger.info("%s: migrated %d rows to the store format", directory, len(records))
    return len(records)


def _timed(record: ImageRecord, time: float | None) -> ImageRecord:
    return dataclasses.replace(record, time=time)
