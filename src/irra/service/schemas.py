"""The request and response bodies of the HTTP API, as pydantic models.

The models state the limits of :mod:`irra.retrieval.query` in the OpenAPI schema (lengths, ranges,
list sizes, ISO 8601 times), so a client can tell a valid request up front. They only parse: the
parts and the filter are checked once more by :class:`~irra.retrieval.Query` and
:class:`~irra.retrieval.SearchFilter` when the search runs, which word the errors. What no schema
can say - ``after`` later than ``before``, negative parts that cancel the positive ones, an upload
that is not an image - is answered 422 with a message; an unknown similar id 404.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from irra.retrieval.query import (
    MAX_FILTER_VALUES,
    MAX_K,
    MAX_PARTS,
    MAX_QUERY_CHARS,
    MAX_WEIGHT,
    ImagePart,
    Query,
    QueryError,
    SearchFilter,
    SimilarPart,
    TextPart,
)

#: Largest image id (SQLite integers).
MAX_ID = 2**63 - 1
#: Largest similar id in a request body: the largest integer every JSON reader holds exactly.
MAX_JSON_ID = 2**53 - 1


def integral_float_to_int(value: Any) -> Any:
    """JSON has one number type: ``5.0`` is the integer 5 (booleans and strings stay refused)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Text = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        pattern=r"[^\s\x1c-\x1f]",  # something besides whitespace (as str.strip sees it)
        description=f"a description of the person, 1 to {MAX_QUERY_CHARS} characters",
    ),
]
Weight = Annotated[
    float,
    Field(gt=0, le=MAX_WEIGHT, description=f"weight of the part, in (0, {MAX_WEIGHT:g}]"),
]
ImageId = Annotated[
    int,
    Field(ge=0, le=MAX_JSON_ID, description="an image id of the index (from earlier results)"),
    BeforeValidator(integral_float_to_int),
]
Name = Annotated[str, Field(min_length=1, max_length=1000, pattern=r"[^\s\x1c-\x1f]")]
Time = Annotated[
    str,
    Field(
        json_schema_extra={"format": "date-time"},
        max_length=64,
        description="ISO 8601, e.g. 2024-05-01 or 2024-05-01T14:30:00+02:00 (no offset = UTC)",
    ),
]
Folder = Annotated[
    str,
    Field(
        min_length=1,
        max_length=4096,
        pattern=r"^[^/\\]",
        description="a folder relative to the indexed one, e.g. cam1/2024-05-01",
    ),
]
Count = Annotated[
    int,
    Field(ge=1, le=MAX_K, description=f"number of results, 1 to {MAX_K}"),
    BeforeValidator(integral_float_to_int),
]
MinScore = Annotated[
    float,
    Field(ge=-1, le=1, description="only results scoring at least this (cosine, in [-1, 1])"),
]


class SimilarImage(BaseModel):
    """An indexed image with a weight."""

    model_config = ConfigDict(extra="forbid", strict=True)
    id: ImageId
    weight: Weight = 1.0


class WeightedText(BaseModel):
    """A negative description with a weight."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: Text
    weight: Weight = 1.0


class _Fields(BaseModel):
    """What the JSON and the multipart search requests share: the text, filters and options."""

    # null is read as absent but left out of the schema: a query needs a positive part
    query: Text | SkipJsonSchema[None] = Field(None, description="the description of the person")
    query_weight: Weight = 1.0
    camera: list[Name] = Field([], max_length=MAX_FILTER_VALUES, description="any of these")
    identity: list[Name] = Field([], max_length=MAX_FILTER_VALUES, description="any of these")
    after: Time | None = Field(None, description="captured at or after (ISO 8601)")
    before: Time | None = Field(None, description="captured at or before (ISO 8601)")
    under: Folder | None = Field(None, description="only images in this folder of the gallery")
    min_score: MinScore | None = None
    rerank: bool = Field(False, description="re-score the top 100 with their visual neighbours")
    k: Count = 10

    def search_filter(self) -> SearchFilter:
        """The filter of this request (not yet checked)."""
        return SearchFilter(self.camera, self.identity, self.after, self.before, self.under)

    def text_part(self) -> TextPart | None:
        """The description with its weight, or None."""
        return None if self.query is None else TextPart(self.query, self.query_weight)


class SearchRequest(_Fields):
    """A search: any mix of a description, indexed images and negative descriptions, filtered.

    At least one positive part (``query`` or ``similar``). ``{"query": ..., "k": ...}`` is a text
    search as before.
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "anyOf": [
                {"required": ["query"]},
                {"required": ["similar"], "properties": {"similar": {"minItems": 1}}},
            ]
        },
    )
    similar: list[ImageId | SimilarImage] = Field(
        [], max_length=MAX_PARTS, description="indexed images to find more of: ids or {id, weight}"
    )
    not_: list[Text | WeightedText] = Field(
        [],
        alias="not",
        max_length=MAX_PARTS,
        description="descriptions to rank away from: texts or {text, weight}",
    )

    def to_query(self) -> Query:
        """The :class:`Query` of this request (not yet checked)."""
        similar = [p if isinstance(p, int) else SimilarPart(p.id, p.weight) for p in self.similar]
        negatives = [p if isinstance(p, str) else TextPart(p.text, p.weight) for p in self.not_]
        return Query(self.text_part(), (), tuple(similar), tuple(negatives))


