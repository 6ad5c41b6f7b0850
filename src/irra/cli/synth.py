"""``irra synth``: generate the SynthPedes dataset (CUHK-PEDES format)."""

from __future__ import annotations

import argparse
import logging
import os

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``irra synth``."""
    p = subparsers.add_parser(
        "synth",
        help="generate SynthPedes, a procedural pedestrian dataset in CUHK-PEDES format",
        description=(
            "Generate SynthPedes: drawn pedestrians with CUHK-PEDES-style captions, written as "
            "<out>/reid_raw.json + <out>/imgs/ (+ attributes.json). Same seed, same bytes."
        ),
    )
    p.add_argument("--out", required=True, help="output folder (created; written atomically)")
    p.add_argument("--ids", type=int, default=1000, help="number of identities (default 1000)")
    p.add_argument("--images-per-id", type=int, default=4, help="images per identity (default 4)")
    p.add_argument(
        "--captions-per-image", type=int, default=2, help="captions per image (default 2)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--height", type=int, default=192, help="image height in pixels (default 192)")
    p.add_argument("--width", type=int, default=80, help="image width in pixels (default 80)")
    p.add_argument(
        "--splits",
        type=float,
        nargs=3,
        default=(0.8, 0.1, 0.1),
        metavar=("TRAIN", "VAL", "TEST"),
        help="identity fractions per split (default 0.8 0.1 0.1)",
    )
    p.add_argument("--format", choices=("jpg", "png"), default="jpg", help="image format")
    p.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="drawing processes (default: CPU count, at most 8); output does not depend on it",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing SynthPedes folder")
    p.add_argument("--contact-sheet", metavar="PNG", help="also write a contact sheet PNG here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``irra synth``; returns the exit status."""
    from irra.cli.progress import counter
    from irra.data.synth import generate_synthpedes, make_contact_sheet

    progress = counter("synthpedes", unit="img", disable=args.no_progress)
    try:
        summary = generate_synthpedes(
            args.out,
            num_ids=args.ids,
            images_per_id=args.images_per_id,
            captions_per_image=args.captions_per_image,
            seed=args.seed,
            image_size=(args.height, args.width),
            split_fractions=tuple(args.splits),
            image_format=args.format,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=progress,
        )
    except (FileExistsError, ValueError) as err:
        progress.close()
        logger.error("%s", err)
        return 2
    progress.close()
    verb = "reused" if summary.reused else f"wrote in {summary.seconds:.1f} s"
    parts = ", ".join(
        f"{name}: {c['ids']} ids / {c['images']} images / {c['captions']} captions"
        for name, c in summary.splits.items()
        if c["ids"]
    )
    logger.info("%s %s (%s)", verb, summary.out_dir, parts)
    if args.contact_sheet:
        path = make_contact_sheet(summary.out_dir, args.contact_sheet)
        logger.info("contact sheet: %s", path)
    return 0
