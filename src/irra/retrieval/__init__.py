"""Index a folder of person crops and search it by description.

* :func:`build_index` - encode a gallery folder (or only what changed) into an index directory;
* :class:`Retriever` - open an index with the model that built it, ``search`` and ``add``.

The model is opened with :func:`irra.inference.open_encoder`. Names are imported on first use:
``import irra.retrieval`` does not import PyTorch, and searching with the ``onnx`` engine never
does.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "BuildReport": "build",
    "build_index": "build",
    "GalleryError": "files",
    "Label": "files",
    "read_labels": "files",
    "scan_images": "files",
    "ImagePart": "query",
    "MAX_K": "query",
    "MAX_QUERY_CHARS": "query",
    "Query": "query",
    "QueryError": "query",
    "SearchFilter": "query",
    "SimilarPart": "query",
    "TextPart": "query",
    "Retriever": "retriever",
    "SearchHit": "retriever",
    "SearchResults": "retriever",
    "IndexStoreError": "store",
    "INDEX_TYPES": "vectors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'irra.retrieval' has no attribute '{name}'")
    return getattr(importlib.import_module(f"irra.retrieval.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
