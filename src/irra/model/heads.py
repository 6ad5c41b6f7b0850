"""Training-only heads of IRRA: the MLM head and the identity classifier.

The cross-modal encoder reuses :class:`irra.model.clip.MultiheadAttention` and
:class:`irra.model.clip.Transformer`; its modules sit directly on :class:`irra.model.irra.IRRA`
so the parameter names match the official checkpoints.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from irra.model.clip import QuickGELU


def cross_modal_heads(embed_dim: int) -> int:
    """Attention heads of the cross-modal encoder: one per 64 channels (at least one)."""
    return max(1, embed_dim // 64)


class MLMHead(nn.Sequential):
    """``dense`` Linear(D, D) -> QuickGELU -> ``ln`` LayerNorm(D) -> ``fc`` Linear(D, V)."""

    def __init__(self, embed_dim: int, vocab_size: int) -> None:
        super().__init__(
            OrderedDict(
                dense=nn.Linear(embed_dim, embed_dim),
                gelu=QuickGELU(),
                ln=nn.LayerNorm(embed_dim),
                fc=nn.Linear(embed_dim, vocab_size),
            )
        )

    def init_weights(self, depth: int) -> None:
        """IRRA's initialisation for a cross-modal encoder with ``depth`` layers."""
        width = self.dense.in_features
        nn.init.normal_(self.dense.weight, std=(2 * width) ** -0.5)
        nn.init.normal_(self.fc.weight, std=width**-0.5 * (2 * depth) ** -0.5)

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., D) -> logits (..., V)."""
        return super().forward(x)


def make_classifier(embed_dim: int, num_classes: int) -> nn.Linear:
    """The identity classifier shared by both modalities: weights N(0, 0.001), bias 0."""
    classifier = nn.Linear(embed_dim, num_classes)
    nn.init.normal_(classifier.weight, std=0.001)
    nn.init.zeros_(classifier.bias)
    return classifier
