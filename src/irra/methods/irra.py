"""The IRRA method's objective: one forward pass turned into weighted losses.

The model computes features and logits; this module chooses and weights the losses
(:mod:`irra.losses` holds the math). Loss names: ``sdm``, ``itc``, ``cmpm``, ``id``, ``mlm``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from irra import losses
from irra.engine.distributed import DistContext, all_gather_rows, gather_with_grad, mean_share
from irra.model.irra import IRRA, IRRAOutput, parse_loss_names

#: The losses of the IRRA method.
LOSSES = ("sdm", "itc", "cmpm", "id", "mlm")
#: Losses of pairs of samples (similarities within the batch): they see the gathered global batch.
PAIRWISE_LOSSES = ("sdm", "itc", "cmpm")


def unwrap(model: nn.Module) -> IRRA:
    """The :class:`IRRA` inside a DDP / ``torch.compile`` wrapper (or ``model`` itself)."""
    inner = model
    for attr in ("module", "_orig_mod", "module"):
        if not isinstance(inner, IRRA) and hasattr(inner, attr):
            inner = getattr(inner, attr)
    if not isinstance(inner, IRRA):
        raise TypeError(f"expected an IRRA model (possibly wrapped), got {type(model).__name__}")
    return inner


def compute_losses(
    model: nn.Module,
    batch: Mapping[str, Tensor],
    *,
    loss_names: str | Sequence[str] | None = None,
    mlm_weight: float | None = None,
    id_weight: float | None = None,
    masked_global_text: bool = True,
    dist_ctx: DistContext | None = None,
    global_batch: bool = True,
) -> dict[str, Tensor]:
    """Weighted training losses of one batch.

    Args:
        model: an :class:`IRRA`, possibly wrapped by DDP or ``torch.compile`` (it is called
            through ``model(...)`` so wrappers see the forward pass).
        batch: ``images`` (B, 3, H, W) float, ``caption_ids`` (B, L) long, ``pids`` (B,) long,
            and for the MLM loss ``mlm_ids`` (B, L) long and ``mlm_labels`` (B, L) long
            (0 = not masked).
        loss_names: losses to compute; the model config's when None.
        mlm_weight, id_weight: loss weights; the model config's when None.
        masked_global_text: the setting ``data.masked_global_text``. True (the reference
            behaviour, where captions are masked in place; the batch's ``caption_ids`` then equal
            its ``mlm_ids``): one text pass on ``mlm_ids`` gives both the global text feature
            and the MLM tokens. False: two passes, the clean ``caption_ids`` for the global
            feature. Without the MLM loss there is one pass on ``caption_ids``.
        dist_ctx: the process group when training with several processes (None: one process).
        global_batch: with several processes, True makes every loss the loss of the global batch
            (the batches of all processes together): SDM, ITC and CMPM are computed on features
            gathered from every process (gradients flow back to their owners), and the ID and MLM
            means run over all samples / masked positions. False computes each process's losses
            on its own part only (the reference code's behaviour under DDP).

    Returns:
        The configured weighted losses (scalars) under their names, ``"loss"`` (their sum), and
        detached accuracies ``img_acc``, ``txt_acc`` (with "id") and ``mlm_acc`` (with "mlm").
        With several processes and ``global_batch``, each value is this process's share: the mean
        over processes (what DDP applies to the gradients, and what
        :func:`irra.engine.distributed.mean_over_processes` logs) is the global-batch value.
    """
    irra_model = unwrap(model)
    config = irra_model.config
    names = config.loss_names if loss_names is None else parse_loss_names(loss_names)
    mlm_weight = config.mlm_loss_weight if mlm_weight is None else mlm_weight
    id_weight = config.id_loss_weight if id_weight is None else id_weight
    others = [n for n in names if n not in LOSSES]
    if others:
        raise ValueError(f"{others} are not IRRA losses; valid: {', '.join(LOSSES)}")
    if "id" in names and irra_model.classifier is None:
        raise ValueError("the 'id' loss needs a model built with 'id' in loss_names")
    if "mlm" in names and not irra_model.has_mlm:
        raise ValueError("the 'mlm' loss needs a model built with 'mlm' in loss_names")

    caption_ids = batch["caption_ids"]
    pids = batch["pids"]
    mlm_ids = mlm_labels = mlm_mask = None
    share = False
    if "mlm" in names:
        mlm_ids, mlm_labels = batch["mlm_ids"], batch["mlm_labels"]
        mlm_mask = mlm_labels != 0
        share = masked_global_text
    # The MLM targets as class indices of the model's head (the original ids, or their rows in a
    # kept vocabulary subset).
    labels = None if mlm_labels is None else irra_model.mlm_classes(mlm_labels[mlm_mask])
    out = model(
        batch["images"],
        caption_ids,
        mlm_ids,
        mlm_mask,
        share_text_pass=share,
        classify="id" in names,
        mlm_labels=labels,
    )

    weights = {"id": id_weight, "mlm": mlm_weight}
    ctx = dist_ctx if dist_ctx is not None and global_batch else DistContext()
    pair_out, pair_pids = out, pids
    if ctx.distributed and any(name in PAIRWISE_LOSSES for name in names):
        pair_out = out._replace(
            image_feats=gather_with_grad(out.image_feats, ctx),
            text_feats=gather_with_grad(out.text_feats, ctx),
        )
        pair_pids = all_gather_rows(pids, ctx)
    # Per-item means are weighted by their item counts (samples; masked positions).
    counts = {"id": pids.numel(), "mlm": labels.numel() if labels is not None else 0}
    result: dict[str, Tensor] = {}
    with torch.autocast(out.image_feats.device.type, enabled=False):  # losses in float32
        for name in names:
            if name in PAIRWISE_LOSSES:
                value = _loss(name, pair_out, pair_pids, labels, 1.0 / config.temperature)
            else:
                value = _loss(name, out, pids, labels, 1.0 / config.temperature)
                value = mean_share(value, counts[name], ctx)
            result[name] = weights.get(name, 1.0) * value
        result["loss"] = torch.stack(list(result.values())).sum()
    with torch.no_grad():
        if "id" in names:
            result["img_acc"] = mean_share(_accuracy(out.image_logits, pids), counts["id"], ctx)
            result["txt_acc"] = mean_share(_accuracy(out.text_logits, pids), counts["id"], ctx)
        if "mlm" in names:
            if out.mlm_correct is not None:
                acc = out.mlm_correct.float() / max(labels.numel(), 1)
            else:
                acc = _accuracy(out.mlm_logits, labels)
            result["mlm_acc"] = mean_share(acc, counts["mlm"], ctx)
    return result


def _loss(
    name: str, out: IRRAOutput, pids: Tensor, mlm_labels: Tensor | None, logit_scale: float
) -> Tensor:
    """The unweighted loss ``name`` of a forward output (features are float32)."""
    if name == "sdm":
        return losses.sdm_loss(out.image_feats, out.text_feats, pids, logit_scale)
    if name == "itc":
        return losses.itc_loss(out.image_feats, out.text_feats, logit_scale)
    if name == "cmpm":
        return losses.cmpm_loss(out.image_feats, out.text_feats, pids)
    if name == "id":
        return losses.id_loss(out.image_logits.float(), out.text_logits.float(), pids)
    if out.mlm_loss is not None:  # computed fused in the forward pass
        return out.mlm_loss
    if mlm_labels.numel() == 0:  # nothing masked in this batch: no MLM signal
        return out.mlm_logits.sum() * 0.0
    return losses.mlm_loss(out.mlm_logits.float(), mlm_labels)


def _accuracy(logits: Tensor, targets: Tensor) -> Tensor:
    """Top-1 accuracy of (N, C) logits against (N,) targets (0 when N == 0)."""
    if targets.numel() == 0:
        return logits.new_zeros(())
    return (logits.detach().argmax(dim=-1) == targets).float().mean()
