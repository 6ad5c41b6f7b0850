"""The Milvus engine: an index in a collection of a Milvus server (``milvus://HOST:PORT/NAME``).

An index is two collections (``docs/milvus.md`` has the schema and the choice of index):

* ``NAME``: one row per image: ``id`` INT64 primary key (allocated here, never ``auto_id``: ids
  stay below 2**53, exact in JavaScript), ``vector`` FLOAT_VECTOR(D) searched by inner
  product, and the fields of :class:`ImageRecord` (nullable: a round trip gives the record
  back, None included; ``box`` is ``box_x/box_y/box_w/box_h``);
* ``NAME_irra``: key/value rows: ``format_version``, ``settings`` (the manifest, JSON),
  ``index`` (the Milvus index type with its build and search parameters), ``next_id`` (ids are
  reserved there before rows are written, so an id is never given twice, even after a delete
  or a failed append) and one ``source:PATH`` row per footage source. Milvus wants a vector
  field in every collection: this one has a 2-d dummy.

Every call runs at consistency level Strong: a search right after an append or a delete sees
it. Filters become Milvus expressions (:mod:`irra.retrieval.milvus_expr`, which says how user
values are kept out of the expression's syntax). Reads page through ids in windows of
:data:`WINDOW`, Milvus's largest query result. Errors of the server or the connection are
raised as :class:`IndexStoreError` naming the collection. One writer at a time per collection:
Milvus has no lock that irra could take.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import operator
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

import numpy as np

from irra.retrieval.milvus_expr import (
    NOTHING,
    filter_expression,
    int_list,
    selector_expression,
    string_list,
    string_literal,
)
from irra.retrieval.query import QueryError, SearchFilter
from irra.retrieval.store import (
    FORMAT_VERSION,
    CompactReport,
    Facets,
    ImageRecord,
    IndexStoreError,
    RowSelector,
    checked_rows,
    parse_milvus_uri,
)

logger = logging.getLogger(__name__)

#: The metadata collection of index ``NAME`` is ``NAME`` + this.
META_SUFFIX = "_irra"
#: Seconds to wait for the server when connecting, and for any one call.
CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 120.0
#: Seconds to wait for a collection to load (a server loads a big one from storage at first).
LOAD_TIMEOUT_S = 600.0
COMPACT_TIMEOUT_S = 600.0
#: Most rows one query returns, and most ids one request names (Milvus's query window).
WINDOW = 16_384
#: Longest string field, in UTF-8 bytes (Milvus's VARCHAR limit).
MAX_VARCHAR = 65_535
#: Ids stay below this (exact in a JavaScript number).
MAX_ID = 2**53
#: Vector bytes per insert request (Milvus refuses requests over 64 MiB).
INSERT_BYTES = 16 << 20
#: Queries per search request.
SEARCH_BATCH = 256
#: A filtered search of an approximate index scores the passing rows exactly (here, from
#: their stored vectors) when at most this many pass: a graph or cell search that skips the
#: rows failing a selective filter returns fewer than k (measured in docs/milvus.md).
EXACT_ROWS = 4096

#: irra index type -> Milvus index type (``docs/milvus.md`` says which to use when).
MILVUS_INDEX_TYPES = {"flat": "FLAT", "ivf": "IVF_FLAT", "ivf-sq8": "IVF_SQ8", "hnsw": "HNSW"}
#: Defaults of the index parameters (settings keys).
DEFAULT_PARAMS = {"nlist": 1024, "hnsw_m": 16, "hnsw_ef_construction": 200, "hnsw_ef": 64}
_PARAMS_OF = {
    "FLAT": (),
    "IVF_FLAT": ("nlist", "nprobe"),
    "IVF_SQ8": ("nlist", "nprobe"),
    "HNSW": ("hnsw_m", "hnsw_ef_construction", "hnsw_ef"),
}

#: The record fields, as stored (``box`` is four fields).
FIELDS = (
    "path", "size", "mtime_ns", "identity", "camera", "time", "source", "frame",
    "box_x", "box_y", "box_w", "box_h", "track",
)  # fmt: skip
_META_FIELDS = {"key", "kind", "value", "dummy"}
_NOT_OURS = (
    "was not made by irra ({why}); choose another collection name, or drop it on the server "
    "if it is an index you no longer need"
)


@dataclass(frozen=True)
class MilvusIndex:
    """The ANN index of a collection: Milvus index type, build and search parameters."""

    index_type: str
    build: dict[str, int]
    search: dict[str, int]


def index_of(settings: dict[str, Any]) -> MilvusIndex:
    """The Milvus index that the settings ask for (``index_type`` and its parameters).

    ``flat`` (default): exact. ``ivf``/``ivf-sq8``: ``nlist`` cells (default 1024), ``nprobe``
    scanned per query (default: a sixteenth of nlist, at least 8). ``hnsw``: ``hnsw_m`` (M,
    default 16), ``hnsw_ef_construction`` (default 200), ``hnsw_ef`` (ef at search, default 64,
    at least k).

    Raises:
        IndexStoreError: an unknown type, or a parameter that the type does not use.
    """
    name = settings.get("index_type") or "flat"
    if name not in MILVUS_INDEX_TYPES:
        raise IndexStoreError(
            f"index type {name!r} is not offered on Milvus; valid: {', '.join(MILVUS_INDEX_TYPES)}"
        )
    kind = MILVUS_INDEX_TYPES[name]
    params = {}
    for key in ("nlist", "nprobe", "hnsw_m", "hnsw_ef_construction", "hnsw_ef"):
        value = settings.get(key)
        if value is None:
            continue
        if key not in _PARAMS_OF[kind]:
            raise IndexStoreError(
                f"{key}={value!r} has no effect on a {name} index; leave it out, or choose an "
                f"index type that uses it ({', '.join(_types_using(key))})"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise IndexStoreError(f"{key} must be a positive integer, got {value!r}")
        params[key] = value
    if kind == "HNSW":
        build = {"M": params.get("hnsw_m", DEFAULT_PARAMS["hnsw_m"])}
        build["efConstruction"] = params.get(
            "hnsw_ef_construction", DEFAULT_PARAMS["hnsw_ef_construction"]
        )
        return MilvusIndex(kind, build, {"ef": params.get("hnsw_ef", DEFAULT_PARAMS["hnsw_ef"])})
    if kind == "FLAT":
        return MilvusIndex(kind, {}, {})
    nlist = params.get("nlist", DEFAULT_PARAMS["nlist"])
    return MilvusIndex(kind, {"nlist": nlist}, {"nprobe": params.get("nprobe", _nprobe(nlist))})


def _types_using(key: str) -> list[str]:
    return [n for n, kind in MILVUS_INDEX_TYPES.items() if key in _PARAMS_OF[kind]]


def _nprobe(nlist: int) -> int:
    return min(nlist, max(8, nlist // 16))


def collection_exists(uri: str) -> bool:
    """Whether the collection of ``uri`` exists on its server (made by irra or not).

    Raises:
        IndexStoreError: a malformed URI, an unreachable server, pymilvus missing.
    """
    host, port, collection = parse_milvus_uri(uri)
    pymilvus, errors = _import_pymilvus()
    client = _connect(pymilvus, errors, host, port, uri)
    try:
        return bool(client.has_collection(collection, timeout=CALL_TIMEOUT_S))
    except errors as err:
        raise IndexStoreError(f"{uri}: cannot look the collection up: {_reason(err)}") from err
    finally:
        client.close()


class MilvusStore:
    """An index in a Milvus collection (see the module docstring); open with :meth:`open`."""

    def __init__(self, client: Any, pymilvus: ModuleType, errors: tuple, location: str) -> None:
        self.location = location
        self.collection = parse_milvus_uri(location)[2]
        self.meta = self.collection + META_SUFFIX
        self.dim = 0
        self._client = client
        self._pymilvus = pymilvus
        self._client_errors = errors
        self._index = MilvusIndex("FLAT", {}, {})
        self._nprobe: int | None = None
        self._seen: tuple[int, int, str] | None = None

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, uri: str, *, create: dict[str, Any] | None = None) -> MilvusStore:
        """Open the index at ``milvus://HOST:PORT/COLLECTION`` (create it from ``create``).

        Args:
            create: the settings of a new index (``dim`` and the manifest; ``index_type`` and
                its parameters, see :func:`index_of`): used when the collection does not exist.

        Raises:
            IndexStoreError: a malformed URI, an unreachable server (within
                :data:`CONNECT_TIMEOUT_S`), no collection and no ``create``, a collection not
                made by irra or of another format, pymilvus missing.
        """
        host, port, collection = parse_milvus_uri(uri)
        if len(collection + META_SUFFIX) > 255:
            raise IndexStoreError(
                f"{uri}: the collection name is too long (at most {255 - len(META_SUFFIX)} "
                f"characters: irra adds a {META_SUFFIX} collection beside it)"
            )
        pymilvus, errors = _import_pymilvus()
        store = cls(_connect(pymilvus, errors, host, port, uri), pymilvus, errors, uri)
        try:
            store._attach(create)
        except BaseException:
            store.close()
            raise
        return store

    def _attach(self, create: dict[str, Any] | None) -> None:
        with self._errors("open the index"):
            exists = self._client.has_collection(self.collection, timeout=CALL_TIMEOUT_S)
            meta_exists = self._client.has_collection(self.meta, timeout=CALL_TIMEOUT_S)
        if meta_exists:
            self._check_fields(self.meta, _META_FIELDS)
        if not exists:
            if create is None:
                raise IndexStoreError(
                    f"{self.location}: no collection {self.collection} on the server; build an "
                    f"index there with irra index --checkpoint CKPT --images DIR --out "
                    f"{self.location}"
                )
            self._create(create, meta_exists)
        elif not meta_exists:
            raise self._foreign(self.collection, f"no {self.meta} collection beside it")
        self._check_fields(self.collection, {"id", "vector", *FIELDS})
        with self._errors("load the index"):
            for name in (self.meta, self.collection):
                self._client.load_collection(name, timeout=LOAD_TIMEOUT_S)
            described = self._client.describe_collection(self.collection, timeout=CALL_TIMEOUT_S)
        self.dim = next(
            int(f["params"]["dim"]) for f in described["fields"] if f["name"] == "vector"
        )
        self._check()
        self._seen = self._state()

    def _check_fields(self, name: str, fields: set[str]) -> None:
        with self._errors("read the schema"):
            described = self._client.describe_collection(name, timeout=CALL_TIMEOUT_S)
        found = {f["name"] for f in described["fields"]}
        if not fields <= found:
            raise self._foreign(name, f"it lacks the field(s) {', '.join(sorted(fields - found))}")

    def _index_of(self, settings: dict[str, Any]) -> MilvusIndex:
        try:
            return index_of(settings)
        except IndexStoreError as err:
            raise IndexStoreError(f"{self.location}: {err}") from None

    def _foreign(self, name: str, why: str) -> IndexStoreError:
        return IndexStoreError(
            f"{self.location}: the collection {name} " + _NOT_OURS.format(why=why)
        )

    def _check(self) -> None:
        values = self._meta_get(["format_version", "settings", "index", "next_id"])
        missing = {"format_version", "index", "next_id"} - set(values)
        if missing:
            raise self._foreign(self.meta, f"no {', '.join(sorted(missing))} entry")
        version = values["format_version"]
        if version != str(FORMAT_VERSION):
            raise IndexStoreError(
                f"{self.location}: index format {version}, this irra reads {FORMAT_VERSION}; "
                f"upgrade irra, or rebuild the index with irra index --rebuild --out "
                f"{self.location}"
            )
        try:
            settings = json.loads(values.get("settings") or "{}")
        except ValueError as err:
            raise self._foreign(self.meta, f"its settings are not JSON: {err}") from err
        model = settings.get("model")
        if not isinstance(model, dict) or not isinstance(model.get("fingerprint"), str):
            raise IndexStoreError(
                f"{self.location}: the index settings lack the model's fingerprint; rebuild "
                f"the index with irra index --rebuild --out {self.location}"
            )
        self._index = MilvusIndex(**json.loads(values["index"]))

    def _create(self, create: dict[str, Any], meta_exists: bool) -> None:
        """The two collections of a new index (the metadata first: the main one marks it done)."""
        dim = create.get("dim")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise IndexStoreError(
                f"{self.location}: a new index needs its embedding width (settings 'dim', a "
                f"positive integer), got {dim!r}"
            )
        index = self._index_of(create)
        pm = self._pymilvus
        if not meta_exists:
            schema = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("key", pm.DataType.VARCHAR, is_primary=True, max_length=MAX_VARCHAR)
            schema.add_field("kind", pm.DataType.VARCHAR, max_length=16)
            schema.add_field("value", pm.DataType.VARCHAR, max_length=MAX_VARCHAR)
            schema.add_field("dummy", pm.DataType.FLOAT_VECTOR, dim=2)
            self._create_collection(self.meta, schema, "dummy", "FLAT", "L2", {})
        previous = self._meta_get(["next_id"]).get("next_id", "0")
        self._meta_put(
            {
                "format_version": str(FORMAT_VERSION),
                "settings": self._settings_text(create),
                "index": json.dumps(asdict(index)),
                "next_id": previous,
            }
        )
        self._create_collection(
            self.collection, self._row_schema(dim), "vector", index.index_type, "IP", index.build
        )
        logger.info("created %s (dim %d, %s index)", self.location, dim, index.index_type)

    def _row_schema(self, dim: int) -> Any:
        pm = self._pymilvus
        schema = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", pm.DataType.INT64, is_primary=True)
        schema.add_field("vector", pm.DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("path", pm.DataType.VARCHAR, max_length=MAX_VARCHAR)
        for name in ("size", "mtime_ns"):
            schema.add_field(name, pm.DataType.INT64)
        for name in ("identity", "camera", "source"):
            schema.add_field(name, pm.DataType.VARCHAR, max_length=MAX_VARCHAR, nullable=True)
        schema.add_field("time", pm.DataType.DOUBLE, nullable=True)
        for name in ("frame", "box_x", "box_y", "box_w", "box_h", "track"):
            schema.add_field(name, pm.DataType.INT64, nullable=True)
        return schema

    def _create_collection(
        self, name: str, schema: Any, field: str, kind: str, metric: str, build: dict[str, int]
    ) -> None:
        """Create, index and load a collection.

        The index is created without pymilvus's wait for it (polled every 0.5 s): on an empty
        collection there is nothing to build, and loading waits for what there is.
        """
        params = self._client.prepare_index_params()
        params.add_index(field, index_type=kind, metric_type=metric, params=build)
        with self._errors(f"create the collection {name}"):
            self._client.create_collection(
                name, schema=schema, consistency_level="Strong", timeout=CALL_TIMEOUT_S
            )
            self._client.create_index(name, params, timeout=CALL_TIMEOUT_S, sync=False)
            self._client.load_collection(name, timeout=LOAD_TIMEOUT_S)

    def drop(self) -> None:
        """Remove both collections of this index (a first build that failed leaves nothing)."""
        with self._errors("drop the index"):
            for name in (self.collection, self.meta):
                self._client.drop_collection(name, timeout=CALL_TIMEOUT_S)

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(*self._client_errors):
            self._client.close()

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the metadata collection ---------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Re-raise a pymilvus or gRPC error as :class:`IndexStoreError` naming the index."""
        try:
            yield
        except self._client_errors as err:
            raise IndexStoreError(f"{self.location}: cannot {what}: {_reason(err)}") from err

    def _query(self, name: str, expr: str, fields: list[str], what: str) -> list[dict[str, Any]]:
        with self._errors(what):
            return list(
                self._client.query(
                    name,
                    filter=expr,
                    output_fields=fields,
                    consistency_level="Strong",
                    timeout=CALL_TIMEOUT_S,
                )
            )

    def _meta_get(self, keys: list[str]) -> dict[str, str]:
        rows = self._query(
            self.meta, f"key in {string_list(keys)}", ["key", "value"], "read the index state"
        )
        return {row["key"]: row["value"] for row in rows}

    def _meta_put(self, values: dict[str, str], kind: str = "state") -> None:
        for key, value in values.items():
            if max(_utf8_size(key), _utf8_size(value)) > MAX_VARCHAR:
                raise IndexStoreError(
                    f"{self.location}: {key[:200]!r} is not a UTF-8 string of at most "
                    f"{MAX_VARCHAR} bytes (with its value); Milvus cannot store it"
                )
        rows = [
            {"key": k, "kind": kind, "value": v, "dummy": [1.0, 0.0]} for k, v in values.items()
        ]
        with self._errors("write the index state"):
            self._client.upsert(self.meta, rows, timeout=CALL_TIMEOUT_S)

    def _settings_text(self, settings: dict[str, Any]) -> str:
        try:
            return json.dumps({k: v for k, v in settings.items() if k != "format_version"})
        except (TypeError, ValueError) as err:
            raise IndexStoreError(f"{self.location}: settings are not JSON ({err})") from err

    def _next_id(self) -> int:
        return int(self._meta_get(["next_id"]).get("next_id", "0"))

    def settings(self) -> dict[str, Any]:
        """The manifest (see :meth:`VectorStore.settings`), with ``format_version``."""
        values = self._meta_get(["settings", "format_version"])
        manifest = json.loads(values.get("settings") or "{}")
        manifest["format_version"] = int(values.get("format_version", FORMAT_VERSION))
        return manifest

    def set_settings(self, settings: dict[str, Any]) -> None:
        """Replace the manifest; the index type stays the collection's (see :meth:`reset`).

        Search parameters (``nprobe``, ``hnsw_ef``) take effect; build parameters cannot
        change without building the index again.

        Raises:
            IndexStoreError: settings asking for another index type or parameters.
        """
        wanted = self._index_of(settings) if "index_type" in settings else self._index
        if (wanted.index_type, wanted.build) != (self._index.index_type, self._index.build):
            raise IndexStoreError(
                f"{self.location}: the collection has a {self._index.index_type} index "
                f"{self._index.build}; another index type or build parameter "
                f"({wanted.index_type} {wanted.build}) needs a new index (irra index --rebuild)"
            )
        self._meta_put({"settings": self._settings_text(settings)})
        if wanted.search != self._index.search:
            self._index = wanted
            self._meta_put({"index": json.dumps(asdict(wanted))})

    def sources(self) -> dict[str, dict[str, Any]]:
        """Footage sources: path -> signature."""
        rows = self._query(self.meta, 'kind == "source"', ["key", "value"], "read the sources")
        return {row["key"][len("source:") :]: json.loads(row["value"]) for row in rows}

    def set_source(self, path: str, signature: dict[str, Any] | None) -> None:
        """Record (or, with None, forget) a footage source's signature."""
        key = "source:" + path
        if signature is None:
            with self._errors("forget a source"):
                self._client.delete(
                    self.meta, filter=f"key == {_literal(key)}", timeout=CALL_TIMEOUT_S
                )
        else:
            self._meta_put({key: json.dumps(signature)}, kind="source")

    # -- writing -------------------------------------------------------------------------------

    def append(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> np.ndarray:
        """Add rows; returns their new (N,) int64 ids.

        Ids are reserved before the rows are written. A batch larger than one request
        (:data:`INSERT_BYTES`) is written in parts; when a part fails, the parts already
        written are deleted again before the error is raised.

        Raises:
            ValueError: ``vectors`` not (N, D).
            IndexStoreError: a path already indexed (or twice in ``records``), a string over
                :data:`MAX_VARCHAR` bytes or not UTF-8, ids exhausted, a server error.
        """
        vectors = checked_rows(self.location, records, vectors, self.dim)
        if not records:
            return np.empty(0, np.int64)
        fields = [self._fields(r) for r in records]
        self._check_new_paths([r.path for r in records])
        first = self._next_id()
        if first + len(records) > MAX_ID:
            raise IndexStoreError(f"{self.location}: ids are used up (at most {MAX_ID})")
        self._meta_put({"next_id": str(first + len(records))})
        ids = np.arange(first, first + len(records), dtype=np.int64)
        rows = [
            {"id": int(i), "vector": v.tolist(), **f}
            for i, v, f in zip(ids, vectors, fields, strict=True)
        ]
        self._write_rows(rows, "add rows", upsert=False)
        return ids

    def _write_rows(self, rows: list[dict[str, Any]], what: str, *, upsert: bool) -> None:
        """Insert (or upsert) ``rows`` in requests of at most :data:`INSERT_BYTES` of vectors;
        when a request fails, the rows inserted by the earlier ones are deleted again."""
        call = self._client.upsert if upsert else self._client.insert
        step = max(1, min(WINDOW, INSERT_BYTES // (4 * self.dim + 512)))
        done = 0
        try:
            for start in range(0, len(rows), step):
                with self._errors(what):
                    call(self.collection, rows[start : start + step], timeout=CALL_TIMEOUT_S)
                done = start + step
        except IndexStoreError:
            if done and not upsert:
                with contextlib.suppress(IndexStoreError):
                    self._delete_ids([row["id"] for row in rows[:done]])
            raise

    def _check_new_paths(self, paths: list[str]) -> None:
        seen: set[str] = set()
        for path in paths:
            if path in seen:
                raise IndexStoreError(
                    f"{self.location}: cannot add rows: {path!r} is twice in the batch"
                )
            seen.add(path)
        for start in range(0, len(paths), 1024):
            chunk = paths[start : start + 1024]
            expr = f"path in {_strings(chunk, 'path')}"
            found = self._query(self.collection, expr, ["path"], "look paths up")
            if found:
                raise IndexStoreError(
                    f"{self.location}: cannot add rows: {found[0]['path']!r} is indexed "
                    "already; delete it first"
                )

    def _fields(self, record: ImageRecord) -> dict[str, Any]:
        """The stored fields of ``record`` (checked: strings that Milvus can hold)."""
        box = record.box if record.box is not None else (None,) * 4
        values = {
            "path": record.path,
            "size": int(record.size),
            "mtime_ns": int(record.mtime_ns),
            "identity": record.identity,
            "camera": record.camera,
            "time": None if record.time is None else float(record.time),
            "source": record.source,
            "frame": None if record.frame is None else int(record.frame),
            **{k: None if v is None else int(v) for k, v in zip(FIELDS[8:12], box, strict=True)},
            "track": None if record.track is None else int(record.track),
        }
        for name in ("path", "identity", "camera", "source"):
            value = values[name]
            if value is not None and _utf8_size(value) > MAX_VARCHAR:
                raise IndexStoreError(
                    f"{self.location}: the {name} of {record.path[:200]!r} is not a UTF-8 "
                    f"string of at most {MAX_VARCHAR} bytes; Milvus cannot store it"
                )
        return values

    def update(self, ids: Sequence[int], records: Sequence[ImageRecord]) -> None:
        """Replace the metadata of rows (their vectors and ids stay); KeyError for an unknown id."""
        if not ids:
            return
        vectors = self.vectors(ids)
        rows = [
            {"id": int(i), "vector": v.tolist(), **self._fields(r)}
            for i, v, r in zip(ids, vectors, records, strict=True)
        ]
        self._write_rows(rows, "update rows", upsert=True)

    def delete(self, selector: RowSelector) -> list[tuple[int, ImageRecord]]:
        """Remove the selected rows; returns (id, record) of each, in id order.

        Each request deletes up to :data:`WINDOW` rows at once; a larger selection is deleted
        in parts (what a failure leaves, the same selector deletes again).
        """
        expr = _written(selector_expression, selector)
        if expr == NOTHING:
            return []
        found = [
            (int(row["id"]), _record(row))
            for row in self._scan(expr, ["id", *FIELDS], ids=selector.ids or None)
        ]
        self._delete_ids([i for i, _ in found])
        return found

    def _delete_ids(self, ids: list[int]) -> None:
        for start in range(0, len(ids), WINDOW):
            with self._errors("delete rows"):
                self._client.delete(
                    self.collection,
                    filter=f"id in {int_list(ids[start : start + WINDOW])}",
                    timeout=CALL_TIMEOUT_S,
                )

    def reset(self, settings: dict[str, Any]) -> None:
        """Remove every row and source and start again with ``settings`` (ids keep counting).

        The row collection is made anew, so ``dim`` and the index type may change.
        """
        self._index_of(settings)
        sources = self._query(self.meta, 'kind == "source"', ["key"], "read the sources")
        with self._errors("reset the index"):
            self._client.drop_collection(self.collection, timeout=CALL_TIMEOUT_S)
            if sources:
                keys = [row["key"] for row in sources]
                for start in range(0, len(keys), 1024):
                    expr = f"key in {string_list(keys[start : start + 1024])}"
                    self._client.delete(self.meta, filter=expr, timeout=CALL_TIMEOUT_S)
        self._attach(settings)

    # -- reading -------------------------------------------------------------------------------

    def _scan(
        self, expr: str | None, fields: list[str], ids: Sequence[int] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Rows passing ``expr`` (among ``ids`` if given), in id order, a window at a time."""
        if ids is not None:
            wanted = sorted({i for i in map(operator.index, ids) if 0 <= i < 2**63})
            windows = (
                f"id in {int_list(wanted[s : s + WINDOW])}" for s in range(0, len(wanted), WINDOW)
            )
        else:
            end = self._next_id()
            windows = (f"id >= {low} and id < {low + WINDOW}" for low in range(0, end, WINDOW))
        for window in windows:
            clause = window if expr is None else f"({window}) and ({expr})"
            rows = self._query(self.collection, clause, fields, "read rows")
            yield from sorted(rows, key=lambda row: row["id"])

    def get(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        """Records of ``ids`` (unknown ids left out)."""
        return {int(r["id"]): _record(r) for r in self._scan(None, ["id", *FIELDS], ids=ids)}

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """(n, D) float32 stored embeddings of ``ids``; KeyError naming the first unknown id."""
        wanted = [operator.index(i) for i in ids]
        found = {int(r["id"]): r["vector"] for r in self._scan(None, ["id", "vector"], wanted)}
        for i in wanted:
            if i not in found:
                raise KeyError(f"no image with id {i} in this index")
        if not wanted:
            return np.empty((0, self.dim), np.float32)
        return np.asarray([found[i] for i in wanted], dtype=np.float32)

    def rows(self) -> Iterator[tuple[int, ImageRecord]]:
        """Every (id, record) in id order."""
        for row in self._scan(None, ["id", *FIELDS]):
            yield int(row["id"]), _record(row)

    def count(self, where: SearchFilter | None = None) -> int:
        """Rows in the index (passing ``where``)."""
        expr = _written(filter_expression, where)
        rows = self._query(self.collection, expr or "", ["count(*)"], "count rows")
        return int(rows[0]["count(*)"])

    def facets(self) -> Facets:
        """Camera names and the capture-time range (a scan of those two fields)."""
        cameras: set[str] = set()
        first = last = None
        for row in self._scan(None, ["id", "camera", "time"]):
            if row["camera"] is not None:
                cameras.add(row["camera"])
            moment = row["time"]
            if moment is not None:
                first = moment if first is None else min(first, moment)
                last = moment if last is None else max(last, moment)
        return Facets(sorted(cameras), first, last)

    def _state(self) -> tuple[int, int, str]:
        values = self._meta_get(["next_id", "settings"])
        return self.count(), int(values.get("next_id", "0")), values.get("settings", "")

    def refresh(self) -> bool:
        """Whether rows or settings changed since the last look (Milvus serves them live)."""
        state = self._state()
        changed = state != self._seen
        self._seen = state
        return changed

    def maintain(self) -> bool:
        """Nothing to do: the server indexes sealed segments and merges them on its own."""
        return False

    def compact(self) -> CompactReport:
        """Have the server compact both collections (merge segments, drop deleted rows)."""
        for name in (self.collection, self.meta):
            with self._errors(f"compact {name}"):
                job = self._client.compact(name, timeout=CALL_TIMEOUT_S)
                deadline = time.monotonic() + COMPACT_TIMEOUT_S
                while self._client.get_compaction_state(job) != "Completed":
                    if time.monotonic() > deadline:
                        raise IndexStoreError(
                            f"{self.location}: compaction {job} of {name} not done after "
                            f"{COMPACT_TIMEOUT_S:.0f} s; it goes on in the server"
                        )
                    time.sleep(0.5)
        return CompactReport(self.count(), None, None)

    # -- searching -----------------------------------------------------------------------------

    def set_nprobe(self, nprobe: int | None) -> None:
        """Cells scanned per query by this reader (IVF indexes; None: the index's default)."""
        self._nprobe = nprobe

    def _search_params(self, k: int) -> dict[str, Any]:
        params = dict(self._index.search)
        if "nprobe" in params and self._nprobe is not None:
            params["nprobe"] = self._nprobe
        if "ef" in params:
            params["ef"] = max(params["ef"], k)
        return {"metric_type": "IP", "params": params}

    def search(
        self, queries: np.ndarray, k: int, where: SearchFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` of each query (Q, D) among the rows passing ``where``.

        A flat index is exact. An approximate one is searched by the server, except that a
        filter passing at most :data:`EXACT_ROWS` rows is searched exactly (one query fetches
        their vectors).

        Returns:
            scores (Q, k') float32 inner products, best first, and ids (Q, k') int64, k' =
            min(k, rows passing); a query that finds fewer (an approximate index) is padded
            with id -1 and score -inf.
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise ValueError(
                f"{self.location}: queries of width {queries.shape[1]}, not {self.dim}"
            )
        k = int(k)
        expr = _written(filter_expression, where)
        if expr and k > 0 and self._index.index_type != "FLAT" and self.count(where) <= EXACT_ROWS:
            return self._search_exactly(queries, k, expr)
        hits: list[list[dict[str, Any]]] = []
        if k > 0:
            for start in range(0, len(queries), SEARCH_BATCH):
                batch = queries[start : start + SEARCH_BATCH]
                with self._errors("search"):
                    hits.extend(
                        self._client.search(
                            self.collection,
                            data=[q.tolist() for q in batch],
                            limit=k,
                            filter=expr or "",
                            output_fields=[],
                            search_params=self._search_params(k),
                            consistency_level="Strong",
                            timeout=CALL_TIMEOUT_S,
                        )
                    )
        width = max((len(h) for h in hits), default=0)
        if width < k and len(queries) and k > 0:
            width = min(k, self.count(where))  # some query found fewer than k: how many pass?
        scores = np.full((len(queries), width), -np.inf, np.float32)
        ids = np.full((len(queries), width), -1, np.int64)
        for row, found in enumerate(hits):
            found = sorted(found, key=lambda h: -h["distance"])[:width]
            scores[row, : len(found)] = [h["distance"] for h in found]
            ids[row, : len(found)] = [h["id"] for h in found]
        return scores, ids

    def _search_exactly(
        self, queries: np.ndarray, k: int, expr: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top ``k`` among the (few) rows passing ``expr``, scored from their vectors."""
        rows = self._query(self.collection, expr, ["id", "vector"], "search")
        ids = np.fromiter((row["id"] for row in rows), np.int64, len(rows))
        stored = np.asarray([row["vector"] for row in rows], np.float32).reshape(-1, self.dim)
        scores = queries @ stored.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, len(rows))]
        return np.take_along_axis(scores, order, axis=1), ids[order]


def _record(row: dict[str, Any]) -> ImageRecord:
    """A stored row -> :class:`ImageRecord`."""
    box = None if row["box_x"] is None else tuple(int(row[k]) for k in FIELDS[8:12])
    return ImageRecord(
        path=row["path"],
        size=int(row["size"]),
        mtime_ns=int(row["mtime_ns"]),
        identity=row["identity"],
        camera=row["camera"],
        time=row["time"],
        source=row["source"],
        frame=row["frame"],
        box=box,  # type: ignore[arg-type]
        track=row["track"],
    )


def _utf8_size(value: Any) -> float:
    """UTF-8 size of a string; inf for a non-string or a string with a lone surrogate."""
    if not isinstance(value, str):
        return math.inf
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return math.inf


def _literal(value: str) -> str:
    try:
        return string_literal(value)
    except ValueError as err:
        raise IndexStoreError(f"{value[:200]!r} cannot be stored in Milvus ({err})") from err


def _strings(values: list[str], what: str) -> str:
    try:
        return string_list(values)
    except ValueError as err:
        raise IndexStoreError(f"a {what} cannot be stored in Milvus ({err})") from err


def _written(build: Any, value: Any) -> str | None:
    """``build(value)`` (an expression), a value that cannot be written as IndexStoreError."""
    try:
        return build(value)
    except QueryError:
        raise
    except (ValueError, TypeError) as err:
        raise IndexStoreError(f"cannot filter by {value!r}: {err}") from err


def _reason(err: BaseException) -> str:
    """The message of a pymilvus or gRPC error, with the gRPC detail behind it."""
    message = getattr(err, "message", None) or str(err) or type(err).__name__
    for source in (err, err.__cause__):
        details = getattr(source, "details", None)
        text = details() if callable(details) else None
        if text and text not in message:
            return f"{message} ({text})"
    return message


class _DropRpcErrorLogs(logging.Filter):
    """Drops pymilvus's own log of a failed call (message and traceback at ERROR).

    The store raises every such failure as an IndexStoreError that names the collection; the
    log would show a user the same error a second time, as a traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.funcName != "_log_rpc_error"


def _import_pymilvus() -> tuple[ModuleType, tuple[type[BaseException], ...]]:
    """pymilvus, and the exceptions its calls raise (IndexStoreError when it is missing)."""
    try:
        import grpc
        import pymilvus
    except ImportError as err:
        raise IndexStoreError(
            f"milvus:// indexes need pymilvus ({err}); install it with pip install 'irra[milvus]'"
        ) from err
    rpc_logger = logging.getLogger("pymilvus.decorators")
    if not any(isinstance(f, _DropRpcErrorLogs) for f in rpc_logger.filters):
        rpc_logger.addFilter(_DropRpcErrorLogs())
    return pymilvus, (pymilvus.MilvusException, grpc.RpcError)


def _connect(
    pymilvus: ModuleType, errors: tuple[type[BaseException], ...], host: str, port: int, uri: str
) -> Any:
    """A client of the server at ``host:port``, or IndexStoreError within the connect timeout."""
    address = f"[{host}]" if ":" in host else host
    try:
        return pymilvus.MilvusClient(
            f"http://{address}:{port}", timeout=CONNECT_TIMEOUT_S, dedicated=True
        )
    except errors as err:
        raise IndexStoreError(
            f"{uri}: cannot reach the Milvus server at {host}:{port}: {_reason(err)}; check "
            f"that the server runs and listens there (for a local test server: milvus-lite "
            f"server --data-dir DIR --port {port})"
        ) from err
