"""What an index needs from an encoder, and opening one by engine name.

Engines: ``torch`` (:class:`irra.retrieval.Encoder`: an IRRA checkpoint with PyTorch), ``onnx``
and ``torchscript`` (:class:`irra.deploy.ExportedEncoder`: a directory written by ``irra
export``; the ONNX engine runs without PyTorch). All give the same embeddings up to float
rounding and report the same model fingerprint, so an index built by one is searched by any.
This module imports neither PyTorch nor ONNX Runtime; :func:`open_engine` imports the one asked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

#: ``progress(done, total)`` after each batch of images.
Progress = Callable[[int, int], None]
#: Engine names accepted by :func:`open_engine` (and ``--engine``).
ENGINES: tuple[str, ...] = ("torch", "onnx", "torchscript")


class EmbeddingEngine(Protocol):
    """Turns image files and texts into unit-length embeddings of one model."""

    #: ``torch``, ``onnx`` or ``torchscript``.
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
        """N image files -> (N, D) float32, unit rows, in order."""
        ...


def check_engine(name: str) -> str:
    """``name`` if it is an engine, else ValueError listing the valid ones."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; valid: {', '.join(ENGINES)}")
    return name


def detect_engine(checkpoint: str | os.PathLike[str]) -> str:
    """The engine for ``checkpoint``: an export directory's format, else ``torch``."""
    from irra.deploy.bundle import is_export_dir, read_bundle

    if is_export_dir(checkpoint):
        return read_bundle(checkpoint, verify=False).format
    return "torch"


def open_engine(
    checkpoint: str | os.PathLike[str],
    engine: str | None = None,
    *,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
) -> EmbeddingEngine:
    """Open ``checkpoint`` with ``engine`` (default: detected from the path).

    Args:
        checkpoint: an IRRA checkpoint (``torch``) or an export directory (``onnx``,
            ``torchscript``).
        engine: one of :data:`ENGINES`, or None to detect it.
        device, precision: for the ``torch`` engine.
        threads: CPU threads of an exported engine's runtime.

    Raises:
        ValueError: unknown engine, or an export directory given to the ``torch`` engine.
        ExportError: an incomplete or altered export, or one of another format.
    """
    engine = check_engine(engine) if engine is not None else detect_engine(checkpoint)
    if engine == "torch":
        from irra.deploy.bundle import is_export_dir

        if is_export_dir(checkpoint):
            raise ValueError(
                f"{checkpoint}: is an export directory, which the torch engine cannot read; "
                "pass --engine onnx (or torchscript), or the checkpoint it was exported from"
            )
        from irra.retrieval.encoder import Encoder

        encoder = Encoder.from_checkpoint(checkpoint, device=device, precision=precision)
        return encoder
    from irra.deploy.engine import ExportedEncoder

    if not Path(checkpoint).is_dir():
        from irra.deploy.bundle import ExportError

        raise ExportError(
            f"{checkpoint}: the {engine} engine needs an export directory; write one with "
            f"`irra export --checkpoint {checkpoint} --format {engine} --out EXPORT_DIR`"
        )
    return ExportedEncoder.open(checkpoint, engine=engine, threads=threads)
