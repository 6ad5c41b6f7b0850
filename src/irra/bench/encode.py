"""Benchmark of inference encoding: images/s and captions/s with model FLOPs utilisation.

Encoding is what evaluation, indexing and search spend their time on: ``encode_image`` (the ViT
tower, global feature = projected class token) and ``encode_text`` (the causal text tower,
global feature at the end-of-text position), in ``torch.inference_mode`` and under autocast
for the chosen precision (weights stay float32). Utilisation divides the counted FLOPs per
second by the matrix-multiply peak measured just before and after (the higher of the two).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from irra.bench.peak import Peak, count_flops, higher_peak, matmul_peak
from irra.bench.timing import Timing, time_call
from irra.bench.train_step import PRECISION_DTYPES
from irra.bench.workload import build_bench_model, caption_ids
from irra.runtime import autocast, resolve_precision

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TowerResult:
    """One tower: ``flops`` per batch of ``batch`` items, timing of one batch."""

    name: str
    batch: int
    flops: int
    timing: Timing

    @property
    def items_per_second(self) -> float:
        return self.batch / self.timing.median


@dataclass(frozen=True)
class EncodeResult:
    """Everything ``irra bench encode`` reports."""

    size: str
    device: str
    precision: str
    threads: int
    peak_before: Peak
    peak_after: Peak
    towers: tuple[TowerResult, ...]

    @property
    def peak_flops_per_second(self) -> float:
        return higher_peak(self.peak_before, self.peak_after)

    def mfu(self, tower: TowerResult) -> float:
        """FLOPs utilisation of ``tower`` as a fraction of the matmul peak."""
        return tower.flops / tower.timing.median / self.peak_flops_per_second


def bench_encode(
    *,
    size: str = "base",
    batch: int = 32,
    device: torch.device | None = None,
    precision: str = "auto",
    warmup: int = 1,
    repeat: int = 3,
) -> EncodeResult:
    """Measure image and caption encoding of ``batch`` items at ``size``.

    Args:
        size: "base" (ViT-B/16, 384x128) or "tiny".
        batch: images (and captions) per call.
        device: CPU when None.
        precision: "auto" (fp32 on CPU, bf16 on CUDA), "fp32", "bf16" or "fp16" (autocast).
        warmup, repeat: untimed calls (the first one counts the FLOPs) and timed calls.
    """
    device = torch.device("cpu") if device is None else device
    precision = resolve_precision(precision, device)
    model = build_bench_model(size, device).eval()
    clip = model.config.clip
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *clip.vision.image_size, generator=gen).to(device)
    texts = caption_ids(batch, clip.text.context_length, gen).to(device)
    calls = {
        "images": lambda: model.encode_image(images),
        "captions": lambda: model.encode_text(texts),
    }
    peak_before = matmul_peak(device, PRECISION_DTYPES[precision])
    towers = []
    with torch.inference_mode(), autocast(device, precision):
        for name, call in calls.items():
            flops = count_flops(call)
            timing = time_call(call, device, warmup=max(warmup - 1, 0), repeat=repeat)
            logger.info("encode %s: median %.3f s per %d", name, timing.median, batch)
            towers.append(TowerResult(name, batch, flops, timing))
    peak_after = matmul_peak(device, PRECISION_DTYPES[precision])
    return EncodeResult(
        size=size,
        device=str(device),
        precision=precision,
        threads=torch.get_num_threads(),
        peak_before=peak_before,
        peak_after=peak_after,
        towers=tuple(towers),
    )
