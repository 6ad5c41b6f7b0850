"""The RDE method (Qin et al., CVPR 2024): robust learning from noisy image-text pairs.

- Heads: the global embedding (BGE) and the token selection embedding (TSE) of each modality
  (:mod:`irra.model.tse`), built when "tse" is among the losses.
- Objective: the triplet alignment loss (:func:`irra.losses.tal_loss`) per sample for BGE
  ("bge") and TSE ("tse"), weighted by the sample's clean/noisy weight and *summed* over the
  batch (the authors' reduction).
- Per-epoch hook: before every epoch, the per-sample TAL of every training pair is computed
  without gradients and :func:`irra.methods.division.consensus_division` sets the weights;
  with injected noise the division is scored against the corrupted pairs and the scores are
  logged with the epoch (``division/clean_precision`` ...).
- Scoring: the mean of the BGE and TSE cosine similarities (the model's joined retrieval
  embedding, :func:`irra.model.irra.join_parts`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from irra import losses
from irra.data.loaders import collate_batch
from irra.data.rng import derive_seed
from irra.engine.distributed import DistContext, all_gather_rows, gather_with_grad
from irra.engine.trainer import Hook, Trainer
from irra.methods.base import MethodError, MethodSetup
from irra.methods.division import MixtureSettings, consensus_division, division_scores
from irra.methods.irra import unwrap
from irra.runtime import autocast

logger = logging.getLogger(__name__)

LOSSES = ("bge", "tse")


class RDEObjective:
    """Weighted TAL of the BGE and TSE embeddings.

    Args:
        loss_names: a non-empty subset of ("bge", "tse").
        temperature, margin: TAL's tau and m.
        dist_ctx: the process group (the losses use the global batch: features, identities and
            sample indices gathered from every process).

    Attributes:
        weights: (N,) float per training sample (set by :class:`DivisionHook` before each
            epoch); None weighs every sample 1.
    """

    def __init__(
        self,
        loss_names: tuple[str, ...],
        *,
        temperature: float,
        margin: float,
        dist_ctx: DistContext | None = None,
    ) -> None:
        self.loss_names = loss_names
        self.temperature = temperature
        self.margin = margin
        self.dist_ctx = dist_ctx or DistContext()
        self.weights: Tensor | None = None

    def per_sample(self, model: nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Unweighted per-sample TAL of the global batch: name -> (B_global,), plus ``index``."""
        out = model(batch["images"], batch["caption_ids"])
        ctx = self.dist_ctx
        pids = all_gather_rows(batch["pids"], ctx)
        result = {"index": all_gather_rows(batch["index"], ctx)}
        pairs = {"bge": (out.image_feats, out.text_feats), "tse": (out.image_tse, out.text_tse)}
        with torch.autocast(out.image_feats.device.type, enabled=False):  # losses in float32
            for name in self.loss_names:
                image, text = (gather_with_grad(x.float(), ctx) for x in pairs[name])
                result[name] = losses.tal_loss(image, text, pids, self.temperature, self.margin)
        return result

    def __call__(self, model: nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The weighted losses of one batch: ``bge``, ``tse`` (sums) and ``loss`` (their sum)."""
        per_sample = self.per_sample(model, batch)
        index = per_sample.pop("index")
        weight = None
        if self.weights is not None:
            weight = self.weights.to(index.device)[index]
        result = {
            name: (value if weight is None else value * weight).sum()
            for name, value in per_sample.items()
        }
        result["loss"] = torch.stack(list(result.values())).sum()
        if weight is not None:
            result["clean_share"] = weight.detach().mean()
        return result


class DivisionHook(Hook):
    """Before every epoch: per-sample losses of all training pairs, then the consensus division.

    Args:
        objective: the :class:`RDEObjective` whose weights are set.
        setup: the run's :class:`~irra.methods.base.MethodSetup`.
        settings: the mixtures' EM settings.

    The pass runs in eval mode; the trainer then sets the mode of the epoch
    (``rde.eval_mode_training``: eval mode, as the authors' published runs, or train mode).
    """

    def __init__(
        self,
        objective: RDEObjective,
        setup: MethodSetup,
        settings: MixtureSettings,
        start_epoch: int = 1,
    ) -> None:
        self.objective = objective
        self.setup = setup
        self.settings = settings
        self.start_epoch = start_epoch
        self.scores: dict[str, float] = {}

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        setup = self.setup
        if epoch + 1 < self.start_epoch:
            self.objective.weights = None
            self.scores = {}
            logger.info(
                "epoch %d: every pair weighs 1 (the division starts at epoch %d)",
                epoch + 1,
                self.start_epoch,
            )
            return
        seed = setup.config.train.seed
        loss_a, loss_b = self.sample_losses(trainer.model, epoch)
        weights = consensus_division(
            loss_a,
            loss_b,
            seed=derive_seed(seed, epoch, -1, "division") % 2**32,
            settings=self.settings,
        )
        self.objective.weights = torch.from_numpy(weights)
        self.scores = {"judged_clean": 100.0 * float(weights.mean())}
        if setup.clean_pairs is not None:
            self.scores = division_scores(weights, setup.clean_pairs)
        logger.info(
            "epoch %d division: %s",
            epoch + 1,
            "  ".join(f"{k} {v:.2f}" for k, v in self.scores.items()),
        )

    def after_epoch(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        logs.update({f"division/{k}": v for k, v in self.scores.items()})

    @torch.no_grad()
    def sample_losses(self, model: nn.Module, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(N,) per-sample losses of the two branches for every training pair, this epoch.

        The pairs are visited in a random order drawn from (seed, epoch), in batches of the
        training batch size, with the epoch's augmentation; each process computes its share and
        the losses are gathered. A branch that is not trained ("bge" or "tse" missing from the
        losses) copies the other.
        """
        setup, ctx = self.setup, self.setup.dist_ctx
        size = len(setup.train_dataset)
        order = torch.randperm(
            size,
            generator=torch.Generator().manual_seed(
                derive_seed(setup.config.train.seed, epoch, -1, "division-order")
            ),
        ).tolist()
        batches = [order[i : i + setup.batch_size] for i in range(0, size, setup.batch_size)]
        mine = batches[ctx.rank :: ctx.world_size]
        if ctx.distributed and len(mine) < -(-len(batches) // ctx.world_size):
            mine.append(batches[0])  # every process runs as many batches (collectives)
        data = setup.config.data
        loader = DataLoader(
            setup.train_dataset,
            batch_sampler=[[(epoch, i) for i in batch] for batch in mine],
            # with data.cache_images, in this process: its cache then serves every epoch
            num_workers=0 if data.cache_images else data.num_workers,
            collate_fn=collate_batch,
        )
        inner = unwrap(model)
        inner.eval()
        total = {name: torch.zeros(size) for name in LOSSES}
        for batch in loader:
            batch = {k: v.to(setup.device, non_blocking=True) for k, v in batch.items()}
            with autocast(setup.device, setup.precision):
                out = self.objective.per_sample(inner, batch)  # unweighted
            index = out.pop("index").cpu()
            for name, value in out.items():
                total[name][index] = value.float().cpu()
        names = self.objective.loss_names
        loss_a = total[names[0]].numpy()
        loss_b = total[names[-1]].numpy()
        return loss_a, loss_b


def build_objective(setup: MethodSetup) -> RDEObjective:
    """The RDE objective of a run's config (``loss.names``, ``loss.temperature``, ``margin``)."""
    loss = setup.config.loss
    return RDEObjective(
        tuple(loss.names), temperature=loss.temperature, margin=loss.margin, dist_ctx=setup.dist_ctx
    )


def build_hooks(setup: MethodSetup, objective: Any) -> list[Hook]:
    """RDE's per-epoch consensus division.

    Raises:
        MethodError: ``rde.division_start_epoch`` below 1.
    """
    rde = setup.config.rde
    if rde.division_start_epoch < 1:
        raise MethodError(
            f"rde.division_start_epoch must be 1 or more (the first epoch with the division), "
            f"got {rde.division_start_epoch}"
        )
    settings = MixtureSettings(rde.gmm_max_iter, rde.gmm_tol, rde.gmm_reg_covar)
    return [DivisionHook(objective, setup, settings, rde.division_start_epoch)]
