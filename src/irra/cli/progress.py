"""Training progress bars (tqdm) for the command line; ``bar`` and ``counter`` live in bars.py."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

from irra.cli.bars import bar, counter
from irra.engine.trainer import Hook, Trainer

__all__ = ["TrainProgressHook", "bar", "counter"]


class TrainProgressHook(Hook):
    """One bar per epoch with loss, learning rate and throughput."""

    def __init__(self) -> None:
        self.pbar: Any = None

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        total = len(trainer.train_loader) if hasattr(trainer.train_loader, "__len__") else None
        self.pbar = tqdm(
            total=total,
            desc=f"epoch {epoch + 1}/{trainer.epochs}",
            leave=False,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def after_step(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self.pbar is None:
            return
        self.pbar.update(1)
        rate = self.pbar.format_dict.get("rate") or 0.0
        self.pbar.set_postfix(
            loss=f"{logs['loss']:.3f}",
            lr=f"{logs['lr']:.2e}",
            samples_s=f"{rate * logs['batch_size']:.1f}",
            refresh=False,
        )

    def after_epoch(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        if self.pbar is not None:
            self.pbar.close()
            self.pbar = None
