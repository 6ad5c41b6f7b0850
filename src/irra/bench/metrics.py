"""Benchmark of irra.metrics against a straightforward full-sort baseline.

Builds a (size x size) text-to-image similarity matrix with realistic identity structure
(``--ids`` identities, every gallery image and every query belongs to one; features are an
identity centroid plus noise, similarity = cosine), then times

- ``baseline``: the usual evaluation code (as in the IRRA reference): a full stable
  descending argsort of the matrix, the matches matrix, cumulative sums, and a per-query
  Python loop for mINP;
- ``irra``: :func:`irra.metrics.retrieval_metrics` (chunked, exact, no row sort);

each in its own subprocess, so that the peak memory of one does not hide the other's. Peak
*extra* memory is the peak resident set (or CUDA allocation) above what the process held
once the similarity matrix was built. Per-query first ranks, AP and INP of both are compared.

Run it with ``irra bench metrics [--gallery 19848]``; :func:`bench_metrics` returns a
:class:`MetricsResult`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F


def build_similarity(
    size: int,
    ids: int,
    dim: int,
    cluster: int,
    spread: float,
    noise: float,
    seed: int,
    device: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(size, size) float32 cosine similarities, query pids, gallery pids.

    Identities come in look-alike groups of ``cluster`` (people dressed alike): an identity's
    centroid is its group's centroid plus ``spread`` noise; every image and every caption is
    its identity's centroid plus ``noise``. ``cluster=1`` gives independent identities.
    """
    gen = torch.Generator().manual_seed(seed)
    gallery_pids = torch.arange(size) % ids
    query_pids = gallery_pids[torch.randperm(size, generator=gen)]
    groups = F.normalize(torch.randn(-(-ids // cluster), dim, generator=gen), dim=1)
    centroids = groups.repeat_interleave(cluster, 0)[:ids]
    if cluster > 1:
        centroids = centroids + spread * torch.randn(ids, dim, generator=gen) / dim**0.5
    centroids = F.normalize(centroids, dim=1)
    image = F.normalize(
        centroids[gallery_pids] + noise * torch.randn(size, dim, generator=gen), dim=1
    )
    text = F.normalize(centroids[query_pids] + noise * torch.randn(size, dim, generator=gen), dim=1)
    similarity = text.to(device) @ image.to(device).T
    return similarity, query_pids.to(device), gallery_pids.to(device)


def baseline_stats(
    similarity: torch.Tensor, query_pids: torch.Tensor, gallery_pids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full-sort evaluation: per-query first rank, AP and INP (queries with a match only)."""
    order = torch.argsort(similarity, dim=1, descending=True, stable=True)
    matches = gallery_pids[order] == query_pids[:, None]
    del order
    matches = matches[matches.any(dim=1)]
    num_rel = matches.sum(dim=1)
    cum = matches.cumsum(dim=1)
    first_rank = matches.int().argmax(dim=1) + 1
    positions = torch.arange(1, matches.shape[1] + 1, device=matches.device)
    ap = ((cum / positions) * matches).sum(dim=1).double() / num_rel
    inp = []
    for i, row in enumerate(matches):
        last = int(row.nonzero()[-1])
        inp.append(int(cum[i, last]) / (last + 1))
    return first_rank, ap, torch.tensor(inp, dtype=torch.float64)


def _irra_stats(
    similarity: torch.Tensor, query_pids: torch.Tensor, gallery_pids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from irra.metrics import per_query_stats

    stats = per_query_stats(similarity, query_pids, gallery_pids)
    valid = stats.valid
    return stats.first_rank[valid], stats.ap[valid], stats.inp[valid]


def summarise(first_rank: torch.Tensor, ap: torch.Tensor, inp: torch.Tensor) -> dict[str, float]:
    out = {f"R{k}": 100.0 * (first_rank <= k).double().mean().item() for k in (1, 5, 10)}
    out["mAP"] = 100.0 * ap.double().mean().item()
    out["mINP"] = 100.0 * inp.double().mean().item()
    return out


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _release_free_heap() -> None:
    """Give freed heap memory back to the OS (glibc), so that the resident set counts only live
    data and a later allocation cannot hide in already-resident free pages."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def worker(args: argparse.Namespace) -> None:
    """Run one method on a freshly built matrix; write a json line and a .pt of stats."""
    torch.set_num_threads(args.threads or torch.get_num_threads())
    similarity, qp, gp = build_similarity(
        args.size, args.ids, args.dim, args.cluster, args.spread, args.noise, args.seed, args.device
    )
    run = {"baseline": baseline_stats, "irra": _irra_stats}[args.worker]
    warm = build_similarity(64, 8, 16, 4, args.spread, args.noise, 1, args.device)
    run(*warm)  # page in the code and the thread pool before measuring
    del warm
    cuda = similarity.is_cuda
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        _release_free_heap()
        base_kb = _rss_kb("VmRSS")
        cleared = _reset_peak()
        if not cleared:  # ru_maxrss cannot be reset: only valid if the build did not peak higher
            base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    times = []
    for _ in range(args.repeat if args.worker == "irra" else 1):
        start = time.perf_counter()
        first, ap, inp = run(similarity, qp, gp)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)

    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak_kb = (
            _rss_kb("VmHWM") if cleared else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        )
        peak = (peak_kb - base_kb) * 1024
    torch.save({"first": first.cpu(), "ap": ap.cpu(), "inp": inp.cpu()}, args.out)
    result = {"seconds": statistics.median(times), "all_seconds": times, "peak_extra_bytes": peak}
    result["metrics"] = summarise(first.cpu(), ap.cpu(), inp.cpu())
    result["similarity_bytes"] = similarity.numel() * similarity.element_size()
    sys.stdout.write(json.dumps(result) + "\n")


@dataclass(frozen=True)
class SimilarityWorkload:
    """The similarity matrix of the benchmark (see :func:`build_similarity`)."""

    size: int = 19848  # ICFG-PEDES test: 19,848 captions x 19,848 images
    ids: int = 1000
    dim: int = 256
    cluster: int = 20
    spread: float = 0.5
    noise: float = 0.09
    seed: int = 0


@dataclass(frozen=True)
class MethodResult:
    """One method: median of its timed runs, peak extra memory, metrics in percent."""

    seconds: float
    all_seconds: tuple[float, ...]
    peak_extra_bytes: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class MetricsResult:
    """Everything ``irra bench metrics`` reports."""

    workload: SimilarityWorkload
    device: str
    threads: int
    similarity_bytes: int
    irra: MethodResult
    baseline: MethodResult
    same_first_ranks: bool
    max_ap_diff: float
    max_inp_diff: float

    @property
    def identical(self) -> bool:
        """Same first ranks, AP within float32 rounding of the baseline, same INP."""
        return self.same_first_ranks and self.max_ap_diff < 1e-6 and self.max_inp_diff < 1e-9

    @property
    def speedup(self) -> float:
        return self.baseline.seconds / self.irra.seconds

    @property
    def memory_ratio(self) -> float:
        """irra's peak extra memory over the baseline's."""
        return self.irra.peak_extra_bytes / max(self.baseline.peak_extra_bytes, 1)


_WORKER_FIELDS = ("size", "ids", "dim", "cluster", "spread", "noise", "seed")


def _run_worker(
    method: str,
    workload: SimilarityWorkload,
    device: str,
    threads: int,
    repeat: int,
    out: Path,
) -> MethodResult:
    cmd = [sys.executable, "-m", "irra.bench.metrics", "--worker", method, "--out", str(out)]
    for name in _WORKER_FIELDS:
        cmd += [f"--{name}", str(getattr(workload, name))]
    cmd += ["--device", device, "--threads", str(threads), "--repeat", str(repeat)]
    env = dict(os.environ)
    paths = [str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(
            f"metrics benchmark worker {method!r} failed (exit code {proc.returncode}):\n"
            f"{proc.stderr[-2000:]}"
        )
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return MethodResult(
        seconds=data["seconds"],
        all_seconds=tuple(data["all_seconds"]),
        peak_extra_bytes=int(data["peak_extra_bytes"]),
        metrics=data["metrics"],
    )


def bench_metrics(
    workload: SimilarityWorkload | None = None,
    *,
    device: str = "cpu",
    threads: int = 0,
    repeat: int = 3,
) -> MetricsResult:
    """Time :func:`irra.metrics.per_query_stats` and the full-argsort baseline on one matrix.

    Each method runs in its own subprocess (so that one's peak memory cannot hide the
    other's) on the same deterministically generated matrix; irra runs ``repeat`` times (median
    kept), the baseline once. Per-query first ranks, AP and INP of both are compared.

    Args:
        workload: the similarity matrix; the 19,848 x 19,848 default when None.
        device: "cpu" or "cuda".
        threads: torch threads in the workers (0: torch's default).
        repeat: timed runs of irra.
    """
    workload = SimilarityWorkload() if workload is None else workload
    threads = threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            method: _run_worker(method, workload, device, threads, repeat, Path(tmp) / method)
            for method in ("irra", "baseline")
        }
        stats = {m: torch.load(Path(tmp) / m, weights_only=True) for m in results}
    a, b = stats["irra"], stats["baseline"]
    return MetricsResult(
        workload=workload,
        device=device,
        threads=threads,
        similarity_bytes=workload.size * workload.size * 4,
        irra=results["irra"],
        baseline=results["baseline"],
        same_first_ranks=bool(torch.equal(a["first"], b["first"])),
        max_ap_diff=float((a["ap"] - b["ap"]).abs().max()),
        max_inp_diff=float((a["inp"] - b["inp"]).abs().max()),
    )


def _worker_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one method of the metrics benchmark")
    defaults = SimilarityWorkload()
    for name in _WORKER_FIELDS:
        value = getattr(defaults, name)
        parser.add_argument(f"--{name}", type=type(value), default=value)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", choices=["baseline", "irra"], required=True)
    parser.add_argument("--out", required=True)
    worker(parser.parse_args(argv))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    _worker_main()
