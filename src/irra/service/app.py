"""The FastAPI application: search API (JSON and upload), images, facets, health, the page.

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
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from irra import __version__
from irra.retrieval.capture import format_time
from irra.retrieval.query import MAX_PARTS, Query, QueryError, check_query
from irra.retrieval.retriever import Retriever
from irra.service.frames import FrameUnavailable, frame_jpeg
from irra.service.limits import BodyLimit
from irra.service.schemas import (
    MAX_ID,
    Facets,
    Health,
    Problem,
    SearchRequest,
    SearchResponse,
    SearchResult,
    UploadFields,
    error_message,
    integral_float_to_int,
)
from irra.service.upload import MAX_UPLOAD_BYTES, UPLOAD_TOO_LARGE, read_upload

logger = logging.getLogger(__name__)

#: Largest JSON request body accepted (16 negative texts of 1,000 characters fit many times).
MAX_BODY_BYTES = 256 * 1024
_MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".bmp": "image/bmp",
    ".webp": "image/webp",
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "a similar id that is not in the index"},
    413: {"model": Problem, "description": "request body over the size cap"},
    422: {
        "model": Problem,
        "description": "a request the search cannot run: no positive part, after later than "
        "before, negatives cancelling the positives, a value out of range",
    },
}


def _page() -> str:
    return (
        importlib.resources.files("irra.service")
        .joinpath("static/index.html")
        .read_text(encoding="utf-8")
    )


def _upload_body_schema() -> dict[str, Any]:
    """The OpenAPI request body of ``/api/search/upload``: the form fields and the image files."""
    schema = UploadFields.model_json_schema(by_alias=True)
    for field in schema["properties"].values():  # a form has no null: a field is given or not
        options = field.pop("anyOf", None)
        if options is not None:
            field.update(next(o for o in options if o.get("type") != "null"))
    schema["properties"]["image"] = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "minItems": 1,
        "maxItems": MAX_PARTS,
        "description": f"the query picture(s); the whole request at most {MAX_UPLOAD_BYTES} bytes",
    }
    schema["required"] = ["image"]
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }


def _body_cap(path: str) -> tuple[int, str]:
    if path == "/api/search/upload":
        return MAX_UPLOAD_BYTES, UPLOAD_TOO_LARGE
    return MAX_BODY_BYTES, f"request body larger than {MAX_BODY_BYTES} bytes"


def create_app(retriever: Retriever) -> FastAPI:
    """The web application serving ``retriever``.

    Routes: ``GET /`` (search page), ``POST /api/search``, ``POST /api/search/upload``,
    ``GET /api/images/{id}``, ``GET /api/images/{id}/frame`` (footage: the whole frame),
    ``GET /api/facets``, ``GET /api/health``; the OpenAPI schema at ``/openapi.json`` and docs
    at ``/docs``.
    """
    app = FastAPI(
        title="irra search",
        version=__version__,
        description="Person retrieval over an irra index: by description, photo and indexed image.",
    )
    page = _page()
    root = retriever.images_root.resolve()

    app.add_middleware(BodyLimit, caps=_body_cap)

    @app.exception_handler(RequestValidationError)
    async def readable_validation_error(
        request: Request, exc: RequestValidationError
    ) -> JSONResponse:
        """422 with one sentence: the search API's own wording where it applies."""
        body = exc.body
        if isinstance(body, dict) and "query" in body and set(body) <= {"query", "k"}:
            try:
                check_query(body.get("query"), integral_float_to_int(body.get("k", 10)))
            except QueryError as err:
                return JSONResponse({"detail": str(err)}, status_code=422)
        return JSONResponse({"detail": error_message(exc.errors())}, status_code=422)

    def run_search(query: Query, fields: SearchRequest | UploadFields) -> SearchResponse:
        """Search ``query`` with the filter and options of ``fields`` (404 / 422 on bad input)."""
        for part in query.similar:
            image_id = part if isinstance(part, int) else part.id
            try:
                retriever.record(image_id)
            except KeyError as err:
                raise HTTPException(
                    404, f"no image with id {image_id} in this index; use the ids of results"
                ) from err
        try:
            hits = retriever.search(
                query,
                fields.k,
                filter=fields.search_filter(),
                min_score=fields.min_score,
                rerank=fields.rerank,
            )
        except QueryError as err:
            raise HTTPException(status_code=422, detail=str(err)) from err
        return SearchResponse(
            query=fields.query.strip() if fields.query is not None else None,
            k=fields.k,
            results=[
                SearchResult(
                    **h.to_dict(),
                    url=f"/api/images/{h.id}",
                    frame_url=f"/api/images/{h.id}/frame" if h.frame is not None else None,
                )
                for h in hits
            ],
            message=hits.message,
            candidates=hits.candidates,
        )

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

    @app.get("/api/facets", response_model=Facets)
    def facets() -> Facets:
        """The index's cameras and the range of its capture times (what filters can name)."""
        cameras, first, last = retriever.facets()
        ms = retriever.footage  # frames are milliseconds apart; photos are stamped to the second
        return Facets(
            cameras=cameras,
            first_time=format_time(first, milliseconds=ms),
            last_time=format_time(last, milliseconds=ms),
        )

    @app.post("/api/search", response_model=SearchResponse, responses=_ERRORS)
    def search(request: SearchRequest) -> SearchResponse:
        """The k images that best match the query among those passing the filters, best first.

        The parts (``query``, ``similar``, ``not``) are combined into one query vector; the score
        is the cosine similarity with it, in [-1, 1]. A filter no image passes gives no results
        and a ``message``.
        """
        return run_search(request.to_query(), request)

    @app.post(
        "/api/search/upload",
        response_model=SearchResponse,
        responses={**_ERRORS, 415: {"model": Problem, "description": "not multipart/form-data"}},
        openapi_extra=_upload_body_schema(),
    )
    async def search_upload(request: Request) -> SearchResponse:
        """Like ``/api/search``, with query pictures uploaded as the file field ``image``.

        Multipart form fields: ``image`` (one or more files), ``query``, ``query_weight``,
        ``similar``, ``not``, ``camera``, ``identity`` (repeat a field for several values),
        ``image_weight``, ``similar_weight``, ``not_weight`` (one per value of that part, in
        order), ``after``, ``before``, ``under``, ``min_score``, ``rerank``, ``k``. The pictures
        are decoded in memory and never stored.
        """
        fields, images = await read_upload(request)
        try:
            query = fields.to_query(images)
        except QueryError as err:
            raise HTTPException(status_code=422, detail=str(err)) from err
        return await run_in_threadpool(run_search, query, fields)

    @app.get(
        "/api/images/{image_id}",
        response_class=FileResponse,
        responses={404: {"model": Problem, "description": "no such image in the index"}},
    )
    def image(image_id: Annotated[int, PathParam(ge=-MAX_ID - 1, le=MAX_ID)]) -> FileResponse:
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

    @app.get(
        "/api/images/{image_id}/frame",
        response_class=Response,
        responses={
            200: {"content": {"image/jpeg": {}}, "description": "the whole frame as JPEG"},
            404: {
                "model": Problem,
                "description": "no such image, not a crop of footage, or its footage unreadable",
            },
        },
    )
    def frame(image_id: Annotated[int, PathParam(ge=-MAX_ID - 1, le=MAX_ID)]) -> Response:
        """The whole frame a crop of footage was cut from, as JPEG (its box is in the results)."""
        try:
            record = retriever.record(image_id)
        except KeyError as err:
            raise HTTPException(status_code=404, detail=f"no image with id {image_id}") from err
        if record.source is None or record.frame is None:
            raise HTTPException(
                status_code=404,
                detail=f"image {image_id} is not a crop of footage: it has no frame; "
                f"/api/images/{image_id} serves the image itself",
            )
        try:
            return Response(frame_jpeg(record.source, record.frame), media_type="image/jpeg")
        except FrameUnavailable as err:
            raise HTTPException(status_code=404, detail=str(err)) from err

    return app
