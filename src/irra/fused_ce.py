"""Fused, chunked linear layer + mean cross-entropy (the MLM head's ``fc`` and its loss).

``F.cross_entropy(F.linear(hidden, weight, bias), labels)`` materialises the (N, V) logits
(V = 49,408 for the CLIP vocabulary: 60 MB for N = 300) and its forward + backward stream
tensors of that size through memory about ten times (logits, log-softmax, its gradient...).
:func:`linear_cross_entropy` computes the same loss and gradients exactly, the vocabulary cut
into chunks of ``chunk_size`` entries so that the element-wise work on an (N, chunk_size)
block happens while it is in cache:

1. per chunk: the logits, their row-wise arg-max and maximum m, the label logits of the
   rows whose label falls in the chunk, then in place exp(logit - m) and its row sums;
   combined into each row's logsumexp (lse) at the end;
2. per chunk again, only when a gradient is needed: the kept block becomes, in place,
   ``(softmax - one_hot) / N`` (softmax = exp(logit - m) * exp(m - lse)), which gives the
   chunk's rows of the weight and bias gradients and its share of the hidden gradient.

Each (N, V) element thus goes through memory twice (written in 1, read in 2), the weight
twice and its gradient once; the blocks kept between the passes total N * V floats, as many
as one logits tensor (none are kept when no gradient is needed). Recomputing the logits in
pass 2 instead of keeping them, or chunking the rows rather than the vocabulary (which
reads the whole weight and reads and writes its gradient once per row chunk), measured
slower on CPU. Backward only scales the gradients computed in forward.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["linear_cross_entropy"]


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        labels: Tensor,
        chunk_size: int,
    ) -> tuple[Tensor, Tensor]:
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        n, v = hidden.shape[0], weight.shape[0]
        # float32 math for half inputs, float64 kept (gradcheck); autocast would undo that
        dtype = torch.promote_types(torch.promote_types(hidden.dtype, weight.dtype), torch.float32)
        with torch.autocast(hidden.device.type, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            b = None if bias is None else bias.to(dtype)
            chunks = [(s, min(s + chunk_size, v)) for s in range(0, v, chunk_size)]
            label_chunk, label_col = labels // chunk_size, labels % chunk_size

            # pass 1: per chunk, the arg-max, maximum m and sum of exp(logit - m), the label
            # logits; the chunk's exp(logit - m) is kept (as `tiles`) when gradients are needed
            maxes, sums = h.new_empty(len(chunks), n), h.new_empty(len(chunks), n)
            argmaxes = labels.new_empty(len(chunks), n)
            target = h.new_zeros(n)
            tiles: list[Tensor] = []
            for j, (s, e) in enumerate(chunks):
                z = torch.mm(h, w[s:e].T) if b is None else torch.addmm(b[s:e], h, w[s:e].T)
                z_label = z.gather(1, label_col.clamp(max=e - s - 1)[:, None]).squeeze(1)
                target = torch.where(label_chunk == j, z_label, target)
                idx = z.argmax(dim=1, keepdim=True)
                m = z.gather(1, idx)
                argmaxes[j], maxes[j] = idx.squeeze(1) + s, m.squeeze(1)
                torch.sum(z.sub_(m).exp_(), dim=1, out=sums[j])
                if need_h or need_w or need_b:
                    tiles.append(z)
            lse = (sums.log_() + maxes).logsumexp(dim=0)  # (N,)
            loss = (lse - target).sum() / max(n, 1)
            # first chunk holding the row maximum -> the first arg-max, as torch.argmax
            pred = argmaxes.gather(0, maxes.argmax(dim=0, keepdim=True)).squeeze(0)
            correct = (pred == labels).sum()

            # pass 2: d(mean loss)/d(logits) = (softmax - one_hot) / N, chunk by chunk, with
            # softmax = exp(logit - m) * exp(m - lse)
            grad_h = torch.zeros_like(h) if need_h else None
            grad_w = torch.empty_like(w) if need_w else None
            grad_b = torch.empty_like(b) if need_b and b is not None else None
            scale = (maxes - lse).exp_().div_(max(n, 1))  # (chunks, N)
            for j, p in enumerate(tiles):
                s, e = chunks[j]
                p.mul_(scale[j, :, None])
                minus_one = (label_chunk == j).to(dtype).mul_(-1 / max(n, 1))[:, None]
                p.scatter_add_(1, label_col.clamp(max=e - s - 1)[:, None], minus_one)
                if grad_h is not None:
                    grad_h.addmm_(p, w[s:e])
                if grad_w is not None:
                    torch.mm(p.T, h, out=grad_w[s:e])
                if grad_b is not None:
                    torch.sum(p, dim=0, out=grad_b[s:e])
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_loss: Tensor, grad_correct: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        grads = tuple(
            None if g is None else (g * grad_loss.to(g.dtype)).to(dt)
            for g, dt in zip(ctx.saved_tensors, ctx.dtypes, strict=True)
        )
        return (*grads, None, None)


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    labels: Tensor,
    *,
    chunk_size: int = 2048,
) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy of ``hidden @ weight.T + bias`` against ``labels``, fused and chunked.

    Equal (to rounding) to ``F.cross_entropy(F.linear(hidden, weight, bias), labels)`` in
    value and gradients, with the vocabulary processed ``chunk_size`` entries at a time
    (see the module docstring; extra memory: N * V floats while forward runs with
    gradients, N * chunk_size without). Gradients are computed during forward (when grad
    mode is on and the input requires grad) and kept until backward, which scales them by
    the incoming gradient. Math is in float32 (float64 for float64 inputs), also under
    autocast; the gradients come back in the inputs' dtypes. Not twice differentiable.

    Args:
        hidden: (N, D) float features of the N rows (masked positions).
        weight: (V, D) weight of the output ``nn.Linear(D, V)``.
        bias: (V,) its bias, or None.
        labels: (N,) integer class ids in [0, V).
        chunk_size: vocabulary entries (logit columns) processed at a time, >= 1.

    Returns:
        ``(loss, correct)``: the mean loss, a float32 (float64 for float64 inputs) scalar
        (0 with zero gradients when N == 0), and the number of rows whose arg-max logit is
        the label (the first one on ties, as ``torch.argmax``), a long scalar without
        gradient, for accuracy.

    Raises:
        ValueError: on inconsistent shapes, an empty vocabulary or ``chunk_size < 1``.
    """
    if (
        hidden.dim() != 2
        or weight.dim() != 2
        or hidden.shape[1] != weight.shape[1]
        or weight.shape[0] == 0
    ):
        raise ValueError(
            f"expected hidden (N, D) and weight (V, D) with V >= 1, got hidden "
            f"{tuple(hidden.shape)} and weight {tuple(weight.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"expected bias of shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    if tuple(labels.shape) != (hidden.shape[0],):
        raise ValueError(
            f"expected labels of shape ({hidden.shape[0]},) to match hidden "
            f"{tuple(hidden.shape)}, got labels {tuple(labels.shape)}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if not torch.is_grad_enabled():  # forward cannot see grad mode; skip the gradient work
        hidden, weight = hidden.detach(), weight.detach()
        bias = None if bias is None else bias.detach()
    return _LinearCrossEntropy.apply(hidden, weight, bias, labels.long(), chunk_size)