class UploadFields(_Fields):
    """The form fields of an upload search (besides the ``image`` files).

    Repeat a field to give several values (``camera``, ``identity``, ``similar``, ``not``). The
    weights of the list parts are lists too, one per value in order (missing ones are 1):
    ``image_weight`` for the images, ``similar_weight`` and ``not_weight``.
    """

    model_config = ConfigDict(extra="forbid")
    similar: list[ImageId] = Field([], max_length=MAX_PARTS, description="indexed image ids")
    not_: list[Text] = Field([], alias="not", max_length=MAX_PARTS, description="negative texts")
    image_weight: list[Weight] = Field(
        [], max_length=MAX_PARTS, description="weight of each image, in order (default 1)"
    )
    similar_weight: list[Weight] = Field(
        [], max_length=MAX_PARTS, description="weight of each similar id, in order (default 1)"
    )
    not_weight: list[Weight] = Field(
        [], max_length=MAX_PARTS, description="weight of each negative text, in order (default 1)"
    )

    def to_query(self, images: list[tuple[bytes, str]]) -> Query:
        """The :class:`Query` of these fields and the uploaded ``(bytes, file name)`` images.

        Raises:
            QueryError: more weights of a part than values of it.
        """
        image_weights = _weights(self.image_weight, len(images), "image_weight", "image")
        parts = tuple(
            ImagePart(data, weight, name=f"upload {name[:100]!r}")
            for (data, name), weight in zip(images, image_weights, strict=True)
        )
        similar_weights = _weights(self.similar_weight, len(self.similar), "similar_weight", "id")
        similar = tuple(
            SimilarPart(i, w) for i, w in zip(self.similar, similar_weights, strict=True)
        )
        not_weights = _weights(self.not_weight, len(self.not_), "not_weight", "negative text")
        negatives = tuple(TextPart(t, w) for t, w in zip(self.not_, not_weights, strict=True))
        return Query(self.text_part(), parts, similar, negatives)


def _weights(weights: list[float], count: int, field: str, what: str) -> list[float]:
    """``weights`` padded with 1 to ``count`` values; more than ``count`` is a QueryError."""
    if len(weights) > count:
        raise QueryError(
            f"{len(weights)} {field} values for {count} {what}(s); give at most one per {what}, "
            "in the order of the values"
        )
    return weights + [1.0] * (count - len(weights))


class SearchResult(BaseModel):
    """One ranked image; ``url`` serves the picture, ``time`` is its capture time (UTC).

    A crop of footage also says where it was seen (null for an image-folder index): ``source``
    (video file or frame folder), ``frame`` (1-based), ``box`` (x, y, w, h in that frame's
    pixels), ``track`` (its id within the source) and ``frame_url``, which serves the whole frame.
    """

    rank: int
    id: int
    path: str
    score: float
    identity: str | None = None
    camera: str | None = None
    time: str | None = None
    url: str
    source: str | None = None
    frame: int | None = None
    box: tuple[int, int, int, int] | None = None
    track: int | None = None
    frame_url: str | None = None


class SearchResponse(BaseModel):
    """The results of one query, best first, and why there are none when a filter kept none."""

    query: str | None
    k: int
    results: list[SearchResult]
    message: str | None = Field(
        None, description="why fewer than k results came back, when that needs saying"
    )
    candidates: int = Field(description="how many images the filter let through")


class Health(BaseModel):
    """Liveness and what is being served."""

    status: str
    images: int
    index_type: str
    model: str
    version: str


class Facets(BaseModel):
    """What the index can be filtered by: its cameras and the range of its capture times."""

    cameras: list[str]
    first_time: str | None = Field(
        description="earliest capture time, ISO 8601 UTC (to the millisecond for footage)"
    )
    last_time: str | None = Field(
        description="latest capture time, ISO 8601 UTC (to the millisecond for footage)"
    )


class Problem(BaseModel):
    """A refused request: ``detail`` says what was wrong and what is accepted."""

    detail: str


def error_message(errors: Sequence[Any]) -> str:
    """One readable sentence for pydantic's errors: ``field: what is wrong; ...``.

    A value that may be a plain value or an object (``similar``, ``not``) fails both ways; only
    the way that matches what was sent is reported (the object's fields for an object).
    """
    parts = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        loc = loc[1:] if loc[:1] == ("body",) else loc  # FastAPI's request-body prefix
        names = [str(p) for p in loc if isinstance(p, int) or str(p).isidentifier()]
        tags = [p for p in loc if isinstance(p, str) and not p.isidentifier()]
        models = [p for p in names if p[:1].isupper()]  # a union branch named by its model
        sent_object = isinstance(error.get("input"), dict)
        if error.get("type") == "model_type" or (sent_object and tags and not models):
            continue  # the other branch of the union says what is wrong
        where = ".".join(p for p in names if not p[:1].isupper()) or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(dict.fromkeys(parts)) or "invalid request"
