"""Training losses of IRRA as pure functions.

Global features are passed *un-normalised*; the functions that need cosine similarities
L2-normalise them. Every function returns a scalar tensor that keeps the autograd graph.

- :func:`sdm_loss`: Similarity Distribution Matching (the paper's alignment loss).
- :func:`itc_loss`: symmetric InfoNCE (image-text contrastive), an ablation.
- :func:`cmpm_loss`: Cross-Modal Projection Matching (Zhang & Lu, ECCV 2018), an ablation.
- :func:`id_loss`: identity classification, averaged over the two modalities.
- :func:`mlm_loss`: masked language modelling over the labelled positions (IRR).
- :func:`tal_loss`: Triplet Alignment Loss of RDE (Qin et al., CVPR 2024), per sample.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cmpm_loss", "id_loss", "itc_loss", "mlm_loss", "sdm_loss", "tal_loss"]


def _check_pair(image_feats: Tensor, text_feats: Tensor, pids: Tensor | None = None) -> None:
    if image_feats.ndim != 2 or image_feats.shape != text_feats.shape:
        raise ValueError(
            "image_feats and text_feats must both be (B, D) with the same shape; got "
            f"{tuple(image_feats.shape)} and {tuple(text_feats.shape)}"
        )
    if pids is not None and pids.reshape(-1).numel() != image_feats.shape[0]:
        raise ValueError(
            f"pids has {pids.numel()} entries but the batch has {image_feats.shape[0]} samples"
        )


def _same_identity(pids: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, B) matrix y with y_ij = 1 where sample i and sample j share an identity, else 0."""
    pids = pids.reshape(-1)
    return (pids[:, None] == pids[None, :]).to(dtype)


def _row_kl(logits: Tensor, log_target: Tensor) -> Tensor:
    """mean_i sum_j p_ij (log p_ij - log_target_ij) with p = softmax(logits, dim=1)."""
    log_p = F.log_softmax(logits, dim=1)
    return (log_p.exp() * (log_p - log_target)).sum(dim=1).mean()


def sdm_loss(
    image_feats: Tensor,
    text_feats: Tensor,
    pids: Tensor,
    logit_scale: float,
    epsilon: float = 1e-8,
) -> Tensor:
    """Similarity Distribution Matching loss.

    With S = normalise(text) @ normalise(image)^T (text rows), y_ij = [pid_i == pid_j],
    q = y / y.sum(1) and p = softmax(logit_scale * S, dim=1)::

        t2i = mean_i sum_j p_ij (log p_ij - log(q_ij + epsilon))
        i2t = the same on S^T (image rows)
        loss = t2i + i2t

    Args:
        image_feats: (B, D) float, global image features (not normalised).
        text_feats: (B, D) float, global text features (not normalised).
        pids: (B,) int, identity of each image-text pair.
        logit_scale: inverse temperature (50 for the paper's 0.02).
        epsilon: added to q inside the log.

    Returns:
        Scalar tensor.

    Example:
        >>> loss = sdm_loss(torch.randn(4, 8), torch.randn(4, 8), torch.tensor([0, 0, 1, 2]), 50.0)
    """
    _check_pair(image_feats, text_feats, pids)
    image_n = F.normalize(image_feats, dim=1)
    text_n = F.normalize(text_feats, dim=1)
    t2i_logits = logit_scale * (text_n @ image_n.t())
    labels = _same_identity(pids, t2i_logits.dtype)
    # y is symmetric, so the same target serves text rows and image rows.
    log_q = torch.log(labels / labels.sum(dim=1, keepdim=True) + epsilon)
    return _row_kl(t2i_logits, log_q) + _row_kl(t2i_logits.t(), log_q)


def itc_loss(image_feats: Tensor, text_feats: Tensor, logit_scale: float) -> Tensor:
    """Symmetric InfoNCE: the i-th image matches the i-th text only.

    loss = (CE(logit_scale * cos(image, text), arange(B)) + CE(... transposed, arange(B))) / 2

    Args:
        image_feats: (B, D) float, not normalised.
        text_feats: (B, D) float, not normalised.
        logit_scale: inverse temperature.

    Returns:
        Scalar tensor.
    """
    _check_pair(image_feats, text_feats)
    image_n = F.normalize(image_feats, dim=1)
    text_n = F.normalize(text_feats, dim=1)
    logits_per_image = logit_scale * (image_n @ text_n.t())
    targets = torch.arange(image_feats.shape[0], device=image_feats.device)
    return (
        F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_image.t(), targets)
    ) / 2


def id_loss(image_logits: Tensor, text_logits: Tensor, pids: Tensor) -> Tensor:
    """Identity classification loss: mean of the image and the text cross-entropies.

    Args:
        image_logits: (B, C) float, classifier output for the image features.
        text_logits: (B, C) float, classifier output for the text features.
        pids: (B,) long, class index of each sample in [0, C).

    Returns:
        Scalar tensor.
    """
    if image_logits.ndim != 2 or image_logits.shape != text_logits.shape:
        raise ValueError(
            "image_logits and text_logits must both be (B, C) with the same shape; got "
            f"{tuple(image_logits.shape)} and {tuple(text_logits.shape)}"
        )
    pids = pids.reshape(-1).long()
    return (F.cross_entropy(image_logits, pids) + F.cross_entropy(text_logits, pids)) / 2


