"""Benchmark of the training input pipeline: samples/s of one loader worker, and where it goes.

A training sample is: decode the JPEG, augment (resize, flip, pad + crop, normalise, random
erasing), mask the pre-tokenised caption for the MLM loss (:class:`irra.data.TrainDataset`
tokenises every caption once, when it is built). The benchmark writes ``images`` synthetic
person-crop-sized JPEGs (sizes like CUHK-PEDES crops), iterates the real training loader with
``num_workers=0`` (so one process does all the work: its rate is the per-worker rate), and
times each stage on its own so that their shares of a sample add up to a ratio measured in the
same run. Tokenisation is timed separately (captions/s) because it happens once per run.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from irra.bench.timing import Timing, time_call
from irra.data.datasets import TrainDataset, load_image
from irra.data.formats import SplitData
from irra.data.loaders import build_train_loader
from irra.data.masking import mask_tokens
from irra.data.transforms import build_train_transform
from irra.tokenizer import tokenize

logger = logging.getLogger(__name__)

_VOCABULARY = (
    "a young woman man wearing red black white blue grey dark light long short sleeved shirt "
    "jacket coat pants jeans shorts skirt dress shoes sneakers boots carrying backpack bag "
    "handbag holding umbrella phone with her his hair glasses hat walking standing and the of "
    "in on striped checked down leggings"
)


@dataclass(frozen=True)
class DataResult:
    """Everything ``irra bench data`` reports; stage timings are per ``samples`` samples."""

    samples: int
    batch: int
    image_size: tuple[int, int]
    loader: Timing  # the training loader, one worker, whole pass
    stages: dict[str, Timing]  # decode, augment, mask: the same samples, stage by stage
    tokenize: Timing  # tokenising every caption once

    @property
    def samples_per_second(self) -> float:
        """Training samples per second of one loader worker."""
        return self.samples / self.loader.median

    @property
    def captions_per_second(self) -> float:
        return self.samples / self.tokenize.median

    def share(self, stage: str) -> float:
        """Fraction of the loader's time per sample spent in ``stage``."""
        return self.stages[stage].median / self.loader.median


def synthetic_captions(count: int, seed: int = 0) -> list[str]:
    """``count`` English-looking captions of 15-35 words."""
    rng = np.random.default_rng(seed)
    words = _VOCABULARY.split()
    return [" ".join(rng.choice(words, size=int(rng.integers(15, 36)))) + "." for _ in range(count)]


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` JPEG person crops (heights 200-400 px, aspect ~0.4) of smooth noise."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        height = int(rng.integers(200, 401))
        width = max(int(height * rng.uniform(0.33, 0.5)), 16)
        coarse = rng.integers(0, 256, size=(height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
        path = folder / f"{i:05d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def bench_data(
    *,
    samples: int = 256,
    batch: int = 64,
    image_size: tuple[int, int] = (384, 128),
    repeat: int = 3,
) -> DataResult:
    """Measure the training pipeline on ``samples`` synthetic samples (two captions per image).

    Args:
        samples: training samples (captions) per pass.
        batch: loader batch size.
        image_size: model input (height, width).
        repeat: timed passes (after one untimed one).
    """
    captions = synthetic_captions(samples)
    transform = build_train_transform(image_size)
    with tempfile.TemporaryDirectory() as tmp:
        images = -(-samples // 2)
        paths = write_images(Path(tmp), images)
        split = SplitData(
            name="train",
            image_paths=paths,
            image_pids=list(range(images)),
            captions=captions,
            caption_pids=[i // 2 for i in range(samples)],
            caption_image_index=[i // 2 for i in range(samples)],
        )
        tokens = tokenize(captions)
        token_time = time_call(lambda: tokenize(captions), torch.device("cpu"), repeat=repeat)
        dataset = TrainDataset(split, transform, tokens=tokens)
        loader = build_train_loader(
            dataset, batch_size=batch, num_workers=0, drop_last=False, pin_memory=False
        )

        def one_pass() -> None:
            for _ in loader:
                pass

        loader_time = time_call(one_pass, torch.device("cpu"), repeat=repeat)
        decoded = [load_image(paths[i // 2]) for i in range(samples)]
        gen = torch.Generator().manual_seed(0)
        stages = {
            "decode": lambda: [load_image(paths[i // 2]) for i in range(samples)],
            "augment": lambda: [transform(image, gen) for image in decoded],
            "mask": lambda: [mask_tokens(row, gen) for row in tokens],
        }
        stage_times = {
            name: time_call(fn, torch.device("cpu"), repeat=repeat) for name, fn in stages.items()
        }
    logger.info("data: %.1f samples/s per worker", samples / loader_time.median)
    return DataResult(
        samples=samples,
        batch=batch,
        image_size=tuple(image_size),
        loader=loader_time,
        stages=stage_times,
        tokenize=token_time,
    )
