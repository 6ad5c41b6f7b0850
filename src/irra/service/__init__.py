"""HTTP API and web page over an opened :class:`~irra.retrieval.Retriever` (needs irra[serve])."""

from irra.service.app import MAX_BODY_BYTES, create_app

__all__ = ["MAX_BODY_BYTES", "create_app"]
