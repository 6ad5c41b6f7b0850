"""Optimiser parameter groups and the per-epoch learning-rate schedule of the IRRA recipe.

Learning-rate and weight-decay rules, applied in this order to each parameter name (the order is
the reference's, and it matters for the biases of the heads):

1. every parameter: ``lr``, ``weight_decay``;
2. names containing ``cross`` (cross-attention, cross-modal transformer): ``lr * lr_factor``;
3. names containing ``bias``: ``lr * bias_lr_factor`` and ``weight_decay_bias``;
4. names containing ``classifier`` or ``mlm_head``: ``lr * lr_factor`` (weight decay unchanged);
5. with ``tse_lr`` set, names containing ``emb_layer`` (RDE's token selection heads): ``tse_lr``
   (weight decay unchanged, so their biases keep ``weight_decay_bias``), as in the RDE code.

So with the paper's numbers (lr 1e-5, factors 5 and 2): backbone weights 1e-5, backbone and
cross-modal biases 2e-5 (no decay), cross-modal weights 5e-5, classifier and MLM-head weights and
biases 5e-5 (biases without decay). The LayerNorms around the cross-modal encoder
(``ln_pre_t``, ``ln_pre_i``, ``ln_post``) have no ``cross`` in their names and follow the backbone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from irra.config import OptimConfig


def param_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]], cfg: OptimConfig
) -> list[dict]:
    """One optimiser group per distinct (lr, weight_decay), with the parameter names kept.

    Args:
        named_parameters: ``model.named_parameters()``; frozen parameters are skipped.
        cfg: the optimiser settings.

    Returns:
        Groups ``{"params": [...], "names": [...], "lr": float, "weight_decay": float}``.
    """
    groups: dict[tuple[float, float], dict] = {}
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        lr, weight_decay = cfg.lr, cfg.weight_decay
        if "cross" in name:
            lr = cfg.lr * cfg.lr_factor
        if "bias" in name:
            lr = cfg.lr * cfg.bias_lr_factor
            weight_decay = cfg.weight_decay_bias
        if "classifier" in name or "mlm_head" in name:
            lr = cfg.lr * cfg.lr_factor
        if cfg.tse_lr is not None and "emb_layer" in name:
            lr = cfg.tse_lr
        group = groups.setdefault(
            (lr, weight_decay), {"params": [], "names": [], "lr": lr, "weight_decay": weight_decay}
        )
        group["params"].append(param)
        group["names"].append(name)
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The configured optimiser over :func:`param_groups` of ``model``.

    Uses the fused implementation on CUDA and the multi-tensor (foreach) one on CPU unless
    ``cfg.fused`` says otherwise.
    """
    groups = param_groups(model.named_parameters(), cfg)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    on_cuda = next(model.parameters()).is_cuda
    fused = on_cuda if cfg.fused is None else cfg.fused
    impl = {"fused": True} if fused else {"foreach": True}
    name = cfg.optimizer.lower()
    if name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, **impl)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, **impl)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, **impl)
    raise ValueError(f"unknown optimizer '{cfg.optimizer}'; valid: adam, adamw, sgd")


def lr_factor(epoch: int, total_epochs: int, cfg: OptimConfig) -> float:
    """Multiplier of the base learning rates during 0-based ``epoch``.

    Linear warm-up from ``warmup_factor`` over ``warmup_epochs`` epochs, then the configured decay
    to ``target_lr`` (as a fraction of each base rate it is reached only after the last epoch).
    """
    if epoch < cfg.warmup_epochs:
        alpha = epoch / cfg.warmup_epochs
        return cfg.warmup_factor * (1.0 - alpha) + alpha
    span = max(total_epochs - cfg.warmup_epochs, 1)
    progress = (epoch - cfg.warmup_epochs) / span
    if cfg.schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif cfg.schedule == "linear":
        decay = 1.0 - progress
    elif cfg.schedule == "constant":
        decay = 1.0
    else:
        raise ValueError(f"unknown schedule '{cfg.schedule}'; valid: cosine, linear, constant")
    return decay


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_epochs: int, cfg: OptimConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-epoch scheduler: call ``step()`` once at the end of every epoch.

    ``target_lr`` is honoured per group: ``lr = target + (base - target) * decay`` after warm-up.
    """
    base_lrs = [group["lr"] for group in optimizer.param_groups]

    def make(base: float):
        def factor(epoch: int) -> float:
            f = lr_factor(epoch, total_epochs, cfg)
            if epoch < cfg.warmup_epochs or base == 0:
                return f
            return (cfg.target_lr + (base - cfg.target_lr) * f) / base

        return factor

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [make(b) for b in base_lrs])
