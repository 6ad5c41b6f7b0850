"""RDE's token selection embedding (TSE): the tokens a global token attends to most, pooled.

Qin et al., "Noisy-Correspondence Learning for Text-to-Image Person Re-identification" (CVPR
2024). From the last layer's attention of the class token (images) or the end-of-text token
(texts), the top ``ratio`` of the other tokens are selected, L2-normalised, mapped by a linear
layer plus a two-layer MLP with batch norm, and max-pooled over the selection.

Parameter names follow the authors' checkpoints: ``mlp.layers.{0,1}``, ``mlp.bns.0`` and the
linear shortcut ``fc`` (images) / ``linear`` (texts).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TokenMLP(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> Linear, applied to every token: (B, K, C) -> (B, K, E)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(in_dim, hidden_dim), nn.Linear(hidden_dim, out_dim)])
        self.bns = nn.ModuleList([nn.BatchNorm1d(hidden_dim)])

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])
        hidden = F.relu(self.bns[0](self.layers[0](flat)))
        return self.layers[1](hidden).reshape(*x.shape[:-1], -1)


class _TokenSelection(nn.Module):
    """Shared part of the image and text TSE heads (``shortcut`` is the linear layer)."""

    def __init__(self, in_dim: int, out_dim: int, ratio: float) -> None:
        super().__init__()
        if not 0 < ratio <= 1:
            raise ValueError(f"the token selection ratio must be in (0, 1], got {ratio}")
        self.ratio = ratio
        self.mlp = TokenMLP(in_dim, out_dim // 2, out_dim)

    def embed(self, selected: Tensor) -> Tensor:
        """selected: (B, K, C) tokens -> (B, K, E): ``mlp(x) + shortcut(x)`` of the unit tokens."""
        x = F.normalize(selected.float(), dim=-1, eps=1e-8)
        return self.mlp(x) + self.shortcut(x)

    @property
    def shortcut(self) -> nn.Linear:
        """The linear layer beside the MLP (``fc`` for images, ``linear`` for texts)."""
        raise NotImplementedError


class ImageTokenSelection(_TokenSelection):
    """TSE of images: the patches the class token attends to most.

    Args:
        in_dim: D, the width of the projected tokens.
        out_dim: E, the embedding width (1024 in the authors' code).
        ratio: fraction of the N patches selected (K = int(N * ratio), at least 1).
    """

    def __init__(self, in_dim: int, out_dim: int = 1024, ratio: float = 0.3) -> None:
        super().__init__(in_dim, out_dim, ratio)
        self.fc = nn.Linear(in_dim, out_dim)

    @property
    def shortcut(self) -> nn.Linear:
        return self.fc

    def forward(self, tokens: Tensor, attention: Tensor) -> Tensor:
        """tokens: (B, 1 + N, D), attention: (B, 1 + N) of the class token -> (B, E) float32."""
        count = max(1, int((tokens.shape[1] - 1) * self.ratio))
        scores = attention.clone()
        scores[:, 0] = -1.0  # never the class token itself
        index = scores.topk(count, dim=1).indices
        selected = tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        return self.embed(selected).max(dim=1).values.float()


class TextTokenSelection(_TokenSelection):
    """TSE of captions: the word tokens the end-of-text token attends to most.

    Args:
        in_dim: D, the width of the projected tokens.
        out_dim: E, the embedding width.
        ratio: fraction of the positions selected: K = int((context_length - 2) * ratio), as
            in the authors' code (start and end tokens excluded); at most L of a shorter input.
        context_length: the text tower's context length (77).
    """

    def __init__(
        self, in_dim: int, out_dim: int = 1024, ratio: float = 0.3, context_length: int = 77
    ) -> None:
        super().__init__(in_dim, out_dim, ratio)
        self.linear = nn.Linear(in_dim, out_dim)
        self.count = max(1, int((context_length - 2) * ratio))

    @property
    def shortcut(self) -> nn.Linear:
        return self.linear

    def forward(self, tokens: Tensor, ids: Tensor, attention: Tensor) -> Tensor:
        """tokens: (B, L, D), ids: (B, L) long (0 = padding), attention: (B, L) of the
        end-of-text token -> (B, E) float32.

        The start and end tokens get score -1 and padding 0, so the selection (sorted by
        attention) lists the word tokens first; the max-pool covers the first
        ``min(words, K)`` selected tokens. The other selected tokens still pass through the MLP
        (they enter its batch statistics in training, as in the authors' code).
        """
        valid = ids != 0
        scores = attention.scatter(1, ids.argmax(dim=-1, keepdim=True), -1.0)
        scores[:, 0] = -1.0
        scores = scores * valid
        count = min(self.count, ids.shape[1])
        index = scores.topk(count, dim=1).indices
        selected = tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        out = self.embed(selected)  # (B, K, E)
        words = (valid.sum(dim=1) - 2).clamp(min=1, max=count)
        keep = torch.arange(count, device=ids.device).unsqueeze(0) < words.unsqueeze(1)
        return out.masked_fill(~keep.unsqueeze(-1), -torch.inf).max(dim=1).values.float()
