"""The FastAPI application: search API, image API, health check and the search page.

Every route reads from the one :class:`~irra.retrieval.Retriever` given to :func:`create_app`;
nothing is global. Bad input is answered with a 4xx and ``{"detail": message}``, never a 500.
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from irra import __version__
from irra.retrieval import MAX_K, MAX_QUERY_CHARS, QueryError, Retriever
from irra.retrieval.retriever import check_query

logger = logging.getLogger(__name__)

#: Largest request body accepted (a query is at most MAX_QUERY_CHARS characters).
MAX_BODY_BYTES = 16 * 1024
_MAX_ID = 2**63 - 1  # SQLite integers: larger ids are refused by the schema (422)
_MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".bmp": "image/bmp",
    ".webp": "image/webp",
}


def _integral_float_to_int(value: Any) -> Any:
    """JSON has one number type: ``5.0`` is the integer 5 (booleans and strings stay refused)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class SearchRequest(BaseModel):
    """A text query and the number of results wanted."""

    model_config = ConfigDict(extra="forbid")
    # The schema states the limits, so clients (and fuzzers) can tell a valid request up front.
    query: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        pattern=r"[^\s\x1c-\x1f]",  # something besides whitespace (as str.strip sees it)
        description=f"description of the person, 1 to {MAX_QUERY_CHARS} characters",
    )
    k: Annotated[int, BeforeValidator(_integral_float_to_int)] = Field(
        10, strict=True, ge=1, le=MAX_K, description=f"number of results, 1 to {MAX_K}"
    )


class SearchResult(BaseModel):
    """One ranked image; ``url`` serves the picture."""

    rank: int
    id: int
    path: str
    score: float
    identity: str | None = None
    camera: str | None = None
    url: str


class SearchResponse(BaseModel):
    """The results of one query, best first."""

    query: str
    k: int
    results: list[SearchResult]


class Health(BaseModel):
    """Liveness and what is being served."""

    status: str
    images: int
    index_type: str
    model: str
    version: str


def _page() -> str:
    return (
        importlib.resources.files("irra.service")
        .joinpath("static/index.html")
        .read_text(encoding="utf-8")
    )


def create_app(retriever: Retriever) -> FastAPI:
    """The web application serving ``retriever``.

    Routes: ``GET /`` (search page), ``POST /api/search``, ``GET /api/images/{id}``,
    ``GET /api/health``; the OpenAPI schema at ``/openapi.json`` and docs at ``/docs``.
    """
    app = FastAPI(
        title="irra search",
        version=__version__,
        description="Text-to-image person retrieval over an irra index.",
    )
    page = _page()
    root = retriever.images_root.resolve()

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse(
                {"detail": f"request body larger than {MAX_BODY_BYTES} bytes"}, status_code=413
            )
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def readable_validation_error(
        request: Request, exc: RequestValidationError
    ) -> JSONResponse:
        """422 with one sentence: the search API's own wording where it applies."""
        body = exc.body
        if isinstance(body, dict) and set(body) <= {"query", "k"}:
            try:
                check_query(body.get("query"), _integral_float_to_int(body.get("k", 10)))
            except QueryError as err:
                return JSONResponse({"detail": str(err)}, status_code=422)
        text = "; ".join(
            f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
            for error in exc.errors()
        )
        return JSONResponse({"detail": text or "invalid request"}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/api/health", response_model=Health)
    def health() -> Health:
        """Whether the service is up, and the size and model of its index."""
        manifest = retriever.manifest
        return Health(
            status="ok",
            images=len(retriever),
            index_type=manifest["index_type"],
            model=manifest["model"]["fingerprint"],
            version=__version__,
        )

    @app.post(
        "/api/search",
        response_model=SearchResponse,
        responses={422: {"description": "empty or overlong query, or k out of range"}},
    )
    def search(request: SearchRequest) -> SearchResponse:
        """The k images that best match the description, best first (cosine similarity)."""
        try:
            hits = retriever.search(request.query, request.k)
        except QueryError as err:
            raise HTTPException(status_code=422, detail=str(err)) from err
        results = [SearchResult(**h.to_dict(), url=f"/api/images/{h.id}") for h in hits]
        return SearchResponse(query=request.query.strip(), k=request.k, results=results)

    @app.get(
        "/api/images/{image_id}",
        response_class=FileResponse,
        responses={404: {"description": "no such image in the index"}},
    )
    def image(image_id: Annotated[int, PathParam(ge=-_MAX_ID - 1, le=_MAX_ID)]) -> FileResponse:
        """The picture of an indexed image (only images that are in the index are served)."""
        try:
            path = retriever.image_path(image_id).resolve()
        except KeyError as err:
            raise HTTPException(status_code=404, detail=f"no image with id {image_id}") from err
        if not path.is_relative_to(root) or not Path(path).is_file():
            raise HTTPException(
                status_code=404,
                detail=f"image {image_id} is no longer on disk; run irra index again",
            )
        return FileResponse(path, media_type=_MEDIA_TYPES.get(path.suffix.lower()))

    return app
