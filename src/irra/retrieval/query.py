"""What a search asks for: the query parts (:class:`Query`) and the filter (:class:`SearchFilter`).

A query is any mix of positive parts - a text, image files or uploads, indexed images ("find
similar") - and negative texts, each with a weight (default 1). Both types are plain frozen
dataclasses that a caller builds directly or from JSON (:meth:`Query.from_dict`,
:meth:`SearchFilter.from_dict`); :meth:`Query.checked` / :meth:`SearchFilter.checked` validate
them and raise :class:`QueryError` with a message saying what is accepted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from irra.retrieval.capture import parse_time

#: Longest accepted text part, in characters (CLIP reads at most 77 tokens anyway).
MAX_QUERY_CHARS = 1000
#: Most results one search returns.
MAX_K = 1000
#: Most parts of one kind (texts, images, similar ids, negatives) in one query.
MAX_PARTS = 16
#: Most cameras, or identities, one filter names.
MAX_FILTER_VALUES = 10_000
#: Largest accepted weight of a part.
MAX_WEIGHT = 100.0


class QueryError(ValueError):
    """A query, filter or result count that cannot be searched; the message says what is valid."""


@dataclass(frozen=True)
class TextPart:
    """A description (positive) or a description to move away from (negative)."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class ImagePart:
    """A query image: a file path, or the bytes of an image file (an upload).

    ``name`` is what error messages call it (default: the path, or ``upload``).
    """

    image: str | os.PathLike[str] | bytes
    weight: float = 1.0
    name: str | None = None

    @property
    def label(self) -> str:
        """The image's name in messages."""
        if self.name:
            return self.name
        return "upload" if isinstance(self.image, bytes) else os.fspath(self.image)


@dataclass(frozen=True)
class SimilarPart:
    """An image of the index, by id: "find images similar to this one"."""

    id: int
    weight: float = 1.0


@dataclass(frozen=True)
class Query:
    """The parts of one search, combined into one ranking.

    Plain values are accepted where a part is expected: a ``str`` for a :class:`TextPart`, a
    path or ``bytes`` for an :class:`ImagePart`, an ``int`` for a :class:`SimilarPart`.

    Example:
        >>> Query("a woman in a red coat", images=("witness.jpg",), negatives=("backpack",))
        >>> Query(TextPart("red coat", 2.0), similar=(SimilarPart(41, 0.5),))
    """

    text: TextPart | str | None = None
    images: Sequence[ImagePart | str | os.PathLike[str] | bytes] = ()
    similar: Sequence[SimilarPart | int] = ()
    negatives: Sequence[TextPart | str] = ()

    def checked(self) -> Query:
        """This query with every part as its dataclass, texts stripped, weights checked.

        Raises:
            QueryError: no positive part, an empty or overlong text, a weight that is not a
                finite number in (0, 100], an id that is not an integer, too many parts.
        """
        text = None if self.text is None else _text_part(self.text, "the query text")
        images = tuple(_image_part(p) for p in _parts(self.images, "images"))
        similar = tuple(_similar_part(p) for p in _parts(self.similar, "similar ids"))
        negatives = tuple(
            _text_part(p, "a negative text") for p in _parts(self.negatives, "negative texts")
        )
        if text is None and not images and not similar:
            raise QueryError(
                "the query has no positive part; give a description, an image (--image) or an "
                "indexed image id (--similar); negative texts (--not) only push results away"
            )
        return Query(text, images, similar, negatives)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Query:
        """A query from JSON-like data, checked.

        Keys (all optional, at least one positive part): ``text`` (a string, or
        ``{"text": ..., "weight": ...}``), ``text_weight`` (number), ``similar`` (a list of ids
        or ``{"id": ..., "weight": ...}``), ``not`` (a list of strings or
        ``{"text": ..., "weight": ...}``). Image files are not taken from JSON: a service adds
        uploads as :class:`ImagePart` bytes.

        Raises:
            QueryError: an unknown key, a value of the wrong type, or what :meth:`checked` refuses.
        """
        if not isinstance(data, Mapping):
            raise QueryError("the query must be a JSON object")
        unknown = set(data) - {"text", "text_weight", "similar", "not"}
        if unknown:
            raise QueryError(
                f"unknown query field(s) {sorted(unknown)}; valid: text, text_weight, similar, not"
            )
        text: Any = data.get("text")
        if isinstance(text, Mapping):
            text = TextPart(_field(text, "text"), _field(text, "weight", 1.0))
        elif text is not None and "text_weight" in data:
            text = TextPart(text, data["text_weight"])
        similar = [
            SimilarPart(_field(p, "id"), _field(p, "weight", 1.0)) if isinstance(p, Mapping) else p
            for p in _list(data.get("similar"), "similar")
        ]
        negatives = [
            TextPart(_field(p, "text"), _field(p, "weight", 1.0)) if isinstance(p, Mapping) else p
            for p in _list(data.get("not"), "not")
        ]
        return cls(text, (), similar, negatives).checked()


