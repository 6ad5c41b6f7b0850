"""Command-line options shared by ``irra index``, ``irra search`` and ``irra serve``."""

from __future__ import annotations

import argparse

from irra.inference.open import ENGINES


def add_engine_args(p: argparse.ArgumentParser, *, checkpoint_help: str) -> None:
    """Add ``--checkpoint``, ``--engine``, ``--threads`` and ``--device`` to ``p``."""
    p.add_argument("--checkpoint", help=checkpoint_help)
    p.add_argument(
        "--engine",
        choices=ENGINES,
        help="torch: a checkpoint; onnx / torchscript: an irra export directory as --checkpoint "
        "(default: detected from --checkpoint, else the engine recorded in the index)",
    )
    p.add_argument("--threads", type=int, help="CPU threads of the onnx / torchscript runtime")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
