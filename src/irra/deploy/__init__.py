"""Deployment: write the two encoders of a model as ONNX or TorchScript files (needs PyTorch).

* :func:`export_model` - write an export directory (:mod:`irra.deploy.export`).

Reading and running an export directory is inference: :mod:`irra.inference.bundle` and
:class:`irra.inference.ExportedEncoder`. Names are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {"export_model": "export"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'irra.deploy' has no attribute '{name}'")
    return getattr(importlib.import_module(f"irra.deploy.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
