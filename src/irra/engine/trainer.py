"""The step loop. Everything else (evaluation, checkpoints, logging, progress) is a hook."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from irra.engine.checkpoint import rng_state, set_rng_state
from irra.engine.distributed import DistContext, bare_module, mean_over_processes
from irra.runtime import autocast, make_grad_scaler

logger = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


class Hook:
    """Base class of trainer hooks; override what you need. Hooks run in list order."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Called once before the first epoch (also after a resume)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Called before 0-based ``epoch``."""

    def after_step(self, trainer: Trainer, logs: dict[str, float]) -> None:
        """Called after every optimiser step with the step's losses, lr and batch size."""

    def after_epoch(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        """Called after 0-based ``epoch`` with its mean losses; hooks may add entries to logs."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """Called once after the last epoch."""


@dataclass
class TrainState:
    """What a resumed run needs besides module and optimiser states."""

    epoch: int = 0  # number of completed epochs
    step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)


class Trainer:
    """Runs epochs of ``loss_fn`` + backward + optimiser step, calling hooks around them.

    Args:
        model: the model, already on ``device``.
        loss_fn: ``loss_fn(model, batch) -> dict`` with the total under ``"loss"``.
        optimizer: the optimiser; ``scheduler`` is stepped once per epoch.
        train_loader: yields batch dicts; its sampler gets ``set_epoch(epoch)`` if it has one.
        epochs: total number of epochs.
        device, precision: where and how to compute ("fp32", "bf16", "fp16").
        grad_clip: max global gradient norm, or None.
        hooks: evaluation, checkpointing, logging, progress (in a multi-process run, the caller
            gives the writing hooks to rank 0 only).
        dist_ctx: the process group of a multi-process run (``model`` is then wrapped in DDP and
            ``loss_fn`` returns each process's share); logged values are averaged over processes
            and ``batch_size`` is the global batch.
        train_mode: the module mode of the training epochs; False trains in eval mode (RDE's
            published behaviour, see ``rde.eval_mode_training``).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        train_loader: Iterable[dict[str, Any]],
        *,
        epochs: int,
        device: torch.device,
        precision: str = "fp32",
        grad_clip: float | None = None,
        hooks: Sequence[Hook] = (),
        dist_ctx: DistContext | None = None,
        train_mode: bool = True,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_loader = train_loader
        self.epochs = epochs
        self.device = device
        self.precision = precision
        self.grad_clip = grad_clip
        self.hooks = list(hooks)
        self.dist_ctx = dist_ctx or DistContext()
        self.train_mode = train_mode
        self.scaler = make_grad_scaler(device, precision)
        self.state = TrainState()

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: modules, optimiser, schedule, scaler, counters, RNG.

        The model's state dict is taken inside any DDP wrapper (no ``module.`` prefixes), so a
        checkpoint of N processes loads in one process and vice versa.
        """
        return {
            "model": bare_module(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "trainer": {
                "epoch": self.state.epoch,
                "step": self.state.step,
                "best_metric": self.state.best_metric,
                "best_epoch": self.state.best_epoch,
                "history": self.state.history,
            },
            "rng": rng_state(),
        }

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        bare_module(self.model).load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.scaler.load_state_dict(data["scaler"])
        t = data["trainer"]
        self.state = TrainState(
            epoch=int(t["epoch"]),
            step=int(t["step"]),
            best_metric=t["best_metric"],
            best_epoch=t["best_epoch"],
            history=list(t["history"]),
        )
        set_rng_state(data["rng"])

    # ------------------------------------------------------------------ loop
    def _call(self, name: str, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, name)(self, *args)

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()
        }

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimiser step on ``batch``; returns the detached losses."""
        batch = self._to_device(batch)
        with autocast(self.device, self.precision):
            out = self.loss_fn(self.model, batch)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss at step {self.state.step}: "
                + ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in out.items())
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.state.step += 1
        values = mean_over_processes(out, self.dist_ctx)
        logs = {k: float(v) for k, v in values.items()}
        logs["lr"] = self.optimizer.param_groups[0]["lr"]
        logs["batch_size"] = float(len(batch["pids"]) * self.dist_ctx.world_size)
        return logs

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Run one epoch; returns the sample-weighted mean of every logged quantity."""
        self.model.train(self.train_mode)
        # The sampler's order and the per-sample augmentation and masking derive from the epoch.
        seen: list[Any] = []
        for name in ("batch_sampler", "sampler", "dataset"):
            obj = getattr(self.train_loader, name, None)
            if hasattr(obj, "set_epoch") and not any(obj is o for o in seen):
                obj.set_epoch(epoch)
                seen.append(obj)
        sums: dict[str, float] = {}
        count = 0.0
        start = time.perf_counter()
        for batch in self.train_loader:
            logs = self.train_step(batch)
            n = logs["batch_size"]
            count += n
            for k, v in logs.items():
                if k != "batch_size":
                    sums[k] = sums.get(k, 0.0) + v * n
            self._call("after_step", logs)
        means = {k: v / max(count, 1.0) for k, v in sums.items()}
        means["epoch_time"] = time.perf_counter() - start
        means["samples"] = count
        return means

    def fit(self) -> TrainState:
        """Train from ``state.epoch`` to ``epochs``, calling the hooks."""
        self._call("on_fit_start")
        for epoch in range(self.state.epoch, self.epochs):
            self._call("on_epoch_start", epoch)
            logs = self.train_epoch(epoch)
            self.scheduler.step()
            self.state.epoch = epoch + 1
            logs["epoch"] = float(epoch + 1)
            self.state.history.append(logs)  # hooks add their entries (metrics) to this dict
            self._call("after_epoch", epoch, logs)
        self._call("on_fit_end")
        return self.state
