"""``irra search``: the images of an index best matching a description, photos or indexed images."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from irra.cli.engine_args import add_engine_args

logger = logging.getLogger(__name__)

WEIGHT_HELP = (
    "weight of the query part named just before it (--image, --similar or --not); before any of "
    "them, the weight of the text (default 1, a number in (0, 100])"
)


class _AddPart(argparse.Action):
    """Append ``(kind, value, weight 1.0)`` to ``namespace.parts`` in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parts = list(getattr(namespace, "parts", None) or [])
        parts.append([self.dest, values, 1.0])
        namespace.parts = parts


class _SetWeight(argparse.Action):
    """Set the weight of the last part added, or of the text before any part."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parts = getattr(namespace, "parts", None) or []
        if parts:
            parts[-1][2] = values
        else:
            namespace.text_weight = values


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``irra search``."""
    p = subparsers.add_parser(
        "search",
        help="rank the images of an index by description, photo or indexed image, with filters",
        description=(
            "Print the k best-matching images of an index (built by irra index). A query is any "
            "mix of a description, photos (--image), indexed images (--similar) and descriptions "
            "to move away from (--not): their unit embeddings are weighted, summed (negatives "
            "subtracted) and scaled to unit length, and images are ranked by cosine similarity "
            "to that. Filters keep the search exact over the images that pass them."
        ),
        epilog=(
            "Weights: put --weight W after the part it weights, e.g. "
            "`irra search 'red coat' --weight 2 --image witness.jpg --weight 0.5 --not 'backpack'`."
            " Times are ISO 8601 (2024-05-01, 2024-05-01T14:30, 2024-05-01T14:30:00+02:00); "
            "without an offset they are UTC."
        ),
    )
    p.add_argument("query", nargs="?", help='description, e.g. "a man in a black jacket"')
    p.add_argument("--index", required=True, help="index folder, or milvus://HOST:PORT/COLLECTION")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    parts = p.add_argument_group("query parts (repeatable; each may be followed by --weight W)")
    parts.add_argument(
        "--image", dest="image", action=_AddPart, metavar="PATH", help="a photo of the person"
    )
    parts.add_argument(
        "--similar",
        dest="similar",
        action=_AddPart,
        type=int,
        metavar="ID",
        help="an indexed image id (from earlier results): find more of this person",
    )
    parts.add_argument(
        "--not", dest="not", action=_AddPart, metavar="TEXT", help="a description to rank away from"
    )
    parts.add_argument("--weight", action=_SetWeight, type=float, metavar="W", help=WEIGHT_HELP)
    filters = p.add_argument_group("filters (exact: the top k among the images that pass)")
    filters.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="NAME",
        help="only this camera (repeatable)",
    )
    filters.add_argument(
        "--identity",
        action="append",
        default=[],
        metavar="ID",
        help="only this identity (repeatable)",
    )
    filters.add_argument("--after", metavar="TIME", help="captured at or after (ISO 8601)")
    filters.add_argument("--before", metavar="TIME", help="captured at or before (ISO 8601)")
    filters.add_argument(
        "--under", metavar="FOLDER", help="only images in this folder (inside the indexed one)"
    )
    p.add_argument(
        "--min-score",
        type=float,
        metavar="S",
        help="only results scoring at least S; the score is the cosine similarity to the query, "
        "in [-1, 1]",
    )
    p.add_argument(
        "--rerank",
        action="store_true",
        help="re-score the top 100 candidates with their 3 nearest gallery images (visual "
        "neighbours); small gains on SynthPedes, see the README",
    )
    output = p.add_mutually_exclusive_group()
    output.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of {rank, id, path, score, identity, camera, time, source, "
        "frame, box, track} (the last four for footage)",
    )
    output.add_argument("--paths", action="store_true", help="print one file path per line")
    p.add_argument("--grid", metavar="PNG", help="save the query and its top-k thumbnails")
    p.add_argument(
        "--nprobe", type=int, help="approximate index: cells scanned (more = more exact)"
    )
    p.set_defaults(parts=None, text_weight=1.0)
    add_engine_args(
        p,
        checkpoint_help="the model, if it moved since the index was built, or an export directory "
        "of it",
    )


