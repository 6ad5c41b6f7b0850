"""Benchmark of one full IRRA training step, and of the optimisations that make it fast.

A step is exactly what :meth:`irra.engine.trainer.Trainer.train_step` runs: the forward pass,
the SDM + MLM + ID losses, backward and the optimiser step. Besides the step as ``irra`` trains,
``variants`` re-measure it with one optimisation undone at a time (the "before" of each), on the
same model and batch:

- ``two-text-passes``: the text tower runs twice (global pass and MLM pass) although, with the
  reference's in-place masking, both see the same caption;
- ``mlm-all-positions``: MLM vocabulary logits at every caption position, then a cross-entropy
  that ignores the unlabelled ones (instead of the head at the labelled positions only);
- ``mlm-materialised``: logits at the labelled positions, but materialised and given to
  ``F.cross_entropy`` (instead of the fused, vocabulary-chunked linear + cross-entropy);
- ``math-attention``: the unfused attention (``SDPBackend.MATH``: explicit score matrix and
  softmax) instead of the fused ``scaled_dot_product_attention`` kernels;
- ``for-loop-adam``: the per-parameter Adam instead of the multi-tensor (foreach / fused) one;
- ``compile``: the step's model under ``torch.compile`` (an addition, not an undo).

Model FLOPs utilisation (MFU) divides the FLOPs of the step as ``irra`` runs it (matrix products
counted by :func:`irra.bench.peak.count_flops`) by the step time and by the matrix-multiply peak
measured just before and just after (the higher of the two, so MFU is not flattered). Variants
are charged the same model FLOPs: wasted work lowers their utilisation.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from irra import losses
from irra.bench.peak import Peak, count_flops, higher_peak, matmul_peak
from irra.bench.timing import Timing, time_call
from irra.bench.workload import build_bench_model, training_batch
from irra.config import OptimConfig
from irra.engine.optim import build_optimizer
from irra.engine.trainer import Trainer
from irra.methods.irra import compute_losses, unwrap
from irra.runtime import resolve_precision

logger = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = (
    "irra",
    "two-text-passes",
    "mlm-all-positions",
    "mlm-materialised",
    "math-attention",
    "for-loop-adam",
    "compile",
)

PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class VariantResult:
    """Timing of one variant; ``executed_flops`` is None where it was not counted (compile)."""

    name: str
    timing: Timing
    executed_flops: int | None


@dataclass(frozen=True)
class TrainStepResult:
    """Everything ``irra bench train-step`` reports. ``rows[0]`` is the step as irra runs it."""

    size: str
    batch: int
    device: str
    precision: str
    threads: int
    model_flops: int
    peak_before: Peak
    peak_after: Peak
    rows: tuple[VariantResult, ...]

    @property
    def peak_flops_per_second(self) -> float:
        return higher_peak(self.peak_before, self.peak_after)

    def mfu(self, row: VariantResult) -> float:
        """Model FLOPs utilisation of ``row`` as a fraction of the matmul peak."""
        return self.model_flops / row.timing.median / self.peak_flops_per_second

    def samples_per_second(self, row: VariantResult) -> float:
        return self.batch / row.timing.median

    def speedup(self, row: VariantResult) -> float:
        """How many times faster the irra step is than ``row``."""
        return row.timing.median / self.rows[0].timing.median


def _reference_mlm_losses(model: nn.Module, batch: dict[str, Tensor], *, all_positions: bool):
    """SDM + ID + MLM with materialised vocabulary logits (the straightforward computation)."""
    irra_model = unwrap(model)
    labels = batch["mlm_labels"]
    mask = None if all_positions else labels != 0
    out = model(batch["images"], batch["caption_ids"], batch["mlm_ids"], mask, share_text_pass=True)
    scale = 1.0 / irra_model.config.temperature
    with torch.autocast(out.image_feats.device.type, enabled=False):
        sdm = losses.sdm_loss(out.image_feats, out.text_feats, batch["pids"], scale)
        ident = losses.id_loss(out.image_logits, out.text_logits, batch["pids"])
        if all_positions:
            mlm = F.cross_entropy(out.mlm_logits.flatten(0, 1), labels.flatten(), ignore_index=0)
        else:
            mlm = losses.mlm_loss(out.mlm_logits, labels[mask])
        total = sdm + ident + mlm
    return {"sdm": sdm, "id": ident, "mlm": mlm, "loss": total}


def _loss_fn(variant: str) -> Callable[[nn.Module, dict[str, Tensor]], dict[str, Tensor]]:
    if variant == "two-text-passes":
        return lambda model, batch: compute_losses(model, batch, masked_global_text=False)
    if variant == "mlm-all-positions":
        return lambda model, batch: _reference_mlm_losses(model, batch, all_positions=True)
    if variant == "mlm-materialised":
        return lambda model, batch: _reference_mlm_losses(model, batch, all_positions=False)
    return compute_losses


def build_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Tensor],
    variant: str,
    device: torch.device,
    precision: str,
) -> Callable[[], dict[str, float]]:
    """A no-argument callable running one training step of ``variant`` on ``batch``.

    All variants share ``model`` and ``optimizer`` (one copy of the weights and of the Adam
    state); ``for-loop-adam`` switches the groups' ``foreach`` off during its steps.

    Raises:
        ValueError: unknown variant (the message lists the valid ones).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    step_model = torch.compile(model) if variant == "compile" else model
    trainer = Trainer(
        step_model,
        _loss_fn(variant),
        optimizer,
        scheduler,
        [],
        epochs=1,
        device=device,
        precision=precision,
    )
    on_device = {k: v.to(device) for k, v in batch.items()}

    def step() -> dict[str, float]:
        context = sdpa_kernel(SDPBackend.MATH) if variant == "math-attention" else _no_context()
        saved = [(g.get("foreach"), g.get("fused")) for g in optimizer.param_groups]
        if variant == "for-loop-adam":
            for group in optimizer.param_groups:
                group["foreach"], group["fused"] = False, False
        try:
            with context:
                return trainer.train_step(on_device)
        finally:
            for group, (foreach, fused) in zip(optimizer.param_groups, saved, strict=True):
                group["foreach"], group["fused"] = foreach, fused

    return step


