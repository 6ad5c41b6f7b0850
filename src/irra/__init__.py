"""irra: text-to-image person retrieval with IRRA (CVPR 2023).

Public API (imported lazily, so ``import irra`` stays cheap)::

    irra.tokenize(texts, context_length=77) -> LongTensor (N, 77)
    irra.build_model(...) / irra.load_model(path) -> IRRA
    irra.compute_losses(model, batch) -> dict of losses
    irra.losses, irra.metrics
    irra.Retriever.open(index).search(text, k) -> ranked images of an index
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "tokenize": ("irra.tokenizer", "tokenize"),
    "build_model": ("irra.model", "build_model"),
    "load_model": ("irra.model", "load_model"),
    "save_model": ("irra.model", "save_model"),
    "IRRA": ("irra.model", "IRRA"),
    "compute_losses": ("irra.methods.irra", "compute_losses"),
    "load_config": ("irra.config", "load_config"),
    "Retriever": ("irra.retrieval", "Retriever"),
    "losses": ("irra.losses", None),
    "metrics": ("irra.metrics", None),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'irra' has no attribute '{name}'")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)


def __dir__() -> list[str]:
    return sorted(__all__)