def mlm_loss(logits: Tensor, labels: Tensor, ignore_index: int = 0) -> Tensor:
    """Masked language modelling loss: cross-entropy averaged over labelled positions.

    Positions whose label equals ``ignore_index`` do not count. Logits already restricted to
    the labelled positions work too (then ``labels`` holds no ignored entry). Leading
    dimensions are flattened, so (B, L, V) logits with (B, L) labels are accepted.

    Args:
        logits: (N, V) float, vocabulary scores per position.
        labels: (N,) long, original token id at masked positions, ``ignore_index`` elsewhere.
        ignore_index: label value of the positions that do not count (0 = padding in IRRA).

    Returns:
        Scalar tensor; exactly 0 (still attached to the graph) when no position is labelled.
    """
    logits = logits.reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1).long()
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"mlm_loss: {logits.shape[0]} rows of logits but {labels.shape[0]} labels")
    # Sum over labelled positions / their count (at least 1): no host sync, and exactly 0 (with
    # a graph) when nothing is labelled, where the mean would be NaN.
    per_position = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="none")
    num_labelled = (labels != ignore_index).sum().clamp(min=1)
    return per_position.sum() / num_labelled


def cmpm_loss(
    image_feats: Tensor,
    text_feats: Tensor,
    pids: Tensor,
    epsilon: float = 1e-8,
    *,
    label_normalization: Literal["sum", "l2"] = "sum",
) -> Tensor:
    """Cross-Modal Projection Matching loss (Zhang & Lu, ECCV 2018).

    Each raw feature is projected onto the unit vectors of the other modality:
    image_proj_text = image_feats @ normalise(text)^T and text_proj_image =
    text_feats @ normalise(image)^T (both (B, B)). With y_ij = [pid_i == pid_j] and the
    label distribution q = y / y.sum(1)::

        i2t = mean_i sum_j p_ij (log p_ij - log(q_ij + epsilon)),  p = softmax(image_proj_text)
        t2i = the same with text_proj_image
        loss = i2t + t2i

    Args:
        image_feats: (B, D) float, not normalised (their norm scales the logits).
        text_feats: (B, D) float, not normalised.
        pids: (B,) int identities.
        epsilon: added to q inside the log.
        label_normalization: ``"sum"`` (default) divides y by its row sums, giving a true
            distribution as in the paper. ``"l2"`` divides by the row L2 norms instead, which is
            what the original CMPM and IRRA code do; the two only differ for identities that
            occur more than once in the batch.

    Returns:
        Scalar tensor.
    """
    _check_pair(image_feats, text_feats, pids)
    image_n = F.normalize(image_feats, dim=1)
    text_n = F.normalize(text_feats, dim=1)
    image_proj_text = image_feats @ text_n.t()
    text_proj_image = text_feats @ image_n.t()
    labels = _same_identity(pids, image_proj_text.dtype)
    if label_normalization == "sum":
        norm = labels.sum(dim=1, keepdim=True)
    elif label_normalization == "l2":
        norm = labels.norm(dim=1, keepdim=True)
    else:
        raise ValueError(f"label_normalization must be 'sum' or 'l2', got {label_normalization!r}")
    log_q = torch.log(labels / norm + epsilon)
    return _row_kl(image_proj_text, log_q) + _row_kl(text_proj_image, log_q)


def tal_loss(
    image_feats: Tensor,
    text_feats: Tensor,
    pids: Tensor,
    temperature: float = 0.015,
    margin: float = 0.1,
    reduction: Literal["none", "mean", "sum"] = "none",
) -> Tensor:
    """Triplet Alignment Loss (RDE): a smooth upper bound of the hardest-negative triplet loss.

    With S = normalise(text) @ normalise(image)^T (text rows) and tau = ``temperature``, for text
    i against the images (row i of S)::

        t2i_i = [margin - sum_{j: pid_j = pid_i} a_ij S_ij
                 + tau * log sum_{j: pid_j != pid_i} exp(S_ij / tau)]_+

    where ``a_ij`` is the softmax of ``S_ij / tau`` over the same-identity entries of the row,
    detached (no gradient). ``i2t_i`` is the same on S transposed (image i against the texts);
    the per-sample loss is ``t2i_i + i2t_i``. As tau -> 0 the positive term tends to the most
    similar same-identity entry and the negative term to the most similar other-identity entry:
    ``[margin - max_pos S + max_neg S]_+``. A row without any other identity has loss 0.

    Args:
        image_feats: (B, D) float, not normalised.
        text_feats: (B, D) float, not normalised; pair i is (image i, text i).
        pids: (B,) long identities.
        temperature: tau.
        margin: m.
        reduction: "none" returns the (B,) per-sample losses; "mean" or "sum" a scalar.

    Returns:
        (B,) float, or a scalar with ``reduction`` "mean" / "sum".
    """
    _check_pair(image_feats, text_feats, pids)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    sims = F.normalize(text_feats, dim=-1) @ F.normalize(image_feats, dim=-1).T
    positive = _same_identity(pids, torch.bool)
    per_sample = _tal_rows(sims, positive, temperature, margin) + _tal_rows(
        sims.T, positive.T, temperature, margin
    )
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _tal_rows(sims: Tensor, positive: Tensor, temperature: float, margin: float) -> Tensor:
    """TAL of each row of a (B, B) similarity matrix; ``positive`` (B, B) bool, diagonal True."""
    logits = sims / temperature
    weights = torch.softmax(logits.masked_fill(~positive, float("-inf")), dim=1).detach()
    pos = (weights * sims).sum(dim=1)
    negatives = logits.masked_fill(positive, float("-inf"))
    has_negative = (~positive).any(dim=1)
    # A row without negatives: logsumexp of nothing is -inf (loss 0); keep its gradient finite.
    neg = temperature * torch.logsumexp(negatives.masked_fill(~has_negative[:, None], 0.0), dim=1)
    loss = (margin - pos + neg).clamp(min=0)
    return torch.where(has_negative, loss, torch.zeros_like(loss))