def _no_context() -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def bench_train_step(
    *,
    size: str = "base",
    batch: int = 8,
    device: torch.device | None = None,
    precision: str = "auto",
    variants: Sequence[str] = ("irra",),
    warmup: int = 1,
    repeat: int = 3,
) -> TrainStepResult:
    """Measure training steps of ``variants`` ("irra" is always measured, first).

    Args:
        size: "base" (ViT-B/16, 384x128, 11,003 ids) or "tiny".
        batch: samples per step.
        device: CPU when None.
        precision: "auto" (fp32 on CPU, bf16 on CUDA), "fp32", "bf16" or "fp16" (autocast).
        variants: extra variants to measure (see the module docstring).
        warmup, repeat: untimed steps per variant (at least one; the first counts the FLOPs)
            and timed steps per variant (taken in turns, variant after variant).
    """
    device = torch.device("cpu") if device is None else device
    precision = resolve_precision(precision, device)
    names = ["irra", *dict.fromkeys(v for v in variants if v != "irra")]
    model = build_bench_model(size, device)
    model.train()
    optimizer = build_optimizer(model, OptimConfig(warmup_epochs=0, schedule="constant"))
    data = training_batch(model, batch)
    dtype = PRECISION_DTYPES[precision]
    steps = {name: build_step(model, optimizer, data, name, device, precision) for name in names}
    flops: dict[str, int | None] = {}
    for name, step in steps.items():  # count once, then warm up
        flops[name] = None if name == "compile" else count_flops(step)
        time_call(step, device, warmup=warmup - 1, repeat=1)
    peak_before = matmul_peak(device, dtype)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeat):  # interleaved, so that drift of the machine hits every variant
        for name, step in steps.items():
            seconds[name].extend(time_call(step, device, warmup=0, repeat=1).seconds)
    rows = tuple(VariantResult(n, Timing(tuple(seconds[n])), flops[n]) for n in names)
    for row in rows:
        logger.info("train-step %s: median %.3f s", row.name, row.timing.median)
    model_flops = int(flops["irra"] or 0)
    peak_after = matmul_peak(device, dtype)
    return TrainStepResult(
        size=size,
        batch=batch,
        device=str(device),
        precision=precision,
        threads=torch.get_num_threads(),
        model_flops=model_flops,
        peak_before=peak_before,
        peak_after=peak_after,
        rows=rows,
    )
