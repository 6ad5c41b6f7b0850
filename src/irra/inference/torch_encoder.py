"""``TorchEncoder``: an IRRA checkpoint run with PyTorch, images and texts -> unit embeddings."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from irra.data.transforms import build_eval_transform
from irra.imageio import load_image
from irra.inference.protocol import Progress
from irra.model.irra import IRRA
from irra.runtime import autocast, resolve_device, resolve_precision
from irra.tokenizer import tokenize

logger = logging.getLogger(__name__)

__all__ = ["TorchEncoder", "model_fingerprint"]


def model_fingerprint(model: IRRA) -> str:
    """sha256 (hex) of the model's config and every weight (name, dtype, shape and bytes).

    Two models get the same fingerprint exactly when they compute the same embeddings, whatever
    file format they were read from.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True).encode("utf-8"))
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"\0{name}\0{data.dtype}\0{tuple(data.shape)}\0".encode())
        if data.numel():
            digest.update(data.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


class _ImageFiles(torch.utils.data.Dataset):
    """Decoded (:func:`irra.imageio.load_image`), transformed images of ``paths``."""

    def __init__(self, paths: Sequence[Path], transform: Callable) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_image(self.paths[index]))


class TorchEncoder:
    """An IRRA model in eval mode that turns images and texts into unit-length embeddings.

    The ``torch`` engine of :func:`irra.inference.open_encoder`.

    Example:
        >>> encoder = TorchEncoder.from_checkpoint("runs/demo/model")
        >>> encoder.encode_texts(["a man in a black jacket"]).shape
        (1, 64)
    """

    def __init__(
        self, model: IRRA, *, device: str | torch.device = "auto", precision: str = "auto"
    ) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.precision = resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        self.transform = build_eval_transform(model.config.clip.vision.image_size)
        self.context_length = model.config.clip.text.context_length
        self._fingerprint: str | None = None
        self.source: str | None = None
        self.engine = "torch"

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], *, device: str = "auto", precision: str = "auto"
    ) -> TorchEncoder:
        """Load any checkpoint :func:`irra.load_model` reads (irra model, run checkpoint ...)."""
        from irra.model import load_model

        encoder = cls(load_model(path), device=device, precision=precision)
        encoder.source = str(Path(path).resolve())
        return encoder

    @property
    def dim(self) -> int:
        """D, the embedding width."""
        return int(self.model.embed_dim)

    @property
    def model_config(self) -> dict[str, Any]:
        """The model's config (``IRRAConfig.to_dict()``)."""
        return self.model.config.to_dict()

    @property
    def fingerprint(self) -> str:
        """:func:`model_fingerprint` of the model (computed once)."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model)
        return self._fingerprint

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """texts: N strings -> (N, D) float32, L2-normalised rows."""
        ids = tokenize(list(texts), self.context_length).to(self.device)
        with autocast(self.device, self.precision):
            feats = self.model.encode_text(ids)
        return _unit_rows(feats)

    @torch.inference_mode()
    def encode_images(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        batch_size: int = 64,
        workers: int = 0,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Image files -> (N, D) float32, L2-normalised rows, in the order of ``paths``.

        Args:
            paths: N image files (any format Pillow reads).
            batch_size: images per forward pass.
            workers: data-loader processes decoding images (0 = in this process).
            progress: ``progress(done, total)`` after each batch.

        Raises:
            ImageDecodeError: a file that cannot be decoded (named in the message).
        """
        total = len(paths)
        out = np.empty((total, self.dim), dtype=np.float32)
        if total == 0:
            return out
        loader = torch.utils.data.DataLoader(
            _ImageFiles([Path(p) for p in paths], self.transform),
            batch_size=max(1, batch_size),
            num_workers=workers,
            shuffle=False,
        )
        done = 0
        for images in loader:
            with autocast(self.device, self.precision):
                feats = self.model.encode_image(images.to(self.device))
            out[done : done + len(images)] = _unit_rows(feats)
            done += len(images)
            if progress is not None:
                progress(done, total)
        return out

    @torch.inference_mode()
    def encode_pictures(self, images: Sequence[Image.Image]) -> np.ndarray:
        """N decoded RGB PIL images -> (N, D) float32, L2-normalised rows."""
        if not images:
            return np.empty((0, self.dim), dtype=np.float32)
        batch = torch.stack([self.transform(image) for image in images]).to(self.device)
        with autocast(self.device, self.precision):
            feats = self.model.encode_image(batch)
        return _unit_rows(feats)


def _unit_rows(feats: torch.Tensor) -> np.ndarray:
    """(N, D) tensor -> float32 numpy array with unit-length rows."""
    feats = torch.nn.functional.normalize(feats.float(), dim=-1)
    return feats.cpu().numpy().astype(np.float32, copy=False)
