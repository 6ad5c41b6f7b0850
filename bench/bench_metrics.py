"""Benchmark: irra.metrics.retrieval_metrics against a straightforward full-sort baseline.

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

Usage::

    .venv/bin/python bench/bench_metrics.py              # 19,848 x 19,848 (ICFG-PEDES test)
    .venv/bin/python bench/bench_metrics.py --size 4000  # quicker
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
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
    result = {"seconds": min(times), "all_seconds": times, "peak_extra_bytes": peak}
    result["metrics"] = summarise(first.cpu(), ap.cpu(), inp.cpu())
    result["similarity_bytes"] = similarity.numel() * similarity.element_size()
    print(json.dumps(result))


def run_worker(method: str, args: argparse.Namespace, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--out", str(out)]
    for name in (
        "size",
        "ids",
        "dim",
        "cluster",
        "spread",
        "noise",
        "seed",
        "device",
        "threads",
        "repeat",
    ):
        cmd += [f"--{name}", str(getattr(args, name))]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{method} worker failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=19848, help="queries = gallery items")
    parser.add_argument("--ids", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--cluster", type=int, default=20, help="look-alike identities per group")
    parser.add_argument("--spread", type=float, default=0.5, help="identity spread in a group")
    parser.add_argument("--noise", type=float, default=0.09, help="per-sample feature noise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of irra (best kept)")
    parser.add_argument("--worker", choices=["baseline", "irra"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    print(
        f"similarity {args.size} x {args.size} ({args.ids} ids in look-alike groups of "
        f"{args.cluster}, spread {args.spread}, noise {args.noise}, dim {args.dim}), device "
        f"{args.device}, torch threads "
        f"{args.threads or torch.get_num_threads()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        results = {m: run_worker(m, args, Path(tmp) / f"{m}.pt") for m in ("irra", "baseline")}
        stats = {m: torch.load(Path(tmp) / f"{m}.pt") for m in results}
    mib = 2**20
    print(f"similarity matrix itself: {results['irra']['similarity_bytes'] / mib:.0f} MiB")
    for method, res in results.items():
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items())
        print(
            f"{method:>8}: {res['seconds']:8.3f} s   peak extra memory "
            f"{res['peak_extra_bytes'] / mib:8.1f} MiB   {metrics}"
        )
    a, b = stats["irra"], stats["baseline"]
    same_first = torch.equal(a["first"], b["first"])
    ap_diff = (a["ap"] - b["ap"]).abs().max().item()
    inp_diff = (a["inp"] - b["inp"]).abs().max().item()
    identical = same_first and ap_diff < 1e-6 and inp_diff < 1e-9
    print(
        f"per-query first ranks identical: {same_first}; max |AP diff| {ap_diff:.2e} "
        f"(baseline AP in float32), max |INP diff| {inp_diff:.2e} -> "
        f"{'IDENTICAL' if identical else 'MISMATCH'}"
    )
    speedup = results["baseline"]["seconds"] / results["irra"]["seconds"]
    ratio = results["irra"]["peak_extra_bytes"] / max(results["baseline"]["peak_extra_bytes"], 1)
    print(
        f"speed-up {speedup:.1f}x (goal >= 20x); peak extra memory ratio {ratio:.3f} (goal <= 0.25)"
    )
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
