"""Encoding of evaluation sets and text-to-image (and image-to-text) retrieval metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from irra.engine.distributed import DistContext, all_gather_rows
from irra.metrics import retrieval_metrics
from irra.runtime import autocast

Progress = Callable[[Iterable, str, int], Iterable]


@dataclass
class EncodedSet:
    """L2-normalised global features of an evaluation split.

    Attributes:
        text_feats: (Q, D) float32, one row per caption (query).
        text_pids: (Q,) long.
        image_feats: (G, D) float32, one row per gallery image.
        image_pids: (G,) long.
    """

    text_feats: torch.Tensor
    text_pids: torch.Tensor
    image_feats: torch.Tensor
    image_pids: torch.Tensor

    def similarity(self) -> torch.Tensor:
        """Cosine similarities (Q, G), text rows."""
        return self.text_feats @ self.image_feats.T


@torch.no_grad()
def encode_loader(
    encode: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable[dict],
    key: str,
    device: torch.device,
    precision: str = "fp32",
    progress: Progress | None = None,
    desc: str = "encode",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``encode`` over batches ``batch[key]`` and return normalised features and pids.

    Returns:
        feats: (N, D) float32 on ``device``, L2-normalised; pids: (N,) long on ``device``.
    """
    feats, pids = [], []
    batches: Iterable[dict] = loader
    if progress is not None:
        batches = progress(loader, desc, len(loader) if hasattr(loader, "__len__") else 0)
    for batch in batches:
        inputs = batch[key].to(device, non_blocking=True)
        with autocast(device, precision):
            out = encode(inputs)
        feats.append(F.normalize(out.float(), dim=-1))
        pids.append(batch["pids"].to(device))
    return torch.cat(feats), torch.cat(pids)


@torch.no_grad()
def encode_split(
    model: nn.Module,
    image_loader: Iterable[dict],
    text_loader: Iterable[dict],
    device: torch.device,
    precision: str = "fp32",
    progress: Progress | None = None,
) -> EncodedSet:
    """Encode every gallery image and every caption of a split with ``model`` (in eval mode)."""
    was_training = model.training
    model.eval()
    try:
        text_feats, text_pids = encode_loader(
            model.encode_text, text_loader, "caption_ids", device, precision, progress, "captions"
        )
        image_feats, image_pids = encode_loader(
            model.encode_image, image_loader, "images", device, precision, progress, "images"
        )
    finally:
        model.train(was_training)
    return EncodedSet(text_feats, text_pids, image_feats, image_pids)


def gather_encoded(encoded: EncodedSet, ctx: DistContext) -> EncodedSet:
    """Concatenate the parts of a split that each process encoded, in rank order.

    Args:
        encoded: this process's contiguous shard of the captions and of the images.
        ctx: the process group (one process: ``encoded`` is returned as it is).

    Returns:
        The whole split in every process: text_feats (Q, D), image_feats (G, D) and their pids.
    """
    if not ctx.distributed:
        return encoded
    return EncodedSet(
        all_gather_rows(encoded.text_feats, ctx),
        all_gather_rows(encoded.text_pids, ctx),
        all_gather_rows(encoded.image_feats, ctx),
        all_gather_rows(encoded.image_pids, ctx),
    )


def split_metrics(
    encoded: EncodedSet, *, image_to_text: bool = False, image_to_image: bool = False
) -> dict[str, float]:
    """Text-to-image metrics (R1, R5, R10, mAP, mINP, percent) of an encoded split.

    With ``image_to_text`` the image-to-text metrics are added with an ``i2t_`` prefix; with
    ``image_to_image`` the image-to-image ones with an ``i2i_`` prefix (every gallery image a
    query against the others, itself left out: the re-identification protocol).
    """
    similarity = encoded.similarity()
    metrics = retrieval_metrics(similarity, encoded.text_pids, encoded.image_pids)
    if image_to_text:
        reverse = retrieval_metrics(similarity.T, encoded.image_pids, encoded.text_pids)
        metrics.update({f"i2t_{k}": v for k, v in reverse.items()})
    if image_to_image:
        images = encoded.image_feats
        itself = torch.arange(images.shape[0], device=images.device)
        pids = encoded.image_pids
        i2i = retrieval_metrics(images @ images.T, pids, pids, exclude=itself)
        metrics.update({f"i2i_{k}": v for k, v in i2i.items()})
    return metrics
