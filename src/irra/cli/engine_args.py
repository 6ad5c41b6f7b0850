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
    p.add_argument(
        "--threads",
        type=_thread_count,
        help="CPU threads of the encoder (torch and torchscript: torch.set_num_threads; onnx: "
        "ONNX Runtime's intra-op threads; default: the runtime's own)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")


def _thread_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of threads (1 or more)")
    return count
