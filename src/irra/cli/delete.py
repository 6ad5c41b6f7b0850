"""``irra delete``: remove rows from an index - vectors, metadata and stored crops."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``irra delete``."""
    p = subparsers.add_parser(
        "delete",
        help="remove images or footage crops from an index (erasure, retention)",
        description=(
            "Remove the rows a selector picks from an index: their vectors (never returned by a "
            "search again), their metadata and the stored crops of footage. Selectors of "
            "different kinds must all hold (--source S --before T: the crops of S captured "
            "before T); repeated values of one kind are alternatives (--id 3 --id 8). A running "
            "irra serve stops returning the rows at its next query. Ids are never given again."
        ),
    )
    p.add_argument("--index", required=True, help="index folder, or milvus://HOST:PORT/COLLECTION")
    p.add_argument("--id", type=int, action="append", default=[], help="a row id (repeatable)")
    p.add_argument("--path", help="a path prefix relative to the image root (a folder or a file)")
    p.add_argument(
        "--source", action="append", default=[], help="a footage video or frame folder (repeatable)"
    )
    p.add_argument(
        "--track",
        action="append",
        default=[],
        metavar="SOURCE:TRACK",
        help="one track of a footage source (repeatable)",
    )
    p.add_argument("--identity", action="append", default=[], help="an identity label (repeatable)")
    p.add_argument(
        "--before", metavar="TIME", help="rows captured before this ISO 8601 time (no offset = UTC)"
    )
    p.add_argument("--json", action="store_true", help="print the deleted rows as JSON")


def _tracks(values: list[str]) -> list[tuple[str, int]]:
    tracks = []
    for value in values:
        source, _, number = value.rpartition(":")
        try:
            tracks.append((source, int(number)))
        except ValueError:
            raise ValueError(
                f"--track {value!r}: write SOURCE:TRACK, e.g. cam3.mp4:12 (a numeric track id)"
            ) from None
        if not source:
            raise ValueError(f"--track {value!r}: the source is missing; write SOURCE:TRACK")
    return tracks


def run(args: argparse.Namespace) -> int:
    """Run ``irra delete``; returns the exit status."""
    import json
    from pathlib import Path

    from irra.retrieval.build import migrate_if_legacy
    from irra.retrieval.capture import parse_time
    from irra.retrieval.footage import remove_crop_files
    from irra.retrieval.store import IndexStoreError, RowSelector, is_milvus, open_store

    try:
        before = None if args.before is None else parse_time(args.before)
        selector = RowSelector(
            ids=args.id,
            path=args.path,
            sources=[str(Path(s).resolve()) for s in args.source],
            tracks=[(str(Path(s).resolve()), t) for s, t in _tracks(args.track)],
            identities=args.identity,
            before=before,
        )
        if selector.is_empty:
            logger.error(
                "irra delete needs a selector: --id, --path, --source, --track, --identity or "
                "--before (to remove everything, build again with irra index --rebuild)"
            )
            return 2
        migrate_if_legacy(args.index)
        store = open_store(args.index, writer=True)
        try:
            deleted = store.delete(selector)
            if deleted and "footage" in store.settings() and not is_milvus(args.index):
                remove_crop_files(Path(args.index), [r for _, r in deleted])
            if deleted:
                store.maintain()  # an erased vector leaves the ANN checkpoint too
            remaining = store.count()
        finally:
            store.close()
    except (IndexStoreError, ValueError) as err:
        logger.error("%s", err)
        return 2
    if args.json:
        print(json.dumps([{"id": i, **_record_dict(r)} for i, r in deleted], indent=2))
    elif not deleted:
        print(f"{args.index}: no row matches the selector; nothing deleted ({remaining} rows)")
    else:
        print(f"{args.index}: deleted {len(deleted)} rows ({remaining} remain)")
    return 0


def _record_dict(record: object) -> dict:
    from dataclasses import asdict

    return asdict(record)  # type: ignore[call-overload]
