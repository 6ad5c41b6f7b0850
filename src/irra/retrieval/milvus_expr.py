"""Milvus boolean expressions for a :class:`SearchFilter` or a :class:`RowSelector`.

Filter values are user input (camera names, folders, footage paths typed into a web form), so
no value is pasted into an expression as it is. Milvus 2.5 offers expression templates
(``filter_params``) for this, but Milvus Lite 3.2 - the server the tests run - does not read
them (``camera in {cams}`` fails with "unexpected character '{'"), so one way serves both:

* a string becomes a double-quoted literal in which every character that the expression
  grammar treats specially inside a literal - ``"``, ``\\``, CR, LF (Milvus's ``Plan.g4`` and
  Milvus Lite's tokenizer agree on this set) - is written as an escape (``\\"``, ``\\\\``,
  ``\\r``, ``\\n``; TAB as ``\\t``), so a value can never end its literal, and the literal
  decodes to the value exactly;
* a number is formatted from a Python ``int`` or finite ``float`` (never from a string);
* a path prefix is a range ``path >= P and path < P'`` (P' the least string above every string
  starting with P), not ``like``: Milvus Lite applies ``like`` escapes (``\\%``) in some
  segments and not in others, so ``%``/``_`` in a folder name could not be matched exactly.

String order in Milvus is code-point order (byte order of UTF-8), the order the range needs.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable

from irra.retrieval.query import SearchFilter
from irra.retrieval.store import RowSelector

#: An expression that no row passes (ids are never negative).
NOTHING = "id < 0"

_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_MAX_CHAR = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def string_literal(value: str) -> str:
    """``value`` as a Milvus string literal that decodes to exactly ``value``.

    Raises:
        ValueError: ``value`` is not a string, or holds a lone surrogate (not UTF-8).
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    value.encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates
    return '"' + value.translate(_ESCAPES) + '"'


def int_literal(value: int) -> str:
    """An integer (``int`` or a NumPy integer, not ``bool``) as a literal."""
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return str(operator.index(value))


def float_literal(value: float) -> str:
    """A finite number as a literal (``repr`` of the float: exact, with an exponent if needed)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return repr(number)


def string_list(values: Iterable[str]) -> str:
    """``[\"a\", \"b\"]`` for an ``in`` clause."""
    return "[" + ", ".join(string_literal(v) for v in values) + "]"


def int_list(values: Iterable[int]) -> str:
    """``[1, 2]`` for an ``in`` clause."""
    return "[" + ", ".join(int_literal(v) for v in values) + "]"


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (None: no such string).

    Every string s: ``s.startswith(prefix)`` iff ``prefix <= s < bound`` (code-point order).

    Example:
        >>> prefix_upper_bound("2024/05/")
        '2024/050'
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code in _SURROGATES:
            code = _SURROGATES.stop
        if code <= _MAX_CHAR:
            return "".join(chars) + chr(code)
    return None


def prefix_clause(field: str, prefix: str) -> str:
    """Rows whose ``field`` starts with ``prefix``."""
    low = f"{field} >= {string_literal(prefix)}"
    high = prefix_upper_bound(prefix)
    return low if high is None else f"({low} and {field} < {string_literal(high)})"


def filter_expression(where: SearchFilter | None) -> str | None:
    """The expression of a search filter (None: every row passes).

    Cameras and identities match any listed value; ``after``/``before`` keep capture times in
    [after, before] (rows without a time fail either bound); ``under`` keeps paths in the
    folder.

    Raises:
        QueryError: the filter does not pass :meth:`SearchFilter.checked`.
        ValueError: a value that cannot be written (a lone surrogate).
    """
    if where is None or where.is_empty:
        return None
    where = where.checked()
    clauses = []
    if where.cameras:
        clauses.append(f"camera in {string_list(where.cameras)}")
    if where.identities:
        clauses.append(f"identity in {string_list(where.identities)}")
    after, before = where.time_range
    if after is not None:
        clauses.append(f"time >= {float_literal(after)}")
    if before is not None:
        clauses.append(f"time <= {float_literal(before)}")
    if where.under:
        clauses.append(prefix_clause("path", where.under))
    return " and ".join(clauses) if clauses else None


def selector_expression(selector: RowSelector) -> str:
    """The expression of a delete selector (:data:`NOTHING` for an empty one).

    The same rows as :meth:`RowSelector.matches`: alternatives within a field, every given
    field must hold.

    Raises:
        ValueError: an id that is not an integer, a track that is not (str, int), a value
            that cannot be written.
    """
    if selector.is_empty:
        return NOTHING
    clauses = []
    if selector.ids:
        ids = [i for i in map(operator.index, selector.ids) if 0 <= i < 2**63]
        if not ids:
            return NOTHING  # no row has an id outside int64 >= 0
        clauses.append(f"id in {int_list(ids)}")
    if selector.path:
        clauses.append(prefix_clause("path", selector.path))
    if selector.paths:
        clauses.append(f"path in {string_list(selector.paths)}")
    if selector.sources:
        clauses.append(f"source in {string_list(selector.sources)}")
    if selector.tracks:
        pairs = (
            f"(source == {string_literal(source)} and track == {int_literal(track)})"
            for source, track in selector.tracks
        )
        clauses.append("(" + " or ".join(pairs) + ")")
    if selector.identities:
        clauses.append(f"identity in {string_list(selector.identities)}")
    if selector.before is not None:
        before = float(selector.before)
        if math.isnan(before) or before == -math.inf:
            return NOTHING
        clauses.append(
            "time is not null" if before == math.inf else f"time < {float_literal(before)}"
        )
    return " and ".join(clauses)
