"""``Retriever``: search an index by text, and add images to it."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from irra.inference.open import open_encoder
from irra.inference.protocol import EmbeddingEncoder, Progress
from irra.retrieval.build import check_same_model, encode_files, merge_rows, write_index
from irra.retrieval.files import GalleryError, stat_image
from irra.retrieval.store import ImageRecord, IndexStoreError, Snapshot
from irra.retrieval.vectors import search_vectors, set_nprobe

logger = logging.getLogger(__name__)

#: Longest accepted query, in characters (CLIP reads at most 77 tokens anyway).
MAX_QUERY_CHARS = 1000
#: Most results one search returns.
MAX_K = 1000


class QueryError(ValueError):
    """A query or result count that cannot be searched; the message says what is accepted."""


def check_query(text: Any, k: Any) -> tuple[str, int]:
    """The stripped query and ``k``, or :class:`QueryError` saying what is wrong."""
    if not isinstance(text, str):
        raise QueryError("the query must be a string")
    text = text.strip()
    if not text:
        raise QueryError("the query is empty; describe the person, e.g. 'a man in a red jacket'")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(
            f"the query has {len(text)} characters; at most {MAX_QUERY_CHARS} are accepted"
        )
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise QueryError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return text, k


@dataclass(frozen=True)
class SearchHit:
    """One result: rank from 1, image id in the index, path relative to the image root."""

    rank: int
    id: int
    path: str
    score: float
    identity: str | None = None
    camera: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return asdict(self)


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
            threads: CPU threads of an exported engine's runtime.

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
        """The folder the indexed paths are relative to."""
        return Path(self._snapshot.manifest["images_root"])

    def __len__(self) -> int:
        return int(self._snapshot.vectors.ntotal)

    def close(self) -> None:
        """Release the metadata database."""
        self._snapshot.metadata.close()

    def search(self, text: str, k: int = 10) -> list[SearchHit]:
        """The ``k`` images most similar to ``text``, best first (cosine similarity).

        Raises:
            QueryError: empty or overlong text, or ``k`` outside 1..:data:`MAX_K`.
        """
        text, k = check_query(text, k)
        query = self.encoder.encode_texts([text])
        with self._lock:
            scores, ids = search_vectors(self._snapshot.vectors, query, k)
            found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
            records = self._snapshot.metadata.get([i for i, _ in found])
        return [
            SearchHit(rank, i, records[i].path, score, records[i].identity, records[i].camera)
            for rank, (i, score) in enumerate(found, start=1)
        ]

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
        new = [ImageRecord(f.path, f.size, f.mtime_ns) for f in files]
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
