"""What an index or a service needs from an encoder: images and texts -> unit-length embeddings.

Imports neither PyTorch nor ONNX Runtime.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

#: ``progress(done, total)`` after each batch of images.
Progress = Callable[[int, int], None]


class EmbeddingEncoder(Protocol):
    """Turns image files and texts into unit-length embeddings of one model.

    Implemented by :class:`irra.inference.TorchEncoder` (an IRRA checkpoint with PyTorch) and
    :class:`irra.inference.ExportedEncoder` (an ONNX or TorchScript export directory).
    """

    #: The engine running the model: ``torch``, ``onnx`` or ``torchscript``.
    engine: str
    #: Where the model was read from (a checkpoint or an export directory).
    source: str | None

    @property
    def dim(self) -> int:
        """D, the embedding width."""
        ...

    @property
    def fingerprint(self) -> str:
        """sha256 of the model's config and weights (:func:`model_fingerprint`)."""
        ...

    @property
    def model_config(self) -> dict[str, Any]:
        """The model's config as a dict."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """N strings -> (N, D) float32, unit rows."""
        ...

    def encode_images(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        batch_size: int = 64,
        workers: int = 0,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """N image files -> (N, D) float32, unit rows, in order.

        Raises:
            ImageDecodeError: a file that is not a decodable image (named in the message).
        """
        ...

    def encode_pictures(self, images: Sequence[Any]) -> np.ndarray:
        """N decoded RGB PIL images (:func:`irra.imageio.load_image`) -> (N, D) float32, unit
        rows."""
        ...


def unit_rows(feats: np.ndarray) -> np.ndarray:
    """(N, D) -> float32 rows of unit length (zero rows stay zero)."""
    feats = np.asarray(feats, dtype=np.float32)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return feats / np.maximum(norms, np.float32(1e-12))
