"""The index directory on disk: versions swapped atomically, manifest, metadata and vectors.

Layout::

    INDEX/CURRENT               name of the live version (replaced atomically)
    INDEX/v-<id>/manifest.json  format, model identity, image root, index type, counts
    INDEX/v-<id>/vectors.faiss  the embeddings (FAISS index, ids = row positions)
    INDEX/v-<id>/meta.sqlite    one row per image: id, path, size, mtime, identity, camera, time,
                                and for a crop of footage its source, frame, box and track
    INDEX/crops/                the crops of a footage index (:mod:`irra.retrieval.footage`)

Ids are row positions and follow the path order (every writer sorts the records by path), so the
images under one folder have consecutive ids.

A writer fills a temporary folder ``INDEX/.tmp-<id>``, renames it to ``v-<id>`` and only then
points ``CURRENT`` at it; the previous version is deleted afterwards. A run interrupted at any
point therefore leaves ``CURRENT`` naming a complete version: the previous index stays usable.
Writers hold an exclusive lock on ``INDEX/.lock``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import irra
from irra.fileio import atomic_write_text
from irra.retrieval.vectors import read_vector_index, write_vector_index

logger = logging.getLogger(__name__)

FORMAT = "irra-index"
#: 2 added the capture time per image; a format-1 index is upgraded by ``irra index`` (no image
#: is encoded again). 3 added the provenance of footage crops (source, frame, box, track): a
#: format-2 index reads as one without footage, and its next update writes format 3.
FORMAT_VERSION = 3
#: The oldest format search reads as it is.
SEARCHABLE_VERSION = 2
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
METADATA = "meta.sqlite"


class IndexStoreError(RuntimeError):
    """An index directory cannot be used as asked; the message names it and the fix."""


@dataclass(frozen=True)
class ImageRecord:
    """Metadata of one indexed image; ``path`` is relative to the manifest's ``images_root``."""

    path: str
    size: int
    mtime_ns: int
    identity: str | None = None
    camera: str | None = None
    #: capture time, UNIX seconds (UTC): labels file, else EXIF DateTimeOriginal, else mtime;
    #: for footage, ``--start`` plus the frame's time in the source.
    time: float | None = None
    #: footage only: the video file or frame folder the crop was cut from (absolute path).
    source: str | None = None
    #: footage only: 1-based frame number in ``source``.
    frame: int | None = None
    #: footage only: (x, y, w, h) integer pixels of the crop in the frame.
    box: tuple[int, int, int, int] | None = None
    #: footage only: track id within ``source`` (None for a crop stored ``--per-frame`` without
    #: one).
    track: int | None = None


