"""Opening a model as an :class:`~irra.inference.protocol.EmbeddingEncoder`, by engine name.

Engines: ``torch`` (:class:`~irra.inference.torch_encoder.TorchEncoder`: an IRRA checkpoint with
PyTorch), ``onnx`` and ``torchscript`` (:class:`~irra.inference.exported.ExportedEncoder`: a
directory written by ``irra export``; the ONNX engine runs without PyTorch). All give the same
embeddings up to float rounding and report the same model fingerprint, so an index built by one
is searched by any. This module imports neither PyTorch nor ONNX Runtime; :func:`open_encoder`
imports the one asked.
"""

from __future__ import annotations

import os
from pathlib import Path

from irra.inference.bundle import ExportError, is_export_dir, read_bundle
from irra.inference.protocol import EmbeddingEncoder

#: Engine names accepted by :func:`open_encoder` (and ``--engine``).
ENGINES: tuple[str, ...] = ("torch", "onnx", "torchscript")


def check_engine(name: str) -> str:
    """``name`` if it is an engine, else ValueError listing the valid ones."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; valid: {', '.join(ENGINES)}")
    return name


def detect_engine(checkpoint: str | os.PathLike[str]) -> str:
    """The engine for ``checkpoint``: an export directory's format, else ``torch``."""
    if is_export_dir(checkpoint):
        return read_bundle(checkpoint, verify=False).format
    return "torch"


def open_encoder(
    checkpoint: str | os.PathLike[str],
    engine: str | None = None,
    *,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
) -> EmbeddingEncoder:
    """Open ``checkpoint`` with ``engine`` (default: detected from the path).

    Args:
        checkpoint: an IRRA checkpoint (``torch``) or an export directory (``onnx``,
            ``torchscript``).
        engine: one of :data:`ENGINES`, or None to detect it.
        device, precision: for the ``torch`` engine (see :mod:`irra.runtime`).
        threads: CPU threads of the runtime: ONNX Runtime's intra-op threads; for ``torch`` and
            ``torchscript``, ``torch.set_num_threads`` (process-wide). None: leave as is.

    Raises:
        ValueError: unknown engine, or an export directory given to the ``torch`` engine.
        ExportError: an incomplete or altered export, or one of another format.
    """
    engine = check_engine(engine) if engine is not None else detect_engine(checkpoint)
    if engine == "torch":
        if is_export_dir(checkpoint):
            raise ValueError(
                f"{checkpoint}: is an export directory, which the torch engine cannot read; "
                "pass --engine onnx (or torchscript), or the checkpoint it was exported from"
            )
        import torch

        from irra.inference.torch_encoder import TorchEncoder

        if threads:
            torch.set_num_threads(threads)
        return TorchEncoder.from_checkpoint(checkpoint, device=device, precision=precision)
    if not Path(checkpoint).is_dir():
        raise ExportError(
            f"{checkpoint}: the {engine} engine needs an export directory; write one with "
            f"`irra export --checkpoint {checkpoint} --format {engine} --out EXPORT_DIR`"
        )
    from irra.inference.exported import ExportedEncoder

    return ExportedEncoder.open(checkpoint, engine=engine, threads=threads)
