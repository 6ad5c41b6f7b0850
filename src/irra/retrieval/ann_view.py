"""A reader's in-memory view of an embedded store: the FAISS ANN index and the filter columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from irra.retrieval.query import SearchFilter
from irra.retrieval.vectors import EXACT_STORAGE, add_vectors, index_type_of, remove_vectors


class AnnView:
    """A reader's view: the ANN index and the filter columns of the live rows at commit ``seq``.

    ``ids`` (N,) int64 ascending; ``cameras``/``identities`` (N,) int32 codes (-1: none) into
    ``camera_names``/``identity_names``; ``times`` (N,) float64 (NaN: none).
    """

    def __init__(self, ann: Any, seq: int) -> None:
        self.ann, self.seq = ann, seq
        #: rows the ANN index's cells were trained on (retrained once the rows outgrow them)
        self.trained = 0
        self.ids = np.empty(0, np.int64)
        self.cameras = np.empty(0, np.int32)
        self.identities = np.empty(0, np.int32)
        self.times = np.empty(0, np.float64)
        self.camera_names: dict[str, int] = {}
        self.identity_names: dict[str, int] = {}

    @property
    def exact(self) -> bool:
        return index_type_of(self.ann) in EXACT_STORAGE

    def remove(self, ids: np.ndarray) -> None:
        """Forget rows (ids not held are ignored)."""
        if not len(ids):
            return
        remove_vectors(self.ann, ids)
        gone = np.isin(self.ids, ids)
        if gone.any():
            keep = ~gone
            self.ids, self.cameras = self.ids[keep], self.cameras[keep]
            self.identities, self.times = self.identities[keep], self.times[keep]

    def add(self, rows: list[tuple[Any, ...]], vectors: np.ndarray | None) -> None:
        """Add rows ``(id, camera, identity, time)``; their vectors (n, D) unless already held."""
        if not rows:
            return
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        if vectors is not None:
            add_vectors(self.ann, vectors, ids)
        cameras = _codes([r[1] for r in rows], self.camera_names)
        identities = _codes([r[2] for r in rows], self.identity_names)
        times = np.array([np.nan if r[3] is None else r[3] for r in rows], np.float64)
        self.ids = np.concatenate([self.ids, ids])
        self.cameras = np.concatenate([self.cameras, cameras])
        self.identities = np.concatenate([self.identities, identities])
        self.times = np.concatenate([self.times, times])
        if len(self.ids) > len(ids) and self.ids[-len(ids) - 1] > ids[0]:  # migrated ids
            order = np.argsort(self.ids, kind="stable")
            self.ids, self.cameras = self.ids[order], self.cameras[order]
            self.identities, self.times = self.identities[order], self.times[order]

    def mask(self, where: SearchFilter, under_ids: np.ndarray | None) -> np.ndarray:
        """(N,) bool: the rows passing a checked filter (``under_ids``: the ids under its
        folder, sorted)."""
        keep = np.ones(len(self.ids), dtype=bool)
        if where.cameras:
            keep &= _isin(self.cameras, self.camera_names, where.cameras)
        if where.identities:
            keep &= _isin(self.identities, self.identity_names, where.identities)
        after, before = where.time_range
        if after is not None:
            keep &= self.times >= after  # a row without a time (NaN) never passes
        if before is not None:
            keep &= self.times <= before
        if under_ids is not None:
            keep &= np.isin(self.ids, under_ids, assume_unique=True)
        return keep


def _codes(values: list[str | None], names: dict[str, int]) -> np.ndarray:
    return np.fromiter(
        (-1 if v is None else names.setdefault(v, len(names)) for v in values),
        dtype=np.int32,
        count=len(values),
    )


def _isin(codes: np.ndarray, names: dict[str, int], wanted: Sequence[str]) -> np.ndarray:
    known = [names[w] for w in wanted if w in names]
    if not known:
        return np.zeros(len(codes), dtype=bool)
    return np.isin(codes, np.asarray(known, dtype=np.int32))
