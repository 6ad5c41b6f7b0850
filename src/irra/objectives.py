"""Training objectives: one forward pass of IRRA turned into weighted losses.

The model computes features and logits; this module chooses and weights the losses
(:mod:`irra.losses` holds the math). Loss names: ``sdm``, ``itc``, ``cmpm``, ``id``, ``mlm``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from irra import losses
from irra.model.irra import IRRA, IRRAOutput, parse_loss_names


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
    same_text_input: bool | None = None,
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
        same_text_input: True: one text pass on ``mlm_ids`` gives both the global text feature
            and the MLM tokens (the reference behaviour, where captions are masked in place).
            False: two passes (clean caption for the global feature). None: one pass exactly when
            ``caption_ids`` and ``mlm_ids`` are the same tensor or equal.

    Returns:
        The configured weighted losses (scalars) under their names, ``"loss"`` (their sum), and
        detached accuracies ``img_acc``, ``txt_acc`` (with "id") and ``mlm_acc`` (with "mlm").
    """
    irra_model = unwrap(model)
    config = irra_model.config
    names = config.loss_names if loss_names is None else parse_loss_names(loss_names)
    mlm_weight = config.mlm_loss_weight if mlm_weight is None else mlm_weight
    id_weight = config.id_loss_weight if id_weight is None else id_weight
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
        share = same_text_input
        if share is None:
            share = mlm_ids is caption_ids or (
                mlm_ids.shape == caption_ids.shape and bool(torch.equal(mlm_ids, caption_ids))
            )
    out = model(
        batch["images"],
        caption_ids,
        mlm_ids,
        mlm_mask,
        share_text_pass=share,
        classify="id" in names,
        mlm_labels=mlm_labels[mlm_mask] if mlm_labels is not None else None,
    )

    weights = {"id": id_weight, "mlm": mlm_weight}
    labels = mlm_labels[mlm_mask] if mlm_labels is not None else None
    result: dict[str, Tensor] = {}
    with torch.autocast(out.image_feats.device.type, enabled=False):  # losses in float32
        for name in names:
            value = _loss(name, out, pids, labels, 1.0 / config.temperature)
            result[name] = weights.get(name, 1.0) * value
        result["loss"] = torch.stack(list(result.values())).sum()
    with torch.no_grad():
        if "id" in names:
            result["img_acc"] = _accuracy(out.image_logits, pids)
            result["txt_acc"] = _accuracy(out.text_logits, pids)
        if "mlm" in names and out.mlm_correct is not None:
            result["mlm_acc"] = out.mlm_correct.float() / max(labels.numel(), 1)
        elif "mlm" in names:
            result["mlm_acc"] = _accuracy(out.mlm_logits, labels)
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
