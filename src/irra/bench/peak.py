"""The machine's matrix-multiply peak and the FLOPs of a piece of work.

Utilisation figures divide counted FLOPs per second by the peak that a large ``torch.mm`` in the
same precision reaches on the same device in the same run, so they stay meaningful when a shared
machine's absolute speed drifts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from irra.bench.timing import Timing, time_call

#: Side of the square matrices of the peak measurement, per device type.
PEAK_SIZES = {"cpu": 2048, "cuda": 8192}


@dataclass(frozen=True)
class Peak:
    """Matrix-multiply throughput: ``flops_per_second`` from the median of ``timing``."""

    size: int
    dtype: torch.dtype
    timing: Timing

    @property
    def flops_per_second(self) -> float:
        return 2.0 * self.size**3 / self.timing.median


def higher_peak(before: Peak, after: Peak) -> float:
    """FLOP/s of the faster of two peak measurements (taken before and after the work)."""
    return max(before.flops_per_second, after.flops_per_second)


def describe_peaks(before: Peak, after: Peak) -> str:
    """``"matmul peak B / A GFLOP/s (before / after)"`` for report titles."""
    return (
        f"matmul peak {before.flops_per_second / 1e9:.1f} / "
        f"{after.flops_per_second / 1e9:.1f} GFLOP/s (before / after)"
    )


def matmul_peak(
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    *,
    size: int | None = None,
    repeat: int = 5,
) -> Peak:
    """Time ``torch.mm`` of two (size, size) random matrices of ``dtype`` on ``device``.

    Args:
        device: where to multiply.
        dtype: the precision of the work it is compared with (float32 on CPU).
        size: matrix side; ``PEAK_SIZES[device.type]`` when None.
        repeat: timed multiplications (after two untimed ones).
    """
    size = PEAK_SIZES.get(device.type, 2048) if size is None else size
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    timing = time_call(lambda: torch.mm(a, b, out=out), device, warmup=2, repeat=repeat)
    return Peak(size, dtype, timing)


def _cpu_flash_forward(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_flash_backward(
    grad_out: Any, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any
) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def _extra_formulas() -> dict[Any, Callable[..., int]]:
    """FLOP formulas torch's counter lacks: the CPU flash-attention kernels (full, not causal,
    attention matrix counted, as torch does for the CUDA kernels)."""
    aten = torch.ops.aten
    return {
        aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward,
    }


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matrix products (mm, bmm, addmm, convolutions, attention) run by ``fn``.

    One multiply-add counts 2; element-wise work is not counted (the usual "model FLOPs").
    """
    counter = FlopCounterMode(display=False, custom_mapping=_extra_formulas())
    with counter:
        fn()
    return int(counter.get_total_flops())
