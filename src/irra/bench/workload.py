"""Model sizes and synthetic batches for the benchmarks (no dataset or weights needed)."""

from __future__ import annotations

import torch

from irra.data.masking import mask_tokens
from irra.model import IRRA, IRRAConfig, clip_config
from irra.tokenizer import EOT_ID, SOT_ID

#: Benchmark sizes: the paper's setting and a tiny one for quick checks.
SIZES: dict[str, tuple[str, int]] = {
    "base": ("ViT-B/16", 11003),  # CUHK-PEDES training identities
    "tiny": ("tiny", 100),
}


def build_bench_model(size: str, device: torch.device) -> IRRA:
    """A randomly initialised IRRA (SDM + MLM + ID) of ``size`` on ``device``, fp32 weights.

    Raises:
        ValueError: unknown size (the message lists the valid ones).
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    arch, num_classes = SIZES[size]
    torch.manual_seed(0)
    config = IRRAConfig(clip_config(arch), num_classes=num_classes)
    return IRRA(config).to(device)


def caption_ids(
    batch: int,
    context_length: int,
    generator: torch.Generator,
    *,
    words: tuple[int, int] = (20, 40),
) -> torch.Tensor:
    """(batch, context_length) long token ids: SOT, ``words`` random word tokens, EOT, padding.

    Lengths are drawn uniformly in ``words`` (CUHK-PEDES captions are ~23 words, ~30 tokens).
    """
    ids = torch.zeros(batch, context_length, dtype=torch.long)
    low, high = words
    high = min(high, context_length - 2)
    low = min(low, high)
    lengths = torch.randint(low, high + 1, (batch,), generator=generator)
    for row, length in enumerate(lengths.tolist()):
        ids[row, 0] = SOT_ID
        ids[row, 1 : 1 + length] = torch.randint(1, 49405, (length,), generator=generator)
        ids[row, 1 + length] = EOT_ID
    return ids


def training_batch(model: IRRA, batch: int, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """A training batch for ``model`` on CPU, as the training loader gives it.

    Two captions per identity (as in CUHK-PEDES), MLM masking with the default probabilities and
    the reference behaviour (``caption_ids`` is the masked caption, equal to ``mlm_ids``).
    """
    gen = torch.Generator().manual_seed(seed)
    clip = model.config.clip
    height, width = clip.vision.image_size
    clean = caption_ids(batch, clip.text.context_length, gen)
    masked = [mask_tokens(row, gen) for row in clean]
    mlm_ids = torch.stack([m for m, _ in masked])
    return {
        "images": torch.randn(batch, 3, height, width, generator=gen),
        "caption_ids": mlm_ids.clone(),
        "clean_ids": clean,
        "mlm_ids": mlm_ids,
        "mlm_labels": torch.stack([label for _, label in masked]),
        "pids": torch.arange(batch) // 2 % max(model.config.num_classes, 1),
    }
