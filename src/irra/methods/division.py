"""RDE's consensus clean-sample division: which training pairs look clean to both embeddings.

Per branch (global embedding, token selection embedding), the per-sample losses of every
training pair are min-max normalised and a two-component Gaussian mixture is fitted; a pair is
clean for the branch when the posterior of the low-loss component exceeds 0.5 (when no pair
falls below, the 1% with the lowest posterior count as noisy). Clean for both branches: weight
1; noisy for both: 0; the branches disagree: a random 0 or 1.

The mixture is scikit-learn's ``GaussianMixture`` (the ``train`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MixtureSettings:
    """EM settings of the two-component mixture (the authors' defaults for clean-ish data;
    they use ``max_iter=100, tol=1e-4, reg_covar=1e-6`` above 40% noise and on RSTPReid)."""

    max_iter: int = 10
    tol: float = 1e-2
    reg_covar: float = 5e-4


def clean_posterior(losses: np.ndarray, settings: MixtureSettings, seed: int) -> np.ndarray:
    """Posterior of the low-loss component of a 2-component GMM: (N,) float -> (N,) in [0, 1].

    The losses are min-max normalised first (all equal: every pair gets posterior 1).
    """
    from sklearn.mixture import GaussianMixture

    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    if losses.size < 2 or np.ptp(losses) == 0:
        return np.ones_like(losses)
    scaled = ((losses - losses.min()) / np.ptp(losses)).reshape(-1, 1)
    gmm = GaussianMixture(
        n_components=2,
        max_iter=settings.max_iter,
        tol=settings.tol,
        reg_covar=settings.reg_covar,
        random_state=seed,
    )
    gmm.fit(scaled)
    return gmm.predict_proba(scaled)[:, int(np.argmin(gmm.means_.reshape(-1)))]


def clean_prediction(posterior: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(N,) posterior -> (N,) bool clean; if none is at or below ``threshold``, the lowest 1%
    are noisy."""
    if posterior.min() > threshold:
        threshold = np.sort(posterior)[len(posterior) // 100]
    return posterior > threshold


def consensus_division(
    loss_a: np.ndarray,
    loss_b: np.ndarray,
    *,
    seed: int,
    settings: MixtureSettings | None = None,
) -> np.ndarray:
    """Per-sample training weights (N,) float32 in {0, 1} from the two branches' (N,) losses.

    Deterministic for a given ``seed`` (the mixtures' initialisation and the coin flips of
    the pairs the branches disagree on).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> losses = np.concatenate([rng.normal(0.1, 0.05, 90), rng.normal(1.0, 0.05, 10)])
        >>> int(consensus_division(losses, losses, seed=0).sum())
        90
    """
    settings = settings or MixtureSettings()
    clean_a = clean_prediction(clean_posterior(loss_a, settings, seed))
    clean_b = clean_prediction(clean_posterior(loss_b, settings, seed))
    weights = (clean_a & clean_b).astype(np.float32)
    disagree = clean_a != clean_b
    coins = np.random.default_rng(seed).integers(0, 2, size=int(disagree.sum()))
    weights[disagree] = coins
    return weights


def division_scores(weights: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """Precision and recall (percent) of the pairs judged clean against the true clean pairs.

    Args:
        weights: (N,) the division's weights (> 0: judged clean).
        clean: (N,) bool, True where the pair was not corrupted.

    Returns:
        ``clean_precision`` (of the pairs judged clean, the share truly clean), ``clean_recall``
        (of the truly clean pairs, the share judged clean) and ``judged_clean`` (share of all).
    """
    judged = np.asarray(weights) > 0
    clean = np.asarray(clean, dtype=bool)
    hits = float((judged & clean).sum())
    return {
        "clean_precision": 100.0 * hits / max(float(judged.sum()), 1.0),
        "clean_recall": 100.0 * hits / max(float(clean.sum()), 1.0),
        "judged_clean": 100.0 * float(judged.mean()) if judged.size else 0.0,
    }
