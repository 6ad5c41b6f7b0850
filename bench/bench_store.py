"""Index store benchmark: appends, deletes, search recall and latency, memory; before and after.

For each gallery size (``--sizes``, default 10k, 100k, 1M rows of 512-d vectors shaped like the
demo model's embeddings, :mod:`embedding_like`) and index type (``--types``), a store is built
through the :class:`~irra.retrieval.store.VectorStore` protocol alone (``open_store``,
``append`` in batches of 50,000, ``compact``), then measured on one thread:

* open + first answer, and the reader's memory (RSS growth of this process from opening the
  store to its first answer, in total and per row: the ANN index and the filter columns); the
  bytes on disk per row after the build's compaction;
* recall@10 against exact brute force (numpy, over the rows that pass) and p50/p99 latency of
  ``--queries`` single queries, unfiltered and with camera filters keeping 50%, 1% and 0.01%
  of the rows (row i is on camera (i * 7919) mod 10,000; a filter keeps cameras c0..c{m-1});
* appending 1,000 rows (median of 3 appends), and the first search after it (what a running
  reader pays to see the rows); deleting 1,000 rows by id, and the first search after it;
  ``compact`` after the delete.

The issue's goals: appending 1,000 rows to the 1M store within 1.5x of the 10k store and under
1 s; an index type with recall@10 >= 0.95 and p50 <= 5 ms at 1M (unfiltered).

"Before" is the code of commit :data:`BEFORE_COMMIT`, the last with the snapshot store that
rewrote a whole version on every change: its ``src`` is taken from git (``git archive``) and run
by ``store_before.py`` in a process of its own, first, on the same gallery and queries
(types flat and ivf, the ones it offered). ``--milvus milvus://HOST:PORT/PREFIX`` adds the
Milvus engine (collections ``PREFIX_<type>_<rows>``, dropped after use) for the types it
offers; its memory is the server's, not measured here. Milvus Lite's server answers a query in
about 0.5 s (12,000 rows): with it, keep ``--queries`` small. Timings need the machine to
themselves: run nothing else meanwhile. Sizes 10k and 100k take about 1.5 minutes on 2 cores;
a 1M flat store takes about 4.5 GB of disk (twice that while it compacts) in the scratch folder
(``--scratch``, default the system's temporary folder), removed after use.

    python bench/bench_store.py --sizes 10000 100000 1000000 --out store.md \\
        [--types flat ivf ivf-sq8 ivf-pq] [--queries 200] [--nprobe N] [--nlist N] \\
        [--milvus milvus://127.0.0.1:19530/bench] [--no-before]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy and FAISS start their thread pools

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from store_workload import (  # noqa: E402
    APPEND_ROWS,
    APPENDS,
    DELETE_ROWS,
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
    row_lookup,
    rss_bytes,
    sizes_checked,
    timed,
)

from irra.retrieval.query import SearchFilter  # noqa: E402
from irra.retrieval.store import ImageRecord, RowSelector, VectorStore, open_store  # noqa: E402

#: The last commit of the snapshot store (every change rewrote a whole version).
BEFORE_COMMIT = "1c32bfb"
BUILD_BATCH = 50_000
HERE = Path(__file__).resolve().parent


def store_settings(index_type: str, nlist: int | None, nprobe: int | None) -> dict[str, Any]:
    """The settings of a new benchmark store."""
    return {
        "model": {"fingerprint": "bench", "source": None, "engine": "torch", "config": {}},
        "dim": 512, "images_root": "/nonexistent", "index_type": index_type,
        "nlist": nlist, "nprobe": nprobe,
    }  # fmt: skip


def offered_types() -> dict[str, tuple[str, ...]]:
    """Engine -> the index types it offers."""
    from irra.retrieval.vectors import INDEX_TYPES

    engines = {"embedded": tuple(INDEX_TYPES)}
    try:
        from irra.retrieval.milvus import MILVUS_INDEX_TYPES
    except ImportError:  # pymilvus missing: only --milvus needs it
        return engines
    return {**engines, "milvus": tuple(MILVUS_INDEX_TYPES)}


def _search_rows(store: VectorStore, query: np.ndarray, where: SearchFilter | None, rows):
    return rows(store.search(query[None], K, where)[1][0])


def build(store: VectorStore, gallery: Gallery) -> tuple[np.ndarray, int | None]:
    """Append the gallery's rows in batches and compact.

    Returns:
        the (rows,) ids and the bytes the store then takes on disk (None: not known).
    """
    ids = []
    for start in range(0, gallery.rows, BUILD_BATCH):
        stop = min(gallery.rows, start + BUILD_BATCH)
        records = make_records(ImageRecord, gallery, start, stop)
        ids.append(store.append(records, gallery.vectors[start:stop]))
    report = store.compact()
    return np.concatenate(ids), report.bytes_after


def bench_store(
    location: str, engine: str, index_type: str, gallery: Gallery,
    truth: dict[str, Truth], settings: dict[str, Any],
) -> Result:  # fmt: skip
    """Every figure of one store (see the module docstring)."""
    result = Result("after", engine, index_type, gallery.rows)
    writer = open_store(location, create=settings, writer=True)
    result.build_s, (ids, result.disk_bytes) = timed(lambda: build(writer, gallery))
    writer.close()
    rows = row_lookup(ids)
    one_percent = SearchFilter(cameras=filter_cameras("1%")).checked()
    before = rss_bytes()

    def open_and_answer() -> VectorStore:
        opened = open_store(location, writer=True)
        opened.search(gallery.queries[:1], K, one_percent)
        return opened

    result.open_s, store = timed(open_and_answer)
    if engine == "embedded":  # a Milvus reader's memory is the server's
        result.memory_bytes = rss_bytes() - before
    try:
        kept = kept_rows(gallery)
        for name in ("none", *FILTERS):
            where = None if name == "none" else SearchFilter(cameras=filter_cameras(name)).checked()
            (p50, p99), found = per_query(
                lambda q, w=where: _search_rows(store, q, w, rows), gallery.queries
            )
            result.searches.append(
                SearchRow(name, kept[name], recall(found, truth[name], gallery, name), p50, p99)
            )
        _updates(store, gallery, ids, result)
        result.compact_s, _ = timed(store.compact)
    finally:
        store.close()
    return result


def _updates(store: VectorStore, gallery: Gallery, ids: np.ndarray, result: Result) -> None:
    """Timed appends and delete, each followed by the first search that sees it."""
    query = gallery.queries[:1]
    appends, seen = [], []
    for i in range(APPENDS):
        start = gallery.rows + i * APPEND_ROWS
        records = make_records(ImageRecord, gallery, start, start + APPEND_ROWS)
        vectors = gallery.vectors[start : start + APPEND_ROWS]
        appends.append(timed(lambda r=records, v=vectors: store.append(r, v))[0])
        seen.append(timed(lambda: store.search(query, K))[0])
    result.append_ms, result.append_seen_ms = 1000 * np.median(appends), 1000 * np.median(seen)
    selector = RowSelector(ids=tuple(int(i) for i in ids[doomed_rows(gallery.rows)]))
    spent, deleted = timed(lambda: store.delete(selector))
    if len(deleted) != DELETE_ROWS:
        raise RuntimeError(f"{store.location}: deleted {len(deleted)} rows, not {DELETE_ROWS}")
    result.delete_ms = 1000 * spent
    result.delete_seen_ms = 1000 * timed(lambda: store.search(query, K))[0]


def run_after(
    args: argparse.Namespace, scratch: Path, gallery: Gallery, truth: dict[str, Truth]
) -> list[Result]:
    """The current code's results for one gallery size: every engine and type asked."""
    offered, results = offered_types(), []
    settings = {t: store_settings(t, args.nlist, args.nprobe) for t in args.types}
    for index_type in args.types:
        if index_type in offered["embedded"]:
            folder = scratch / f"after-{index_type}-{gallery.rows}"
            try:
                results.append(
                    bench_store(str(folder), "embedded", index_type, gallery, truth,
                                settings[index_type])
                )  # fmt: skip
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        if args.milvus and index_type in offered.get("milvus", ()):
            uri = f"{args.milvus.rstrip('/')}_{index_type.replace('-', '_')}_{gallery.rows}"
            try:
                results.append(
                    bench_store(uri, "milvus", index_type, gallery, truth, settings[index_type])
                )
            finally:
                _drop(uri)
        print(f"  done: {index_type} at {gallery.rows:,} rows", file=sys.stderr, flush=True)
    return results


