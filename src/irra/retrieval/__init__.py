"""Index a folder of person crops and search it by description.

* :class:`Encoder` - an IRRA model that turns images and texts into unit-length embeddings;
* :func:`build_index` - encode a gallery folder (or only what changed) into an index directory;
* :class:`Retriever` - open an index with the model that built it, ``search`` and ``add``.
"""

from irra.retrieval.build import BuildReport, build_index
from irra.retrieval.encoder import Encoder, model_fingerprint
from irra.retrieval.files import GalleryError, read_labels, scan_images
from irra.retrieval.retriever import MAX_K, MAX_QUERY_CHARS, QueryError, Retriever, SearchHit
from irra.retrieval.store import IndexStoreError
from irra.retrieval.vectors import INDEX_TYPES

__all__ = [
    "INDEX_TYPES",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "BuildReport",
    "Encoder",
    "GalleryError",
    "IndexStoreError",
    "QueryError",
    "Retriever",
    "SearchHit",
    "build_index",
    "model_fingerprint",
    "read_labels",
    "scan_images",
]
