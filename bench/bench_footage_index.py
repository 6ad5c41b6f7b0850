"""Footage indexing throughput: frames/s of decoding + cropping + encoding + writing, and where
the time goes.

Draws one 1280x720 ``irra synth scenes`` sequence with its mp4 (or takes ``--video`` and
``--detections``), then with the model (``--model``, e.g. the demo's) and ``--threads`` CPU
threads indexes the mp4 from its MOTChallenge detections, by track and per frame, ``--repeat``
times each, and reports frames/s end to end (``build_footage_index``: decode, track, crop, PNG,
encode, FAISS + SQLite write) next to the stages timed alone: decoding every frame (converting
to RGB only the frames with a crop), cropping + PNG writing, encoding the crops, and the
one-time track linking. Also compares stored crops with cutting them on demand: PNG bytes per
crop against milliseconds to seek and decode one frame of the mp4.

    python bench/bench_footage_index.py --model MODEL [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from irra.data.synth.scenes import SceneParams, generate_scenes
from irra.footage import VideoFile, iter_crops, read_mot, select_detections
from irra.inference import open_encoder
from irra.retrieval.footage import FootageSource, build_footage_index


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def stages(encoder, video: Path, det: Path, per_frame: bool, tmp: Path) -> dict[str, float]:
    """Seconds of each stage alone, for the boxes a run stores."""
    source = VideoFile(video)
    t_read, dets = timed(lambda: read_mot(det, frame_size=source.size).detections)
    if per_frame:
        t_track, kept = 0.0, dets
    else:
        t_track, kept = timed(lambda: select_detections(dets, frame_size=source.size))
    frames = {d.frame for d in kept}
    t_decode, _ = timed(lambda: sum(1 for _ in source.frames(only=frames)))
    crops = []
    t_crop, _ = timed(lambda: crops.extend(c.image for c in iter_crops(source, kept)))
    t_crop -= t_decode  # iter_crops decodes too
    pictures = [Image.fromarray(c) for c in crops]
    folder = tmp / "png"
    folder.mkdir(exist_ok=True)

    def write() -> None:
        for i, p in enumerate(pictures):
            p.save(folder / f"{i}.png", format="PNG", compress_level=1)

    t_png, _ = timed(write)

    def encode() -> None:
        for i in range(0, len(pictures), 64):
            encoder.encode_pictures(pictures[i : i + 64])

    t_encode, _ = timed(encode)
    return {
        "read detections": t_read,
        "link tracks": t_track,
        "decode (every frame; RGB for frames with a crop)": t_decode,
        "cut crops": max(t_crop, 0.0),
        "write PNG crops": t_png,
        "encode crops": t_encode,
        "crops": float(len(crops)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--video", help="an mp4 (default: draw a 720p synth scene)")
    parser.add_argument("--detections", help="its MOTChallenge detections (with --video)")
    parser.add_argument("--frames", type=int, default=300, help="frames to draw")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    encoder = open_encoder(args.model, device="cpu")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.video:
            video, det = Path(args.video), Path(args.detections)
        else:
            params = SceneParams(
                sequences=1, frames=args.frames, height=720, width=1280, video=True
            )
            generate_scenes(tmp / "scenes", params)
            seq = tmp / "scenes" / "SYNTH-01"
            video, det = seq / "SYNTH-01.mp4", seq / "det" / "det.txt"
        source = VideoFile(video)
        frames = source.num_frames or sum(1 for _ in source.frames(only=()))
        boxes = len(read_mot(det, frame_size=source.size).detections)
        print(f"{video.name}: {source.size[0]}x{source.size[1]}, {frames} frames, {boxes} boxes")
        print(f"{args.threads} threads, {args.repeat} runs each (median (min-max))\n")
        print("| mode | entries | end to end s | frames/s | x real time (25 fps) |")
        print("|---|---:|---:|---:|---:|")
        stage_rows = {}
        for per_frame in (False, True):
            seconds, entries = [], 0
            for r in range(args.repeat):
                out = tmp / f"index-{per_frame}-{r}"
                elapsed, report = timed(
                    lambda out=out, per_frame=per_frame: build_footage_index(
                        encoder, [FootageSource(video, det)], out, per_frame=per_frame
                    )
                )
                seconds.append(elapsed)
                entries = report.total
            rates = [frames / s for s in seconds]
            mode = "per frame" if per_frame else "by track (3 crops)"
            print(
                f"| {mode} | {entries:,} | {spread(seconds)} | {spread(rates)} | "
                f"{statistics.median(rates) / 25:.1f}x |"
            )
            stage_rows[mode] = stages(encoder, video, det, per_frame, tmp)
        print("\nwhere the time goes (each stage alone, one run, seconds):\n")
        modes = list(stage_rows)
        print("| stage | " + " | ".join(modes) + " |")
        print("|---|" + "---:|" * len(modes))
        for key in stage_rows[modes[0]]:
            if key != "crops":
                print(f"| {key} | " + " | ".join(f"{stage_rows[m][key]:.2f}" for m in modes) + " |")
        print("| crops | " + " | ".join(f"{stage_rows[m]['crops']:.0f}" for m in modes) + " |")
        index = tmp / "index-False-0"
        pngs = list((index / "crops").rglob("*.png"))
        sizes = [p.stat().st_size for p in pngs]
        from irra.retrieval.store import open_store

        with open_store(index) as store:
            records = [record for _, record in store.rows()][:20]
        seek_ms = []
        for r in records:
            t, image = timed(lambda r=r: source.frame(r.frame).image)
            x, y, w, h = r.box
            np.ascontiguousarray(image[y : y + h, x : x + w])
            seek_ms.append(1000 * t)
        print(
            f"\nstored crops: {len(pngs)} PNG files, {np.mean(sizes) / 1024:.1f} KiB each "
            f"({sum(sizes) / 2**20:.2f} MiB); cutting one on demand from the mp4 (seek to the key "
            f"frame, decode to the frame): {spread(seek_ms)} ms over {len(seek_ms)} crops"
        )


if __name__ == "__main__":
    main()
