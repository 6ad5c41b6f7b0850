"""Benchmark: irra.fused_ce.linear_cross_entropy against F.cross_entropy(F.linear(...)).

Times forward + backward (median of ``--repeats`` after ``--warmup`` runs) of the MLM head's
loss on N masked rows, D features and the CLIP vocabulary V = 49,408, for the baseline
(full (N, V) logits) and the fused function at each ``--chunk-sizes`` (vocabulary entries
per chunk). On a loaded machine, compare with ``--threads 1`` too: many short parallel ops
suffer more than a few long ones from threads that wait for a busy core.

Usage::

    .venv/bin/python bench/bench_fused_ce.py                      # N=300, D=64 and 128
    .venv/bin/python bench/bench_fused_ce.py --chunk-sizes 512 2048 8192 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from irra.fused_ce import linear_cross_entropy


def time_ms(step: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of ``step()`` in milliseconds."""
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="masked rows N")
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 128], help="feature sizes D")
    parser.add_argument("--vocab", type=int, default=49408, help="vocabulary size V")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} N={args.n} V={args.vocab}")

    for d in args.dims:
        g = torch.Generator().manual_seed(d)
        h = torch.randn(args.n, d, generator=g).to(device).requires_grad_()
        w = (torch.randn(args.vocab, d, generator=g) / d**0.5).to(device).requires_grad_()
        b = torch.zeros(args.vocab).to(device).requires_grad_()
        y = torch.randint(0, args.vocab, (args.n,), generator=g).to(device)

        def baseline(h=h, w=w, b=b, y=y) -> None:
            F.cross_entropy(F.linear(h, w, b), y).backward()

        base_ms = time_ms(baseline, device, args.warmup, args.repeats)
        print(f"D={d:4d} baseline F.linear+F.cross_entropy: {base_ms:8.2f} ms")
        for chunk in args.chunk_sizes:

            def fused(h=h, w=w, b=b, y=y, chunk=chunk) -> None:
                linear_cross_entropy(h, w, b, y, chunk_size=chunk)[0].backward()

            ms = time_ms(fused, device, args.warmup, args.repeats)
            print(
                f"D={d:4d} fused chunk_size={chunk:<5d}           : {ms:8.2f} ms"
                f"  speed-up x{base_ms / ms:.2f}"
            )


if __name__ == "__main__":
    main()
