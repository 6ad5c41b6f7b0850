"""Which images pass a :class:`~irra.retrieval.query.SearchFilter`: a boolean mask over the ids.

The camera, identity and capture-time columns of an index version are read from its metadata
once, on the first filtered search, into numpy arrays (about 16 bytes per image); a folder
filter uses the path order of the ids (one range query on the path index).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from irra.retrieval.query import SearchFilter
from irra.retrieval.store import Metadata


class FilterColumns:
    """Camera and identity codes and capture times of every image of one index version."""

    def __init__(self, metadata: Metadata) -> None:
        self.metadata = metadata
        self.camera_names, self.cameras = _codes(metadata.column("camera"))
        self.identity_names, self.identities = _codes(metadata.column("identity"))
        times = metadata.column("time")
        self.times = np.array([np.nan if t is None else t for t in times], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.times)

    def mask(self, search_filter: SearchFilter) -> np.ndarray:
        """(N,) bool, the images that pass ``search_filter`` (already checked)."""
        keep = np.ones(len(self), dtype=bool)
        if search_filter.cameras:
            keep &= _isin(self.cameras, self.camera_names, search_filter.cameras)
        if search_filter.identities:
            keep &= _isin(self.identities, self.identity_names, search_filter.identities)
        after, before = search_filter.time_range
        if after is not None:
            keep &= self.times >= after  # an image without a time (NaN) never passes
        if before is not None:
            keep &= self.times <= before
        if search_filter.under:
            start, stop = self.metadata.id_range(search_filter.under)
            keep[:start] = False
            keep[stop:] = False
        return keep


def _codes(values: list[str | None]) -> tuple[dict[str, int], np.ndarray]:
    """Distinct values -> codes 0.., and the (N,) int32 code of each value (-1 for None)."""
    names: dict[str, int] = {}
    codes = np.fromiter(
        (-1 if v is None else names.setdefault(v, len(names)) for v in values),
        dtype=np.int32,
        count=len(values),
    )
    return names, codes


def _isin(codes: np.ndarray, names: dict[str, int], wanted: Sequence[str]) -> np.ndarray:
    known = [names[w] for w in wanted if w in names]
    if not known:
        return np.zeros(len(codes), dtype=bool)
    return np.isin(codes, np.asarray(known, dtype=np.int32))
