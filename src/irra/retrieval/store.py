"""The store protocol: where an index keeps its rows, and the two engines that implement it.

An index is a set of rows - one embedding (D,) float32 of unit length plus an
:class:`ImageRecord` of metadata - in a :class:`VectorStore`. Every reader and writer of an index
(image folders, footage, :class:`~irra.retrieval.Retriever`, ``irra serve``, ``irra delete``, the
benchmarks) goes through this one interface:

* ``append(records, vectors) -> ids``: new rows; each gets an id that never changes and is never
  given again after the row is deleted;
* ``delete(selector) -> deleted rows``: by id or by metadata (:class:`RowSelector`);
* ``search(queries, k, where)``: top k by inner product (= cosine) among the rows that pass an
  exact filter (:class:`~irra.retrieval.query.SearchFilter`);
* ``get`` / ``vectors`` (rows by id), ``rows`` (a scan), ``count``, ``facets``;
* ``settings`` (the index's manifest: model identity, image root, index type) and ``sources``
  (footage sources with their signatures);
* ``refresh()`` to see what other processes wrote, ``compact()`` to reclaim space.

Engines (:func:`open_store` picks one from the location):

* :class:`irra.retrieval.embedded.EmbeddedStore` - a folder (``--out PATH``): SQLite is the store
  of record, FAISS the in-memory ANN index (``docs/index-store.md`` says why);
* :class:`irra.retrieval.milvus.MilvusStore` - ``milvus://HOST:PORT/COLLECTION``: a Milvus server
  (or Milvus Lite's server), for indexes that outgrow one machine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from irra.retrieval.query import SearchFilter

#: The format of an index (the on-disk layout of an embedded store, the schema of a Milvus
#: collection). 4 gave every row a stable id; formats 1-3 (:mod:`irra.retrieval.legacy`) are
#: migrated by ``irra index --out INDEX`` without encoding any image again.
FORMAT_VERSION = 4
MILVUS_SCHEME = "milvus://"


class IndexStoreError(RuntimeError):
    """An index cannot be used as asked; the message names the store and the fix."""


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


@dataclass(frozen=True)
class RowSelector:
    """Which rows a delete removes.

    Within one field the values are alternatives (``ids=(3, 8)``: row 3 or row 8); the fields
    given must all hold (``source=S, before=T``: the crops of S captured before T). An empty
    selector selects nothing (see :attr:`is_empty`): deleting everything is ``--rebuild``'s job.

    Attributes:
        ids: row ids.
        path: a path prefix relative to the image root (``2024/05/`` or one file).
        paths: whole paths relative to the image root (exact matches).
        sources: footage sources (absolute paths as stored).
        tracks: (source, track id) pairs.
        identities: identity labels.
        before: capture time, UNIX seconds: rows captured strictly before it (rows without a
            time never match).
    """

    ids: Sequence[int] = ()
    path: str | None = None
    paths: Sequence[str] = ()
    sources: Sequence[str] = ()
    tracks: Sequence[tuple[str, int]] = ()
    identities: Sequence[str] = ()
    before: float | None = None

    @property
    def is_empty(self) -> bool:
        """Whether no field is given."""
        return not (
            self.ids
            or self.path
            or self.paths
            or self.sources
            or self.tracks
            or self.identities
            or self.before is not None
        )

    def matches(self, image_id: int, record: ImageRecord) -> bool:
        """Whether the row (``image_id``, ``record``) is selected (the oracle of every engine)."""
        if self.is_empty:
            return False
        checks = (
            not self.ids or image_id in self.ids,
            not self.path or record.path.startswith(self.path),
            not self.paths or record.path in self.paths,
            not self.sources or record.source in self.sources,
            not self.tracks or (record.source, record.track) in set(self.tracks),
            not self.identities or record.identity in self.identities,
            self.before is None or (record.time is not None and record.time < self.before),
        )
        return all(checks)


@dataclass(frozen=True)
class Facets:
    """What an index can be filtered by: camera names (sorted) and the capture-time range."""

    cameras: list[str]
    first: float | None
    last: float | None


@dataclass(frozen=True)
class CompactReport:
    """What a compaction did: rows live, bytes on disk (or None) before and after."""

    rows: int
    bytes_before: int | None
    bytes_after: int | None


@runtime_checkable
class VectorStore(Protocol):
    """What every engine offers (see the module docstring); one writer, many readers."""

    #: The location as the user gave it (a folder, or a ``milvus://`` URI with no password).
    location: str
    #: Embedding width D.
    dim: int

    def settings(self) -> dict[str, Any]:
        """The index's manifest: ``model`` (fingerprint, source, engine, config),
        ``images_root``, ``index_type``, ``nlist``, ``nprobe``, ``footage`` (footage only:
        ``per_track``), ``format_version``."""
        ...

    def set_settings(self, settings: dict[str, Any]) -> None:
        """Replace the manifest (writers)."""
        ...

    def sources(self) -> dict[str, dict[str, Any]]:
        """Footage sources indexed so far: path -> signature (see :mod:`irra.retrieval.footage`)."""
        ...

    def set_source(self, path: str, signature: dict[str, Any] | None) -> None:
        """Record (or, with None, forget) the signature of a footage source."""
        ...

    def append(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> np.ndarray:
        """Add rows atomically; ``vectors`` (N, D) float32 unit rows. Returns their (N,) ids."""
        ...

    def delete(self, selector: RowSelector) -> list[tuple[int, ImageRecord]]:
        """Remove the selected rows atomically; returns the (id, record) of each removed row."""
        ...

    def update(self, ids: Sequence[int], records: Sequence[ImageRecord]) -> None:
        """Replace the metadata of rows atomically (ids and vectors stay)."""
        ...

    def reset(self, settings: dict[str, Any]) -> None:
        """Remove every row and footage source and replace the settings (ids keep counting)."""
        ...

    def search(
        self, queries: np.ndarray, k: int, where: SearchFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows of each query among those passing ``where`` (checked).

        Args:
            queries: (Q, D) float32 unit vectors.

        Returns:
            scores (Q, k') float32 cosine similarities, best first, and ids (Q, k') int64,
            k' = min(k, rows passing); an approximate index may find fewer for a query and
            pads with id -1.
        """
        ...

    def get(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        """Records of ``ids`` (unknown ids are left out)."""
        ...

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """(n, D) float32 stored embeddings of ``ids``; KeyError naming the first unknown id."""
        ...

    def rows(self) -> Iterator[tuple[int, ImageRecord]]:
        """Every (id, record), in id order."""
        ...

    def count(self, where: SearchFilter | None = None) -> int:
        """Rows in the index (passing ``where``)."""
        ...

    def facets(self) -> Facets:
        """Camera names and capture-time range."""
        ...

    def refresh(self) -> bool:
        """Catch up with what other processes wrote; True when something changed."""
        ...

    def maintain(self) -> bool:
        """Cheap housekeeping after a batch of writes (an engine may rewrite its ANN index when
        it is due); True when it did something."""
        ...

    def compact(self) -> CompactReport:
        """Reclaim the space of deleted rows and bring the ANN index up to date."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


def checked_rows(
    location: str, records: Sequence[ImageRecord], vectors: np.ndarray, dim: int
) -> np.ndarray:
    """``vectors`` as (N, D) float32 for N ``records`` (what every engine's ``append`` takes).

    Raises:
        ValueError: another shape, naming the store.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape != (len(records), dim):
        raise ValueError(
            f"{location}: {vectors.shape} vectors for {len(records)} rows of width {dim}"
        )
    return vectors


_MILVUS_URI = re.compile(
    r"^milvus://(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})"
    r"/(?P<collection>[A-Za-z_][A-Za-z0-9_]{0,254})/?$"
)


def is_milvus(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` names a Milvus collection (``milvus://...``)."""
    return isinstance(location, str) and location.lower().startswith(MILVUS_SCHEME)


def parse_milvus_uri(uri: str) -> tuple[str, int, str]:
    """``milvus://HOST:PORT/COLLECTION`` -> (host, port, collection).

    Raises:
        IndexStoreError: a malformed URI, with the expected form.
    """
    match = _MILVUS_URI.match(uri)
    port = int(match["port"]) if match else 0
    if match is None or not 0 < port < 65536:
        raise IndexStoreError(
            f"{uri}: not a Milvus index location; write milvus://HOST:PORT/COLLECTION (a "
            "collection name of letters, digits and _, starting with a letter or _), e.g. "
            "milvus://localhost:19530/people"
        )
    return match["host"].strip("[]"), port, match["collection"]


def store_exists(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` holds an index (of any format, for a folder)."""
    if is_milvus(location):
        from irra.retrieval.milvus import collection_exists

        return collection_exists(str(location))
    from irra.retrieval.embedded import folder_holds_index

    return folder_holds_index(location)


def open_store(
    location: str | os.PathLike[str],
    *,
    create: dict[str, Any] | None = None,
    writer: bool = False,
) -> VectorStore:
    """Open the index at ``location``: a folder (embedded) or ``milvus://HOST:PORT/COLLECTION``.

    Args:
        create: the settings (manifest) of a new index: when given and nothing is there yet,
            an empty index is created with them; an existing index is opened as it is.
        writer: open for writing (an embedded store takes the one-writer lock: a second writer
            is refused with a message).

    Raises:
        IndexStoreError: nothing there (and no ``create``), a malformed or unreachable
            location, a damaged store, an older format (with the command that migrates it).
    """
    if is_milvus(location):
        from irra.retrieval.milvus import MilvusStore

        return MilvusStore.open(str(location), create=create)
    from irra.retrieval.embedded import EmbeddedStore

    return EmbeddedStore.open(location, create=create, writer=writer)
