"""The engines that ``bench_engines.py`` compares, behind one small interface.

Every adapter speaks in *row numbers*: row r of the benchmark's vector file is stored under key r
(irra gives ids itself; the adapter checks that they come out equal to the row numbers), so a
search answers row numbers that the harness checks against NumPy. Each row also has a ``path``
(``g/<row>.jpg``, or the crash test's tags) and a ``camera`` name, the column the filtered
searches use.

Each engine's library is imported inside its adapter only, so this module loads in any
environment that has NumPy: LanceDB runs in an environment of its own (it is no dependency of
irra).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Rows per insert call during a bulk load where the engine takes batches.
LOAD_BATCH = 5_000
TABLE = "gallery"


def camera_names(rows: np.ndarray, cameras: int) -> list[str]:
    """Camera name of each row: ``cam<r mod cameras>`` (so each camera holds 1/cameras)."""
    return [f"cam{c:03d}" for c in (np.asarray(rows) % cameras).tolist()]


def gallery_paths(rows: np.ndarray) -> list[str]:
    return [f"g/{r}.jpg" for r in np.asarray(rows).tolist()]


class IrraEngine:
    """irra's embedded store: SQLite (rows, fp32 blobs) + FAISS in memory (``flat``/``ivf``)."""

    family = "irra"
    packages = ("faiss-cpu",)  # SQLite is Python's own sqlite3

    def __init__(self, folder: Path, dim: int, variant: str) -> None:
        import irra.retrieval.embedded  # noqa: F401 - imported here, not timed in open()

        self.folder, self.dim, self.variant = folder / "index", dim, variant
        self.store: Any = None

    def settings(self) -> dict[str, Any]:
        return {
            "model": {"fingerprint": "bench", "source": None, "engine": "torch", "config": {}},
            "dim": self.dim,
            "images_root": "/x",
            "metric": "inner_product",
            "index_type": self.variant,
            "nlist": None,
            "nprobe": None,
        }

    def open(self, *, create: bool = False) -> None:
        import faiss

        from irra.retrieval.store import open_store

        faiss.omp_set_num_threads(1)
        self.store = open_store(
            self.folder, create=self.settings() if create else None, writer=True
        )

    def add(
        self,
        rows: np.ndarray,
        vectors: np.ndarray,
        cameras: list[str],
        paths: list[str] | None = None,
    ) -> None:
        from irra.retrieval.store import ImageRecord

        records = [
            ImageRecord(p, 1, 1, camera=c)
            for p, c in zip(paths or gallery_paths(rows), cameras, strict=True)
        ]
        ids = self.store.append(records, vectors)
        if paths is None and not np.array_equal(ids, rows):  # gallery rows: id = row number
            raise RuntimeError(
                f"irra gave ids {ids[:3]}... to rows {rows[:3]}...: the "
                "benchmark expects a fresh store to number rows in order"
            )

    load = add

    def build(self) -> None:
        self.store.checkpoint()  # trains the ivf cells; writes the ANN checkpoint

    def search(self, query: np.ndarray, k: int, camera: str | None) -> np.ndarray:
        from irra.retrieval.query import SearchFilter

        where = SearchFilter(cameras=[camera]).checked() if camera else None
        _, ids = self.store.search(query[None], k, where)
        return ids[0][ids[0] >= 0]

    def remove(self, rows: np.ndarray) -> None:
        from irra.retrieval.store import RowSelector

        self.store.delete(RowSelector(ids=[int(r) for r in rows]))

    def count(self) -> int:
        return int(self.store.count())

    def count_prefix(self, prefix: str) -> int:
        from irra.retrieval.query import SearchFilter

        return int(self.store.count(SearchFilter(under=prefix).checked()))

    def describe(self) -> str:
        info = self.store.ann_info()
        kind = info["index_type"]
        cells = f", nlist {info['nlist']}, nprobe {info['nprobe']}" if kind != "flat" else ""
        return f"SQLite + FAISS {kind}{cells}; filters exact (gather or selector)"

    def version(self) -> str:
        import sqlite3

        import faiss

        return f"faiss {faiss.__version__}, SQLite {sqlite3.sqlite_version}"

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


