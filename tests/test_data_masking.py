"""MLM masking: rates over many samples, what is never chosen, labels, and the fallback."""

from __future__ import annotations

import torch

from irra.data.masking import mask_tokens
from irra.data.rng import derive_generator

# Written out independently of the code under test (SPEC: mask 49405, SOT 49406, EOT 49407).
MASK, SOT, EOT = 49405, 49406, 49407


def _caption(words: list[int], length: int = 77) -> torch.Tensor:
    ids = torch.zeros(length, dtype=torch.long)
    row = [SOT, *words, EOT]
    ids[: len(row)] = torch.tensor(row)
    return ids


def test_masking_rates_match_15_80_10_10() -> None:
    words = [1000 + k for k in range(75)]
    ids = _caption(words)
    chosen = masked = randomised = kept = 0
    for index in range(400):
        mlm_ids, labels = mask_tokens(ids, derive_generator(7, 0, index, "mlm"))
        sel = labels > 0
        chosen += int(sel.sum())
        masked += int((mlm_ids[sel] == MASK).sum())
        kept += int((mlm_ids[sel] == ids[sel]).sum())
        randomised += int(((mlm_ids[sel] != MASK) & (mlm_ids[sel] != ids[sel])).sum())
        assert torch.equal(labels[sel], ids[sel])
        assert torch.equal(mlm_ids[~sel], ids[~sel])
    total = 400 * 75
    assert abs(chosen / total - 0.15) < 0.01
    assert abs(masked / chosen - 0.8) < 0.02
    assert abs(randomised / chosen - 0.1) < 0.015
    assert abs(kept / chosen - 0.1) < 0.015


def test_special_and_padding_tokens_are_never_chosen() -> None:
    ids = _caption([5, MASK, 7, 8], length=12)
    for index in range(200):
        mlm_ids, labels = mask_tokens(ids, derive_generator(0, 1, index, "mlm"), mask_prob=0.9)
        for position in (0, 2, 5, 6, 7, 11):  # SOT, MASK, EOT, padding
            assert int(labels[position]) == 0
            assert int(mlm_ids[position]) == int(ids[position])


def test_random_replacements_stay_in_range() -> None:
    ids = _caption([49404] * 60)
    seen = torch.cat(
        [
            mask_tokens(ids, derive_generator(0, 0, i, "mlm"), mask_prob=1.0, mask_token_prob=0.0)[
                0
            ][1:61]
            for i in range(50)
        ]
    )
    assert int(seen.min()) >= 1 and int(seen.max()) <= 49404


def test_nothing_chosen_masks_position_one() -> None:
    ids = _caption([320, 1125, 530])
    mlm_ids, labels = mask_tokens(ids, torch.Generator().manual_seed(0), mask_prob=0.0)
    expected_ids = ids.clone()
    expected_ids[1] = MASK
    expected_labels = torch.zeros_like(ids)
    expected_labels[1] = 320
    assert torch.equal(mlm_ids, expected_ids)
    assert torch.equal(labels, expected_labels)


def test_empty_caption_falls_back_to_position_one() -> None:
    ids = _caption([])
    mlm_ids, labels = mask_tokens(ids, torch.Generator().manual_seed(0))
    assert int(mlm_ids[1]) == MASK and int(labels[1]) == EOT
    assert int((labels > 0).sum()) == 1


def test_same_generator_same_mask_and_input_untouched() -> None:
    ids = _caption(list(range(100, 140)))
    before = ids.clone()
    a = mask_tokens(ids, derive_generator(3, 2, 9, "mlm"))
    b = mask_tokens(ids, derive_generator(3, 2, 9, "mlm"))
    c = mask_tokens(ids, derive_generator(3, 3, 9, "mlm"))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert torch.equal(ids, before)
