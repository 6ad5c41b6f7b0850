"""Re-ranking by visual neighbours: an image scores with the images that look most like it.

A text query and a gallery image live in one embedding space, but image-to-image similarity is
the stronger signal (on the demo, image -> image R1 is far above text -> image), and a person
seldom appears in one picture only. So the top candidates of a query are re-scored with their
gallery neighbours: candidate g, with its ``NEIGHBOURS`` nearest gallery images N(g) (by image
embedding, g itself left out), gets::

    score'(g) = (s(q, g) + BETA * mean_{n in N(g)} s(q, n)) / (1 + BETA)

where s is the cosine similarity to the query vector; the result stays in [-1, 1]. Neighbour
lists are found lazily, for candidates only, with one batched index search, and kept in a
bounded cache (:class:`NeighbourCache`). ``bench/bench_rerank.py`` compares this with query
expansion and k-reciprocal re-ranking (README, "Re-ranking").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np

#: Gallery neighbours per candidate.
NEIGHBOURS = 3
#: Weight of the neighbours' mean score (chosen on the demo's val split, README "Re-ranking").
BETA = 0.5
#: Candidates re-scored per query (at least k).
CANDIDATES = 100
#: Most neighbour lists kept in memory per index version (8 bytes x NEIGHBOURS each).
CACHE_SIZE = 200_000

#: ``search(vectors (n, D), k) -> ids (n, k)`` over the whole gallery.
Search = Callable[[np.ndarray, int], np.ndarray]
#: ``rows(ids (n,)) -> (n, D)`` stored embeddings.
Rows = Callable[[np.ndarray], np.ndarray]


class NeighbourCache:
    """The gallery neighbours of image ids, found on first use and kept (least recently used
    lists are dropped beyond ``size``)."""

    def __init__(self, search: Search, rows: Rows, size: int = CACHE_SIZE) -> None:
        self._search, self._rows, self._size = search, rows, size
        self._lists: OrderedDict[int, np.ndarray] = OrderedDict()

    def __call__(self, ids: np.ndarray) -> list[np.ndarray]:
        """The neighbour ids (up to :data:`NEIGHBOURS`, the image itself left out) of ``ids``."""
        missing = [int(i) for i in ids if int(i) not in self._lists]
        if missing:
            found = self._search(self._rows(np.asarray(missing, dtype=np.int64)), NEIGHBOURS + 1)
            for image, row in zip(missing, found, strict=True):
                row = row[(row >= 0) & (row != image)][:NEIGHBOURS]
                self._lists[image] = row.astype(np.int64)
        out = []
        for i in ids:
            self._lists.move_to_end(int(i))
            out.append(self._lists[int(i)])
        while len(self._lists) > self._size:
            self._lists.popitem(last=False)
        return out


def rerank(
    query: np.ndarray,
    ids: np.ndarray,
    scores: np.ndarray,
    neighbours: Callable[[np.ndarray], list[np.ndarray]],
    rows: Rows,
    beta: float = BETA,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidates with their neighbours' scores (see the module's rule), best first.

    Args:
        query: (D,) unit query vector.
        ids: (R,) candidate ids; scores: (R,) their cosine scores.
        neighbours: neighbour lists of ids (e.g. a :class:`NeighbourCache`).
        rows: stored embeddings of ids.

    Returns:
        (R,) float32 new scores in [-1, 1], descending, and their (R,) int64 ids (ties: lower id).
    """
    lists = neighbours(ids)
    flat = np.concatenate(lists) if lists else np.empty(0, np.int64)
    near = rows(flat) @ np.asarray(query, dtype=np.float32) if len(flat) else np.empty(0)
    new = np.asarray(scores, dtype=np.float64).copy()
    start = 0
    for i, row in enumerate(lists):
        if len(row):
            mean = float(near[start : start + len(row)].mean())
            new[i] = (new[i] + beta * mean) / (1.0 + beta)
        start += len(row)
    order = np.lexsort((ids, -new))
    return new[order].astype(np.float32), np.asarray(ids, dtype=np.int64)[order]
