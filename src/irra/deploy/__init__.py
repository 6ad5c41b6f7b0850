"""Deployment: export the two encoders to ONNX or TorchScript and encode without the model code.

* :mod:`irra.deploy.bundle` - the export directory: file names, ``irra_export.json``, checks
  (no PyTorch);
* :mod:`irra.deploy.preprocess` - the eval image transform with PIL and numpy (no PyTorch);
* :mod:`irra.deploy.engine` - :class:`ExportedEncoder`, the retrieval encoder over an export
  directory (ONNX Runtime needs no PyTorch; TorchScript does);
* :mod:`irra.deploy.export` - :func:`export_model`, writing an export directory (needs PyTorch).

Names are imported on first use, so ``import irra.deploy`` does not import PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "EXPORT_FORMATS": "bundle",
    "ExportBundle": "bundle",
    "ExportError": "bundle",
    "is_export_dir": "bundle",
    "read_bundle": "bundle",
    "ExportedEncoder": "engine",
    "export_model": "export",
    "load_image": "preprocess",
    "preprocess_image": "preprocess",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'irra.deploy' has no attribute '{name}'")
    return getattr(importlib.import_module(f"irra.deploy.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
