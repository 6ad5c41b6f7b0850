"""IRRA: CLIP plus the implicit-relation-reasoning (MLM) branch and the identity classifier.

Parameter names are those of checkpoints written by the official IRRA code:
``base_model.*`` (OpenAI CLIP), ``classifier.*`` (when the ID loss is on), and ``cross_attn``,
``cross_modal_transformer``, ``ln_pre_t``, ``ln_pre_i``, ``ln_post``, ``mlm_head`` (when the MLM
loss is on), and RDE's token selection embeddings ``visul_emb_layer`` / ``texual_emb_layer``
(the authors' spelling, when the "tse" loss is on). The model computes features and logits; a
method's objective (:mod:`irra.methods`) turns them into losses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irra.fused_ce import linear_cross_entropy
from irra.model.clip import (
    CLIP,
    CLIPConfig,
    MultiheadAttention,
    TextConfig,
    Transformer,
    VisionConfig,
)
from irra.model.heads import MLMHead, cross_modal_heads, make_classifier
from irra.model.tse import ImageTokenSelection, TextTokenSelection

#: Every loss a method may train with (each method accepts a subset, see :mod:`irra.methods`):
#: IRRA's sdm, itc, cmpm, id, mlm and RDE's TAL on the global (bge) and token-selection (tse)
#: embeddings.
LOSS_NAMES = ("sdm", "itc", "cmpm", "id", "mlm", "bge", "tse")


def parse_loss_names(names: str | Sequence[str]) -> tuple[str, ...]:
    """``"sdm+mlm+id"`` or ``["sdm", "mlm", "id"]`` -> ``("sdm", "mlm", "id")``, validated."""
    if isinstance(names, str):
        names = names.split("+")
    parsed = tuple(n.strip() for n in names if n.strip())
    unknown = [n for n in parsed if n not in LOSS_NAMES]
    if unknown or not parsed:
        raise ValueError(
            f"unknown or empty loss names {unknown or list(parsed)}; valid: {', '.join(LOSS_NAMES)}"
        )
    return parsed


@dataclass(frozen=True)
class IRRAConfig:
    """Everything needed to rebuild an IRRA model (saved beside its weights).

    ``num_classes`` is the number of training identities (used only when "id" is a loss);
    ``temperature`` is the fixed SDM/ITC temperature (logit scale = 1 / temperature).
    ``tse_dim`` (E) and ``select_ratio`` shape RDE's token selection heads, built when "tse" is
    a loss.
    """

    clip: CLIPConfig
    num_classes: int = 0
    cmt_depth: int = 4
    temperature: float = 0.02
    loss_names: tuple[str, ...] = ("sdm", "mlm", "id")
    mlm_loss_weight: float = 1.0
    id_loss_weight: float = 1.0
    tse_dim: int = 1024
    select_ratio: float = 0.3

    def __post_init__(self) -> None:
        object.__setattr__(self, "loss_names", parse_loss_names(self.loss_names))
        if "id" in self.loss_names and self.num_classes < 1:
            raise ValueError(
                f"num_classes is {self.num_classes} but the 'id' loss needs the number of training "
                "identities (>= 1); pass num_classes or drop 'id' from loss_names"
            )
        if self.cmt_depth < 1:
            raise ValueError(f"cmt_depth must be >= 1, got {self.cmt_depth}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        rde, irra = {"bge", "tse"}, set(self.loss_names) - {"bge", "tse"}
        if rde & set(self.loss_names) and irra:
            raise ValueError(
                f"loss_names {list(self.loss_names)} mix RDE's (bge, tse) and IRRA's losses; "
                "a model is trained by one method"
            )
        if not 0 < self.select_ratio <= 1 or self.tse_dim < 2:
            raise ValueError(
                f"select_ratio must be in (0, 1] and tse_dim >= 2, got {self.select_ratio} and "
                f"{self.tse_dim}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly nested dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IRRAConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        data = dict(data)
        clip = dict(_checked(data.pop("clip"), CLIPConfig))
        vision = _checked(clip.pop("vision"), VisionConfig)
        text = _checked(clip.pop("text"), TextConfig)
        clip_config = CLIPConfig(**clip, vision=VisionConfig(**vision), text=TextConfig(**text))
        return cls(clip=clip_config, **_checked(data, cls))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _checked(data: dict[str, Any], cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid: {sorted(names)}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


class IRRAOutput(NamedTuple):
    """Features and logits of one training forward pass (``None`` where not computed).

    image_feats: (B, D) float32; text_feats: (B, D) float32; image_logits, text_logits: (B, C);
    mlm_logits: (N, V) at the N masked positions (row-major over (B, L)), or (B, L, V); None
    when the forward pass was given the labels and computed the loss fused instead.
    mlm_loss: () float32 mean MLM cross-entropy over the labelled positions (fused path).
    mlm_correct: () long, labelled positions whose arg-max is the label (fused path).
    image_tse, text_tse: (B, E) float32 token selection embeddings (models with TSE heads).
    """

    image_feats: Tensor
    text_feats: Tensor
    image_logits: Tensor | None
    text_logits: Tensor | None
    mlm_logits: Tensor | None
    mlm_loss: Tensor | None = None
    mlm_correct: Tensor | None = None
    image_tse: Tensor | None = None
    text_tse: Tensor | None = None


class IRRA(nn.Module):
    """The IRRA model. Build with :func:`irra.model.build_model` or from an :class:`IRRAConfig`.

    Example:
        >>> from irra.model import IRRA, IRRAConfig, clip_config
        >>> model = IRRA(IRRAConfig(clip_config("tiny"), num_classes=10))
        >>> model.encode_image(torch.zeros(2, 3, 64, 32)).shape
        torch.Size([2, 64])
    """

    def __init__(self, config: IRRAConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.clip.embed_dim
        self.base_model = CLIP(config.clip)
        self.classifier: nn.Linear | None = None
        if "id" in config.loss_names:
            self.classifier = make_classifier(dim, config.num_classes)
        self.has_mlm = "mlm" in config.loss_names
        if self.has_mlm:
            heads = cross_modal_heads(dim)
            depth = config.cmt_depth
            self.cross_attn = MultiheadAttention(dim, heads)
            self.cross_modal_transformer = Transformer(dim, depth, heads)
            self.ln_pre_t = nn.LayerNorm(dim)
            self.ln_pre_i = nn.LayerNorm(dim)
            self.ln_post = nn.LayerNorm(dim)
            self.mlm_head = MLMHead(dim, config.clip.text.embedding_rows)
            self.cross_modal_transformer.init_weights()
            self.cross_attn.init_weights(dim**-0.5, dim**-0.5 * (2 * depth) ** -0.5)
            self.mlm_head.init_weights(depth)
        self.has_tse = "tse" in config.loss_names
        if self.has_tse:
            ratio, width = config.select_ratio, config.tse_dim
            context = config.clip.text.context_length
            self.visul_emb_layer = ImageTokenSelection(dim, width, ratio)
            self.texual_emb_layer = TextTokenSelection(dim, width, ratio, context)

    @property
    def embed_dim(self) -> int:
        """Width of :meth:`encode_image` / :meth:`encode_text`: D, or D + E with TSE heads."""
        return self.config.clip.embed_dim + (self.config.tse_dim if self.has_tse else 0)

    def encode_image_tokens(self, images: Tensor) -> Tensor:
        """images: (B, 3, H, W) float -> (B, 1 + N, D), class token first."""
        return self.base_model.encode_image_tokens(images)

    def encode_text_tokens(self, ids: Tensor) -> Tensor:
        """ids: (B, L) long -> (B, L, D)."""
        return self.base_model.encode_text_tokens(ids)

    def mlm_classes(self, ids: Tensor) -> Tensor:
        """Tokenizer ids (any shape, long) -> MLM class indices, the rows of the MLM logits.

        The same ids unless the text config keeps a vocabulary subset (``vocab_ids``).
        """
        return self.base_model.embedding_rows(ids)

    def encode_image(self, images: Tensor) -> Tensor:
        """images: (B, 3, H, W) -> the retrieval embedding (B, :attr:`embed_dim`) float32.

        The global feature (projected class token, (B, D)); with TSE heads (RDE) the unit global
        feature and the unit TSE embedding joined and scaled by 1/sqrt(2) (:func:`join_parts`), so
        that the cosine of two embeddings is the method's score, the mean of the two cosines.
        """
        if self.has_tse:
            return join_parts(*self.encode_image_parts(images))
        return self.encode_image_tokens(images)[:, 0].float()

    def encode_text(self, ids: Tensor) -> Tensor:
        """ids: (B, L) -> the retrieval embedding (B, :attr:`embed_dim`) float32.

        The global feature (token at the end-of-text position, (B, D)); with TSE heads the
        joined parts, as in :meth:`encode_image`. The columns after the batch's last end-of-text
        token are dropped first: the text tower is causal, so no end-of-text token attends to
        them (same features, less work: CLIP captions fill about half of the 77 positions).
        """
        if ids.numel():
            ids = ids[:, : int(ids.argmax(dim=-1).max()) + 1]
        if self.has_tse:
            return join_parts(*self.encode_text_parts(ids))
        return text_global(self.encode_text_tokens(ids), ids)

    def encode_image_parts(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images -> (global feature (B, D), TSE embedding (B, E)), float32, not normalised."""
        tokens, attention = self.base_model.encode_image_tokens_with_attention(images)
        return tokens[:, 0].float(), self.visul_emb_layer(tokens, attention)

    def encode_text_parts(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """ids (B, L) -> (global feature (B, D), TSE embedding (B, E)), float32, not normalised."""
        tokens, attention = self.base_model.encode_text_tokens_with_attention(ids)
        return text_global(tokens, ids), self.texual_emb_layer(tokens, ids, attention)

    def cross_former(self, text_tokens: Tensor, image_tokens: Tensor) -> Tensor:
        """Text tokens attend to image tokens: (B, L, D), (B, N, D) -> (B, L, D).

        Cross-attention (no residual) -> cross-modal transformer -> LayerNorm.
        """
        self._require_mlm()
        image = self.ln_pre_i(image_tokens)
        x = self.cross_attn(self.ln_pre_t(text_tokens), image, image)
        return self.ln_post(self.cross_modal_transformer(x))

    def mlm_logits(
        self, text_tokens: Tensor, image_tokens: Tensor, positions_mask: Tensor | None = None
    ) -> Tensor:
        """MLM vocabulary logits for the (masked) caption tokens.

        Args:
            text_tokens: (B, L, D) tokens of the masked caption.
            image_tokens: (B, 1 + N, D) image tokens.
            positions_mask: (B, L) bool; when given, the head runs only at these positions.

        Returns:
            (N_selected, V) in row-major order of the mask, or (B, L, V) without a mask; V is
            the number of MLM classes (see :meth:`mlm_classes`).
        """
        x = self.cross_former(text_tokens, image_tokens)
        if positions_mask is not None:
            x = x[positions_mask]
        return self.mlm_head(x)

    def forward(
        self,
        images: Tensor,
        caption_ids: Tensor,
        mlm_ids: Tensor | None = None,
        mlm_mask: Tensor | None = None,
        *,
        share_text_pass: bool = False,
        classify: bool = True,
        mlm_labels: Tensor | None = None,
    ) -> IRRAOutput:
        """One training forward pass (call through ``model(...)`` so DDP hooks run).

        Args:
            images: (B, 3, H, W) float.
            caption_ids: (B, L) long, the caption for the global text feature.
            mlm_ids: (B, L) long masked caption; None skips the MLM branch.
            mlm_mask: (B, L) bool positions that carry an MLM label (None: all positions).
            share_text_pass: one text pass on ``mlm_ids`` serves both the global feature and the
                MLM branch (the reference behaviour, where the caption is masked in place).
            classify: compute identity logits when the model has a classifier.
            mlm_labels: (N,) long MLM classes (:meth:`mlm_classes` of the original ids) of the
                positions in ``mlm_mask``; when given, the MLM
                loss is computed here by :func:`irra.fused_ce.linear_cross_entropy` (the same
                value and gradients as cross-entropy on the logits, without materialising the
                (N, V) logits) and ``mlm_logits`` is None.
        """
        if self.has_tse:  # RDE: the global features and the token selection embeddings
            image_feats, image_tse = self.encode_image_parts(images)
            text_feats, text_tse = self.encode_text_parts(caption_ids)
            return IRRAOutput(
                image_feats, text_feats, None, None, None, image_tse=image_tse, text_tse=text_tse
            )
        image_tokens = self.encode_image_tokens(images)
        image_feats = image_tokens[:, 0].float()
        mlm_tokens = None
        if mlm_ids is not None and share_text_pass:
            mlm_tokens = self.encode_text_tokens(mlm_ids)
            text_feats = text_global(mlm_tokens, mlm_ids)
        else:
            text_feats = text_global(self.encode_text_tokens(caption_ids), caption_ids)
            if mlm_ids is not None:
                mlm_tokens = self.encode_text_tokens(mlm_ids)
        image_logits = text_logits = None
        if classify and self.classifier is not None:
            image_logits = self.classifier(image_feats).float()
            text_logits = self.classifier(text_feats).float()
        mlm_logits = mlm_loss = mlm_correct = None
        if mlm_tokens is not None and mlm_labels is not None and mlm_mask is not None:
            x = self.cross_former(mlm_tokens, image_tokens)[mlm_mask]
            head = self.mlm_head
            hidden = head.ln(head.gelu(head.dense(x)))
            fc = head.fc
            mlm_loss, mlm_correct = linear_cross_entropy(hidden, fc.weight, fc.bias, mlm_labels)
        elif mlm_tokens is not None:
            mlm_logits = self.mlm_logits(mlm_tokens, image_tokens, mlm_mask).float()
        return IRRAOutput(
            image_feats, text_feats, image_logits, text_logits, mlm_logits, mlm_loss, mlm_correct
        )

    def _require_mlm(self) -> None:
        if not self.has_mlm:
            raise RuntimeError(
                "this IRRA model has no MLM branch (built without 'mlm' in loss_names: "
                f"{self.config.loss_names}); rebuild it with 'mlm' to use cross_former/mlm_logits"
            )


def join_parts(global_feats: Tensor, tse_feats: Tensor) -> Tensor:
    """RDE's retrieval embedding: (B, D), (B, E) -> (B, D + E) float32 of norm 1.

    ``[g / |g|, t / |t|] / sqrt(2)``: the dot product of two such embeddings is the mean of the
    global and the TSE cosine similarities, RDE's inference score.
    """
    parts = [F.normalize(x.float(), dim=-1) for x in (global_feats, tse_feats)]
    return torch.cat(parts, dim=-1) * 0.5**0.5


def text_global(text_tokens: Tensor, ids: Tensor) -> Tensor:
    """Token at the end-of-text position (largest id): (B, L, D), (B, L) -> (B, D) float32."""
    rows = torch.arange(ids.shape[0], device=ids.device)
    return text_tokens[rows, ids.argmax(dim=-1)].float()
