"""Inference: one IRRA model as an encoder of images and texts into unit-length embeddings.

* :class:`EmbeddingEncoder` - the protocol the index, the retriever and the service use;
* :class:`TorchEncoder` - an IRRA checkpoint run with PyTorch (engine ``torch``);
* :class:`ExportedEncoder` - an export directory written by ``irra export``, run with ONNX
  Runtime (engine ``onnx``, no PyTorch) or TorchScript (engine ``torchscript``);
* :func:`open_encoder` - open a checkpoint or an export directory with the right engine;
* :mod:`irra.inference.bundle` - reading an export directory; :mod:`irra.inference.pixels` - the
  eval image transform in numpy.

Names are imported on first use: ``import irra.inference`` does not import PyTorch, and encoding
with the ``onnx`` engine never does.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "EmbeddingEncoder": "protocol",
    "Progress": "protocol",
    "unit_rows": "protocol",
    "ENGINES": "open",
    "open_encoder": "open",
    "TorchEncoder": "torch_encoder",
    "model_fingerprint": "torch_encoder",
    "ExportedEncoder": "exported",
    "EXPORT_FORMATS": "bundle",
    "ExportBundle": "bundle",
    "ExportError": "bundle",
    "is_export_dir": "bundle",
    "read_bundle": "bundle",
    "load_pixels": "pixels",
    "preprocess_image": "pixels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'irra.inference' has no attribute '{name}'")
    return getattr(importlib.import_module(f"irra.inference.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
