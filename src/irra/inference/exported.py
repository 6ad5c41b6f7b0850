"""``ExportedEncoder``: encode images and texts with an export directory instead of the model code.

With an ONNX export the whole path (PIL + numpy preprocessing, :mod:`irra.bpe` tokenisation,
ONNX Runtime) runs without PyTorch; a TorchScript export runs with ``torch.jit.load`` (PyTorch,
but not irra's model code). Embeddings equal :class:`irra.inference.TorchEncoder`'s up to float
rounding, and :attr:`ExportedEncoder.fingerprint` is the exported model's, so indexes built by
either engine accept the other.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from irra.bpe import Tokenizer, token_ids
from irra.inference.bundle import ExportBundle, ExportError, read_bundle
from irra.inference.pixels import load_pixels, preprocess_image
from irra.inference.protocol import Progress, unit_rows

logger = logging.getLogger(__name__)

#: Runs one encoder: (B, ...) numpy input -> (B, D) float32 features.
Runner = Callable[[np.ndarray], np.ndarray]


def onnx_runner(path: Path, input_name: str, threads: int | None = None) -> Runner:
    """An ONNX Runtime (CPU) session of the encoder file ``path`` as a function.

    Args:
        threads: intra-op threads (ONNX Runtime's default, one per core, when None).
    """
    try:
        import onnxruntime
    except ImportError as err:
        raise ExportError(
            f"{path}: running an ONNX export needs onnxruntime; install it with "
            "`pip install 'irra[export]'` (or `pip install onnxruntime`)"
        ) from err
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime raises its own exception types
        raise ExportError(f"{path}: ONNX Runtime cannot load it ({err}); export again") from err
    names = [i.name for i in session.get_inputs()]
    if names != [input_name]:
        raise ExportError(f"{path}: expected one input {input_name!r}, found {names}; export again")

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: batch})[0]

    return run


def torchscript_runner(path: Path, threads: int | None = None) -> Runner:
    """A TorchScript encoder file ``path`` (loaded with ``torch.jit.load``) as a function."""
    import warnings

    import torch

    if threads:
        torch.set_num_threads(threads)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation
            module = torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError as err:
        raise ExportError(f"{path}: not a TorchScript archive ({err}); export again") from err

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(batch)).numpy()

    return run


class ExportedEncoder:
    """Images and texts -> unit-length embeddings with the encoders of an export directory.

    Same interface as :class:`irra.inference.TorchEncoder` (``encode_texts``, ``encode_images``,
    ``dim``, ``fingerprint``, ``source``), so indexes and retrievers take either.

    Example:
        >>> encoder = ExportedEncoder.open("runs/demo/export-onnx")  # doctest: +SKIP
        >>> encoder.encode_texts(["a man in a black jacket"]).shape  # doctest: +SKIP
        (1, 64)
    """

    def __init__(self, bundle: ExportBundle, image_runner: Runner, text_runner: Runner) -> None:
        self.bundle = bundle
        self.engine = bundle.format
        self.source: str | None = str(bundle.directory.resolve())
        self.tokenizer = Tokenizer(bundle.vocab)
        self._image_runner = image_runner
        self._text_runner = text_runner

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        engine: str | None = None,
        threads: int | None = None,
        verify: bool = True,
    ) -> ExportedEncoder:
        """Open an export directory written by ``irra export``.

        Args:
            directory: the export directory.
            engine: ``onnx`` or ``torchscript``; must match the export (default: its format).
            threads: CPU threads of the runtime (its default when None).
            verify: check every file's sha256 against the manifest first.

        Raises:
            ExportError: not a complete export, a file changed since export, or the wrong
                engine for it.
        """
        bundle = read_bundle(directory, verify=verify)
        if engine is not None and engine != bundle.format:
            raise ExportError(
                f"{directory}: is an export in format {bundle.format}, not {engine}; pass --engine "
                f"{bundle.format}, or export with --format {engine}"
            )
        if bundle.format == "onnx":
            image = onnx_runner(bundle.image_encoder, "images", threads)
            text = onnx_runner(bundle.text_encoder, "ids", threads)
        else:
            image = torchscript_runner(bundle.image_encoder, threads)
            text = torchscript_runner(bundle.text_encoder, threads)
        return cls(bundle, image, text)

    @property
    def dim(self) -> int:
        """D, the embedding width."""
        return self.bundle.embed_dim

    @property
    def fingerprint(self) -> str:
        """The exported model's :func:`irra.inference.model_fingerprint`."""
        return self.bundle.fingerprint

    @property
    def model_config(self) -> dict[str, Any]:
        """The exported model's config (``IRRAConfig.to_dict()``)."""
        return self.bundle.model_config

    def encode_text_ids(self, ids: np.ndarray) -> np.ndarray:
        """ids (N, L) int64 -> raw global features (N, D) float32, not normalised."""
        return self._text_runner(np.ascontiguousarray(ids, dtype=np.int64))

    def encode_pixels(self, images: np.ndarray) -> np.ndarray:
        """images (N, 3, H, W) float32, preprocessed -> raw global features (N, D) float32."""
        return self._image_runner(np.ascontiguousarray(images, dtype=np.float32))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """texts: N strings -> (N, D) float32, L2-normalised rows."""
        ids = token_ids(list(texts), self.bundle.context_length, tokenizer=self.tokenizer)
        return unit_rows(self.encode_text_ids(ids))

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
            batch_size: images per inference call.
            workers: threads decoding images (0 = in the calling thread).
            progress: ``progress(done, total)`` after each batch.

        Raises:
            ImageDecodeError: a file that cannot be decoded (named in the message).
        """
        total = len(paths)
        out = np.empty((total, self.dim), dtype=np.float32)
        size, mean, std = self.bundle.image_size, self.bundle.mean, self.bundle.std

        def load(path: str | os.PathLike[str]) -> np.ndarray:
            return load_pixels(path, size, mean, std)

        pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 else None
        try:
            step = max(1, batch_size)
            for start in range(0, total, step):
                chunk = paths[start : start + step]
                pixels = list(pool.map(load, chunk)) if pool else [load(p) for p in chunk]
                out[start : start + len(chunk)] = unit_rows(self.encode_pixels(np.stack(pixels)))
                if progress is not None:
                    progress(start + len(chunk), total)
        finally:
            if pool is not None:
                pool.shutdown()
        return out

    def encode_pictures(self, images: Sequence[Image.Image]) -> np.ndarray:
        """N decoded RGB PIL images -> (N, D) float32, L2-normalised rows."""
        if not images:
            return np.empty((0, self.dim), dtype=np.float32)
        size, mean, std = self.bundle.image_size, self.bundle.mean, self.bundle.std
        pixels = np.stack([preprocess_image(image, size, mean, std) for image in images])
        return unit_rows(self.encode_pixels(pixels))
