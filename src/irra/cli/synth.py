"""``irra synth``: generate SynthPedes (CUHK-PEDES format); ``irra synth scenes``: street footage
(MOTChallenge layout)."""

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
            "<out>/reid_raw.json + <out>/imgs/ (+ attributes.json). Same seed, same bytes. "
            "'irra synth scenes --out DIR' draws street footage instead."
        ),
    )
    p.add_argument("--out", help="output folder (required; created; written atomically)")
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
    kinds = p.add_subparsers(dest="synth_kind", metavar="KIND")
    _add_scenes_parser(kinds)


def _add_scenes_parser(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "scenes",
        help="street sequences in the MOTChallenge layout (frames, gt, det, captions, mp4)",
        description=(
            "Draw short fixed-camera street sequences of SynthPedes people walking, occluding "
            "each other, entering and leaving, in the MOTChallenge layout: <out>/SYNTH-01/img1/"
            "000001.jpg ..., seqinfo.ini, gt/gt.txt, det/det.txt (simulated detector: misses, "
            "jitter, false positives), captions.json (one caption per track id) and, with "
            "--video, SYNTH-01.mp4. Same seed, same bytes."
        ),
    )
    p.add_argument("--out", required=True, help="output folder (created; written atomically)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--sequences", type=int, default=3, help="number of sequences (default 3)")
    p.add_argument("--frames", type=int, default=300, help="frames per sequence (default 300)")
    p.add_argument(
        "--height", type=int, default=360, help="frame height in pixels (default 360; 720 = HD)"
    )
    p.add_argument("--width", type=int, help="frame width in pixels (default: 16:9 of --height)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate (default 25)")
    p.add_argument("--format", choices=("jpg", "png"), default="jpg", help="frame image format")
    p.add_argument("--video", action="store_true", help="also write an mp4 of each sequence")
    p.add_argument(
        "--lossless-video",
        action="store_true",
        help="write the mp4 losslessly (RGB H.264; implies --video): with --format png the video "
        "decodes to exactly the frame folder's pixels; larger, and common players do not show it",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="processes, one sequence each (default 1)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing scenes")
    p.add_argument(
        "--preview",
        metavar="IMAGE",
        help="also write the middle frame of the first sequence with its boxes and ids here",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``irra synth``; returns the exit status."""
    if args.out is None:
        logger.error("irra synth needs --out DIR (or: irra synth scenes --out DIR)")
        return 2
    if args.synth_kind == "scenes":
        return _run_scenes(args)
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


def _run_scenes(args: argparse.Namespace) -> int:
    from irra.cli.progress import counter
    from irra.data.synth.scenes import SceneParams, generate_scenes
    from irra.data.synth.scenes.preview import write_preview

    width = args.width if args.width is not None else 2 * round(args.height * 16 / 9 / 2)
    params = SceneParams(
        sequences=args.sequences,
        frames=args.frames,
        width=width,
        height=args.height,
        fps=args.fps,
        seed=args.seed,
        image_format=args.format,
        video=args.video or args.lossless_video,
        lossless_video=args.lossless_video,
    )
    progress = None if args.no_progress else counter("scenes (frames)")
    try:
        summary = generate_scenes(
            args.out, params, workers=args.workers, overwrite=args.overwrite, progress=progress
        )
        if args.preview:
            logger.info("preview: %s", write_preview(summary.out_dir, args.preview))
    except (FileExistsError, ValueError) as err:  # FootageError is a ValueError
        logger.error("%s", err)
        return 2
    verb = "reused" if summary.reused else f"wrote in {summary.seconds:.1f} s"
    parts = ", ".join(
        f"{s['name']}: {s['tracks']} tracks / {s['boxes']} boxes / {s['detections']} detections"
        for s in summary.sequences
    )
    logger.info("%s %s (%s)", verb, summary.out_dir, parts)
    return 0