@dataclass(frozen=True)
class SearchFilter:
    """Which images may be results; empty fields let every image through.

    Attributes:
        cameras: keep images of any of these cameras.
        identities: keep images of any of these identities.
        after, before: keep images captured at or after / at or before this time (ISO 8601
            text, a UNIX time in seconds, or None); a time without offset is UTC.
        under: keep images whose path (relative to the indexed folder) is in this folder.
    """

    cameras: Sequence[str] = ()
    identities: Sequence[str] = ()
    after: str | float | None = None
    before: str | float | None = None
    under: str | None = None
    _times: tuple[float | None, float | None] = field(default=(None, None), repr=False)

    @property
    def is_empty(self) -> bool:
        """Whether the filter lets every image through."""
        return not (
            self.cameras
            or self.identities
            or self.after is not None
            or self.before is not None
            or self.under
        )

    @property
    def time_range(self) -> tuple[float | None, float | None]:
        """(after, before) in UNIX seconds, after :meth:`checked`."""
        return self._times

    def checked(self) -> SearchFilter:
        """This filter with times parsed and the folder normalised.

        Raises:
            QueryError: a time that is not ISO 8601, ``after`` later than ``before``, a folder
                that leaves the indexed folder, or a field of the wrong type.
        """
        cameras = tuple(_string(c, "camera") for c in _values(self.cameras, "cameras"))
        identities = tuple(_string(i, "identity") for i in _values(self.identities, "identities"))
        after, before = _seconds(self.after, "after"), _seconds(self.before, "before")
        if after is not None and before is not None and after > before:
            raise QueryError(
                f"after ({self.after}) is later than before ({self.before}); no image can pass"
            )
        under = _folder(self.under) if self.under is not None else None
        return SearchFilter(cameras, identities, self.after, self.before, under, (after, before))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchFilter:
        """A filter from JSON-like data, checked.

        Keys (all optional): ``camera`` (a string or a list), ``identity`` (a string or a list),
        ``after``, ``before`` (ISO 8601 strings), ``under`` (a folder of the gallery).
        """
        if not isinstance(data, Mapping):
            raise QueryError("the filter must be a JSON object")
        unknown = set(data) - {"camera", "identity", "after", "before", "under"}
        if unknown:
            raise QueryError(
                f"unknown filter field(s) {sorted(unknown)}; valid: camera, identity, after, "
                "before, under"
            )

        def many(key: str) -> list[Any]:
            value = data.get(key)
            return [value] if isinstance(value, str) else _list(value, key)

        return cls(
            many("camera"), many("identity"), data.get("after"), data.get("before"),
            data.get("under"),
        ).checked()  # fmt: skip


def check_k(k: Any) -> int:
    """``k`` if it is an integer from 1 to :data:`MAX_K`, else :class:`QueryError`."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise QueryError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return k


def check_min_score(value: Any) -> float | None:
    """A minimum score in [-1, 1] (cosine similarity), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1 <= value <= 1:
        raise QueryError(f"the minimum score is a cosine similarity in [-1, 1], got {value!r}")
    return float(value)


def check_query(text: Any, k: Any) -> tuple[str, int]:
    """The stripped text and ``k``, or :class:`QueryError` saying what is wrong."""
    return _text_part(text, "the query").text, check_k(k)


def _weight(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise QueryError(f"the weight of {what} must be a number, got {value!r}")
    if not math.isfinite(value) or not 0 < value <= MAX_WEIGHT:
        raise QueryError(
            f"the weight of {what} must be a number in (0, {MAX_WEIGHT:g}], got {value!r} "
            "(to push results away from a text, make it a negative part)"
        )
    return float(value)


def _text_part(part: Any, what: str) -> TextPart:
    if isinstance(part, str):
        part = TextPart(part)
    if not isinstance(part, TextPart) or not isinstance(part.text, str):
        raise QueryError(f"{what} must be a string")
    text = part.text.strip()
    if not text:
        raise QueryError(f"{what} is empty; describe the person, e.g. 'a man in a red jacket'")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(
            f"{what} has {len(text)} characters; at most {MAX_QUERY_CHARS} are accepted"
        )
    return TextPart(text, _weight(part.weight, f"'{text[:40]}'"))


def _image_part(part: Any) -> ImagePart:
    if isinstance(part, (str, bytes, os.PathLike)):
        part = ImagePart(part)
    if not isinstance(part, ImagePart) or not isinstance(part.image, (str, bytes, os.PathLike)):
        raise QueryError(f"a query image must be a path or the bytes of an image, got {part!r}")
    return ImagePart(part.image, _weight(part.weight, f"image {part.label}"), part.name)


def _similar_part(part: Any) -> SimilarPart:
    if not isinstance(part, SimilarPart):
        part = SimilarPart(part)
    if isinstance(part.id, bool) or not isinstance(part.id, int) or part.id < 0:
        raise QueryError(
            f"a similar-image id must be an image id (an integer >= 0), got {part.id!r}"
        )
    return SimilarPart(part.id, _weight(part.weight, f"similar image {part.id}"))


def _parts(values: Any, what: str) -> list[Any]:
    values = _list(values, what)
    if len(values) > MAX_PARTS:
        raise QueryError(f"at most {MAX_PARTS} {what} per query, got {len(values)}")
    return values


def _values(values: Any, what: str) -> list[Any]:
    values = _list(values, what)
    if len(values) > MAX_FILTER_VALUES:
        raise QueryError(f"at most {MAX_FILTER_VALUES} {what} per filter, got {len(values)}")
    return values


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise QueryError(f"{what} must be a list, got {type(value).__name__}")
    return list(value)


def _field(data: Mapping[str, Any], key: str, default: Any = ...) -> Any:
    if key not in data:
        if default is ...:
            raise QueryError(f"{dict(data)!r} lacks the field {key!r}")
        return default
    return data[key]


def _string(value: Any, what: str) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
        raise QueryError(f"a {what} must be a non-empty string, got {value!r}")
    return str(value).strip()


def _seconds(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    try:
        return parse_time(value)
    except ValueError as err:
        raise QueryError(f"{what}: {err}") from None


def _folder(value: Any) -> str | None:
    if not isinstance(value, (str, os.PathLike)):
        raise QueryError(f"under must be a folder path, got {value!r}")
    text = os.fspath(value).replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise QueryError(
            f"under: {value!r} is absolute; give a folder relative to the indexed folder"
        )
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise QueryError(f"under: {value!r} leaves the indexed folder; give a folder inside it")
    return "/".join(parts) + "/" if parts else None
