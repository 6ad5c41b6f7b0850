"""CLIP's byte-level BPE tokenizer with IRRA's ``<|mask|>`` token, returning torch tensors.

The tokenizer itself (vocabulary, cleaning, BPE, ids) lives in :mod:`irra.bpe`, which does not
import PyTorch; this module re-exports it and adds :func:`tokenize`, the ``torch.long`` form the
model takes. See :mod:`irra.bpe` for the exact vocabulary and the deliberate differences from the
official IRRA tokenizer.

Example:
    >>> ids = tokenize(["a woman in a red coat"])  # (1, 77) torch.long
    >>> default_tokenizer().decode(ids[0].tolist())
    '<|startoftext|>a woman in a red coat <|endoftext|>'
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from irra.bpe import (
    BPE_FILENAME,
    EOT_ID,
    EOT_TOKEN,
    MASK_ID,
    MASK_TOKEN,
    PAD_ID,
    SOT_ID,
    SOT_TOKEN,
    VOCAB_SIZE,
    Tokenizer,
    bytes_to_unicode,
    clean_text,
    default_bpe_path,
    default_tokenizer,
    token_ids,
)

__all__ = [
    "BPE_FILENAME",
    "EOT_ID",
    "EOT_TOKEN",
    "MASK_ID",
    "MASK_TOKEN",
    "PAD_ID",
    "SOT_ID",
    "SOT_TOKEN",
    "VOCAB_SIZE",
    "Tokenizer",
    "bytes_to_unicode",
    "clean_text",
    "default_bpe_path",
    "default_tokenizer",
    "token_ids",
    "token_vocabulary",
    "tokenize",
]


def token_vocabulary(ids: torch.Tensor) -> tuple[int, ...]:
    """The sorted distinct ids of tokenised captions ``ids`` (any shape), plus SOT, EOT and MASK.

    The zero padding counts where a caption is shorter than the context.

    Example:
        >>> token_vocabulary(tokenize(["a man", "a tall woman"], context_length=5))
        (0, 320, 786, 2308, 7771, 49405, 49406, 49407)
    """
    return tuple(sorted(set(ids.unique().tolist()) | {MASK_ID, SOT_ID, EOT_ID}))


def tokenize(
    texts: str | Sequence[str],
    context_length: int = 77,
    truncate: bool = True,
    *,
    tokenizer: Tokenizer | None = None,
) -> torch.Tensor:
    """Token ids ``[SOT] + BPE + [EOT]``, zero padded, as IRRA feeds the text encoder.

    Args:
        texts: one caption or a sequence of captions.
        context_length: L, the number of positions (77 for CLIP).
        truncate: cut longer captions to L tokens with EOT forced into the last slot; if
            False, a caption longer than L raises ValueError.
        tokenizer: defaults to :func:`default_tokenizer`.

    Returns:
        (N, L) torch.long; N = 1 for a single string.
    """
    return torch.from_numpy(token_ids(texts, context_length, truncate, tokenizer=tokenizer))
