"""``irra index``: encode a folder of person crops into a searchable index (or update one)."""

from __future__ import annotations

import argparse
import logging

from irra.cli.engine_args import add_engine_args
from irra.cli.index_footage import add_footage_args
from irra.retrieval.vectors import INDEX_TYPES

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``irra index``."""
    p = subparsers.add_parser(
        "index",
        help="encode a folder of images, or footage, into a searchable index (or update one)",
        description=(
            "Encode every image under --images (recursive; jpg, png, bmp, webp) into an index "
            "directory: FAISS vectors, SQLite metadata and the identity of the model. Run it "
            "again to add new images and drop deleted ones; unchanged images are not encoded "
            "again. An interrupted run leaves the previous index as it was. With --video / "
            "--frames, index the people in footage instead: boxes from --detections or "
            "--detector, linked into tracks, a few crops per track with where and when each "
            "was seen; a later run adds only new footage."
        ),
    )
    p.add_argument(
        "--out",
        required=True,
        help="index folder (created or updated), or milvus://HOST:PORT/COLLECTION",
    )
    p.add_argument("--images", help="folder of images (default when updating: the indexed one)")
    p.add_argument(
        "--index-type",
        choices=(*INDEX_TYPES, "hnsw"),
        help="flat: exact search (default); ivf, ivf-sq8, ivf-pq: approximate, for millions of "
        "images (docs/index-store.md); hnsw: Milvus only (docs/milvus.md); kept by updates",
    )
    p.add_argument("--nlist", type=int, help="ivf: number of cells (default about sqrt(N))")
    p.add_argument(
        "--nprobe", type=int, help="ivf: cells scanned per query (default nlist/16, at least 8)"
    )
    p.add_argument(
        "--labels",
        help="CSV or JSON giving identity, camera and capture time (ISO 8601) per image path",
    )
    add_footage_args(p)
    p.add_argument("--rebuild", action="store_true", help="re-encode everything (another model)")
    p.add_argument(
        "--compact",
        action="store_true",
        help="only compact the index: reclaim the space of deleted rows, rewrite the ANN index",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--workers", type=int, default=2, help="image-decoding processes")
    p.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16")
    add_engine_args(
        p,
        checkpoint_help="model, or an export directory with --engine onnx (default when "
        "updating: the one that built it)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``irra index``; returns the exit status."""
    if args.footage:
        from irra.cli.index_footage import run_footage

        if args.images or args.labels:
            logger.error(
                "--images/--labels index a folder of crops; run them without --video/--frames"
            )
            return 2
        return run_footage(args)
    from irra.cli.progress import counter
    from irra.inference import open_encoder
    from irra.retrieval import GalleryError, IndexStoreError, build_index, read_labels
    from irra.retrieval.build import refuse_footage

    out = args.out
    try:
        if args.compact:
            return compact(out)
        checkpoint, images, engine = args.checkpoint, args.images, args.engine
        if checkpoint is None or images is None:
            settings = stored_settings(out)
            if settings is not None and not args.rebuild:
                refuse_footage(settings, out)
                if checkpoint is None:
                    checkpoint = settings["model"]["source"]
                    engine = engine or settings["model"].get("engine")
                images = images or settings["images_root"]
        if checkpoint is None or images is None:
            raise IndexStoreError(
                f"{out}: no index yet; pass --checkpoint CKPT and --images DIR to build one"
            )
        labels = read_labels(args.labels) if args.labels else None
        encoder = open_encoder(
            checkpoint,
            engine,
            device=args.device,
            precision=args.precision,
            threads=args.threads,
        )
        report = build_index(
            encoder,
            images,
            out,
            index_type=args.index_type,
            nlist=args.nlist,
            nprobe=args.nprobe,
            labels=labels,
            rebuild=args.rebuild,
            batch_size=args.batch_size,
            workers=args.workers,
            progress=counter("encoding images"),
        )
    except (GalleryError, IndexStoreError, ValueError, RuntimeError) as err:  # WeightsError too
        logger.error("%s", err)
        return 2
    print(
        f"{out}: {report.total} images ({report.encoded} encoded, {report.kept} unchanged, "
        f"{report.removed} removed)"
    )
    return 0


def stored_settings(out: str) -> dict | None:
    """The settings of the index at ``out`` (migrating an old-format one first), or None."""
    from irra.retrieval.build import migrate_if_legacy
    from irra.retrieval.store import open_store, store_exists

    if not store_exists(out):
        return None
    migrate_if_legacy(out)
    store = open_store(out)
    try:
        return store.settings()
    finally:
        store.close()


def compact(out: str) -> int:
    """``irra index --out INDEX --compact``."""
    from irra.retrieval.build import migrate_if_legacy
    from irra.retrieval.store import open_store

    migrate_if_legacy(out)
    store = open_store(out, writer=True)
    try:
        report = store.compact()
    finally:
        store.close()
    sizes = ""
    if report.bytes_before is not None and report.bytes_after is not None:
        sizes = f"; {report.bytes_before / 2**20:.1f} MiB -> {report.bytes_after / 2**20:.1f} MiB"
    print(f"{out}: compacted, {report.rows} rows{sizes}")
    return 0
