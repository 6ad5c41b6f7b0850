"""Embedded vector engines at the same N: irra's store (SQLite + FAISS) vs LanceDB vs Milvus Lite.

Why irra keeps its own embedded store instead of a well-kept embedded engine is a question of
measurement; this script measures, for each configuration, on one thread:

* bulk load of N rows (512-d, 100 cameras) and the index build that follows it;
* on a fresh process (as a server starting): open + first query, then 100 single queries
  (k 10) unfiltered and with a filter keeping 1% (one camera): p50/p99 latency, recall@k
  against exact NumPy brute force, and whether each filtered answer is *exactly* the top k
  among the passing rows (scores compared to 1e-5, so ties do not count as errors);
* appending ``--batch`` rows (median of 5 calls) and deleting ``--batch`` rows by id (median
  of 5); then the queries again: recall, exactness, and rows returned that were deleted or fail
  the filter;
* a crash test: a writer process appends ``--batch``-row batches in a loop, logging each
  acknowledged call; it is killed (SIGKILL) during a call after ``--crash-acked`` calls; a new
  process reopens the store, counts the rows of every batch and searches. An acknowledged
  batch must be whole, the batch in flight whole or absent. (SIGKILL tests a process crash;
  what the OS had not written to the disk survives it, so this says nothing about power loss.)
* install size: the wheels of the engine's package and everything it pulls in (NumPy apart,
  since every option needs it).

Vectors are shaped like the demo model's embeddings (:mod:`embedding_like`: identity clusters
in a low-rank space) unless ``--vectors gaussian`` asks for unit Gaussian vectors (every point
about as far from a query as every other: the easy case for brute force, the hard one for an
approximate index). Every configuration runs in processes of its own (OMP, OpenBLAS and Lance
CPU threads set to 1): build, use, crash writer, crash check.

LanceDB is no dependency of irra: install it in a separate environment and pass its Python::

    python -m venv /tmp/lancedb-env && /tmp/lancedb-env/bin/pip install lancedb
    python bench/bench_engines.py --lancedb-python /tmp/lancedb-env/bin/python \\
        --size 100000 --out engines-100k.md

``--engines irra`` (or config names such as ``irra-ivf milvus-hnsw``) runs a subset.
"""

from __future__ import annotations

import os

for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "LANCE_CPU_THREADS",
    "RAYON_NUM_THREADS",
):
    os.environ[_var] = "1"  # before NumPy, FAISS and Lance start their thread pools

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_adapters import ENGINES, camera_names, install_size  # noqa: E402

SCRIPT = Path(__file__).resolve()
#: configuration -> (engine family, variant)
CONFIGS = {
    "irra-flat": ("irra", "flat"),
    "irra-ivf": ("irra", "ivf"),
    "lancedb-flat": ("lancedb", "flat"),
    "lancedb-hnsw-sq": ("lancedb", "hnsw-sq"),
    "lancedb-ivf-pq": ("lancedb", "ivf-pq"),
    "milvus-flat": ("milvus", "flat"),
    "milvus-hnsw": ("milvus", "hnsw"),
}
CAMERAS = 100
TARGET_CAMERA = 7  # the 1% filter keeps the rows of this camera
TARGET = camera_names(np.array([TARGET_CAMERA]), CAMERAS)[0]
WRITES = 5  # append calls, then delete calls, each timed
RESULT = "BENCH-RESULT "
#: keys of the crash test's rows (LanceDB and Milvus take the caller's ids)
CRASH_KEYS = 1_000_000_000


# -- data and the oracle -------------------------------------------------------------------------


