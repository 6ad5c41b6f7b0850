"""``irra export``: write the image and text encoders as ONNX or TorchScript files."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``irra export``."""
    p = subparsers.add_parser(
        "export",
        help="export the image and text encoders to ONNX or TorchScript",
        description=(
            "Write the image encoder and the text encoder of a model (global features only, "
            "dynamic batch size) as ONNX or TorchScript files, with the tokenizer's vocabulary "
            "and irra_export.json (input size, normalisation, model identity). irra index / "
            "search / serve read the directory with --checkpoint DIR --engine onnx; the ONNX "
            "engine runs without PyTorch."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="model: irra model/run, official best.pth")
    p.add_argument("--out", required=True, help="export directory to create")
    p.add_argument(
        "--format", choices=("onnx", "torchscript"), default="onnx", help="default: onnx"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export at --out")


def run(args: argparse.Namespace) -> int:
    """Run ``irra export``; returns the exit status."""
    from pathlib import Path

    from irra.deploy.export import export_model
    from irra.inference.bundle import ExportError, read_bundle
    from irra.model import WeightsError, load_model

    try:
        model = load_model(args.checkpoint)
        out = export_model(
            model,
            args.out,
            args.format,
            source=str(Path(args.checkpoint).resolve()),
            overwrite=args.overwrite,
        )
        bundle = read_bundle(out)
    except (ExportError, WeightsError, ValueError, OSError) as err:
        logger.error("%s", err)
        return 2
    size_mb = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    print(
        f"{out}: {bundle.format} encoders, images {bundle.image_size[0]}x{bundle.image_size[1]}, "
        f"{bundle.context_length} tokens, D={bundle.embed_dim}, {size_mb:.1f} MB, "
        f"model sha256 {bundle.fingerprint[:16]}..."
    )
    return 0
