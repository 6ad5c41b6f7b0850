"""``irra evaluate``: text-to-image retrieval metrics of a checkpoint on a dataset split."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``irra evaluate``."""
    p = subparsers.add_parser(
        "evaluate",
        help="R1/R5/R10/mAP/mINP of a checkpoint on a dataset split",
        description=(
            "Evaluate a checkpoint: an irra run folder or model (run/model, *.safetensors), an "
            "irra training checkpoint (last.pt / best.pt), or an official IRRA best.pth (its "
            "configs.yaml beside it is honoured). Loading never executes code from the file."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="run folder, model, .pt or best.pth")
    p.add_argument("--dataset", help="CUHK-PEDES, ICFG-PEDES or RSTPReid (default: the run's)")
    p.add_argument("--root", help="data root holding <DATASET>/ (default: the run's)")
    p.add_argument("--split", default="test", choices=("test", "val", "train"))
    p.add_argument("--batch-size", type=int, default=256, help="images/captions per batch")
    p.add_argument("--workers", type=int, default=2, help="data-loader processes")
    p.add_argument("--text-length", type=int, default=None, help="tokens per caption")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16")
    p.add_argument("--i2t", action="store_true", help="also report image-to-text metrics")
    p.add_argument(
        "--i2i",
        action="store_true",
        help="also report image-to-image metrics (each image a query, itself left out)",
    )
    p.add_argument("--json", metavar="OUT", help="write the metrics to this JSON file")
    p.add_argument(
        "--skip-image-check",
        action="store_true",
        help="do not decode every image before evaluating (faster start)",
    )


def resolve_checkpoint(path: Path) -> tuple[Path, Path | None]:
    """The model file or folder to load, and the run folder when ``path`` is part of a run.

    A run folder resolves to its exported ``model/`` (or ``best.pt`` / ``last.pt`` when the run
    has not finished).
    """
    from irra.engine import run_files

    if run_files.is_run_dir(path):
        for name in (run_files.MODEL, run_files.BEST, run_files.LAST):
            if (path / name).exists():
                return path / name, path
    parent = path.parent
    if run_files.is_run_dir(parent) and (parent / run_files.LAST).exists():
        return path, parent
    return path, None


def run(args: argparse.Namespace) -> int:
    """Run ``irra evaluate``; returns the exit status."""
    import torch

    from irra.cli.progress import bar, counter
    from irra.config import ConfigError, load_config
    from irra.data import DatasetError, build_eval_loaders, build_eval_transform, read_dataset
    from irra.engine import run_files
    from irra.engine.evaluation import encode_split, split_metrics
    from irra.fileio import atomic_write_text
    from irra.model import WeightsError, load_model
    from irra.runtime import resolve_device, resolve_precision

    try:
        weights, run_dir = resolve_checkpoint(Path(args.checkpoint))
        dataset, root, text_length = args.dataset, args.root, args.text_length
        if run_dir is not None:
            cfg = load_config(run_dir / run_files.CONFIG)
            dataset = dataset or cfg.data.dataset
            root = root or cfg.data.root
            text_length = text_length or cfg.data.text_length
        if not dataset or not root:
            raise ConfigError("pass --dataset and --root (the checkpoint is not in a run folder)")
        device = resolve_device(args.device)
        precision = resolve_precision(args.precision, device)
        model = load_model(weights, map_location=device)
        text_length = text_length or model.config.clip.text.context_length
        data = read_dataset(
            dataset,
            root,
            check_images=not args.skip_image_check,
            num_workers=max(1, args.workers),
            progress=counter("checking images"),
        )
        split = data.split(args.split)
        image_loader, text_loader = build_eval_loaders(
            split,
            build_eval_transform(model.config.clip.vision.image_size),
            batch_size=args.batch_size,
            num_workers=args.workers,
            text_length=text_length,
        )
        with torch.inference_mode():
            encoded = encode_split(model, image_loader, text_loader, device, precision, bar)
        metrics = split_metrics(encoded, image_to_text=args.i2t, image_to_image=args.i2i)
    except (ConfigError, DatasetError, WeightsError, KeyError, ValueError, RuntimeError) as err:
        logger.error("%s", err)
        return 2
    print(
        f"{dataset} {args.split}: {split.num_captions} queries, {split.num_images} gallery images"
    )
    print(metrics_table(metrics))
    if args.json:
        text = json.dumps({k: round(v, 4) for k, v in metrics.items()}, indent=2) + "\n"
        atomic_write_text(Path(args.json), text)
    return 0


def metrics_table(metrics: dict[str, float]) -> str:
    """A two-row aligned table: metric names above their values (percent)."""
    from irra.metrics import METRIC_KEYS

    rows = []
    labels = (("", "text-to-image"), ("i2t_", "image-to-text"), ("i2i_", "image-to-image"))
    for prefix, label in labels:
        keys = [k for k in METRIC_KEYS if prefix + k in metrics]
        if keys:
            rows.append((label, [f"{metrics[prefix + k]:.2f}" for k in keys], keys))
    if not rows:
        return ""
    keys = rows[0][2]
    width = max(len(r[0]) for r in rows)
    lines = [" " * width + "".join(f"{k:>8}" for k in keys)]
    lines += [label.ljust(width) + "".join(f"{v:>8}" for v in values) for label, values, _ in rows]
    return "\n".join(lines)
