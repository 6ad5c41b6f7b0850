"""``irra search``: the images of an index that best match a description."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from irra.cli.engine_args import add_engine_args

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``irra search``."""
    p = subparsers.add_parser(
        "search",
        help="rank the images of an index by a text description",
        description="Print the k best-matching images of an index (built by irra index).",
    )
    p.add_argument("query", help='description, e.g. "a man in a black jacket"')
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--grid", metavar="PNG", help="save the query above its top-k thumbnails")
    p.add_argument("--nprobe", type=int, help="ivf index: cells scanned (more = more exact)")
    add_engine_args(
        p,
        checkpoint_help="the model, if it moved since the index was built, or an export directory "
        "of it",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``irra search``; returns the exit status."""
    from irra.retrieval import GalleryError, IndexStoreError, QueryError, Retriever

    try:
        retriever = Retriever.open(
            args.index,
            checkpoint=args.checkpoint,
            engine=args.engine,
            device=args.device,
            nprobe=args.nprobe,
            threads=args.threads,
        )
        hits = retriever.search(args.query, args.k)
        if args.grid:
            save_grid(
                Path(args.grid),
                args.query,
                [(retriever.images_root / h.path, h.score) for h in hits],
            )
    except (QueryError, GalleryError, IndexStoreError, ValueError, RuntimeError) as err:
        logger.error("%s", err)
        return 2
    root = retriever.images_root
    if args.json:
        rows = [{**h.to_dict(), "file": str(root / h.path)} for h in hits]
        print(json.dumps({"query": args.query, "results": rows}, indent=2))
    else:
        for h in hits:
            extra = f"  id={h.identity}" if h.identity is not None else ""
            print(f"{h.rank:>4}  {h.score:7.4f}  {root / h.path}{extra}")
    return 0


def save_grid(path: Path, caption: str, items: list[tuple[Path, float]]) -> None:
    """Write the caption above the ranked thumbnails to ``path`` (PNG, atomically)."""
    from irra.fileio import atomic_write
    from irra.viz import RankedItem, retrieval_grid

    grid = retrieval_grid([(caption, [RankedItem(p, s) for p, s in items])])
    atomic_write(path, lambda handle: grid.save(handle, format="PNG"))
    logger.info("wrote %s", path)
