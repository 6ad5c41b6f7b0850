"""Device and numeric-precision choices, made once per run."""

from __future__ import annotations

import contextlib
import logging

import torch

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` gives CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' was asked for but CUDA is not available; use cpu")
    return device


def resolve_precision(name: str, device: torch.device) -> str:
    """``"auto"``: bf16 on CUDA, fp32 on CPU (bf16 autocast is far slower on most CPUs)."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision '{name}'; valid: {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise ValueError("fp16 needs CUDA; use fp32 (or bf16) on CPU")
    return name


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` (weights stay fp32; only the math is lowered)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
