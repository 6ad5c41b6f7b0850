"""The training step: gradient clipping, mixed precision (bf16, fp16 + grad scaler) and the
optimisers, each against values computed by hand. Everything runs on the CPU, pinned."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from irra.bench.workload import build_bench_model, training_batch
from irra.config import OptimConfig
from irra.engine.optim import build_optimizer
from irra.engine.trainer import Trainer
from irra.methods.irra import compute_losses

CPU = torch.device("cpu")


def constant_schedule(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def linear_trainer(weight: list[float], *, lr: float = 1.0, **kwargs) -> tuple[Trainer, nn.Linear]:
    """A trainer of one bias-free linear unit with plain SGD (the update is -lr * gradient)."""
    model = nn.Linear(len(weight), 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([weight]))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    def loss_fn(module: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": module(batch["x"]).sum()}  # gradient: the sum of the rows of x

    trainer = Trainer(
        model, loss_fn, optimizer, constant_schedule(optimizer), [], epochs=1, device=CPU, **kwargs
    )
    return trainer, model


def batch_of(rows: list[list[float]]) -> dict[str, torch.Tensor]:
    return {"x": torch.tensor(rows), "pids": torch.arange(len(rows))}


@pytest.mark.parametrize("clip", [1.0, 10.0])
def test_grad_clip_scales_the_gradient_to_the_max_norm(clip):
    trainer, model = linear_trainer([0.5, -0.5], grad_clip=clip)
    # gradient = (3, 4) + (0, 0) = (3, 4), norm 5
    trainer.train_step(batch_of([[3.0, 4.0], [0.0, 0.0]]))
    factor = min(1.0, clip / 5.0)  # clipped to norm 1 (factor 0.2); a max norm of 10 leaves it
    expected = [0.5 - 3.0 * factor, -0.5 - 4.0 * factor]
    torch.testing.assert_close(model.weight.detach()[0], torch.tensor(expected))


def test_no_grad_clip_takes_the_whole_gradient():
    trainer, model = linear_trainer([0.5, -0.5])
    trainer.train_step(batch_of([[3.0, 4.0]]))
    torch.testing.assert_close(model.weight.detach()[0], torch.tensor([-2.5, -4.5]))


def test_fp16_grad_scaler_skips_a_step_with_an_inf_gradient_and_backs_off():
    trainer, model = linear_trainer([0.5, -0.5], lr=0.1, precision="fp16")
    assert trainer.scaler.is_enabled()
    scale = trainer.scaler.get_scale()
    poison = {"on": True}
    model.weight.register_hook(lambda g: g * math.inf if poison["on"] else g)
    # small inputs, so that the scaled fp16 gradients (at most 2^-9 x 65536 = 128) never overflow
    x = [[2.0**-10, 2.0**-9]]

    trainer.train_step(batch_of(x))
    torch.testing.assert_close(model.weight.detach()[0], torch.tensor([0.5, -0.5]))  # skipped
    assert trainer.scaler.get_scale() == scale * 0.5  # GradScaler's default backoff factor

    poison["on"] = False
    trainer.train_step(batch_of(x))  # applied: the unscaled gradient is x itself (exact in fp16)
    want = torch.tensor([0.5 - 0.1 * 2.0**-10, -0.5 - 0.1 * 2.0**-9])
    torch.testing.assert_close(model.weight.detach()[0], want)
    assert trainer.scaler.get_scale() == scale * 0.5  # no growth before 2000 good steps


def test_a_non_finite_loss_stops_training_with_the_losses_named():
    trainer, _ = linear_trainer([0.5, -0.5])
    with pytest.raises(FloatingPointError, match="non-finite loss at step 0: loss=inf"):
        trainer.train_step(batch_of([[math.inf, 0.0]]))


@pytest.fixture(scope="module")
def tiny_irra_state() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    model = build_bench_model("tiny", CPU)
    return {k: v.clone() for k, v in model.state_dict().items()}, training_batch(model, 8)


def irra_trainer(state, precision: str) -> Trainer:
    model = build_bench_model("tiny", CPU)
    model.load_state_dict(state)
    optimizer = build_optimizer(model, OptimConfig(lr=1e-4, eps=1e-8, warmup_epochs=0))
    return Trainer(
        model,
        compute_losses,
        optimizer,
        constant_schedule(optimizer),
        [],
        epochs=1,
        device=CPU,
        precision=precision,
    )


# Tolerances, relative to the fp32 loss: bf16 keeps 8 bits of mantissa (relative rounding 2^-9),
# fp16 11 bits (2^-12); the losses of the tiny model through ~10 rounded layers differ from fp32 by
# well under 1% (bf16) and 0.1% (fp16).
@pytest.mark.parametrize(("precision", "rtol"), [("bf16", 1e-2), ("fp16", 1e-3)])
def test_mixed_precision_step_is_finite_and_close_to_fp32(tiny_irra_state, precision, rtol):
    state, batch = tiny_irra_state
    want = irra_trainer(state, "fp32").train_step(batch)
    trainer = irra_trainer(state, precision)
    got = trainer.train_step(batch)
    for key in ("loss", "sdm", "mlm", "id"):
        assert math.isfinite(got[key]), key
        assert got[key] == pytest.approx(want[key], rel=rtol), key
    # fp16: the scaler starts at 2^16, where some scaled gradients overflow; it skips those steps
    # and halves the scale until they fit. bf16 has fp32's range and needs no scaler.
    skipped = 0
    while all(torch.equal(p, state[n]) for n, p in trainer.model.named_parameters()):
        assert precision == "fp16" and skipped < 10, "no step was taken"
        skipped += 1
        trainer.train_step(batch)
    if precision == "fp16":
        assert trainer.scaler.get_scale() == 2.0**16 * 0.5**skipped
    else:
        assert skipped == 0 and not trainer.scaler.is_enabled()
    moved, params = 0, dict(trainer.model.named_parameters())
    for name, p in params.items():
        assert p.dtype == torch.float32, name  # autocast lowers the math, never the weights
        assert torch.isfinite(p).all(), name
        moved += int(not torch.equal(p, state[name]))
    assert moved > 0.9 * len(params)  # the step moved (nearly) every weight


# ---------------------------------------------------------------------------- optimisers


def two_steps(optimizer_name: str, **settings) -> list[list[float]]:
    """Weights after each of two steps with the constant gradient (1, -2) of loss = w . (1, -2)."""
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
    cfg = OptimConfig(optimizer=optimizer_name, warmup_epochs=0, fused=False, **settings)
    optimizer = build_optimizer(model, cfg)
    seen = []
    for _ in range(2):
        optimizer.zero_grad()
        (model.weight @ torch.tensor([1.0, -2.0])).sum().backward()
        optimizer.step()
        seen.append(model.weight.detach()[0].tolist())
    return seen


def test_sgd_with_momentum_and_weight_decay_by_hand():
    lr, momentum, wd = 0.1, 0.9, 0.01
    w, buf, want = [1.0, 1.0], None, []
    for _ in range(2):
        d = [gi + wd * wi for gi, wi in zip([1.0, -2.0], w, strict=True)]
        buf = d if buf is None else [momentum * b + di for b, di in zip(buf, d, strict=True)]
        w = [wi - lr * bi for wi, bi in zip(w, buf, strict=True)]
        want.append(w)
    got = two_steps("sgd", lr=lr, momentum=momentum, weight_decay=wd)
    for a, b in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=1e-6)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_and_adamw_by_hand(decoupled):
    lr, (b1, b2), eps, wd = 0.01, (0.8, 0.99), 1e-8, 0.1
    w, m, v, want = [1.0, 1.0], [0.0, 0.0], [0.0, 0.0], []
    for t in (1, 2):
        new = []
        for i, g in enumerate([1.0, -2.0]):
            if decoupled:  # AdamW: the weight shrinks apart from the gradient
                wi = w[i] * (1 - lr * wd)
            else:  # Adam: L2 decay added to the gradient
                wi, g = w[i], g + wd * w[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            new.append(wi - lr * m_hat / (math.sqrt(v_hat) + eps))
        w = new
        want.append(w)
    name = "adamw" if decoupled else "adam"
    got = two_steps(name, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    for a, b in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=1e-6)


def test_an_unknown_optimiser_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid: adam, adamw, sgd"):
        build_optimizer(nn.Linear(2, 1), OptimConfig(optimizer="lamb"))