def is_index(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds an irra index."""
    return (Path(directory) / CURRENT).is_file()


def current_version(directory: str | os.PathLike[str]) -> Path:
    """The folder of the live version of the index in ``directory``.

    Raises:
        IndexStoreError: not an index, or its live version is missing.
    """
    directory = Path(directory)
    pointer = directory / CURRENT
    if not pointer.is_file():
        raise IndexStoreError(
            f"{directory}: not an irra index (no {CURRENT} file); build one with "
            f"irra index --checkpoint CKPT --images DIR --out {directory}"
        )
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


def read_manifest(version: Path, *, upgrade: bool = False) -> dict[str, Any]:
    """The manifest of a version folder, checked for format and version.

    Args:
        upgrade: accept an older format (to read it once and write the current one).
    """
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
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise IndexStoreError(
            f"{path}: index format {version!r} is newer than this irra {irra.__version__} reads "
            f"({FORMAT_VERSION}) or not a version; upgrade irra, or rebuild the index"
        )
    if version < SEARCHABLE_VERSION and not upgrade:
        raise IndexStoreError(
            f"{path}: index format {version} is older than this irra searches "
            f"({SEARCHABLE_VERSION}: capture times); upgrade it with "
            f"`irra index --out {path.parent.parent}` (no image is encoded again)"
        )
    problems = [
        key for key, kind in _MANIFEST_FIELDS.items() if not isinstance(manifest.get(key), kind)
    ]
    model = manifest.get("model")
    if isinstance(model, dict) and not isinstance(model.get("fingerprint"), str):
        problems.append("model.fingerprint")
    if problems:
        raise IndexStoreError(
            f"{path}: index manifest lacks or mistypes {', '.join(problems)}; rebuild the index "
            "with irra index --rebuild"
        )
    return manifest


_MANIFEST_FIELDS: dict[str, type | tuple[type, ...]] = {
    "model": dict,
    "images_root": str,
    "index_type": str,
    "count": int,
}


class Metadata:
    """Read-only, thread-safe access to the ``meta.sqlite`` of one version."""

    def __init__(self, path: Path) -> None:
        uri = path.resolve().as_uri() + "?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(images)")}
        # format 1 had no capture time, formats 1 and 2 no footage provenance
        self._fields = ", ".join(c if c in columns else "NULL" for c in _COLUMNS)

    def close(self) -> None:
        """Close the database."""
        self._conn.close()

    def count(self) -> int:
        """Number of images."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def get(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        """Records of the given ids (unknown ids are left out)."""
        ids = [int(i) for i in ids if 0 <= int(i) < 2**63]  # others cannot be ids in SQLite
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        sql = f"SELECT id, {self._fields} FROM images WHERE id IN ({marks})"
        with self._lock:
            rows = self._conn.execute(sql, ids).fetchall()
        return {row[0]: _record(row[1:]) for row in rows}

    def all(self) -> list[ImageRecord]:
        """Every record, in id order."""
        sql = f"SELECT {self._fields} FROM images ORDER BY id"
        with self._lock:
            return [_record(row) for row in self._conn.execute(sql)]

    def column(self, name: str) -> list[Any]:
        """One column (``identity``, ``camera`` or ``time``) for every image, in id order."""
        if name not in ("identity", "camera", "time"):
            raise ValueError(f"unknown metadata column {name!r}")
        with self._lock:
            return [row[0] for row in self._conn.execute(f"SELECT {name} FROM images ORDER BY id")]

    def id_range(self, prefix: str) -> tuple[int, int]:
        """Ids ``[start, stop)`` of the images whose path starts with ``prefix`` (path order)."""
        sql = "SELECT MIN(id), MAX(id) FROM images WHERE path >= ? AND path < ?"
        with self._lock:
            low, high = self._conn.execute(sql, (prefix, prefix + "\U0010ffff")).fetchone()
        return (0, 0) if low is None else (int(low), int(high) + 1)


#: The metadata columns after ``id``, in the order of :class:`ImageRecord`'s fields (the box
#: is four columns).
_COLUMNS = (
    "path",
    "size",
    "mtime_ns",
    "identity",
    "camera",
    "time",
    "source",
    "frame",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "track",
)


def _record(row: Sequence[Any]) -> ImageRecord:
    """A row of :data:`_COLUMNS` -> :class:`ImageRecord`."""
    box = None if row[8] is None else (int(row[8]), int(row[9]), int(row[10]), int(row[11]))
    return ImageRecord(*row[:8], box=box, track=row[12])


def write_metadata(path: Path, records: Sequence[ImageRecord]) -> None:
    """Create ``meta.sqlite`` at ``path`` with ``records`` at ids 0..N-1."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "CREATE TABLE images (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, "
            "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, identity TEXT, camera TEXT, "
            "time REAL, source TEXT, frame INTEGER, box_x INTEGER, box_y INTEGER, "
            "box_w INTEGER, box_h INTEGER, track INTEGER)"
        )
        conn.executemany(
            f"INSERT INTO images VALUES (?{', ?' * len(_COLUMNS)})",
            (
                (
                    i,
                    r.path,
                    r.size,
                    r.mtime_ns,
                    r.identity,
                    r.camera,
                    r.time,
                    r.source,
                    r.frame,
                    *(r.box if r.box is not None else (None,) * 4),
                    r.track,
                )
                for i, r in enumerate(records)
            ),
        )
        conn.commit()
    finally:
        conn.close()


@contextlib.contextmanager
def writer_lock(directory: Path) -> Iterator[None]:
    """Exclusive lock for writing the index in ``directory`` (advisory, POSIX only)."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(directory / ".lock", "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise IndexStoreError(
                f"{directory}: another process is writing this index; wait for it to finish"
            ) from err
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_version(
    directory: str | os.PathLike[str],
    manifest: dict[str, Any],
    records: Sequence[ImageRecord],
    vector_index: Any,
) -> Path:
    """Write a complete new version of the index and make it the live one.

    Args:
        directory: the index directory (created if needed).
        manifest: the manifest without ``format``/``count``/``created`` (filled in here).
        records: N image records; record i has vector id i in ``vector_index``.
        vector_index: FAISS index holding N vectors.

    Returns:
        The folder of the new live version.
    """
    directory = Path(directory)
    if vector_index.ntotal != len(records):
        raise ValueError(f"{vector_index.ntotal} vectors for {len(records)} image records")
    with writer_lock(directory):
        token = uuid.uuid4().hex[:12]
        tmp = directory / f".tmp-{token}"
        tmp.mkdir()
        try:
            full = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "irra_version": irra.__version__,
                **manifest,
                "count": len(records),
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            }
            write_vector_index(vector_index, tmp / VECTORS)
            write_metadata(tmp / METADATA, records)
            atomic_write_text(tmp / MANIFEST, json.dumps(full, indent=2, sort_keys=True) + "\n")
            _fsync_dir(tmp)
            version = directory / f"v-{token}"
            os.replace(tmp, version)
            _fsync_dir(directory)
            atomic_write_text(directory / CURRENT, version.name + "\n")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _remove_stale(directory, keep=version.name)
    logger.info("wrote index version %s (%d images)", version, len(records))
    return version


def _remove_stale(directory: Path, keep: str) -> None:
    for entry in directory.iterdir():
        if entry.is_dir() and entry.name != keep and entry.name.startswith(("v-", ".tmp-")):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_file() and entry.name.startswith(".") and entry.name.endswith(".tmp"):
            entry.unlink(missing_ok=True)  # a pointer write cut short by a kill


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@dataclass
class Snapshot:
    """One opened version of an index: manifest, metadata and the FAISS index."""

    version: Path
    manifest: dict[str, Any]
    metadata: Metadata
    vectors: Any

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, upgrade: bool = False) -> Snapshot:
        """Open the live version of the index in ``directory``.

        Args:
            upgrade: also open an index of an older format (to write it again).
        """
        version = current_version(directory)
        manifest = read_manifest(version, upgrade=upgrade)
        try:
            vectors = read_vector_index(version / VECTORS)
        except (RuntimeError, OSError, ValueError) as err:  # faiss raises RuntimeError
            raise IndexStoreError(
                f"{version / VECTORS}: truncated or corrupted vector file "
                f"({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}"
                "); rebuild the index with irra index --rebuild"
            ) from err
        try:
            metadata = Metadata(version / METADATA)
            count = metadata.count()
        except sqlite3.Error as err:
            raise IndexStoreError(
                f"{version / METADATA}: truncated or corrupted metadata database ({err}); "
                "rebuild the index with irra index --rebuild"
            ) from err
        if vectors.ntotal != count or count != manifest["count"]:
            raise IndexStoreError(
                f"{version}: {vectors.ntotal} vectors, {count} image records, manifest count "
                f"{manifest['count']}; "
                "rebuild the index with irra index --rebuild"
            )
        return cls(version, manifest, metadata, vectors)

    def embeddings(self) -> np.ndarray:
        """(N, D) float32, the stored embeddings in id order."""
        from irra.retrieval.vectors import all_vectors

        return all_vectors(self.vectors)
