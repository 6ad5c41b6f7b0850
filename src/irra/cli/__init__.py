"""Command-line entry point: ``irra <command> ...``.

Each command lives in its own module ``irra.cli.<name>`` exposing ``add_parser(subparsers)`` and
``run(args) -> int``. This package is the only place that parses argv and draws progress bars.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence

from irra import __version__

#: Command modules, in the order ``irra --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "demo",
    "train",
    "evaluate",
    "index",
    "delete",
    "search",
    "serve",
    "export",
    "ablate",
    "synth",
    "data",
    "bench",
)


def _available_commands() -> list[str]:
    return [name for name in COMMANDS if importlib.util.find_spec(f"irra.cli.{name}") is not None]


def build_parser() -> argparse.ArgumentParser:
    """Build the ``irra`` argument parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="irra",
        description="Text-to-image person retrieval with IRRA: train, evaluate, index and search.",
    )
    parser.add_argument("--version", action="version", version=f"irra {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _available_commands():
        module = importlib.import_module(f"irra.cli.{name}")
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build it chose
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(f"irra.cli.{args.command}")
    return int(module.run(args) or 0)


def run_and_exit(argv: Sequence[str] | None = None) -> None:
    """Run the command line and end the process with its exit status (the console script).

    A process started by ``torchrun`` (``WORLD_SIZE`` > 1) ends with ``os._exit`` once its output
    is flushed: on CPU, a process that ran the normal interpreter shutdown after its process group
    was destroyed was now and then aborted by a C++ destructor ("terminate called without an
    active exception", about one two-process run in twenty here), failing a finished run.
    """
    code = main(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run_and_exit()
