"""What a method is: its losses, its objective, its per-epoch hooks and how it scores.

A method is a named :class:`Method` in :data:`irra.methods.METHODS`. The model computes features
and heads (``irra.model``); the method's objective turns them into one weighted loss per step,
its hooks run around the epochs (RDE's clean-sample division), and it scores a query against
the gallery through the model's retrieval embedding (``encode_text`` / ``encode_image``, joined
so that their cosine is the method's score), so evaluation, indexes and exports need no
method-specific code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from irra.config import Config, ConfigError
from irra.engine.distributed import DistContext
from irra.engine.trainer import Hook, LossFn


class MethodError(ConfigError):
    """An unknown method, or settings the method does not have; the message lists valid ones."""


@dataclass
class MethodSetup:
    """What a method's objective and hooks may use in a training run.

    Attributes:
        config: the run's config (a method reads its own sections).
        dist_ctx: the process group.
        device, precision: where and how the model computes.
        train_dataset: the training samples (items carry their ``index``).
        batch_size: the batch of this process.
        clean_pairs: (N,) bool, False where ``data.noise_rate``/``noise_index`` corrupted the
            pair; None without injected noise.
    """

    config: Config
    dist_ctx: DistContext
    device: torch.device
    precision: str
    train_dataset: Any
    batch_size: int
    clean_pairs: np.ndarray | None = None


def _no_hooks(setup: MethodSetup, objective: LossFn) -> list[Hook]:
    return []


@dataclass(frozen=True)
class Method:
    """A training method.

    Attributes:
        name: the registry key (``model.method``).
        description: one line for listings.
        losses: the loss names it has (``loss.names`` must be a non-empty subset).
        build_objective: ``setup -> loss_fn(model, batch) -> dict`` with the total under
            ``"loss"``.
        build_hooks: ``(setup, objective) -> hooks`` run before the run's own hooks.
        train_mode: ``config -> bool``, the module mode of the training epochs (False: eval).
    """

    name: str
    description: str
    losses: tuple[str, ...]
    build_objective: Callable[[MethodSetup], LossFn]
    build_hooks: Callable[[MethodSetup, LossFn], list[Hook]] = field(default=_no_hooks)
    train_mode: Callable[[Config], bool] = field(default=lambda config: True)

    def check_losses(self, names: Sequence[str]) -> None:
        """Raise :class:`MethodError` unless ``names`` is a non-empty subset of :attr:`losses`."""
        unknown = [n for n in names if n not in self.losses]
        if unknown or not names:
            raise MethodError(
                f"loss.names {list(names)}: {unknown or 'empty'} not losses of method "
                f"'{self.name}'; it has {', '.join(self.losses)} (set loss.names, e.g. "
                f"loss.names=[{','.join(self.losses)}])"
            )
