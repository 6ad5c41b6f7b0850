"""``Retriever``: search an index by text, and add images to it."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irra.inference.open import open_encoder
from irra.inference.protocol import EmbeddingEncoder, Progress
from irra.retrieval.build import (
    check_same_model,
    encode_files,
    file_record,
    merge_rows,
    refuse_footage,
    write_index,
)
from irra.retrieval.capture import format_time
from irra.retrieval.combine import encode_query
from irra.retrieval.files import GalleryError, stat_image
from irra.retrieval.filtering import FilterColumns
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
from irra.retrieval.store import ImageRecord, IndexStoreError, Snapshot
from irra.retrieval.vectors import filtered_search, search_vectors, set_nprobe, stored_rows

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

    Example:
        >>> retriever = Retriever.open("runs/demo/index")
        >>> for hit in retriever.search("a woman in a red dress", k=5):
        ...     print(hit.rank, hit.score, retriever.image_path(hit.id))
    """

    def __init__(
        self, directory: str | os.PathLike[str], snapshot: Snapshot, encoder: EmbeddingEncoder
    ):
        check_same_model(snapshot.manifest, encoder, directory)
        self.directory = Path(directory)
        self.encoder = encoder
        self._snapshot = snapshot
        self._lock = threading.RLock()
        self._filter_columns: tuple[Snapshot, FilterColumns] | None = None
        self._neighbour_cache: tuple[Snapshot, NeighbourCache] | None = None

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
        """Open the index in ``index`` with the model that built it.

        Args:
            index: index directory written by :func:`build_index` / ``irra index``.
            checkpoint: the model file, or an export directory (``irra export``); default: the
                path recorded in the index. Either way its weights must be the ones that built
                the index.
            engine: ``torch``, ``onnx`` or ``torchscript`` (see
                :func:`irra.inference.open_encoder`); default: the engine recorded in the
                index when ``checkpoint`` is None, else detected from ``checkpoint``.
            device, precision: where and how queries are encoded (``torch`` engine).
            nprobe: cells scanned per query of an ``ivf`` index (more = slower, more exact).
            threads: CPU threads of the encoder (see :func:`irra.inference.open_encoder`).

        Raises:
            IndexStoreError: not an index, or a model other than the one that built it.
            ExportError: an incomplete or altered export directory.
        """
        snapshot = Snapshot.open(index)
        try:
            source = checkpoint or snapshot.manifest["model"].get("source")
            if not source or not Path(source).exists():
                raise IndexStoreError(
                    f"{index}: the model that built this index is not at {source!r} any more; "
                    "pass its new location (--checkpoint / checkpoint=)"
                )
            if engine is None and checkpoint is None:
                engine = snapshot.manifest["model"].get("engine")
            encoder = open_encoder(
                source, engine, device=device, precision=precision, threads=threads
            )
            set_nprobe(snapshot.vectors, nprobe)
            return cls(index, snapshot, encoder)
        except BaseException:
            snapshot.metadata.close()
            raise

    @property
    def manifest(self) -> dict[str, Any]:
        """The live version's manifest (model identity, image root, index type, count)."""
        return self._snapshot.manifest

    @property
    def images_root(self) -> Path:
        """The folder the indexed paths are relative to (the index itself for footage crops)."""
        if self.footage:
            return self.directory.resolve()
        return Path(self._snapshot.manifest["images_root"])

    @property
    def footage(self) -> bool:
        """Whether the index holds crops of footage (:mod:`irra.retrieval.footage`)."""
        return "footage" in self._snapshot.manifest

    @property
    def per_track(self) -> int | None:
        """Crops stored per track of a footage index searched by track; None otherwise."""
        footage = self._snapshot.manifest.get("footage")
        return footage.get("per_track") if isinstance(footage, dict) else None

    def __len__(self) -> int:
        return int(self._snapshot.vectors.ntotal)

    def close(self) -> None:
        """Release the metadata database."""
        self._snapshot.metadata.close()

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
        its cosine similarity with that vector. A filter makes the search exact over the images
        that pass it, for flat and ivf indexes alike: k hits come back whenever k images pass.

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
        with self._lock:
            snapshot = self._snapshot
        vector = encode_query(self.encoder, checked, lambda ids: self._stored(snapshot, ids))
        with self._lock:
            snapshot = self._snapshot  # an add() may have replaced it while the query was encoded
            keep = None if search_filter is None else self._columns(snapshot).mask(search_filter)
            total = int(snapshot.vectors.ntotal)
            candidates = total if keep is None else int(np.count_nonzero(keep))
            if candidates == 0:
                return SearchResults(
                    message=f"no image of the {total} in the index passes the filter",
                    candidates=0,
                )
            footage = snapshot.manifest.get("footage")
            per_track = footage.get("per_track") if isinstance(footage, dict) else None
            # a track holds at most per_track entries: k * per_track give k tracks
            scores, ids = self._ranked(snapshot, vector, keep, k * (per_track or 1), rerank)
            if min_score is not None:
                scores, ids = scores[scores >= min_score], ids[scores >= min_score]
            records = snapshot.metadata.get(ids.tolist())
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
        self,
        snapshot: Snapshot,
        vector: np.ndarray,
        keep: np.ndarray | None,
        k: int,
        rerank: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the top ``k``, best first: among ``keep`` (exact) or all, re-ranked."""
        wanted = max(k, RERANK_CANDIDATES) if rerank else k
        if keep is None:
            scores, ids = (row[0] for row in search_vectors(snapshot.vectors, vector[None], wanted))
            scores, ids = scores[ids >= 0], ids[ids >= 0]  # an ivf index pads with -1
        else:
            scores, ids = filtered_search(snapshot.vectors, vector, keep, wanted)
        if rerank:
            neighbours = self._neighbours(snapshot)
            scores, ids = rerank_by_neighbours(
                vector, ids, scores, neighbours, self._rows(snapshot)
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

    def _stored(self, snapshot: Snapshot, ids: list[int]) -> np.ndarray:
        """The stored embeddings of image ``ids`` (QueryError naming an unknown id)."""
        total = int(snapshot.vectors.ntotal)
        unknown = [i for i in ids if not 0 <= i < total]
        if unknown:
            raise QueryError(
                f"no image with id {unknown[0]} in this index (ids are 0 to {total - 1}); the ids "
                "of the last search's results are valid"
            )
        with self._lock:  # an ivf index builds its id map on first use
            return stored_rows(snapshot.vectors, np.asarray(ids, dtype=np.int64))

    def _rows(self, snapshot: Snapshot) -> Callable[[np.ndarray], np.ndarray]:
        return lambda ids: stored_rows(snapshot.vectors, ids)

    def _neighbours(self, snapshot: Snapshot) -> NeighbourCache:
        """The neighbour lists of ``snapshot`` (found lazily, kept with it)."""
        if self._neighbour_cache is None or self._neighbour_cache[0] is not snapshot:

            def search(vectors: np.ndarray, count: int) -> np.ndarray:
                return search_vectors(snapshot.vectors, vectors, count)[1]

            cache = NeighbourCache(search, self._rows(snapshot))
            self._neighbour_cache = (snapshot, cache)
        return self._neighbour_cache[1]

    def _columns(self, snapshot: Snapshot) -> FilterColumns:
        """The filter columns of ``snapshot`` (read on first use, then kept with it)."""
        if self._filter_columns is None or self._filter_columns[0] is not snapshot:
            self._filter_columns = (snapshot, FilterColumns(snapshot.metadata))
        return self._filter_columns[1]

    def facets(self) -> tuple[list[str], float | None, float | None]:
        """What the index can be filtered by: its camera names (sorted) and the earliest and
        latest capture times (UNIX seconds, None when no image has one)."""
        with self._lock:
            columns = self._columns(self._snapshot)
        times = columns.times[~np.isnan(columns.times)]
        first, last = (float(times.min()), float(times.max())) if times.size else (None, None)
        return sorted(columns.camera_names), first, last

    def record(self, image_id: int) -> ImageRecord:
        """The metadata of image ``image_id``; KeyError when the index has no such image."""
        with self._lock:
            found = self._snapshot.metadata.get([image_id])
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

        A new version of the index is written atomically and becomes the one this retriever
        searches.

        Args:
            paths: image files inside :attr:`images_root` (absolute or relative to it).

        Returns:
            The number of images in the index afterwards.

        Raises:
            GalleryError: a path outside the image root, not an image, or undecodable.
        """
        refuse_footage(self.manifest, self.directory)
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
        new = [file_record(root, f) for f in files]
        with self._lock:
            old = self._snapshot
            records, merged = merge_rows(old.metadata.all(), old.embeddings(), new, vectors)
            manifest = old.manifest
            nprobe = getattr(old.vectors, "nprobe", None)
            write_index(
                self.directory,
                self.encoder,
                root,
                records,
                merged,
                manifest["index_type"],
                nprobe=nprobe,
            )
            self._snapshot = Snapshot.open(self.directory)
            old.metadata.close()
        logger.info("added %d images to %s (%d in all)", len(files), self.directory, len(self))
        return len(self)
