"""The "before" figures of ``bench_store.py``: the snapshot store that every change rewrote.

Run by ``bench_store.py`` in a process of its own, with the source tree of the old commit
first on ``PYTHONPATH`` (``--src`` says which; the script refuses to run against another irra).
Each change is what ``irra index`` did then after encoding: open the live version, read every
record and vector, merge in the new rows (or leave out the deleted ones), build the FAISS index
again and write a whole new version (``write_version``). A search is what ``Retriever.search``
did: the filter's mask from the metadata columns, then ``filtered_search`` (exact) or, without a
filter, the FAISS index's own search. Prints nothing; writes a JSON list of
:class:`store_workload.Result`.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy and FAISS start their thread pools

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from store_workload import (  # noqa: E402
    APPEND_ROWS,
    APPENDS,
    FILTERS,
    Gallery,
    K,
    Result,
    SearchRow,
    Truth,
    doomed_rows,
    exact_top,
    filter_cameras,
    kept_rows,
    make_gallery,
    make_records,
    one_thread,
    per_query,
    recall,
    rss_bytes,
    sizes_checked,
    timed,
)

#: Index types the old code offered.
TYPES = ("flat", "ivf")


def _manifest(index_type: str, index: Any, dim: int) -> dict[str, Any]:
    from irra.retrieval.vectors import index_nlist

    return {
        "model": {"fingerprint": "bench", "source": None, "engine": "torch", "config": {}},
        "images_root": "/nonexistent", "dim": dim, "metric": "inner_product",
        "index_type": index_type, "nlist": index_nlist(index),
        "nprobe": int(index.nprobe) if hasattr(index, "nprobe") else None,
    }  # fmt: skip


def _write(folder: Path, index_type: str, records: list[Any], vectors: np.ndarray) -> None:
    """Build the FAISS index and write the whole version (the old write_index)."""
    from irra.retrieval.store import write_version
    from irra.retrieval.vectors import build_vector_index

    index = build_vector_index(vectors, index_type)
    write_version(folder, _manifest(index_type, index, vectors.shape[1]), records, index)


def _rewrite(
    folder: Path, index_type: str, new_records: list[Any], new_vectors: np.ndarray, drop: set[str]
) -> None:
    """One change as the old ``irra index`` made it: read all, merge, rebuild, write all."""
    from irra.retrieval.build import merge_rows
    from irra.retrieval.store import Snapshot

    snapshot = Snapshot.open(folder)
    try:
        old_records, old_vectors = snapshot.metadata.all(), snapshot.embeddings()
    finally:
        snapshot.metadata.close()
    keep = {r.path for r in old_records} - drop if drop else None
    records, vectors = merge_rows(old_records, old_vectors, new_records, new_vectors, keep)
    _write(folder, index_type, records, vectors)


class _Reader:
    """What the old Retriever held: the live version, and its filter columns once a filtered
    search needed them."""

    def __init__(self, folder: Path) -> None:
        from irra.retrieval import store  # the old commit's module

        self.snapshot = store.Snapshot.open(folder)
        self.columns: Any = None

    def search(self, vector: np.ndarray, cameras: list[str] | None) -> np.ndarray:
        from irra.retrieval import filtering, query, vectors  # the old commit's modules

        index = self.snapshot.vectors
        if cameras is None:
            return vectors.search_vectors(index, vector[None], K)[1][0]
        if self.columns is None:
            self.columns = filtering.FilterColumns(self.snapshot.metadata)
        keep = self.columns.mask(query.SearchFilter(cameras=cameras).checked())
        return vectors.filtered_search(index, vector, keep, K)[1]

    def close(self) -> None:
        self.snapshot.metadata.close()


def bench_type(gallery: Gallery, truth: dict[str, Truth], index_type: str, folder: Path):
    """Every figure of the old code for one index type and gallery size."""
    from irra.retrieval.store import ImageRecord

    rows = gallery.rows
    result = Result("before", "snapshot", index_type, rows)

    def build() -> None:
        records = make_records(ImageRecord, gallery, 0, rows)
        _write(folder, index_type, records, gallery.vectors[:rows])

    result.build_s, _ = timed(build)
    result.disk_bytes = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    before = rss_bytes()

    def open_and_answer() -> _Reader:
        opened = _Reader(folder)
        opened.search(gallery.queries[0], filter_cameras("1%"))
        return opened

    result.open_s, reader = timed(open_and_answer)
    result.memory_bytes = rss_bytes() - before
    kept = kept_rows(gallery)
    for name in ("none", *FILTERS):
        cameras = None if name == "none" else filter_cameras(name)
        (p50, p99), found = per_query(lambda q, c=cameras: reader.search(q, c), gallery.queries)
        result.searches.append(
            SearchRow(name, kept[name], recall(found, truth[name], gallery, name), p50, p99)
        )
    reader.close()
    appends, seen = [], []
    for i in range(APPENDS):
        start = rows + i * APPEND_ROWS
        new = make_records(ImageRecord, gallery, start, start + APPEND_ROWS)
        vectors = gallery.vectors[start : start + APPEND_ROWS]
        appends.append(timed(lambda n=new, v=vectors: _rewrite(folder, index_type, n, v, set()))[0])
        seen.append(_first_search(folder, gallery))
    result.append_ms, result.append_seen_ms = 1000 * np.median(appends), 1000 * np.median(seen)
    doomed = {f"gallery/{i:08d}.jpg" for i in doomed_rows(rows)}
    empty = np.empty((0, gallery.vectors.shape[1]), np.float32)
    result.delete_ms = 1000 * timed(lambda: _rewrite(folder, index_type, [], empty, doomed))[0]
    result.delete_seen_ms = 1000 * _first_search(folder, gallery)
    result.note = "every change rewrites the whole version; no compaction"
    return result


def _first_search(folder: Path, gallery: Gallery) -> float:
    """Seconds until a reader answers from the new version: open it, search once."""

    def reopen_and_search() -> None:
        reader = _Reader(folder)
        reader.search(gallery.queries[0], None)
        reader.close()

    return timed(reopen_and_search)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="the old commit's src folder")
    parser.add_argument("--sizes", type=int, nargs="+", required=True)
    parser.add_argument("--types", nargs="+", default=list(TYPES))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--folder", type=Path, required=True, help="scratch folder")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    import irra

    if not Path(irra.__file__).resolve().is_relative_to(args.src.resolve()):
        raise SystemExit(f"irra comes from {irra.__file__}, not {args.src}: set PYTHONPATH")
    one_thread()
    results = []
    for size in sizes_checked(args.sizes):
        gallery = make_gallery(size, args.queries)
        truth = exact_top(gallery)
        for index_type in [t for t in args.types if t in TYPES]:
            folder = args.folder / f"before-{index_type}-{size}"
            try:
                results.append(bench_type(gallery, truth, index_type, folder))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            args.json.write_text(json.dumps([asdict(r) for r in results]))
        del gallery
    args.json.write_text(json.dumps([asdict(r) for r in results]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
