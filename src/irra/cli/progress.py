"""Progress bars (tqdm) for the command line, the only place that draws them.

Library code takes these as callbacks: ``bar`` wraps an iterable (``progress(iterable, desc,
total)``), ``counter`` follows a ``callback(done, total)``, ``TrainProgressHook`` is a trainer
hook. No PyTorch here: ``irra index --engine onnx`` draws these without importing it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from irra.engine.trainer import Trainer

__all__ = ["Counter", "TrainProgressHook", "bar", "counter", "new_bar"]


def new_bar(total: int | None, desc: str, unit: str = "it", disable: bool = False) -> Any:
    """An open bar on stderr that vanishes when closed (``update(n)``, ``close()``)."""
    return tqdm(
        total=total or None,
        desc=desc,
        unit=unit,
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=disable,
    )


def bar(iterable: Iterable, desc: str = "", total: int | None = None) -> Iterable:
    """Wrap ``iterable`` in a progress bar."""
    return tqdm(
        iterable, desc=desc, total=total or None, leave=False, dynamic_ncols=True, file=sys.stderr
    )


class Counter:
    """A ``callback(done, total)`` that drives a bar, closed when ``done`` reaches ``total``.

    Call :meth:`close` when the work stops early (an error), so that the bar is removed.
    """

    def __init__(self, desc: str, unit: str = "it", disable: bool = False) -> None:
        self.desc, self.unit, self.disable = desc, unit, disable
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = new_bar(total, self.desc, self.unit, self.disable)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        """Remove the bar (safe to call more than once)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def counter(desc: str, unit: str = "it", disable: bool = False) -> Counter:
    """A :class:`Counter` for ``desc``."""
    return Counter(desc, unit, disable)


class TrainProgressHook:
    """One bar per epoch with loss, learning rate and throughput.

    A trainer hook (the interface of :class:`irra.engine.trainer.Hook`, written out here so that
    this module needs no PyTorch).
    """

    def __init__(self) -> None:
        self.pbar: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        """Nothing to draw before the first epoch."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        loader = trainer.train_loader
        total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
        self.pbar = new_bar(total, f"epoch {epoch + 1}/{trainer.epochs}")

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

    def on_fit_end(self, trainer: Trainer) -> None:
        """Nothing left to close."""