class LanceEngine:
    """LanceDB (embedded): brute force, IVF_HNSW_SQ or IVF_PQ + refine; a BITMAP index on
    ``camera``; prefiltered searches."""

    family = "lancedb"
    packages = ("lancedb",)
    #: variant -> (index config name, its arguments, query arguments). IVF_PQ's default codes
    #: (32 bytes a vector) need the refine step: at 20,000 embedding-like rows refine factor 4
    #: gave recall@10 0.77, 20 gave 0.99.
    VARIANTS: dict[str, tuple[str | None, dict[str, Any], dict[str, Any]]] = {
        "flat": (None, {}, {}),
        "hnsw-sq": ("HnswSq", {}, {"ef": 64}),
        "ivf-pq": ("IvfPq", {}, {"nprobes": 32, "refine_factor": 20}),
    }

    def __init__(self, folder: Path, dim: int, variant: str) -> None:
        import lancedb  # noqa: F401 - imported here, not timed in open()

        self.folder, self.dim, self.variant = folder / "lance", dim, variant
        self.table: Any = None

    def open(self, *, create: bool = False) -> None:
        import lancedb

        db = lancedb.connect(str(self.folder))
        self.db = db
        self.table = None if create else db.open_table(TABLE)

    def _batch(
        self,
        rows: np.ndarray,
        vectors: np.ndarray,
        cameras: list[str],
        paths: list[str] | None = None,
    ) -> Any:
        import pyarrow as pa

        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
        return pa.record_batch(
            [
                pa.array(np.asarray(rows, np.int64)),
                pa.array(paths or gallery_paths(rows)),
                pa.array(cameras),
                pa.FixedSizeListArray.from_arrays(flat, self.dim),
            ],
            schema=self._schema(),
        )

    def _schema(self) -> Any:
        import pyarrow as pa

        return pa.schema(
            [
                ("id", pa.int64()),
                ("path", pa.string()),
                ("camera", pa.string()),
                ("vector", pa.list_(pa.float32(), self.dim)),
            ]
        )

    def load(self, rows: np.ndarray, vectors: np.ndarray, cameras: list[str]) -> None:
        import pyarrow as pa

        batches = (
            self._batch(
                rows[s : s + LOAD_BATCH], vectors[s : s + LOAD_BATCH], cameras[s : s + LOAD_BATCH]
            )
            for s in range(0, len(rows), LOAD_BATCH)
        )
        reader = pa.RecordBatchReader.from_batches(self._schema(), batches)
        self.table = self.db.create_table(TABLE, data=reader)

    def build(self) -> None:
        from lancedb import index

        self.table.create_index("camera", config=index.Bitmap())
        name, params, _ = self.VARIANTS[self.variant]
        if name is not None:
            config = getattr(index, name)(distance_type="dot", **params)
            self.table.create_index("vector", config=config)

    def search(self, query: np.ndarray, k: int, camera: str | None) -> np.ndarray:
        builder = self.table.search(query, vector_column_name="vector").distance_type("dot")
        if camera:
            builder = builder.where(f"camera = '{camera}'", prefilter=True)
        for method, value in self.VARIANTS[self.variant][2].items():
            builder = getattr(builder, method)(value)
        found = builder.limit(k).select(["id", "_distance"]).to_arrow()
        return found["id"].to_numpy()

    def add(
        self,
        rows: np.ndarray,
        vectors: np.ndarray,
        cameras: list[str],
        paths: list[str] | None = None,
    ) -> None:
        import pyarrow as pa

        self.table.add(pa.Table.from_batches([self._batch(rows, vectors, cameras, paths)]))

    def remove(self, rows: np.ndarray) -> None:
        self.table.delete(f"id IN ({', '.join(str(int(r)) for r in rows)})")

    def count(self) -> int:
        return int(self.table.count_rows())

    def count_prefix(self, prefix: str) -> int:
        return int(self.table.count_rows(f"path LIKE '{prefix}%'"))

    def describe(self) -> str:
        indices = {i.columns[0]: i for i in self.table.list_indices()}
        vector = indices.get("vector")
        if vector is None:
            return "Lance brute force; BITMAP on camera; prefilter"
        query = ", ".join(f"{k} {v}" for k, v in self.VARIANTS[self.variant][2].items())
        return f"Lance {vector.index_type} (defaults; {query}); BITMAP on camera; prefilter"

    def version(self) -> str:
        import lancedb
        import pyarrow

        return f"lancedb {lancedb.__version__}, pyarrow {pyarrow.__version__}"

    def close(self) -> None:
        self.table = None


