"""RDE's consensus division on synthetic loss mixtures with a planted clean/noisy split."""

from __future__ import annotations

import numpy as np

from irra.methods.division import (
    clean_prediction,
    consensus_division,
    division_scores,
)


def planted(seed: int, n: int = 2000, noisy_share: float = 0.3):
    rng = np.random.default_rng(seed)
    clean = rng.random(n) >= noisy_share
    loss = np.where(clean, rng.normal(0.2, 0.05, n), rng.normal(0.8, 0.08, n))
    return clean, loss


def test_division_recovers_a_planted_split() -> None:
    clean, loss_a = planted(1)
    _, noise = planted(2)
    loss_b = loss_a + 0.01 * noise  # the second branch agrees up to small noise
    weights = consensus_division(loss_a, loss_b, seed=3)
    assert set(np.unique(weights)) <= {0.0, 1.0}
    assert (weights.astype(bool) == clean).mean() > 0.99
    scores = division_scores(weights, clean)
    assert scores["clean_precision"] > 99 and scores["clean_recall"] > 99


def test_division_is_deterministic_for_a_seed_and_flips_coins_on_disagreement() -> None:
    clean, loss_a = planted(4)
    rng = np.random.default_rng(5)
    fooled = ~clean & (rng.random(clean.size) < 0.5)  # noisy pairs that branch b finds clean
    loss_b = np.where(fooled, rng.normal(0.2, 0.05, clean.size), loss_a)
    first = consensus_division(loss_a, loss_b, seed=7)
    np.testing.assert_array_equal(first, consensus_division(loss_a, loss_b, seed=7))
    assert (first[clean] == 1).mean() > 0.99
    assert (first[~clean & ~fooled] == 0).mean() > 0.99
    flipped = first[fooled]  # the branches disagree: coin flips, about half kept
    assert 0.35 < flipped.mean() < 0.65
    assert not np.array_equal(first, consensus_division(loss_a, loss_b, seed=8))


def test_all_clean_posteriors_still_mark_the_lowest_percent_noisy() -> None:
    posterior = np.linspace(0.6, 1.0, 500)
    pred = clean_prediction(posterior)
    assert pred.sum() == 500 - 6  # the 5 lowest plus the threshold value itself
    assert not pred[:6].any()


def test_division_scores_by_hand() -> None:
    weights = np.array([1, 1, 0, 0, 1], dtype=np.float32)
    clean = np.array([True, False, True, False, True])
    scores = division_scores(weights, clean)
    assert scores["clean_precision"] == 100 * 2 / 3
    assert scores["clean_recall"] == 100 * 2 / 3
    assert scores["judged_clean"] == 60.0
