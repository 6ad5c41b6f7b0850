"""``Retriever``: search an index by text, and add images to it."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irra.inference.open import open_encoder
from irra.inference.protocol import EmbeddingEncoder, Progress
from irra.retrieval.build import check_same_model, encode_files, file_record, refuse_footage
from irra.retrieval.capture import format_time, parse_time
from irra.retrieval.combine import encode_query
from irra.retrieval.files import GalleryError, stat_image
from irra.retrieval.query import (
    MAX_K,
    MAX_QUERY_CHARS,
    ImagePart,
    Query,
    QueryError,
    SearchFilter,
    SimilarPart,
    TextPart,
    check_k,
    check_min_score,
    check_query,
)
from irra.retrieval.rerank import CANDIDATES as RERANK_CANDIDATES
from irra.retrieval.rerank import NeighbourCache
from irra.retrieval.rerank import rerank as rerank_by_neighbours
from irra.retrieval.store import (
    ImageRecord,
    IndexStoreError,
    RowSelector,
    VectorStore,
    is_milvus,
    open_store,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_K",
    "MAX_QUERY_CHARS",
    "QueryError",
    "Retriever",
    "SearchHit",
    "SearchResults",
    "check_query",
]


@dataclass(frozen=True)
class SearchHit:
    """One result: rank from 1, image id in the index, path relative to the image root.

    ``score`` is the cosine similarity of the query vector and the image, in [-1, 1]; ``time``
    the capture time as ISO 8601 in UTC. A crop of footage also carries where it was seen:
    ``source``, ``frame``, ``box`` and ``track`` (None for an image-folder index).
    """

    rank: int
    id: int
    path: str
    score: float
    identity: str | None = None
    camera: str | None = None
    time: str | None = None
    #: footage only: the video file or frame folder of the crop (absolute path).
    source: str | None = None
    #: footage only: the 1-based frame number the crop was cut from.
    frame: int | None = None
    #: footage only: the crop's (x, y, w, h) integer pixels in that frame.
    box: tuple[int, int, int, int] | None = None
    #: footage only: the track id within ``source``.
    track: int | None = None

    @classmethod
    def of(cls, rank: int, image_id: int, score: float, record: ImageRecord) -> SearchHit:
        """The hit at ``rank`` for image ``image_id`` and its metadata record."""
        return cls(
            rank,
            image_id,
            record.path,
            score,
            record.identity,
            record.camera,
            format_time(record.time, milliseconds=record.frame is not None),
            record.source,
            record.frame,
            record.box,
            record.track,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return asdict(self)


def best_of_each_track(
    scores: np.ndarray, ids: np.ndarray, records: dict[int, ImageRecord], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first (best) entry of each track among ranked ``ids``, at most ``k``.

    A track is a (source, track id) pair; an entry without a track id stands alone.

    Args:
        scores, ids: (M,) ranked best first.
        records: the metadata of every id.
    """
    seen: set[tuple[str | None, int]] = set()
    rows = []
    for row, image_id in enumerate(ids.tolist()):
        record = records[image_id]
        if record.track is not None:
            key = (record.source, record.track)
            if key in seen:
                continue
            seen.add(key)
        rows.append(row)
        if len(rows) == k:
            break
    return scores[rows], ids[rows]


class SearchResults(list[SearchHit]):
    """The hits of one search, best first (a list), with what a caller should tell the user.

    Attributes:
        message: why there are fewer than k hits when that needs saying (a filter no image
            passes, a minimum score none reaches), else None.
        candidates: how many images the filter let through (the index size without a filter).
    """

    def __init__(
        self, hits: Sequence[SearchHit] = (), *, message: str | None = None, candidates: int = 0
    ) -> None:
        super().__init__(hits)
        self.message = message
        self.candidates = candidates


