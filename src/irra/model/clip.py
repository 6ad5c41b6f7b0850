"""CLIP image and text towers that return every token, with OpenAI's parameter names.

The state dict of :class:`CLIP` has exactly the keys of OpenAI's released CLIP checkpoints
(``visual.conv1.weight``, ``transformer.resblocks.0.attn.in_proj_weight``, ``text_projection``,
...), so those weights load without renaming. Unlike OpenAI's model, the patch stride is a setting
(IRRA's overlapping patches) and both towers return all projected tokens, not only the pooled one.

Layout is batch-first everywhere: tokens are ``(B, L, C)``. Attention runs through
:func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels on CPU and CUDA).
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class VisionConfig:
    """Vision transformer sizes. ``image_size`` is (height, width) in pixels.

    ``stem_channels`` (empty in OpenAI's CLIP) puts a convolutional stem before the patch
    embedding: one stage per entry, each a 3x3 convolution with that many channels, batch norm,
    ReLU and a 2x2 max pool. ``k`` stages divide the image by ``2**k``, so the patch embedding
    then runs with kernel ``patch_size / 2**k`` and stride ``stride_size / 2**k`` and the token
    grid is the same as without the stem. Randomly initialised ViTs learn far faster with one
    (Xiao et al., "Early convolutions help transformers see better", NeurIPS 2021).
    """

    image_size: tuple[int, int] = (384, 128)
    patch_size: int = 16
    stride_size: int = 16
    width: int = 768
    layers: int = 12
    heads: int = 12
    stem_channels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        object.__setattr__(self, "stem_channels", tuple(int(c) for c in self.stem_channels))
        scale = 2 ** len(self.stem_channels)
        if self.patch_size % scale or self.stride_size % scale:
            raise ValueError(
                f"a stem of {len(self.stem_channels)} stages divides the image by {scale}, so "
                f"patch_size ({self.patch_size}) and stride_size ({self.stride_size}) must be "
                f"multiples of {scale}; use fewer stem stages or larger patches"
            )
        if any(c < 1 for c in self.stem_channels):
            raise ValueError(f"stem_channels must be positive, got {self.stem_channels}")
        if len(self.image_size) != 2 or min(self.image_size) < self.patch_size:
            raise ValueError(
                f"image_size must be (height, width), each >= patch_size {self.patch_size}; "
                f"got {self.image_size}"
            )
        if self.stride_size < 1:
            raise ValueError(f"stride_size must be >= 1, got {self.stride_size}")
        _check_heads("vision", self.width, self.heads)

    @property
    def grid(self) -> tuple[int, int]:
        """Number of patches (rows, columns) for ``image_size`` at ``stride_size``."""
        scale = 2 ** len(self.stem_channels)
        size = self.image_size
        for _ in self.stem_channels:  # each max pool floors odd sizes
            size = (size[0] // 2, size[1] // 2)
        return patch_grid(size, self.patch_size // scale, self.stride_size // scale)


@dataclass(frozen=True)
class TextConfig:
    """Causal text transformer sizes.

    ``vocab_size`` is the tokenizer's (49,408 for CLIP's BPE). ``vocab_ids`` (empty in OpenAI's
    CLIP) keeps an embedding row, and an MLM class, only for these tokenizer ids; every other id
    shares one extra "unknown" row. A model trained from scratch on a corpus with a few hundred
    distinct tokens then spends nothing on the other 49,000 (the MLM head over the full
    vocabulary is about a third of a training step of the demo model).
    """

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    layers: int = 12
    heads: int = 8
    vocab_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _check_heads("text", self.width, self.heads)
        ids = tuple(sorted({int(i) for i in self.vocab_ids}))
        if ids and not 0 <= ids[0] <= ids[-1] < self.vocab_size:
            raise ValueError(
                f"vocab_ids must lie in [0, {self.vocab_size}), got {ids[0]}..{ids[-1]}"
            )
        object.__setattr__(self, "vocab_ids", ids)

    @property
    def embedding_rows(self) -> int:
        """Rows of the token embedding, which are also the MLM classes."""
        return len(self.vocab_ids) + 1 if self.vocab_ids else self.vocab_size

    def row_map(self) -> Tensor | None:
        """(vocab_size,) long: the embedding row of every tokenizer id; None without vocab_ids.

        Kept ids map to rows 0..K-1 in increasing id order, all other ids to row K.
        """
        if not self.vocab_ids:
            return None
        rows = torch.full((self.vocab_size,), len(self.vocab_ids), dtype=torch.long)
        rows[list(self.vocab_ids)] = torch.arange(len(self.vocab_ids))
        return rows


@dataclass(frozen=True)
class CLIPConfig:
    """Both towers plus the joint embedding width ``embed_dim`` (D)."""

    embed_dim: int = 512
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)


def _check_heads(tower: str, width: int, heads: int) -> None:
    if heads < 1 or width % heads:
        raise ValueError(f"{tower} width {width} is not divisible by heads {heads}")


def patch_grid(image_size: tuple[int, int], patch_size: int, stride_size: int) -> tuple[int, int]:
    """Patch rows and columns of a conv with kernel ``patch_size`` and stride ``stride_size``."""
    height, width = image_size
    return (height - patch_size) // stride_size + 1, (width - patch_size) // stride_size + 1


CLIP_PRESETS: dict[str, CLIPConfig] = {
    "ViT-B/16": CLIPConfig(512, VisionConfig(patch_size=16, stride_size=16), TextConfig()),
    "ViT-B/32": CLIPConfig(512, VisionConfig(patch_size=32, stride_size=32), TextConfig()),
    "ViT-L/14": CLIPConfig(
        768,
        VisionConfig(patch_size=14, stride_size=14, width=1024, layers=24, heads=16),
        TextConfig(width=768, layers=12, heads=12),
    ),
    "tiny": CLIPConfig(
        64,
        VisionConfig(image_size=(64, 32), width=128, layers=2, heads=2),
        TextConfig(width=128, layers=2, heads=2),
    ),
}


def clip_config(
    name: str,
    *,
    image_size: tuple[int, int] | None = None,
    stride_size: int | None = None,
) -> CLIPConfig:
    """The preset ``name`` with an optional image size and patch stride.

    Args:
        name: one of ``CLIP_PRESETS`` ("ViT-B/16", "ViT-B/32", "ViT-L/14", "tiny").
        image_size: (height, width); the preset's when None.
        stride_size: patch stride; the patch size (no overlap) when None.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    if name not in CLIP_PRESETS:
        raise ValueError(f"unknown CLIP arch {name!r}; valid names: {', '.join(CLIP_PRESETS)}")
    config = CLIP_PRESETS[name]
    vision = dataclasses.replace(
        config.vision,
        image_size=config.vision.image_size if image_size is None else tuple(image_size),
        stride_size=config.vision.patch_size if stride_size is None else stride_size,
    )
    return dataclasses.replace(config, vision=vision)


