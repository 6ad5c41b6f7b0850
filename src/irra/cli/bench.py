"""``irra bench``: measure training steps, encoding, metrics and the data pipeline.

Every figure comes with a ratio measured in the same run (utilisation of the matmul peak
measured just before and after, speed-up over a baseline, share of a sample), because absolute
times drift on shared machines. Tables go to stdout; ``--json`` writes the same numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

KINDS = ("train-step", "encode", "metrics", "data")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``irra bench``."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark training steps, encoding, metrics and the data pipeline",
        description=(
            "Warm up, repeat and print medians, each with a ratio measured in the same run: "
            "model FLOPs utilisation against a large torch.mm (train-step, encode), speed-up and "
            "memory against a full-argsort baseline (metrics), stage shares (data)."
        ),
    )
    p.add_argument("kind", choices=(*KINDS, "all"), help="what to measure")
    p.add_argument("--size", choices=("tiny", "base"), default="base", help="model size")
    p.add_argument("--batch", type=int, help="batch (train-step 8, encode 32, data 64)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--precision", default="auto", help="auto (fp32 on CPU, bf16 on CUDA), ...")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--warmup", type=int, default=1, help="untimed repeats (default 1)")
    p.add_argument("--repeat", type=int, default=3, help="timed repeats (default 3)")
    p.add_argument(
        "--variants",
        default="irra",
        help="train-step variants, comma-separated, or 'all' (see irra.bench.train_step)",
    )
    p.add_argument("--gallery", type=int, default=19848, help="metrics: queries = gallery items")
    p.add_argument("--samples", type=int, default=256, help="data: samples per pass")
    p.add_argument("--json", metavar="OUT", help="also write the numbers as JSON here")


def _train_step(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    from irra.bench.peak import describe_peaks
    from irra.bench.train_step import VARIANTS, bench_train_step

    names = VARIANTS if args.variants == "all" else tuple(args.variants.split(","))
    result = bench_train_step(
        size=args.size,
        batch=args.batch or 8,
        device=device,
        precision=args.precision,
        variants=names,
        warmup=args.warmup,
        repeat=args.repeat,
    )
    rows = [
        {
            "variant": row.name,
            "s/step": row.timing.median,
            "samples/s": result.samples_per_second(row),
            "MFU": result.mfu(row),
            "irra speed-up": result.speedup(row),
            "GFLOP run": None if row.executed_flops is None else row.executed_flops / 1e9,
            "spread": row.timing.spread,
        }
        for row in result.rows
    ]
    head = (
        f"train-step {result.size}, batch {result.batch}, {result.device} {result.precision}, "
        f"{result.threads} threads: model {result.model_flops / 1e9:.1f} GFLOP/step; "
        + describe_peaks(result.peak_before, result.peak_after)
    )
    return {"title": head, "rows": rows}


def _encode(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    from irra.bench.encode import bench_encode
    from irra.bench.peak import describe_peaks

    result = bench_encode(
        size=args.size,
        batch=args.batch or 32,
        device=device,
        precision=args.precision,
        warmup=args.warmup,
        repeat=args.repeat,
    )
    rows = [
        {
            "tower": t.name,
            "items/s": t.items_per_second,
            "s/batch": t.timing.median,
            "GFLOP/batch": t.flops / 1e9,
            "MFU": result.mfu(t),
            "spread": t.timing.spread,
        }
        for t in result.towers
    ]
    head = (
        f"encode {result.size}, batch {result.towers[0].batch}, {result.device} "
        f"{result.precision}, {result.threads} threads; "
        + describe_peaks(result.peak_before, result.peak_after)
    )
    return {"title": head, "rows": rows}


def _metrics(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    from irra.bench.metrics import SimilarityWorkload, bench_metrics

    workload = SimilarityWorkload(size=args.gallery)
    result = bench_metrics(
        workload, device=device.type, threads=args.threads or 0, repeat=args.repeat
    )
    rows = []
    for name, res in (("irra", result.irra), ("full-argsort baseline", result.baseline)):
        row: dict[str, Any] = {
            "method": name,
            "seconds": res.seconds,
            "peak extra MiB": res.peak_extra_bytes / 2**20,
        }
        row.update(res.metrics)
        rows.append(row)
    head = (
        f"metrics {workload.size} x {workload.size} ({workload.ids} ids), {result.device}, "
        f"{result.threads} threads: speed-up {result.speedup:.1f}x, peak extra memory ratio "
        f"{result.memory_ratio:.3f}, identical: {result.identical} (first ranks "
        f"{result.same_first_ranks}, max |AP diff| {result.max_ap_diff:.1e}, max |INP diff| "
        f"{result.max_inp_diff:.1e})"
    )
    return {"title": head, "rows": rows, "identical": result.identical}


def _data(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    from irra.bench.data import bench_data

    result = bench_data(samples=args.samples, batch=args.batch or 64, repeat=args.repeat)
    rows = [
        {
            "stage": "loader (all stages)",
            "samples/s": result.samples_per_second,
            "ms/sample": 1e3 * result.loader.median / result.samples,
            "share": 1.0,
        }
    ]
    for name, timing in result.stages.items():
        rows.append(
            {
                "stage": name,
                "samples/s": result.samples / timing.median,
                "ms/sample": 1e3 * timing.median / result.samples,
                "share": result.share(name),
            }
        )
    rows.append(
        {
            "stage": "tokenise (once per run)",
            "samples/s": result.captions_per_second,
            "ms/sample": 1e3 * result.tokenize.median / result.samples,
            "share": None,
        }
    )
    head = (
        f"data: {result.samples} samples, {result.image_size[0]}x{result.image_size[1]}, one "
        f"worker: {result.samples_per_second:.1f} samples/s"
    )
    return {"title": head, "rows": rows}


RUNNERS = {"train-step": _train_step, "encode": _encode, "metrics": _metrics, "data": _data}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows of equal keys as an aligned plain-text table."""
    keys = list(rows[0])
    cells = [keys] + [[_cell(row[k]) for k in keys] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(keys))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in cells
    )


def run(args: argparse.Namespace) -> int:
    """Run ``irra bench``; returns the exit status (1 when the metrics differ)."""
    import torch

    from irra.runtime import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    kinds = KINDS if args.kind == "all" else (args.kind,)
    report = {}
    for kind in kinds:
        section = RUNNERS[kind](args, device)
        report[kind] = section
        print(section["title"])
        print(format_table(section["rows"]))
        print()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        logger.info("wrote %s", args.json)
    return 0 if report.get("metrics", {}).get("identical", True) else 1