def build_query(args: argparse.Namespace) -> tuple[Any, Any]:
    """The :class:`Query` and :class:`SearchFilter` of parsed arguments (not yet checked)."""
    from irra.retrieval import ImagePart, Query, SearchFilter, SimilarPart, TextPart

    parts = args.parts or []
    text = TextPart(args.query, args.text_weight) if args.query is not None else None
    query = Query(
        text,
        tuple(ImagePart(v, w) for kind, v, w in parts if kind == "image"),
        tuple(SimilarPart(v, w) for kind, v, w in parts if kind == "similar"),
        tuple(TextPart(v, w) for kind, v, w in parts if kind == "not"),
    )
    search_filter = SearchFilter(args.camera, args.identity, args.after, args.before, args.under)
    return query, search_filter


def run(args: argparse.Namespace) -> int:
    """Run ``irra search``; returns the exit status."""
    from irra.retrieval import GalleryError, IndexStoreError, QueryError, Retriever

    try:
        query, search_filter = build_query(args)
        retriever = Retriever.open(
            args.index,
            checkpoint=args.checkpoint,
            engine=args.engine,
            device=args.device,
            nprobe=args.nprobe,
            threads=args.threads,
        )
        hits = retriever.search(
            query, args.k, filter=search_filter, min_score=args.min_score, rerank=args.rerank
        )
        if args.grid:
            save_grid(Path(args.grid), retriever, query, hits)
    except (QueryError, GalleryError, IndexStoreError, ValueError, RuntimeError) as err:
        logger.error("%s", err)
        return 2
    if hits.message:
        logger.warning("%s", hits.message)
    root = retriever.images_root
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=2))
    elif args.paths:
        sys.stdout.write("".join(f"{root / h.path}\n" for h in hits))
    else:
        for h in hits:
            extra = "".join(
                f"  {name}={value}"
                for name, value in (
                    ("id", h.identity),
                    ("camera", h.camera),
                    ("time", h.time),
                    ("source", h.source),
                    ("frame", h.frame),
                    ("box", None if h.box is None else ",".join(map(str, h.box))),
                    ("track", h.track),
                )
                if value is not None
            )
            print(f"{h.rank:>4}  {h.score:7.4f}  {root / h.path}{extra}")
    return 0


def describe(query: Any) -> str:
    """One line naming every part of a query and its weight."""

    def weighted(text: str, weight: float) -> str:
        return text if weight == 1 else f"{text} (x{weight:g})"

    words = []
    if query.text is not None:
        words.append(weighted(f'"{query.text.text}"', query.text.weight))
    words += [weighted(f"image {Path(p.label).name}", p.weight) for p in query.images]
    words += [weighted(f"similar to #{p.id}", p.weight) for p in query.similar]
    words += [weighted(f'not "{p.text}"', p.weight) for p in query.negatives]
    return " + ".join(words)


def save_grid(path: Path, retriever: Any, query: Any, hits: list) -> None:
    """Write the query (its images first, then its text) above the ranked thumbnails (PNG)."""
    from irra.fileio import atomic_write
    from irra.viz import RankedItem, retrieval_grid

    query = query.checked()
    shown = [RankedItem(p.image, 0.0, label="query") for p in query.images]
    shown += [
        RankedItem(retriever.image_path(p.id), 0.0, label=f"query #{p.id}") for p in query.similar
    ]
    shown += [RankedItem(retriever.images_root / h.path, h.score) for h in hits]
    grid = retrieval_grid([(describe(query), shown)])
    atomic_write(path, lambda handle: grid.save(handle, format="PNG"))
    logger.info("wrote %s", path)
