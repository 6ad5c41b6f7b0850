"""``irra index --video FILE / --frames DIR``: index the people in footage (see
:mod:`irra.retrieval.footage`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


class _AddSource(argparse.Action):
    """Append ``(kind, path)`` to ``namespace.footage`` in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        found = list(getattr(namespace, "footage", None) or [])
        found.append((self.dest, values))
        namespace.footage = found


def add_footage_args(p: argparse.ArgumentParser) -> None:
    """Add the footage options of ``irra index``."""
    g = p.add_argument_group("footage (instead of --images)")
    g.add_argument(
        "--video",
        dest="video",
        action=_AddSource,
        metavar="FILE",
        help="a video file (mp4, avi, mkv ...; repeatable)",
    )
    g.add_argument(
        "--frames",
        dest="frames",
        action=_AddSource,
        metavar="DIR",
        help="a MOTChallenge sequence folder (img1/000001.jpg ..., seqinfo.ini; repeatable)",
    )
    g.add_argument(
        "--detections",
        action="append",
        default=[],
        metavar="FILE",
        help="MOTChallenge boxes (frame, id, x, y, w, h, conf, ...) of the footage: one per "
        "--video/--frames, in order (a sequence folder defaults to its det/det.txt)",
    )
    g.add_argument("--camera", metavar="NAME", help="camera name of this footage")
    g.add_argument(
        "--start",
        metavar="TIME",
        help="ISO 8601 time of the first frame (crops are timed start + frame time; without "
        "it they have no capture time)",
    )
    g.add_argument("--every", type=int, default=1, metavar="N", help="read every N-th frame")
    g.add_argument(
        "--per-frame",
        action="store_true",
        help="store every box as its own entry instead of a few crops per track",
    )
    g.add_argument(
        "--per-track", type=int, default=3, metavar="K", help="crops stored per track (default 3)"
    )
    g.add_argument(
        "--min-conf",
        type=float,
        metavar="C",
        help="drop detections file boxes below this confidence",
    )
    g.add_argument("--fps", type=float, help="frame rate of a folder without seqinfo.ini")
    g.add_argument(
        "--detector",
        metavar="NAME",
        help="find people with a torchvision COCO detector where no --detections are given, "
        "e.g. fasterrcnn_mobilenet_v3_large_fpn or fasterrcnn_resnet50_fpn",
    )
    g.add_argument(
        "--detector-weights",
        metavar="FILE",
        help="the detector's state dict (default: torchvision's download, needs the network)",
    )
    g.add_argument(
        "--detector-conf", type=float, default=0.5, metavar="C", help="lowest person score kept"
    )
    g.add_argument(
        "--min-box-height",
        type=float,
        default=24.0,
        metavar="PX",
        help="lowest detected box height kept, in pixels (default 24)",
    )
    g.add_argument(
        "--detector-batch", type=int, default=4, metavar="N", help="frames per detector pass"
    )
    p.set_defaults(footage=None)


def footage_sources(args: argparse.Namespace) -> list:
    """The :class:`FootageSource` list of parsed arguments."""
    from irra.footage import FootageError
    from irra.retrieval.capture import parse_time
    from irra.retrieval.footage import FootageSource

    given = args.footage or []
    if args.detections and len(args.detections) != len(given):
        raise FootageError(
            f"{len(args.detections)} --detections for {len(given)} --video/--frames; give one "
            "detections file per source, in the same order (or none for sequence folders with "
            "det/det.txt)"
        )
    try:
        start = parse_time(args.start) if args.start is not None else None
    except ValueError as err:
        raise FootageError(f"--start: {err}") from None
    sources = []
    for i, (kind, path) in enumerate(given):
        path = Path(path)
        if kind == "video" and path.is_dir():
            raise FootageError(
                f"{path}: --video names a folder; pass a sequence folder as --frames"
            )
        if kind == "frames" and path.is_file():
            raise FootageError(f"{path}: --frames names a file; pass a video file as --video")
        detections = Path(args.detections[i]) if args.detections else None
        sources.append(FootageSource(path, detections, args.camera, start, args.fps))
    return sources


def run_footage(args: argparse.Namespace) -> int:
    """Index the footage of ``args``; returns the exit status."""
    from irra.cli.index import stored_settings
    from irra.cli.progress import counter
    from irra.footage import FootageError
    from irra.inference import open_encoder
    from irra.retrieval import IndexStoreError
    from irra.retrieval.footage import build_footage_index

    out = args.out
    try:
        sources = footage_sources(args)
        checkpoint, engine = args.checkpoint, args.engine
        settings = None if checkpoint is not None or args.rebuild else stored_settings(out)
        if settings is not None:
            checkpoint = settings["model"]["source"]
            engine = engine or settings["model"].get("engine")
        if checkpoint is None:
            raise IndexStoreError(f"{out}: no index yet; pass --checkpoint CKPT to build one")
        detector = None
        if args.detector is not None:
            from irra.footage.detector import PersonDetector, check_detector

            check_detector(args.detector)
            detector = PersonDetector(
                args.detector,
                args.detector_weights,
                device=args.device,
                conf=args.detector_conf,
                min_height=args.min_box_height,
                batch_size=args.detector_batch,
            )
        elif args.detector_weights is not None:
            raise FootageError("--detector-weights needs --detector NAME")
        encoder = open_encoder(
            checkpoint, engine, device=args.device, precision=args.precision, threads=args.threads
        )
        report = build_footage_index(
            encoder,
            sources,
            out,
            every=args.every,
            per_frame=args.per_frame,
            per_track=args.per_track,
            min_conf=args.min_conf,
            detect=detector,
            detector=None if detector is None else detector.signature,
            index_type=args.index_type,
            nlist=args.nlist,
            nprobe=args.nprobe,
            rebuild=args.rebuild,
            batch_size=args.batch_size,
            progress=counter("cropping and encoding"),
        )
    except (FootageError, IndexStoreError, ValueError, RuntimeError) as err:
        logger.error("%s", err)
        return 2
    for problem in report.problems:
        logger.warning("%s", problem)
    what = "entries" if args.per_frame else f"entries, {report.tracks} tracks"
    print(
        f"{out}: {report.total} entries; this run: {report.indexed} source(s) read, "
        f"{report.kept} unchanged, {report.boxes} boxes -> {report.crops} {what}; "
        f"{report.clipped} boxes clipped to the frame, {report.outside} outside it dropped"
    )
    return 0
