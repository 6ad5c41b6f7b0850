"""Masked-language-modelling corruption of one tokenised caption (IRRA's IRR task).

Rule (the paper's and the reference's): every word token, i.e. every id strictly between
``PAD_ID`` (0) and ``MASK_ID`` (49405), is *chosen* with probability ``mask_prob`` (0.15). A chosen
token becomes ``MASK_ID`` with probability 0.8, a uniformly random id in ``[1, 49404]`` with
probability 0.1, and stays unchanged otherwise. Labels hold the original id at chosen positions
and 0 (ignored by the loss) elsewhere. If nothing was chosen, position 1 (the first token after
start-of-text) is masked and labelled with its original id.

All randomness comes from the ``generator`` argument; datasets derive it from
``(seed, epoch, index)`` with :func:`irra.data.rng.derive_generator`.
"""

from __future__ import annotations

import torch

from irra.tokenizer import MASK_ID, PAD_ID

__all__ = ["mask_tokens"]


def mask_tokens(
    token_ids: torch.Tensor,
    generator: torch.Generator,
    *,
    mask_prob: float = 0.15,
    mask_token_prob: float = 0.8,
    random_token_prob: float = 0.1,
    mask_id: int = MASK_ID,
    random_id_range: tuple[int, int] = (1, MASK_ID - 1),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt one caption for MLM.

    Args:
        token_ids: (L,) long, a tokenised caption (SOT, words, EOT, zero padding).
        generator: the source of every random draw.
        mask_prob: probability that a word token is chosen.
        mask_token_prob: probability that a chosen token becomes ``mask_id``.
        random_token_prob: probability that a chosen token becomes a random id.
        mask_id: the mask token's id; ids ``>= mask_id`` (mask, SOT, EOT) are never chosen.
        random_id_range: inclusive range of random replacement ids.

    Returns:
        ``(mlm_ids, mlm_labels)``, both (L,) long: the corrupted caption, and the original id at
        chosen positions with 0 elsewhere. ``token_ids`` is not modified.

    Example:
        >>> ids = torch.tensor([49406, 320, 1125, 49407, 0])
        >>> mlm_ids, labels = mask_tokens(ids, torch.Generator().manual_seed(0))
        >>> bool((labels > 0).any())
        True
    """
    if token_ids.dim() != 1:
        raise ValueError(f"token_ids must be (L,), got shape {tuple(token_ids.shape)}")
    ids = token_ids.to(torch.long)
    length = ids.numel()
    gen_device = generator.device
    chosen_draw = torch.rand(length, generator=generator, device=gen_device).to(ids.device)
    action_draw = torch.rand(length, generator=generator, device=gen_device).to(ids.device)
    low, high = random_id_range
    random_ids = torch.randint(low, high + 1, (length,), generator=generator, device=gen_device)
    random_ids = random_ids.to(ids.device)

    candidate = (ids > PAD_ID) & (ids < mask_id)
    chosen = candidate & (chosen_draw < mask_prob)
    to_mask = chosen & (action_draw < mask_token_prob)
    to_random = chosen & (action_draw >= mask_token_prob)
    to_random &= action_draw < mask_token_prob + random_token_prob

    mlm_ids = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    mlm_ids = torch.where(to_random, random_ids, mlm_ids)
    mlm_labels = torch.where(chosen, ids, torch.zeros_like(ids))
    if not bool(chosen.any()) and length > 1:
        mlm_labels[1] = ids[1]
        mlm_ids[1] = mask_id
    return mlm_ids, mlm_labels
