"""``irra data``: inspect and validate a benchmark dataset.

Example::

    irra data stats --dataset CUHK-PEDES --root ~/datasets
    irra data stats --dataset RSTPReid --root ~/datasets/RSTPReid --no-check-images
"""

from __future__ import annotations

import argparse
import logging
import sys

from irra.cli.progress import counter
from irra.data.formats import FORMATS, read_dataset
from irra.data.validate import DatasetError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``irra data`` and its sub-commands."""
    parser = subparsers.add_parser("data", help="inspect and validate a dataset")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    stats = actions.add_parser(
        "stats",
        help="ids / images / captions per split, and a validation of every entry",
        description="Read a dataset, validate it, and print ids / images / captions per split.",
    )
    stats.add_argument(
        "--dataset", required=True, help=f"dataset name, one of: {', '.join(FORMATS)}"
    )
    stats.add_argument(
        "--root", required=True, help="folder holding <NAME>/ (or the <NAME>/ folder itself)"
    )
    stats.add_argument(
        "--check-images",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode every image (slow for large datasets; existence is always checked)",
    )
    stats.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="fail: report every bad entry and exit 1; skip: drop bad entries and report them",
    )
    stats.add_argument(
        "--run-dir", default=None, help="write the full list of bad entries to this folder"
    )
    stats.add_argument("--workers", type=int, default=8, help="image decoding threads")


def run(args: argparse.Namespace) -> int:
    """Run ``irra data <action>``; returns the exit status."""
    if args.data_command != "stats":  # pragma: no cover - argparse enforces the choices
        print(f"unknown data action {args.data_command!r}", file=sys.stderr)
        return 2
    # the table goes to stdout below; do not also log it (unless -v)
    formats_logger = logging.getLogger("irra.data.formats")
    saved_level = formats_logger.level
    if not getattr(args, "verbose", False):
        formats_logger.setLevel(logging.WARNING)
    progress = counter("checking images", unit="img") if args.check_images else None
    try:
        data = read_dataset(
            args.dataset,
            args.root,
            on_error=args.on_error,
            check_images=args.check_images,
            num_workers=args.workers,
            progress=progress,
            run_dir=args.run_dir,
        )
    except (DatasetError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 1
    finally:
        formats_logger.setLevel(saved_level)
        if progress is not None:
            progress.close()
    print(data.summary_table())
    if data.report is not None:
        print(data.report.describe())
    return 0
