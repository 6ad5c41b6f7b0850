"""The learning rate of every epoch equals warm-up + cosine computed independently here."""

import math

import torch

from irra.config import OptimConfig
from irra.engine.optim import build_optimizer, build_scheduler


def expected_factor(epoch: int) -> float:
    # Paper recipe: 5 warm-up epochs rising linearly from 0.1x, then cosine to 0 over 55 epochs.
    if epoch < 5:
        return 0.1 + (1.0 - 0.1) * epoch / 5
    return 0.5 * (1 + math.cos(math.pi * (epoch - 5) / 55))


def test_lr_per_epoch_is_warmup_then_cosine():
    model = torch.nn.Linear(3, 2)
    cfg = OptimConfig()
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, 60, cfg)
    seen = []
    for _epoch in range(60):
        seen.append({g["weight_decay"]: g["lr"] for g in opt.param_groups})
        opt.step()
        sched.step()
    for epoch, lrs in enumerate(seen):
        f = expected_factor(epoch)
        assert math.isclose(lrs[4e-5], 1e-5 * f, rel_tol=1e-9), epoch  # weight
        assert math.isclose(lrs[0.0], 2e-5 * f, rel_tol=1e-9), epoch  # bias: 2x, no decay
    assert math.isclose(seen[0][4e-5], 1e-6)  # 0.1x at the first epoch
    assert math.isclose(seen[5][4e-5], 1e-5)  # full rate right after warm-up


def test_target_lr_is_the_floor_of_the_decay():
    model = torch.nn.Linear(3, 2, bias=False)
    cfg = OptimConfig(target_lr=1e-7, warmup_epochs=0)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, 10, cfg)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    for epoch, lr in enumerate(lrs):
        want = 1e-7 + (1e-5 - 1e-7) * 0.5 * (1 + math.cos(math.pi * epoch / 10))
        assert math.isclose(lr, want, rel_tol=1e-9)