class Retriever:
    """An opened index plus the model that built it.

    The index is live: rows appended or deleted by another process (``irra index``, ``irra
    delete``) are seen at the next search, without opening it again.

    Example:
        >>> retriever = Retriever.open("runs/demo/index")
        >>> for hit in retriever.search("a woman in a red dress", k=5):
        ...     print(hit.rank, hit.score, retriever.image_path(hit.id))
    """

    def __init__(
        self, location: str | os.PathLike[str], store: VectorStore, encoder: EmbeddingEncoder
    ):
        check_same_model(store.settings(), encoder, location)
        self.location = str(location)
        self.directory = None if is_milvus(location) else Path(location)
        self.encoder = encoder
        self.store = store
        self._settings = store.settings()
        self._lock = threading.RLock()
        self._neighbour_cache: NeighbourCache | None = None

    @classmethod
    def open(
        cls,
        index: str | os.PathLike[str],
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        engine: str | None = None,
        device: str = "auto",
        precision: str = "auto",
        nprobe: int | None = None,
        threads: int | None = None,
    ) -> Retriever:
        """Open the index at ``index`` with the model that built it.

        Args:
            index: an index folder written by :func:`build_index` / ``irra index``, or
                ``milvus://HOST:PORT/COLLECTION``.
            checkpoint: the model file, or an export directory (``irra export``); default: the
                path recorded in the index. Either way its weights must be the ones that built
                the index.
            engine: ``torch``, ``onnx`` or ``torchscript`` (see
                :func:`irra.inference.open_encoder`); default: the engine recorded in the
                index when ``checkpoint`` is None, else detected from ``checkpoint``.
            device, precision: where and how queries are encoded (``torch`` engine).
            nprobe: cells scanned per query of an approximate index (more = slower, more exact).
            threads: CPU threads of the encoder (see :func:`irra.inference.open_encoder`).

        Raises:
            IndexStoreError: not an index, or a model other than the one that built it.
            ExportError: an incomplete or altered export directory.
        """
        if nprobe is not None and nprobe < 1:
            raise ValueError(f"nprobe must be >= 1, got {nprobe}")
        store = open_store(index)
        try:
            settings = store.settings()
            source = checkpoint or settings["model"].get("source")
            if not source or not Path(source).exists():
                raise IndexStoreError(
                    f"{index}: the model that built this index is not at {source!r} any more; "
                    "pass its new location (--checkpoint / checkpoint=)"
                )
            if engine is None and checkpoint is None:
                engine = settings["model"].get("engine")
            encoder = open_encoder(
                source, engine, device=device, precision=precision, threads=threads
            )
            if nprobe is not None and hasattr(store, "set_nprobe"):
                store.set_nprobe(nprobe)
            return cls(index, store, encoder)
        except BaseException:
            store.close()
            raise

    @property
    def manifest(self) -> dict[str, Any]:
        """The index's settings (model identity, image root, index type)."""
        return self._settings

    @property
    def images_root(self) -> Path:
        """The folder the indexed paths are relative to (the index itself for footage crops)."""
        if self.footage and self.directory is not None:
            return self.directory.resolve()
        return Path(self._settings["images_root"])

    @property
    def footage(self) -> bool:
        """Whether the index holds crops of footage (:mod:`irra.retrieval.footage`)."""
        return "footage" in self._settings

    @property
    def per_track(self) -> int | None:
        """Crops stored per track of a footage index searched by track; None otherwise."""
        footage = self._settings.get("footage")
        return footage.get("per_track") if isinstance(footage, dict) else None

    def __len__(self) -> int:
        return self.store.count()

    def close(self) -> None:
        """Release the store."""
        self.store.close()

    def __enter__(self) -> Retriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search(
        self,
        query: str | Query | None = None,
        k: int = 10,
        *,
        images: Sequence[ImagePart | str | os.PathLike[str] | bytes] = (),
        similar: Sequence[SimilarPart | int] = (),
        negatives: Sequence[TextPart | str] = (),
        filter: SearchFilter | None = None,
        min_score: float | None = None,
        rerank: bool = False,
    ) -> SearchResults:
        """The ``k`` images that best match the query among those passing ``filter``, best first.

        The parts - a text, image files or uploads, indexed images, negative texts - are
        combined into one query vector (:mod:`irra.retrieval.combine`); the score of a hit is
        its cosine similarity with that vector. A filter is exact for every index type: the
        hits all pass it, and k hits come back whenever k images pass.

        Args:
            query: the description, or a whole :class:`Query` (then leave ``images``,
                ``similar`` and ``negatives`` empty).
            k: results wanted, 1..:data:`MAX_K`.
            images: query image files or their bytes (:class:`ImagePart` for a weight).
            similar: ids of indexed images to find more of (:class:`SimilarPart` for a weight).
            negatives: descriptions to rank away from (:class:`TextPart` for a weight).
            filter: which images may be hits (cameras, identities, time range, folder).
            min_score: leave out hits scoring below this cosine similarity, in [-1, 1].
            rerank: re-score the top candidates with their visual neighbours
                (:mod:`irra.retrieval.rerank`); the score is then the mean of the candidate's
                and its neighbours' cosine similarities, still in [-1, 1].

        Returns:
            :class:`SearchResults`: a list of :class:`SearchHit`, with a ``message`` when a
            filter lets no image through or no hit reaches ``min_score``.

        Raises:
            QueryError: no positive part; an empty or overlong text; a weight that is not a
                number in (0, 100]; an image that is not a decodable image (truncated, too
                large); an unknown similar id; a bad time or ``after`` later than ``before``;
                ``k`` or ``min_score`` out of range.
        """
        checked = self._checked_query(query, images, similar, negatives)
        k, min_score = check_k(k), check_min_score(min_score)
        search_filter = self._checked_filter(filter)
        vector = encode_query(self.encoder, checked, self._stored)
        with self._lock:
            if self.store.refresh():
                self._neighbour_cache = None  # rows came or went: neighbour lists are stale
            total = self.store.count()
            candidates = total if search_filter is None else self.store.count(search_filter)
            if candidates == 0:
                return SearchResults(
                    message=f"no image of the {total} in the index passes the filter",
                    candidates=0,
                )
            per_track = self.per_track
            # a track holds at most per_track entries: k * per_track give k tracks
            scores, ids = self._ranked(vector, search_filter, k * (per_track or 1), rerank)
            if min_score is not None:
                scores, ids = scores[scores >= min_score], ids[scores >= min_score]
            records = self.store.get(ids.tolist())
            keep = [i for i, image_id in enumerate(ids.tolist()) if image_id in records]
            scores, ids = scores[keep], ids[keep]  # a row deleted in between is left out
            if per_track:
                scores, ids = best_of_each_track(scores, ids, records, k)
        hits = [
            SearchHit.of(rank, i, float(score), records[i])
            for rank, (i, score) in enumerate(zip(ids.tolist(), scores, strict=True), start=1)
        ]
        message = None
        if not hits and min_score is not None:
            message = f"no image scores {min_score:g} or more (the cosine similarity, in [-1, 1])"
        return SearchResults(hits, message=message, candidates=candidates)

    def _ranked(
        self, vector: np.ndarray, search_filter: SearchFilter | None, k: int, rerank: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the top ``k``, best first, among the rows passing the filter."""
        wanted = max(k, RERANK_CANDIDATES) if rerank else k
        scores, ids = (row[0] for row in self.store.search(vector[None], wanted, search_filter))
        scores, ids = scores[ids >= 0], ids[ids >= 0]  # an approximate index pads with -1
        if rerank:
            scores, ids = rerank_by_neighbours(
                vector, ids, scores, self._neighbours(), self.store.vectors
            )
        return scores[:k], ids[:k]

    def _checked_query(
        self,
        query: str | Query | None,
        images: Sequence[Any],
        similar: Sequence[Any],
        negatives: Sequence[Any],
    ) -> Query:
        if isinstance(query, Query):
            if images or similar or negatives:
                raise QueryError("pass the parts either in the Query or as arguments, not both")
            return query.checked()
        if query is not None and not isinstance(query, (str, TextPart)):
            raise QueryError("the query must be a string or a Query")
        return Query(query, tuple(images), tuple(similar), tuple(negatives)).checked()

    def _checked_filter(self, search_filter: SearchFilter | None) -> SearchFilter | None:
        if search_filter is None:
            return None
        if not isinstance(search_filter, SearchFilter):
            raise QueryError("the filter must be a SearchFilter")
        under = search_filter.under
        if under is not None and Path(under).is_absolute():
            try:
                under = Path(under).resolve().relative_to(self.images_root.resolve()).as_posix()
            except ValueError:
                raise QueryError(
                    f"under: {search_filter.under} is not inside the indexed folder "
                    f"{self.images_root}"
                ) from None
            search_filter = dataclasses.replace(search_filter, under=under)
        checked = search_filter.checked()
        return None if checked.is_empty else checked

    def _stored(self, ids: list[int]) -> np.ndarray:
        """The stored embeddings of image ``ids`` (QueryError naming an unknown id)."""
        try:
            return self.store.vectors(ids)
        except KeyError as err:
            raise QueryError(
                f"{err.args[0]}; the ids of the last search's results are valid"
            ) from None

    def _neighbours(self) -> NeighbourCache:
        """The neighbour lists of the gallery (found lazily, dropped when rows change)."""
        if self._neighbour_cache is None:

            def search(vectors: np.ndarray, count: int) -> np.ndarray:
                return self.store.search(vectors, count)[1]

            self._neighbour_cache = NeighbourCache(search, self.store.vectors)
        return self._neighbour_cache

    def facets(self) -> tuple[list[str], float | None, float | None]:
        """What the index can be filtered by: its camera names (sorted) and the earliest and
        latest capture times (UNIX seconds, None when no image has one)."""
        facets = self.store.facets()
        return facets.cameras, facets.first, facets.last

    def record(self, image_id: int) -> ImageRecord:
        """The metadata of image ``image_id``; KeyError when the index has no such image."""
        found = self.store.get([image_id])
        if image_id not in found:
            raise KeyError(f"no image with id {image_id} in this index")
        return found[image_id]

    def image_path(self, image_id: int) -> Path:
        """The file of image ``image_id`` (KeyError when unknown)."""
        return self.images_root / self.record(image_id).path

    def add(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        batch_size: int = 64,
        progress: Progress | None = None,
    ) -> int:
        """Encode image files under the image root and add (or refresh) them in the index.

        A new image gets a new id; an image already indexed is replaced (a new id too, its old
        one is never given again). Searches see them at once, here and in every process that
        has the index open.

        Args:
            paths: image files inside :attr:`images_root` (absolute or relative to it).

        Returns:
            The number of images in the index afterwards.

        Raises:
            GalleryError: a path outside the image root, not an image, or undecodable.
        """
        refuse_footage(self.manifest, self.location)
        root = self.images_root
        files = []
        for path in paths:
            full = Path(path) if Path(path).is_absolute() else root / path
            try:
                rel = full.resolve().relative_to(root.resolve()).as_posix()
            except ValueError as err:
                raise GalleryError(
                    f"{path}: outside the indexed folder {root}; copy the image under it first"
                ) from err
            files.append(stat_image(root, rel))
        vectors = encode_files(
            self.encoder, [root / f.path for f in files], batch_size=batch_size, progress=progress
        )
        with self._lock:
            self.store.delete(RowSelector(paths=[f.path for f in files]))  # a re-added image
            self.store.append([file_record(root, f) for f in files], vectors)
            self.store.maintain()
        logger.info("added %d images to %s (%d in all)", len(files), self.location, len(self))
        return len(self)

    def delete(
        self,
        ids: Sequence[int] = (),
        *,
        path: str | None = None,
        sources: Sequence[str | os.PathLike[str]] = (),
        tracks: Sequence[tuple[str | os.PathLike[str], int]] = (),
        identities: Sequence[str] = (),
        before: str | float | None = None,
    ) -> list[tuple[int, ImageRecord]]:
        """Remove rows: their vectors (never returned again), metadata and stored crops.

        Selectors of different kinds must all hold; the values of one kind are alternatives
        (see :class:`~irra.retrieval.store.RowSelector`). With no selector nothing is deleted.

        Args:
            ids: row ids.
            path: a path prefix relative to the image root (a folder or one file).
            sources: footage files or folders (their crops).
            tracks: (source, track id) pairs.
            identities: identity labels.
            before: rows captured before this time (ISO 8601 text or UNIX seconds).

        Returns:
            (id, record) of each deleted row (empty when nothing matched).

        Raises:
            QueryError: ``before`` that is not ISO 8601.
        """
        if isinstance(before, str):
            try:
                before = parse_time(before)
            except ValueError as err:
                raise QueryError(f"before: {err}") from None
        selector = RowSelector(
            ids=[int(i) for i in ids],
            path=path,
            sources=[_source_key(s) for s in sources],
            tracks=[(_source_key(s), int(t)) for s, t in tracks],
            identities=list(identities),
            before=before,
        )
        with self._lock:
            deleted = self.store.delete(selector)
            if deleted:
                self._neighbour_cache = None
                if self.footage and self.directory is not None:
                    from irra.retrieval.footage import remove_crop_files

                    remove_crop_files(self.directory, [r for _, r in deleted])
                self.store.maintain()  # an erased vector leaves the ANN checkpoint too
        logger.info("deleted %d rows from %s", len(deleted), self.location)
        return deleted


def _source_key(source: str | os.PathLike[str]) -> str:
    """A footage source as stored: its absolute path."""
    return str(Path(source).resolve())