def prepare_data(
    folder: Path, size: int, extra: int, queries: int, dim: int, seed: int, kind: str
) -> None:
    """Write ``vectors.npy`` ((size + extra, dim) float32 unit rows: the gallery, then the rows
    that the appends add) and ``queries.npy`` ((queries, dim)) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "clustered":
        from embedding_like import clustered_vectors, queries_like

        vectors, _ = clustered_vectors(size + extra, dim, seed)
        asked, _ = queries_like(queries, size, dim, seed)
    else:
        rng = np.random.default_rng(seed)
        vectors = rng.standard_normal((size + extra, dim), dtype=np.float32)
        asked = rng.standard_normal((queries, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        asked /= np.linalg.norm(asked, axis=1, keepdims=True)
    np.save(folder / "vectors.npy", vectors)
    np.save(folder / "queries.npy", asked)


def exact_top(
    vectors: np.ndarray, keep: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65_536
) -> np.ndarray:
    """(Q, min(k, passing)) float32 exact top scores of each query among the rows where
    ``keep`` (brute force in chunks of rows), best first."""
    rows = np.flatnonzero(keep)
    want = min(k, len(rows))
    best = np.full((len(queries), 0), -np.inf, np.float32)
    for start in range(0, len(rows), chunk):
        scores = (vectors[rows[start : start + chunk]] @ queries.T).T  # (Q, chunk)
        both = np.concatenate([best, scores], axis=1)
        cut = min(want, both.shape[1])
        best = -np.partition(-both, cut - 1, axis=1)[:, :cut]
    return -np.sort(-best, axis=1)


def query_pass(
    search: Callable[[np.ndarray, str | None], np.ndarray],
    vectors: np.ndarray,
    live: np.ndarray,
    queries: np.ndarray,
    k: int,
) -> dict[str, dict[str, float]]:
    """Time single queries without and with the 1% filter and check them against brute force.

    Returns, per mode (``all``, ``filtered``): p50/p99 ms, recall@k (found rows scoring at
    least the exact k-th score), ``exact`` (answers equal to the exact top k, by score),
    ``short`` (answers with fewer than min(k, passing) rows) and ``bad`` (rows returned that
    are deleted, fail the filter or come twice).
    """
    cameras = np.arange(len(vectors)) % CAMERAS
    out = {}
    for mode, camera in (("all", None), ("filtered", TARGET)):
        keep = live & (cameras == TARGET_CAMERA) if camera else live
        truth = exact_top(vectors, keep, queries, k)
        seconds, hits, exact, short, bad = [], 0, 0, 0, 0
        for query, best in zip(queries, truth, strict=True):
            start = time.perf_counter()
            found = np.asarray(search(query, camera), np.int64)
            seconds.append(time.perf_counter() - start)
            inside = (found >= 0) & (found < len(vectors))
            valid = np.unique(found[inside][keep[found[inside]]])
            bad += len(found) - len(valid)
            scores = -np.sort(-(vectors[valid] @ query)) if len(valid) else np.empty(0)
            if len(best):
                hits += min(len(best), int(np.count_nonzero(scores >= best[-1] - 1e-5)))
            short += len(found) < len(best)
            exact += len(found) == len(valid) == len(best) and np.allclose(scores, best, atol=1e-5)
        ms = 1000 * np.asarray(seconds)
        out[mode] = {
            "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "recall": hits / max(1, sum(len(b) for b in truth)), "exact": exact,
            "short": short, "bad": bad, "queries": len(queries),
        }  # fmt: skip
    return out


# -- the roles of the engine processes -----------------------------------------------------------


def _engine(args: argparse.Namespace) -> Any:
    family, variant = CONFIGS[args.config]
    return ENGINES[family](Path(args.work) / args.config, args.dim, variant)


def _data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    folder = Path(args.work) / "data"
    return np.load(folder / "vectors.npy", mmap_mode="r"), np.load(folder / "queries.npy")


def _emit(result: dict[str, Any]) -> None:
    print(RESULT + json.dumps(result), flush=True)


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def role_build(args: argparse.Namespace) -> None:
    """Create the store, bulk-load the gallery, build the index; report the times."""
    engine = _engine(args)
    vectors, _ = _data(args)
    rows = np.arange(args.size)
    gallery = np.ascontiguousarray(vectors[: args.size])
    engine.open(create=True)
    start = time.perf_counter()
    engine.load(rows, gallery, camera_names(rows, CAMERAS))
    loaded = time.perf_counter()
    engine.build()
    built = time.perf_counter()
    engine.close()
    size, dists = install_size(engine.packages)
    numpy_size, _ = install_size(["numpy"])
    _emit({
        "load_s": loaded - start, "index_s": built - loaded,
        "disk_mb": _bytes(Path(args.work) / args.config) / 1e6, "version": engine.version(),
        "install_mb": size / 1e6, "install_mb_no_numpy": (size - numpy_size) / 1e6,
        "dists": dists,
    })  # fmt: skip


def role_use(args: argparse.Namespace) -> None:
    """Open the store in a fresh process, query, append, delete, query again."""
    engine = _engine(args)
    vectors, queries = _data(args)
    live = np.zeros(len(vectors), bool)
    live[: args.size] = True
    start = time.perf_counter()
    engine.open()
    engine.search(queries[0], args.k, None)
    first = time.perf_counter() - start

    def search(query: np.ndarray, camera: str | None) -> np.ndarray:
        return engine.search(query, args.k, camera)

    before = query_pass(search, vectors, live, queries, args.k)
    appends = []
    for n in range(WRITES):
        rows = np.arange(args.size + n * args.batch, args.size + (n + 1) * args.batch)
        block, cameras = np.ascontiguousarray(vectors[rows]), camera_names(rows, CAMERAS)
        start = time.perf_counter()
        engine.add(rows, block, cameras)
        appends.append(time.perf_counter() - start)
        live[rows] = True
    chosen = np.random.default_rng(args.seed + 1).choice(
        np.flatnonzero(live), (WRITES, args.batch), replace=False
    )
    deletes = []
    for rows in chosen:
        start = time.perf_counter()
        engine.remove(rows)
        deletes.append(time.perf_counter() - start)
        live[rows] = False
    after = query_pass(search, vectors, live, queries, args.k)
    count = engine.count()
    _emit({
        "first_ms": 1000 * first, "before": before, "after": after,
        "append_ms": 1000 * float(np.median(appends)),
        "delete_ms": 1000 * float(np.median(deletes)),
        "count": count, "count_ok": count == int(live.sum()), "describe": engine.describe(),
    })  # fmt: skip
    engine.close()


def _crash_rows(args: argparse.Namespace, n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Keys, vectors and paths of batch ``n`` of crash round ``args.round``."""
    rng = np.random.default_rng([args.seed, args.round, n])
    vectors = rng.standard_normal((args.batch, args.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    first = CRASH_KEYS + (args.round * 100_000 + n) * args.batch
    paths = [f"{_crash_prefix(args.round, n)}{j}.jpg" for j in range(args.batch)]
    return np.arange(first, first + args.batch), vectors, paths


def _crash_prefix(round_: int, n: int) -> str:
    return f"crash/r{round_:02d}/b{n:05d}/"


def role_writer(args: argparse.Namespace) -> None:
    """Append batches until killed; log ``S n`` before each call and ``A n`` (synced) after."""
    engine = _engine(args)
    engine.open()
    with open(args.log, "a", encoding="utf-8") as log:
        for n in range(100_000):
            keys, vectors, paths = _crash_rows(args, n)
            log.write(f"S {n}\n")
            log.flush()
            engine.add(keys, vectors, ["crash"] * len(keys), paths)
            log.write(f"A {n}\n")
            log.flush()
            os.fsync(log.fileno())


def role_check(args: argparse.Namespace) -> None:
    """Reopen after a kill: rows in total, rows of each batch of the round, one search."""
    engine = _engine(args)
    _, queries = _data(args)
    try:
        engine.open()
        batches = {n: engine.count_prefix(_crash_prefix(args.round, n)) for n in args.batches}
        count = engine.count()
        engine.search(queries[0], args.k, None)
    except Exception as err:  # noqa: BLE001 - reported, not raised: it is the measurement
        _emit({"opened": False, "error": f"{type(err).__name__}: {err}"[:300]})
        return
    _emit({"opened": True, "count": count, "batches": batches})
    engine.close()


ROLES = {"build": role_build, "use": role_use, "writer": role_writer, "check": role_check}


# -- the driver ----------------------------------------------------------------------------------


def _role_argv(args: argparse.Namespace, role: str, config: str, *extra: str) -> list[str]:
    return [
        str(SCRIPT), "--role", role, "--config", config, "--work", str(args.work),
        "--size", str(args.size), "--batch", str(args.batch), "--dim", str(args.dim),
        "-k", str(args.k), "--seed", str(args.seed), *extra,
    ]  # fmt: skip


def _run_role(python: str, argv: list[str], timeout: float | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [python, *argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        what = f"{argv[2]} of {argv[4]}"  # role of config
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n" + "\n".join(tail))
    return json.loads(lines[-1][len(RESULT) :])


def crash_test(
    args: argparse.Namespace, python: str, config: str, count: int, append_s: float
) -> dict[str, Any]:
    """Kill a writer ``--crash-rounds`` times during an append; check the store each time."""
    rng = np.random.default_rng(args.seed + 2)
    report = {
        "rounds": args.crash_rounds,
        "opened": 0,
        "acked": 0,
        "kept": 0,
        "absent": 0,
        "complete": 0,
        "torn": 0,
        "count_ok": 0,
        "errors": [],
    }
    folder = Path(args.work)
    for round_ in range(args.crash_rounds):
        log, err = folder / f"{config}-crash{round_}.log", folder / f"{config}-crash{round_}.err"
        extra = ("--round", str(round_), "--log", str(log))
        with open(err, "w") as stderr:
            writer = subprocess.Popen(
                [python, *_role_argv(args, "writer", config, *extra)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            deadline = time.monotonic() + 1800  # opening a large store can take minutes
            mark = f"S {args.crash_acked}\n"
            while not (log.exists() and mark in log.read_text()):
                if writer.poll() is not None or time.monotonic() > deadline:
                    writer.kill()
                    raise RuntimeError(
                        f"{config}: the crash writer stopped early:\n" + err.read_text()[-2000:]
                    )
                time.sleep(0.001)
            time.sleep(rng.uniform(0, append_s))
            writer.send_signal(signal.SIGKILL)
            writer.wait()
        lines = log.read_text().split()
        started = {int(n) for s, n in zip(lines[::2], lines[1::2], strict=True) if s == "S"}
        acked = {int(n) for s, n in zip(lines[::2], lines[1::2], strict=True) if s == "A"}
        batches = ",".join(str(n) for n in sorted(started))
        check = _run_role(python, _role_argv(args, "check", config, *extra, "--batches", batches))
        if not check["opened"]:
            report["errors"].append(check["error"])
            break
        report["opened"] += 1
        got = {int(n): c for n, c in check["batches"].items()}
        report["acked"] += len(acked)
        report["kept"] += sum(got[n] == args.batch for n in acked)
        landed = 0
        for n in started - acked:
            state = {0: "absent", args.batch: "complete"}.get(got[n], "torn")
            report[state] += 1
            landed += got[n]
        count += len(acked) * args.batch + landed
        report["count_ok"] += check["count"] == count
        count = check["count"]
    return report


def run_config(args: argparse.Namespace, config: str, python: str) -> dict[str, Any]:
    """Build, use and crash-test one configuration; a failure is reported, not raised (the
    other configurations still run)."""
    result: dict[str, Any] = {"config": config}
    try:
        print(f"{config}: building {args.size:,} rows ...", file=sys.stderr, flush=True)
        result["build"] = _run_role(python, _role_argv(args, "build", config))
        print(f"{config}: querying, appending, deleting ...", file=sys.stderr, flush=True)
        result["use"] = _run_role(python, _role_argv(args, "use", config))
        if args.crash_rounds:
            print(f"{config}: crash test ...", file=sys.stderr, flush=True)
            result["crash"] = crash_test(
                args, python, config, result["use"]["count"], result["use"]["append_ms"] / 1000
            )
    except (RuntimeError, subprocess.SubprocessError) as err:
        print(f"{config}: FAILED: {err}", file=sys.stderr, flush=True)
        result["error"] = str(err)
    finally:
        if not args.keep:
            shutil.rmtree(Path(args.work) / config, ignore_errors=True)
    return result


def _configs(names: Sequence[str]) -> list[str]:
    chosen: list[str] = []
    for name in names:
        matches = [c for c, (family, _) in CONFIGS.items() if name in (c, family)]
        if not matches:
            valid = sorted({*CONFIGS, *(family for family, _ in CONFIGS.values())})
            raise SystemExit(
                f"unknown engine or configuration '{name}'; valid: " + ", ".join(valid)
            )
        chosen += [c for c in matches if c not in chosen]
    return chosen


def _python_for(family: str, args: argparse.Namespace) -> str:
    python = args.lancedb_python if family == "lancedb" else sys.executable
    module = {"irra": "irra.retrieval.embedded", "lancedb": "lancedb", "milvus": "milvus_lite"}
    done = subprocess.run(
        [python, "-c", f"import {module[family]}"], capture_output=True, check=False
    )
    if done.returncode != 0:
        hint = {
            "irra": "install irra with the search extra (pip install -e '.[search]')",
            "lancedb": "make an environment of its own (python -m venv ENV && ENV/bin/pip "
                       "install lancedb) and pass --lancedb-python ENV/bin/python",
            "milvus": "pip install -e '.[milvus]'",
        }[family]  # fmt: skip
        raise SystemExit(f"{python} cannot import {module[family]}: {hint}")
    return python


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _exact(mode: dict[str, float]) -> str:
    short = f" ({mode['short']} short)" if mode["short"] else ""
    return f"{mode['exact']}/{mode['queries']}{short}"


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The report: a speed table, a correctness table and notes, in Markdown."""
    b, k = args.batch, args.k
    speed = [
        f"| config | load s | index s | disk MB | open + 1st query ms | p50 ms | p99 ms "
        f"| p50 1% ms | p99 1% ms | append {b} ms | delete {b} ms | install MB (no NumPy) |",
        "|---" * 12 + "|",
    ]
    right = [
        f"| config | recall@{k} | recall@{k} 1% | 1% exact top-{k} | after writes: recall@{k} "
        f"| 1% exact | deleted or failing rows returned | count | crash: reopened "
        f"| acked batches kept | batch in flight |",
        "|---" * 11 + "|",
    ]
    notes = []
    for result in results:
        name = result["config"]
        if "use" not in result:
            speed.append(f"| {name} | failed |" + " |" * 10)
            right.append(f"| {name} | failed |" + " |" * 9)
            notes.append(f"- {name} FAILED: " + result["error"].replace("\n", " / ")[-600:])
            continue
        built, used = result["build"], result["use"]
        before, after = used["before"], used["after"]
        speed.append(
            f"| {name} | {built['load_s']:.1f} | {built['index_s']:.1f} | {built['disk_mb']:.0f} "
            f"| {_ms(used['first_ms'])} | {_ms(before['all']['p50'])} "
            f"| {_ms(before['all']['p99'])} | {_ms(before['filtered']['p50'])} "
            f"| {_ms(before['filtered']['p99'])} | {_ms(used['append_ms'])} "
            f"| {_ms(used['delete_ms'])} | {built['install_mb']:.0f} "
            f"({built['install_mb_no_numpy']:.0f}) |"
        )
        bad = after["all"]["bad"] + after["filtered"]["bad"] + before["filtered"]["bad"]
        crash = result.get("crash")
        if crash:
            flight = (
                ", ".join(f"{crash[s]} {s}" for s in ("absent", "complete", "torn") if crash[s])
                or "-"
            )
            off = crash["opened"] - crash["count_ok"]
            crash_cells = (
                f"{crash['opened']}/{crash['rounds']} | {crash['kept']}/{crash['acked']}"
                f"{f' (row count off after {off} kills)' if off else ''} | {flight} |"
            )
            if crash["errors"]:
                notes.append(f"- {name} crash test: {crash['errors'][0]}")
        else:
            crash_cells = "- | - | - |"
        right.append(
            f"| {name} | {before['all']['recall']:.3f} | {before['filtered']['recall']:.3f} "
            f"| {_exact(before['filtered'])} | {after['all']['recall']:.3f} "
            f"| {_exact(after['filtered'])} | {bad} "
            f"| {'ok' if used['count_ok'] else 'WRONG'} | {crash_cells}"
        )
        notes.append(f"- {name}: {used['describe']}; {built['version']}")
    installs = {r["config"].split("-")[0]: r["build"]["dists"] for r in results if "build" in r}
    notes += [f"- {family} installs: {', '.join(d)}" for family, d in installs.items()]
    shape = (
        "embedding-like (identity clusters)" if args.vectors == "clustered" else ("unit Gaussian")
    )
    head = (
        f"N = {args.size:,} rows, {args.dim}-d {shape} vectors, {CAMERAS} cameras (the "
        f"filter keeps 1%), {args.queries} single queries, k {k}, one thread; appends and "
        f"deletes of {b} rows, median of {WRITES}; queries, appends and deletes in a fresh "
        f"process after the build. Crash test: {args.crash_rounds} SIGKILLs during a stream of "
        f"{b}-row appends (a process crash, not a power cut). {os.cpu_count()} CPUs."
    )
    return "\n".join([head, "", *speed, "", *right, "", *notes]) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engines",
        nargs="+",
        default=list(CONFIGS),
        help="engines (irra, lancedb, milvus) or configurations "
        f"({', '.join(CONFIGS)}); default all",
    )
    parser.add_argument("--size", type=int, default=100_000, help="rows loaded (N)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1000, help="rows per append / delete")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vectors", choices=("clustered", "gaussian"), default="clustered")
    parser.add_argument("--crash-rounds", type=int, default=3, help="SIGKILLs per config")
    parser.add_argument(
        "--crash-acked", type=int, default=3, help="acknowledged appends before the kill"
    )
    parser.add_argument(
        "--lancedb-python",
        default=sys.executable,
        help="Python of an environment with lancedb (not irra's)",
    )
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the stores in --work")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--role", choices=list(ROLES), help=argparse.SUPPRESS)
    parser.add_argument("--config", choices=list(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument(
        "--batches",
        type=lambda s: [int(n) for n in s.split(",") if n],
        default=[],
        help=argparse.SUPPRESS,
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role:
        ROLES[args.role](args)
        return 0
    configs = _configs(args.engines)
    pythons = {f: _python_for(f, args) for f in {CONFIGS[c][0] for c in configs}}
    own = args.work is None
    args.work = Path(tempfile.mkdtemp(prefix="bench-engines-")) if own else args.work.resolve()
    try:
        print(f"data: {args.size:,} + {WRITES * args.batch:,} rows ...", file=sys.stderr)
        prepare_data(
            args.work / "data",
            args.size,
            WRITES * args.batch,
            args.queries,
            args.dim,
            args.seed,
            args.vectors,
        )
        results = [run_config(args, c, pythons[CONFIGS[c][0]]) for c in configs]
    finally:
        if own and not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    report = render(results, args)
    print(report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
