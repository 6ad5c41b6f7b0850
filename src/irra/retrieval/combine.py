"""One query vector from the parts of a :class:`~irra.retrieval.query.Query`.

The rule: every part is encoded to a unit-length embedding (a text by the text tower, an image
file or upload by the image tower, an indexed image is its stored embedding), multiplied by its
weight, positives added and negatives subtracted, and the sum scaled to unit length::

    v = normalise( sum_p w_p e_p - sum_n w_n e_n )

Each result's score is then the cosine similarity of ``v`` and the image, in [-1, 1], and the
ranking equals the weighted sum of the parts' own cosine scores (late fusion without
normalisation), so one exact or approximate index search serves any mix of parts. Measured on
the demo model (``bench/bench_query_fusion.py``, README "Query parts"), this sum ranked better
than standardised (z-score) late fusion and than reciprocal-rank fusion.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from irra.imageio import ImageDecodeError, load_image
from irra.inference.protocol import EmbeddingEncoder
from irra.retrieval.query import Query, QueryError

#: ``stored(ids) -> (n, D)``: the index's embeddings of image ids (KeyError naming an unknown id).
StoredRows = Callable[[list[int]], np.ndarray]


def encode_query(encoder: EmbeddingEncoder, query: Query, stored: StoredRows) -> np.ndarray:
    """The unit query vector (D,) float32 of a checked ``query`` (see the module's rule).

    Args:
        encoder: the index's model.
        query: a :meth:`Query.checked` query.
        stored: the index's embeddings of ``query.similar`` ids.

    Raises:
        QueryError: an image part that is not a decodable image, an unknown similar id, or
            negatives that cancel the positive parts exactly.
    """
    vectors, weights = [], []
    texts = ([query.text] if query.text is not None else []) + list(query.negatives)
    if texts:
        vectors.append(encoder.encode_texts([t.text for t in texts]))
        signs = [1.0] * (query.text is not None) + [-1.0] * len(query.negatives)
        weights += [s * t.weight for s, t in zip(signs, texts, strict=True)]
    if query.images:
        pictures = []
        for part in query.images:
            try:
                pictures.append(load_image(part.image, name=part.label))
            except ImageDecodeError as err:
                raise QueryError(f"query image {err}") from err
        vectors.append(encoder.encode_pictures(pictures))
        weights += [p.weight for p in query.images]
    if query.similar:
        vectors.append(stored([p.id for p in query.similar]))
        weights += [p.weight for p in query.similar]
    return combine(np.concatenate(vectors), np.asarray(weights, dtype=np.float32))


def combine(embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted sum of unit ``embeddings`` (P, D) with signed ``weights`` (P,), unit length (D,).

    Raises:
        QueryError: the sum is zero (negatives cancel the positive parts).
    """
    total = (np.asarray(weights, dtype=np.float64)[:, None] * embeddings).sum(axis=0)
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise QueryError("the negative parts cancel the positive ones; lower their weights")
    return (total / norm).astype(np.float32)