class QuickGELU(nn.Module):
    """CLIP's GELU approximation: ``x * sigmoid(1.702 x)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class MultiheadAttention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s packed parameter names.

    ``in_proj_weight`` (3C, C) stacks the query, key and value projections; ``out_proj`` is
    Linear(C, C). Inputs are batch-first; :meth:`attention_weights` gives chosen rows' weights.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        _check_heads("attention", width, heads)
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, *, is_causal: bool = False
    ) -> Tensor:
        """query: (B, Lq, C), key/value: (B, Lk, C) -> (B, Lq, C)."""
        if query is key and key is value:
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            w_q, w_k, w_v = self.in_proj_weight.chunk(3)
            b_q, b_k, b_v = self.in_proj_bias.chunk(3)
            q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)
        batch, length, width = q.shape
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))

    def attention_weights(self, x: Tensor, positions: Tensor, *, is_causal: bool = False) -> Tensor:
        """Self-attention weights of one query token per row, averaged over the heads.

        Args:
            x: (B, L, C) the block's (normalised) input.
            positions: (B,) long, the query position of each row.
            is_causal: mask keys after the query, as the causal forward pass does.

        Returns:
            (B, L) float: row b is the attention of token ``positions[b]`` over the L tokens
            (what ``nn.MultiheadAttention`` returns with ``need_weights=True``, at that row).
        """
        w_q, w_k, _ = self.in_proj_weight.chunk(3)
        b_q, b_k, _ = self.in_proj_bias.chunk(3)
        query = x.gather(1, positions.view(-1, 1, 1).expand(-1, 1, x.shape[-1])).squeeze(1)
        q = F.linear(query, w_q, b_q).unflatten(-1, (self.heads, -1))  # (B, H, d)
        k = F.linear(x, w_k, b_k).unflatten(-1, (self.heads, -1))  # (B, L, H, d)
        scores = torch.einsum("bhd,blhd->bhl", q, k) * q.shape[-1] ** -0.5
        if is_causal:
            keys = torch.arange(x.shape[1], device=x.device)
            later = keys.unsqueeze(0) > positions.unsqueeze(1)  # (B, L)
            scores = scores.masked_fill(later.unsqueeze(1), -torch.inf)
        return scores.float().softmax(dim=-1).mean(dim=1)

    def init_weights(self, attn_std: float, proj_std: float) -> None:
        """CLIP's initialisation: normal weights with the given stds, zero biases."""
        nn.init.normal_(self.in_proj_weight, std=attn_std)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.normal_(self.out_proj.weight, std=proj_std)
        nn.init.zeros_(self.out_proj.bias)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                c_fc=nn.Linear(width, 4 * width),
                gelu=QuickGELU(),
                c_proj=nn.Linear(4 * width, width),
            )
        )
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: Tensor, *, is_causal: bool = False) -> Tensor:
        """x: (B, L, C) -> (B, L, C)."""
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, is_causal=is_causal)
        return x + self.mlp(self.ln_2(x))

    def forward_with_attention(
        self, x: Tensor, positions: Tensor, *, is_causal: bool = False
    ) -> tuple[Tensor, Tensor]:
        """:meth:`forward` plus the head-averaged attention of token ``positions[b]`` of each row.

        x: (B, L, C), positions: (B,) long -> ((B, L, C), (B, L) float).
        """
        h = self.ln_1(x)
        weights = self.attn.attention_weights(h, positions, is_causal=is_causal)
        x = x + self.attn(h, h, h, is_causal=is_causal)
        return x + self.mlp(self.ln_2(x)), weights


