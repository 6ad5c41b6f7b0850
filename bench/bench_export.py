"""Encoder throughput of PyTorch eager, TorchScript and ONNX Runtime, and exported file sizes.

Exports the model to a temporary folder in both formats, then times the image encoder (images/s)
and the text encoder (captions/s) of each engine on the same inputs: batches of B preprocessed
random images and B tokenized captions, one warm-up call then the median of R timed calls, all
engines on the same number of CPU threads. Ratios are against eager in the same run. Image
decoding and tokenisation are not timed (they are the same numpy/PIL work for every engine).
Also prints the largest relative difference of each engine's features from eager's.

    OMP_NUM_THREADS=1 python bench/bench_export.py --model runs/demo/model [--vit-b16]
        [--batch 32] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from irra.deploy.export import export_model
from irra.inference.bundle import encoder_files
from irra.inference.exported import onnx_runner, torchscript_runner
from irra.model import IRRA, IRRAConfig, clip_config, load_model
from irra.tokenizer import tokenize

CAPTIONS = [
    "a young woman in a red down jacket, black leggings and white sneakers with a grey backpack",
    "the man wears a blue shirt, khaki trousers and brown shoes and carries a black bag",
    "a person in a yellow raincoat and dark jeans",
    "she has long black hair, a white blouse, a pink skirt and black high heels",
]


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_model(name: str, model: IRRA, args: argparse.Namespace) -> None:
    """Export ``model`` in both formats and print one table row per engine and encoder."""
    height, width = model.config.clip.vision.image_size
    length = model.config.clip.text.context_length
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.batch, 3, height, width), dtype=np.float32)
    ids = tokenize([CAPTIONS[i % len(CAPTIONS)] for i in range(args.batch)], length).numpy()
    params = sum(p.numel() for p in model.base_model.parameters()) / 1e6
    print(f"\n## {name}: image {height}x{width}, {length} tokens, {params:.1f}M tower parameters")
    print(f"batch {args.batch}, median of {args.repeats}, {args.threads} thread(s)\n")
    model = model.float().eval()
    with tempfile.TemporaryDirectory() as tmp:
        runners: dict[str, tuple[Callable, Callable]] = {}
        sizes: dict[str, tuple[float, float]] = {}
        for fmt in ("torchscript", "onnx"):
            start = time.perf_counter()
            out = export_model(model, Path(tmp) / fmt, fmt)
            seconds = time.perf_counter() - start
            image_file, text_file = (out / f for f in encoder_files(fmt))
            sizes[fmt] = (image_file.stat().st_size / 1e6, text_file.stat().st_size / 1e6)
            print(
                f"export {fmt}: {seconds:.1f} s; {image_file.name} {sizes[fmt][0]:.1f} MB, "
                f"{text_file.name} {sizes[fmt][1]:.1f} MB"
            )
            if fmt == "onnx":
                runners[fmt] = (
                    onnx_runner(image_file, "images", args.threads),
                    onnx_runner(text_file, "ids", args.threads),
                )
            else:
                runners[fmt] = (
                    torchscript_runner(image_file, args.threads),
                    torchscript_runner(text_file, args.threads),
                )
        torch.set_num_threads(args.threads)

        def eager(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
            def run(batch: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return fn(torch.from_numpy(batch)).numpy()

            return run

        engines = {"eager": (eager(model.encode_image), eager(model.encode_text)), **runners}
        reference = (engines["eager"][0](images), engines["eager"][1](ids))
        rows = []
        for engine, (image_run, text_run) in engines.items():
            image_s = median_seconds(lambda run=image_run: run(images), args.repeats)
            text_s = median_seconds(lambda run=text_run: run(ids), args.repeats)
            diff = max(
                float(np.abs(image_run(images) - reference[0]).max() / np.abs(reference[0]).max()),
                float(np.abs(text_run(ids) - reference[1]).max() / np.abs(reference[1]).max()),
            )
            rows.append((engine, args.batch / image_s, args.batch / text_s, diff))
    eager_images, eager_texts = rows[0][1], rows[0][2]
    print("\n| engine | images/s | vs eager | captions/s | vs eager | max rel. diff | files MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for engine, image_rate, text_rate, diff in rows:
        size = f"{sum(sizes[engine]):.1f}" if engine in sizes else "-"
        print(
            f"| {engine} | {image_rate:.1f} | {image_rate / eager_images:.2f}x | {text_rate:.1f} "
            f"| {text_rate / eager_texts:.2f}x | {diff:.1e} | {size} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an irra model (e.g. runs/demo/model)")
    parser.add_argument("--vit-b16", action="store_true", help="also a random ViT-B/16 IRRA")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not args.model and not args.vit_b16:
        parser.error("pass --model PATH and/or --vit-b16")
    if args.model:
        bench_model(f"model {args.model}", load_model(args.model), args)
    if args.vit_b16:
        torch.manual_seed(0)
        config = IRRAConfig(clip_config("ViT-B/16"), num_classes=11003)
        bench_model("random ViT-B/16 IRRA (384x128)", IRRA(config), args)


if __name__ == "__main__":
    main()