def _drop(uri: str) -> None:
    from irra.retrieval.milvus import MilvusStore, collection_exists

    if collection_exists(uri):
        MilvusStore.open(uri).drop()


def run_before(args: argparse.Namespace, scratch: Path) -> list[Result]:
    """The old code's results (all sizes), from ``store_before.py`` run on its source tree."""
    src = scratch / "before"
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", "--format=tar", args.before, "src"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(src, filter="data")
    out = scratch / "before.json"
    command = [sys.executable, str(HERE / "store_before.py"), "--src", str(src / "src")]
    command += ["--sizes", *map(str, args.sizes), "--types", *args.types]
    command += ["--queries", str(args.queries), "--folder", str(scratch), "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(src / "src")}
    subprocess.run(command, check=True, env=env)
    return [Result.from_dict(r) for r in json.loads(out.read_text())]


def _number(value: float | None, digits: int) -> str:
    """``value`` with thousands separators and ``digits`` decimals, or - for None."""
    return "-" if value is None else f"{value:,.{digits}f}"


def table(results: Sequence[Result], args: argparse.Namespace) -> str:
    """The markdown report: the machine, the changes table, the search table, the ratios."""
    lines = [f"# Index store benchmark ({dt.date.today().isoformat()})", "", *_machine(args), ""]
    lines += [
        "## Changes and memory (one thread)", "",
        "| code | engine | type | rows | build s | open + 1st answer s | append 1,000 ms | "
        "then 1st search ms | delete 1,000 ms | then 1st search ms | compact s | reader MiB | "
        "reader bytes / row | disk bytes / row |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in results:
        cells = [r.code, r.engine, r.index_type, f"{r.rows:,}", f"{r.build_s:.1f}",
                 f"{r.open_s:.2f}", _number(r.append_ms, 1), _number(r.append_seen_ms, 1),
                 _number(r.delete_ms, 1), _number(r.delete_seen_ms, 1), _number(r.compact_s, 2),
                 _number(r.memory_bytes and r.memory_bytes / 2**20, 0),
                 _number(r.memory_bytes and r.memory_bytes / r.rows, 0),
                 _number(r.disk_bytes and r.disk_bytes / r.rows, 0)]  # fmt: skip
        lines.append(f"| {' | '.join(cells)} |")
    lines += [
        "", f"## Search: recall@{K} against brute force, latency of single queries (one thread, "
        f"{args.queries} queries)", "",
        "| code | engine | type | rows | filter keeps | rows kept | recall@10 | p50 ms | p99 ms |",
        "|---|---|---|---:|---|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in results:
        for s in r.searches:
            name = "all (no filter)" if s.filter == "none" else s.filter
            lines.append(
                f"| {r.code} | {r.engine} | {r.index_type} | {r.rows:,} | {name} | {s.kept:,} | "
                f"{s.recall:.3f} | {s.p50_ms:.2f} | {s.p99_ms:.2f} |"
            )
    return "\n".join([*lines, "", "## Ratios", "", *ratios(results)]) + "\n"


def ratios(results: Sequence[Result]) -> list[str]:
    """Append cost at the largest size over the smallest (goal <= 1.5x, < 1 s), and before
    over after at each size."""
    lines = []
    groups: dict[tuple[str, str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.code, r.engine, r.index_type), []).append(r)
    for (code, engine, kind), group in groups.items():
        small, large = min(group, key=lambda r: r.rows), max(group, key=lambda r: r.rows)
        if large.rows > small.rows and small.append_ms:
            ok = large.append_ms <= 1.5 * small.append_ms and large.append_ms < 1000
            lines.append(
                f"- {code}, {engine} {kind}: append 1,000 rows at {large.rows:,} / at "
                f"{small.rows:,} = {large.append_ms / small.append_ms:.2f}x, "
                f"{large.append_ms:,.1f} ms (goal <= 1.5x and < 1 s: {'met' if ok else 'missed'})"
            )
    after = {
        (r.index_type, r.rows): r for r in results if r.code == "after" and r.engine == "embedded"
    }
    for r in results:
        now = after.get((r.index_type, r.rows))
        if r.code == "before" and now is not None and now.append_ms and now.delete_ms:
            lines.append(
                f"- {r.index_type} at {r.rows:,} rows, before / after: append "
                f"{r.append_ms / now.append_ms:,.0f}x, delete {r.delete_ms / now.delete_ms:,.0f}x"
            )
    return lines


def _machine(args: argparse.Namespace) -> list[str]:
    import faiss

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        f"Machine: {cpu}, {os.cpu_count()} cores, {memory:.0f} GiB; Python "
        f"{platform.python_version()}, numpy {np.__version__}, FAISS {faiss.__version__}.",
        f"Vectors: bench/embedding_like.py (demo-model-shaped), 512-d; {args.queries} queries; "
        f"before: commit {args.before if not args.no_before else '(not run)'}; "
        f"nlist {args.nlist or 'default'}, nprobe {args.nprobe or 'default'}.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--types", nargs="+", default=["flat", "ivf", "ivf-sq8", "ivf-pq"])
    parser.add_argument("--queries", type=int, default=200, help="per search measurement")
    parser.add_argument("--nlist", type=int, help="IVF cells (default: from the size)")
    parser.add_argument("--nprobe", type=int, help="cells scanned per query (default: nlist/16)")
    parser.add_argument("--milvus", help="milvus://HOST:PORT/PREFIX: also measure Milvus")
    parser.add_argument("--before", default=BEFORE_COMMIT, help="the old code's commit")
    parser.add_argument("--no-before", action="store_true", help="skip the old code")
    parser.add_argument("--scratch", type=Path, help="folder for the stores (default: a temp)")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    args.sizes = sizes_checked(args.sizes)
    offered = offered_types()
    if args.milvus and "milvus" not in offered:
        parser.error("--milvus needs pymilvus: pip install -e '.[milvus]'")
    used = {e: t for e, t in offered.items() if e == "embedded" or args.milvus}
    unknown = [t for t in args.types if not any(t in types for types in used.values())]
    if unknown:
        valid = "; ".join(f"{e}: {', '.join(t)}" for e, t in used.items())
        parser.error(f"index type(s) {', '.join(unknown)} not offered; valid: {valid}")
    one_thread()
    with tempfile.TemporaryDirectory(dir=args.scratch, prefix="bench-store-") as tmp:
        scratch = Path(tmp)
        results = [] if args.no_before else run_before(args, scratch)
        for size in args.sizes:
            gallery = make_gallery(size, args.queries)
            truth = exact_top(gallery)
            results += run_after(args, scratch, gallery, truth)
            del gallery
    report = table(results, args)
    print(report, end="")
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