class Transformer(nn.Module):
    """A stack of residual attention blocks (``resblocks.{i}``), optionally causal."""

    def __init__(self, width: int, layers: int, heads: int, *, causal: bool = False) -> None:
        super().__init__()
        self.width = width
        self.causal = causal
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, L, C) -> (B, L, C)."""
        for block in self.resblocks:
            x = block(x, is_causal=self.causal)
        return x

    def forward_with_attention(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`forward` plus the last block's attention of one token per row (heads averaged).

        x: (B, L, C), positions: (B,) long -> ((B, L, C), (B, L) float). The plain forward pass
        computes no attention weights; this one adds one query row per sample in the last block.
        """
        *first, last = self.resblocks
        for block in first:
            x = block(x, is_causal=self.causal)
        return last.forward_with_attention(x, positions, is_causal=self.causal)

    def init_weights(self) -> None:
        """CLIP's initialisation, scaled by width and depth."""
        attn_std = self.width**-0.5
        proj_std = attn_std * (2 * len(self.resblocks)) ** -0.5
        fc_std = (2 * self.width) ** -0.5
        for block in self.resblocks:
            block.attn.init_weights(attn_std, proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
            nn.init.zeros_(block.mlp.c_fc.bias)
            nn.init.zeros_(block.mlp.c_proj.bias)


def conv_stem(channels: tuple[int, ...]) -> nn.Sequential | None:
    """(3x3 conv, batch norm, ReLU, 2x2 max pool) per entry of ``channels``; None when empty.

    Parameters are named ``stem.{4 i}`` (conv) and ``stem.{4 i + 1}`` (batch norm) for stage i.
    """
    if not channels:
        return None
    layers: list[nn.Module] = []
    in_channels = 3
    for out_channels in channels:
        layers += [
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        in_channels = out_channels
    return nn.Sequential(*layers)


class VisionTransformer(nn.Module):
    """ViT image tower: patch conv, class token, position embedding, transformer, projection."""

    def __init__(self, config: VisionConfig, embed_dim: int) -> None:
        super().__init__()
        self.config = config
        width = config.width
        scale = width**-0.5
        grid_h, grid_w = config.grid
        reduction = 2 ** len(config.stem_channels)  # of the image by the stem
        self.stem = conv_stem(config.stem_channels)
        self.conv1 = nn.Conv2d(
            config.stem_channels[-1] if config.stem_channels else 3,
            width,
            kernel_size=config.patch_size // reduction,
            stride=config.stride_size // reduction,
            bias=False,
        )
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid_h * grid_w + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, config.layers, config.heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))
        self.transformer.init_weights()

    def forward(self, images: Tensor) -> Tensor:
        """images: (B, 3, H, W) -> tokens (B, 1 + N, D), class token first, all projected."""
        x = self.transformer(self._embed(images))
        return self.ln_post(x) @ self.proj

    def forward_with_attention(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`forward` plus the last block's attention of the class token (heads averaged).

        images: (B, 3, H, W) -> (tokens (B, 1 + N, D), attention (B, 1 + N) float).
        """
        x = self._embed(images)
        cls_position = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        x, weights = self.transformer.forward_with_attention(x, cls_position)
        return self.ln_post(x) @ self.proj, weights

    def _embed(self, images: Tensor) -> Tensor:
        """images: (B, 3, H, W) -> the transformer's input (B, 1 + N, C)."""
        if tuple(images.shape[-2:]) != self.config.image_size:
            raise ValueError(
                f"images are {tuple(images.shape[-2:])} (height, width) but the model expects "
                f"{self.config.image_size}; resize them in the transform"
            )
        x = images.to(self.conv1.weight.dtype)
        if self.stem is not None:
            x = self.stem(x)  # (B, C_stem, H / 2**k, W / 2**k)
        x = self.conv1(x)  # (B, C, gh, gw)
        x = x.flatten(2).transpose(1, 2)  # (B, N, C), row-major over the grid
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.ln_pre(x)


class TokenEmbedding(nn.Embedding):
    """The token embedding, looked up by tokenizer id: ids (any shape) -> (..., width).

    Without ``vocab_ids`` a plain ``nn.Embedding`` of ``vocab_size`` rows; with them, ids are first
    mapped to their rows (:meth:`TextConfig.row_map`, a buffer rebuilt from the config and not
    saved in state dicts). The weight keeps OpenAI's name, ``token_embedding.weight``.
    """

    def __init__(self, text: TextConfig) -> None:
        super().__init__(text.embedding_rows, text.width)
        self.register_buffer("token_rows", text.row_map(), persistent=False)

    def rows(self, ids: Tensor) -> Tensor:
        """Tokenizer ids -> embedding rows, same shape."""
        return ids if self.token_rows is None else self.token_rows[ids]

    def forward(self, ids: Tensor) -> Tensor:
        return super().forward(self.rows(ids))


class CLIP(nn.Module):
    """OpenAI CLIP (ViT image tower + causal text tower) with all-token outputs.

    The text tower's modules live at the top level (``transformer``, ``token_embedding``, ...)
    as in OpenAI's checkpoints.
    """

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.config = config
        text = config.text
        self.visual = VisionTransformer(config.vision, config.embed_dim)
        self.transformer = Transformer(text.width, text.layers, text.heads, causal=True)
        self.token_embedding = TokenEmbedding(text)
        self.positional_embedding = nn.Parameter(torch.empty(text.context_length, text.width))
        self.ln_final = nn.LayerNorm(text.width)
        self.text_projection = nn.Parameter(torch.empty(text.width, config.embed_dim))
        # CLIP's learnable temperature, kept (as a buffer, not a parameter) only so that state
        # dicts keep OpenAI's and the official IRRA code's keys: IRRA's temperature is fixed
        # (``IRRAConfig.temperature``) and nothing reads this value. As a parameter it would get
        # no gradient, and data-parallel training would have to search for unused parameters.
        self.register_buffer("logit_scale", torch.tensor(math.log(1 / 0.07)))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=text.width**-0.5)
        self.transformer.init_weights()

    def encode_image_tokens(self, images: Tensor) -> Tensor:
        """images: (B, 3, H, W) float -> (B, 1 + N, D); token 0 is the class token."""
        return self.visual(images)

    def embedding_rows(self, ids: Tensor) -> Tensor:
        """Tokenizer ids (any shape, long) -> token-embedding rows (= MLM classes), same shape."""
        return self.token_embedding.rows(ids)

    def encode_text_tokens(self, ids: Tensor) -> Tensor:
        """ids: (B, L) long, L <= context_length -> (B, L, D), every token projected."""
        self._check_length(ids)
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[-1]]
        x = self.transformer(x)
        return self.ln_final(x) @ self.text_projection

    def encode_image_tokens_with_attention(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images -> (tokens (B, 1 + N, D), last-layer class-token attention (B, 1 + N))."""
        return self.visual.forward_with_attention(images)

    def encode_text_tokens_with_attention(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """ids (B, L) -> (tokens (B, L, D), last-layer end-of-text attention (B, L)).

        The end-of-text token is at the largest id of each row.
        """
        self._check_length(ids)
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[-1]]
        x, weights = self.transformer.forward_with_attention(x, ids.argmax(dim=-1))
        return self.ln_final(x) @ self.text_projection, weights

    def _check_length(self, ids: Tensor) -> None:
        length = ids.shape[-1]
        if length > self.config.text.context_length:
            raise ValueError(
                f"token sequences have length {length}, more than the model's context length "
                f"{self.config.text.context_length}; tokenize with a shorter context_length"
            )
