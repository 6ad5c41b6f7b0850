"""Reading a multipart upload into memory, capped: no part of it is ever written to disk.

Starlette spools an uploaded file to a temporary file on disk past 1 MiB; here the whole request
body is read first (the application's :class:`~irra.service.limits.BodyLimit` cuts it off past
:data:`MAX_UPLOAD_BYTES`, whatever its ``Content-Length`` says) and parsed by a parser whose
spool holds the whole cap in memory, so the pictures stay in memory until they are decoded by
:func:`irra.imageio.load_image`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import get_origin

from fastapi import HTTPException, Request
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from irra.retrieval.query import MAX_FILTER_VALUES, MAX_PARTS
from irra.service.schemas import UploadFields, error_message

#: Largest accepted upload request (the images and the fields together), in bytes.
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
#: The 413 message of an upload over the cap.
UPLOAD_TOO_LARGE = (
    f"upload larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB; send a smaller image "
    "(a person crop is usually well under 1 MiB)"
)
#: Form fields that take repeated values: the list fields of :class:`UploadFields`.
_LIST_FIELDS = frozenset(
    field.alias or name
    for name, field in UploadFields.model_fields.items()
    if get_origin(field.annotation) is list
)


class _InMemoryParser(MultiPartParser):
    """Starlette's multipart parser with a spool larger than any accepted body: never on disk."""

    spool_max_size = MAX_UPLOAD_BYTES + 1


async def read_upload(request: Request) -> tuple[UploadFields, list[tuple[bytes, str]]]:
    """The fields and the ``(bytes, file name)`` of each ``image`` part of a multipart request.

    Raises:
        HTTPException: 415 not ``multipart/form-data``; 422
            a malformed body, no ``image`` part, a field that is not a file, too many parts, or a
            field out of range.
    """
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(415, "send multipart/form-data with the picture in the field 'image'")
    body = await request.body()
    parser = _InMemoryParser(
        request.headers,
        _once(body),
        max_files=MAX_PARTS,
        max_fields=2 * MAX_FILTER_VALUES + 4 * MAX_PARTS + 16,
        max_part_size=64 * 1024,
    )
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise HTTPException(422, f"malformed multipart body: {err.message}") from err
    try:
        return _fields(form), await _images(form)
    finally:
        await form.close()


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


def _fields(form: FormData) -> UploadFields:
    data: dict[str, object] = {}
    for key in form:
        values = form.getlist(key)
        if key == "image":
            continue
        if any(isinstance(v, UploadFile) for v in values):
            raise HTTPException(
                422, f"the field {key!r} must be text, not a file (send pictures as 'image')"
            )
        if key in _LIST_FIELDS:
            data[key] = values
        elif len(values) > 1:
            raise HTTPException(
                422, f"the field {key!r} was given {len(values)} times; give it once"
            )
        else:
            data[key] = values[0]
    try:
        return UploadFields.model_validate(data)
    except ValidationError as err:
        raise HTTPException(422, error_message(err.errors())) from err


async def _images(form: FormData) -> list[tuple[bytes, str]]:
    files = form.getlist("image")
    if not files:
        raise HTTPException(422, "no query image: send the picture as the file field 'image'")
    images = []
    for item in files:
        if not isinstance(item, UploadFile):
            raise HTTPException(422, "the field 'image' must be a file (the picture), not text")
        images.append((await item.read(), item.filename or "image"))
    return images