class MilvusEngine:
    """Milvus Lite, embedded (``MilvusClient("milvus.db")``): FLAT or HNSW on the vectors, an
    INVERTED index on ``camera``."""

    family = "milvus"
    packages = ("pymilvus[milvus-lite]", "milvus-lite")
    VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
        "flat": ("FLAT", {}, {}),
        "hnsw": ("HNSW", {"M": 16, "efConstruction": 200}, {"ef": 64}),
    }

    def __init__(self, folder: Path, dim: int, variant: str) -> None:
        import milvus_lite.adapter.grpc.server  # noqa: F401 - imported here, not timed in open()
        import pymilvus  # noqa: F401

        self.path, self.dim, self.variant = folder / "milvus.db", dim, variant
        self.client: Any = None

    def open(self, *, create: bool = False) -> None:
        import faiss
        from pymilvus import DataType, MilvusClient

        faiss.omp_set_num_threads(1)  # Milvus Lite's HNSW is FAISS
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.client = MilvusClient(str(self.path))
        if not create:
            self.client.load_collection(TABLE)
            return
        schema = self.client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("path", DataType.VARCHAR, max_length=512)
        schema.add_field("camera", DataType.VARCHAR, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        kind, params, _ = self.VARIANTS[self.variant]
        indexes = self.client.prepare_index_params()
        indexes.add_index("vector", index_type=kind, metric_type="IP", params=params)
        indexes.add_index("camera", index_type="INVERTED")
        self.client.create_collection(TABLE, schema=schema, index_params=indexes)

    def add(
        self,
        rows: np.ndarray,
        vectors: np.ndarray,
        cameras: list[str],
        paths: list[str] | None = None,
    ) -> None:
        paths = paths or gallery_paths(rows)
        for s in range(0, len(rows), LOAD_BATCH):
            self.client.insert(
                TABLE,
                [
                    {"id": int(r), "path": p, "camera": c, "vector": v}
                    for r, p, c, v in zip(
                        rows[s : s + LOAD_BATCH],
                        paths[s : s + LOAD_BATCH],
                        cameras[s : s + LOAD_BATCH],
                        vectors[s : s + LOAD_BATCH],
                        strict=True,
                    )
                ],
            )

    load = add

    def build(self) -> None:
        self.client.flush(TABLE)  # seals the rows into segments and indexes them
        self.client.load_collection(TABLE)

    def search(self, query: np.ndarray, k: int, camera: str | None) -> np.ndarray:
        params = {"metric_type": "IP", "params": self.VARIANTS[self.variant][2]}
        hits = self.client.search(
            TABLE,
            data=[query],
            limit=k,
            search_params=params,
            filter=f'camera == "{camera}"' if camera else "",
            output_fields=[],
        )
        return np.array([h["id"] for h in hits[0]], np.int64)

    def remove(self, rows: np.ndarray) -> None:
        self.client.delete(TABLE, ids=[int(r) for r in rows])

    def _count(self, where: str) -> int:
        found = self.client.query(TABLE, filter=where, output_fields=["count(*)"])
        return int(found[0]["count(*)"])

    def count(self) -> int:
        return self._count("")

    def count_prefix(self, prefix: str) -> int:
        return self._count(f'path like "{prefix}%"')

    def describe(self) -> str:
        kind, params, query = self.VARIANTS[self.variant]
        given = ", ".join(f"{k} {v}" for k, v in {**params, **query}.items())
        return f"Milvus Lite {kind}{f' ({given})' if given else ''}; INVERTED on camera"

    def version(self) -> str:
        import milvus_lite
        import pymilvus

        return f"pymilvus {pymilvus.__version__}, milvus-lite {milvus_lite.__version__}"

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


ENGINES = {engine.family: engine for engine in (IrraEngine, LanceEngine, MilvusEngine)}


def install_size(requirements: Sequence[str]) -> tuple[int, list[str]]:
    """Bytes on disk of the installed distributions that ``requirements`` pull in (their wheel
    files as RECORD lists them, compiled caches left out), and their names.

    Follows each distribution's requirements (with the extras asked for, markers evaluated for
    this interpreter); a requirement that is not installed is skipped.
    """
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[tuple[str, frozenset[str]]] = set()
    sized: dict[str, int] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        if key[0] not in sized:
            sized[key[0]] = sum(_file_size(f) for f in dist.files or ())
        for text in dist.requires or ():
            sub = Requirement(text)
            extras = set(req.extras) or {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    return sum(sized.values()), sorted(sized)


def _file_size(entry: Any) -> int:
    if entry.size:
        return int(entry.size)
    path = Path(entry.locate())
    return path.stat().st_size if path.is_file() else 0
