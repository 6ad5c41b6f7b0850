"""Synthetic footage end to end, without a model: drawing, reading back, cropping, tracking.

Draws ``irra synth scenes`` sequences (with their mp4), then for each sequence:

* reading: frames/s of decoding the frame folder and the mp4, with every detection cropped;
* tracking: CLEAR-MOT counts of the tracker on the ground-truth boxes with their ids removed,
  clipped to the frame, slivers under 8 pixels dropped (identity errors only: switches, and
  tracks split or merged against the ground truth) and
  on the simulated detector's ``det/det.txt`` (MOTA-like: misses, false positives, switches),
  next to the detections taken as they are (one id per box);
* deduplication: boxes before and crops kept after tracking (``--per-track`` per track).

    python bench/bench_footage.py [--sequences 3] [--frames 300] [--height 360] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from irra.data.synth.scenes import SceneParams, generate_scenes
from irra.footage import (
    FrameFolder,
    TrackerConfig,
    VideoFile,
    clear_mot,
    iter_crops,
    read_mot,
    summarise_tracks,
    track_detections,
)


def identity_errors(truth, tracked) -> tuple[int, int]:
    """(splits, merges): ground-truth tracks given several ids, ids given several tracks."""
    gt_id = {(d.frame, d.box): d.track for d in truth}
    ids_of_gt, gts_of_id = defaultdict(set), defaultdict(set)
    for d in tracked:
        g = gt_id[(d.frame, d.box)]
        ids_of_gt[g].add(d.track)
        gts_of_id[d.track].add(g)
    return (
        sum(len(v) - 1 for v in ids_of_gt.values()),
        sum(len(v) - 1 for v in gts_of_id.values()),
    )


def read_rate(source, detections) -> tuple[float, int]:
    """Frames per second of decoding ``source`` and cropping every detection; crops made."""
    start = time.perf_counter()
    crops = sum(1 for _ in iter_crops(source, detections))
    return source.report.decoded / (time.perf_counter() - start), crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=3)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-track", type=int, default=3)
    parser.add_argument("--out", help="scenes folder (default: a temporary one)")
    args = parser.parse_args()
    width = 2 * round(args.height * 16 / 9 / 2)
    params = SceneParams(
        sequences=args.sequences,
        frames=args.frames,
        width=width,
        height=args.height,
        seed=args.seed,
        video=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "scenes")
        start = time.perf_counter()
        summary = generate_scenes(out, params, overwrite=True)
        seconds = time.perf_counter() - start
        total = args.sequences * args.frames
        print(
            f"drew {total} frames of {width}x{args.height} (JPEG + mp4) in {seconds:.1f} s: "
            f"{total / seconds:.1f} frames/s"
        )
        head = (
            f"{'sequence':<9} {'tracks':>6} {'folder f/s':>10} {'mp4 f/s':>8} | "
            f"{'gt: IDSW split merge':>20} | {'det: GT':>7} {'FN':>5} {'FP':>5} {'IDSW':>4} "
            f"{'MOTA':>6} {'raw FP':>6} {'raw MOTA':>8} | {'boxes':>6} {'kept':>5}"
        )
        print(head)
        for seq in summary.sequences:
            folder = out / seq["name"]
            size = (width, args.height)
            truth = read_mot(folder / "gt" / "gt.txt", frame_size=size, min_size=8).detections
            dets = read_mot(folder / "det" / "det.txt", frame_size=size)
            folder_fps, _ = read_rate(FrameFolder(folder), dets)
            video_fps, _ = read_rate(VideoFile(folder / f"{seq['name']}.mp4"), dets)
            anonymous = [replace(d, track=None) for d in truth]
            on_gt = track_detections(anonymous, TrackerConfig(min_length=1))
            gt_counts = clear_mot(truth, on_gt)
            splits, merges = identity_errors(truth, on_gt)
            tracked = track_detections(dets.detections, TrackerConfig())
            c = clear_mot(truth, tracked)
            raw = clear_mot(truth, [replace(d, track=k) for k, d in enumerate(dets.detections)])
            kept = sum(
                len(s.representatives) for s in summarise_tracks(tracked, args.per_track, size)
            )
            print(
                f"{seq['name']:<9} {seq['tracks']:>6} {folder_fps:>10.1f} {video_fps:>8.1f} | "
                f"{gt_counts.id_switches:>10} {splits:>5} {merges:>5} | {c.gt:>7} "
                f"{c.misses:>5} {c.false_positives:>5} {c.id_switches:>4} {c.mota:>6.3f} "
                f"{raw.false_positives:>6} {raw.mota:>8.3f} | {len(dets.detections):>6} "
                f"{kept:>5}"
            )


if __name__ == "__main__":
    main()
