"""Trainer hooks: evaluation and model selection, checkpoints, JSON-lines log, TensorBoard."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from irra.engine import run_files
from irra.engine.checkpoint import checkpoint_bytes
from irra.engine.trainer import Hook, Trainer
from irra.fileio import atomic_write, atomic_write_bytes

logger = logging.getLogger(__name__)


class EvalHook(Hook):
    """Evaluates splits every ``every`` epochs (and after the last) and tracks the best epoch.

    Args:
        evaluate: ``evaluate(split) -> metrics`` (percent), for each name in ``splits``.
        splits: the splits to evaluate during training, e.g. ``["val"]``.
        select_split: the split whose ``select_metric`` chooses the best epoch; None selects the
            last epoch (for datasets without a val split).
        every: evaluation period in epochs.
    """

    def __init__(
        self,
        evaluate: Callable[[str], dict[str, float]],
        splits: list[str],
        select_split: str | None,
        select_metric: str = "R1",
        every: int = 1,
    ) -> None:
        self.evaluate = evaluate
        self.splits = splits
        self.select_split = select_split
        self.select_metric = select_metric
        self.every = max(1, every)
        self.improved = False

    def after_epoch(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        self.improved = False
        last = epoch + 1 == trainer.epochs
        if self.select_split is None:
            trainer.state.best_epoch = epoch + 1
            self.improved = True
        if not (last or (epoch + 1) % self.every == 0):
            return
        for split in self.splits:
            metrics = self.evaluate(split)
            logs.update({f"{split}/{k}": v for k, v in metrics.items()})
            logger.info(
                "epoch %d %s: %s",
                epoch + 1,
                split,
                "  ".join(f"{k} {v:.2f}" for k, v in metrics.items()),
            )
        if self.select_split is not None:
            value = logs[f"{self.select_split}/{self.select_metric}"]
            best = trainer.state.best_metric
            if best is None or value > best:
                trainer.state.best_metric = value
                trainer.state.best_epoch = epoch + 1
                self.improved = True
                logger.info(
                    "new best %s %s %.2f at epoch %d",
                    self.select_split,
                    self.select_metric,
                    value,
                    epoch + 1,
                )


class JsonlLogHook(Hook):
    """Appends one JSON line per epoch (losses, learning rate and any metrics) to ``path``.

    On a resume, lines of epochs after the resumed checkpoint are dropped first, so the log never
    holds an epoch twice.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def on_fit_start(self, trainer: Trainer) -> None:
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if record.get("epoch", math.inf) <= trainer.state.epoch:
                kept.append(line)
        text = "".join(line + "\n" for line in kept)
        atomic_write(self.path, lambda handle: handle.write(text.encode("utf-8")))

    def after_epoch(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        record = {"epoch": epoch + 1, "step": trainer.state.step, **logs}
        record["epoch"] = epoch + 1
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


class CheckpointHook(Hook):
    """Writes ``last.pt`` after every epoch and ``best.pt`` when the selection improves.

    Args:
        folder: where the checkpoints go.
        extra: called at save time; its dict (config, sampler state...) is stored beside the
            trainer state.
        eval_hook: the hook that decides whether the epoch is the best so far.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        extra: Callable[[], dict[str, Any]],
        eval_hook: EvalHook,
    ) -> None:
        self.folder = Path(folder)
        self.extra = extra
        self.eval_hook = eval_hook

    def after_epoch(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        # best.pt first: last.pt records the best epoch, so once last.pt is on disk, best.pt must
        # already hold that epoch. A kill between the two writes leaves the previous last.pt;
        # the resumed run repeats the epoch and writes the same best.pt again.
        blob = checkpoint_bytes({**trainer.state_dict(), **self.extra()})
        if self.eval_hook.improved:
            atomic_write_bytes(self.folder / run_files.BEST, blob)
        atomic_write_bytes(self.folder / run_files.LAST, blob)


class TensorBoardHook(Hook):
    """Scalars for TensorBoard: step losses every ``every`` steps, epoch means and metrics."""

    def __init__(self, folder: str | os.PathLike[str], every: int = 50) -> None:
        self.folder = Path(folder)
        self.every = max(1, every)
        self.writer: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.warning(
                "tensorboard is not installed: no TensorBoard scalars (pip install tensorboard)"
            )
            return
        self.writer = SummaryWriter(str(self.folder), purge_step=trainer.state.step or None)

    def after_step(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self.writer is not None and trainer.state.step % self.every == 0:
            for key, value in logs.items():
                if key != "batch_size":
                    self.writer.add_scalar(f"step/{key}", value, trainer.state.step)

    def after_epoch(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in logs.items():
            tag = key if "/" in key else f"epoch/{key}"
            self.writer.add_scalar(tag, value, epoch + 1)
        self.writer.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
