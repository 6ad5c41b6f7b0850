"""Losses against explicit-loop oracles in Python floats, closed forms and gradcheck."""

from __future__ import annotations

import math

import pytest
import torch

from irra.losses import cmpm_loss, id_loss, itc_loss, mlm_loss, sdm_loss, tal_loss

EPS = 1e-8


# ----------------------------------------------------------------------------- oracles
def _dot(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def _unit(rows):
    return [[x / math.sqrt(_dot(r, r)) for x in r] for r in rows]


def _log_softmax(logits):
    top = max(logits)
    log_z = top + math.log(sum(math.exp(v - top) for v in logits))
    return [v - log_z for v in logits]


def _kl_rows(logit_rows, pids, normalise):
    """mean_i sum_j p_ij (log p_ij - log(q_ij + EPS)), q = y / normaliser(y)."""
    total = 0.0
    for i, logits in enumerate(logit_rows):
        y = [1.0 if pids[i] == pids[j] else 0.0 for j in range(len(logits))]
        norm = sum(y) if normalise == "sum" else math.sqrt(sum(v * v for v in y))
        log_p = _log_softmax(logits)
        total += sum(
            math.exp(lp) * (lp - math.log(yj / norm + EPS)) for lp, yj in zip(log_p, y, strict=True)
        )
    return total / len(logit_rows)


def sdm_oracle(image, text, pids, scale):
    img, txt, pids = _unit(image.tolist()), _unit(text.tolist()), pids.tolist()
    t2i = [[scale * _dot(t, i) for i in img] for t in txt]
    i2t = [[scale * _dot(i, t) for t in txt] for i in img]
    return _kl_rows(t2i, pids, "sum") + _kl_rows(i2t, pids, "sum")


def cmpm_oracle(image, text, pids, normalise="sum"):
    img_raw, txt_raw, pids = image.tolist(), text.tolist(), pids.tolist()
    img, txt = _unit(img_raw), _unit(txt_raw)
    image_proj_text = [[_dot(i, t) for t in txt] for i in img_raw]
    text_proj_image = [[_dot(t, i) for i in img] for t in txt_raw]
    return _kl_rows(image_proj_text, pids, normalise) + _kl_rows(text_proj_image, pids, normalise)


def cross_entropy_oracle(logit_rows, targets):
    return sum(-_log_softmax(row)[t] for row, t in zip(logit_rows, targets, strict=True)) / len(
        targets
    )


def itc_oracle(image, text, scale):
    img, txt = _unit(image.tolist()), _unit(text.tolist())
    per_image = [[scale * _dot(i, t) for t in txt] for i in img]
    per_text = [[scale * _dot(t, i) for i in img] for t in txt]
    targets = list(range(len(img)))
    return (cross_entropy_oracle(per_image, targets) + cross_entropy_oracle(per_text, targets)) / 2


def features(batch, dim, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, dim, generator=gen, dtype=dtype) * 3
    text = torch.randn(batch, dim, generator=gen, dtype=dtype) * 0.5
    return image, text


# ----------------------------------------------------------------------------- SDM
@pytest.mark.parametrize("pids", [[0, 1, 2, 3, 4, 5], [0, 0, 1, 2, 2, 2], [3, 3, 3, 3, 3, 3]])
def test_sdm_matches_loop_oracle(pids):
    image, text = features(6, 5, seed=0)
    pids = torch.tensor(pids)
    loss = sdm_loss(image, text, pids, 50.0)
    assert loss.item() == pytest.approx(sdm_oracle(image, text, pids, 50.0), rel=1e-9, abs=1e-9)


def test_sdm_float32_matches_oracle():
    image, text = features(5, 8, seed=1, dtype=torch.float32)
    pids = torch.tensor([1, 1, 2, 3, 1])
    expected = sdm_oracle(image, text, pids, 50.0)
    assert sdm_loss(image, text, pids, 50.0).item() == pytest.approx(expected, rel=1e-4)


def test_sdm_single_sample_batch():
    image, text = features(1, 4, seed=2)
    # one pair: p = q = 1, so each direction is 1 * (0 - log(1 + eps))
    loss = sdm_loss(image, text, torch.tensor([7]), 50.0)
    assert loss.item() == pytest.approx(-2 * math.log(1 + EPS), abs=1e-15)


def test_sdm_identical_orthonormal_features_closed_form():
    batch, scale = 4, 50.0
    feats = torch.eye(batch, dtype=torch.float64)
    # S = I: on each row the matching logit is scale, the others 0.
    p_match = math.exp(scale) / (math.exp(scale) + batch - 1)
    p_other = 1 / (math.exp(scale) + batch - 1)
    row = p_match * (math.log(p_match) - math.log(1 + EPS)) + (batch - 1) * p_other * (
        math.log(p_other) - math.log(EPS)
    )
    loss = sdm_loss(feats, feats, torch.arange(batch), scale)
    assert loss.item() == pytest.approx(2 * row, rel=1e-9)


def test_sdm_one_identity_identical_features_is_near_zero():
    batch = 5
    feats = torch.ones(batch, 3, dtype=torch.float64)
    # all similarities equal: p = q = 1/B, loss = 2 * (log(1/B) - log(1/B + eps))
    loss = sdm_loss(feats, feats, torch.zeros(batch, dtype=torch.long), 50.0)
    assert loss.item() == pytest.approx(2 * (math.log(1 / batch) - math.log(1 / batch + EPS)))


def test_sdm_ignores_feature_norms():
    image, text = features(4, 6, seed=3)
    pids = torch.tensor([0, 1, 0, 2])
    assert sdm_loss(image * 7, text * 0.1, pids, 50.0).item() == pytest.approx(
        sdm_loss(image, text, pids, 50.0).item(), rel=1e-12
    )


# ----------------------------------------------------------------------------- ITC
def test_itc_matches_loop_oracle():
    image, text = features(5, 7, seed=4)
    assert itc_loss(image, text, 50.0).item() == pytest.approx(
        itc_oracle(image, text, 50.0), rel=1e-9
    )


def test_itc_identical_orthonormal_features_closed_form():
    batch, scale = 3, 10.0
    feats = torch.eye(batch, dtype=torch.float64)
    expected = -math.log(math.exp(scale) / (math.exp(scale) + batch - 1))
    assert itc_loss(feats, feats, scale).item() == pytest.approx(expected, rel=1e-12)


def test_itc_single_sample_batch_is_zero():
    image, text = features(1, 4, seed=5)
    assert itc_loss(image, text, 50.0).item() == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- CMPM
@pytest.mark.parametrize("pids", [[0, 1, 2, 3], [5, 5, 1, 5]])
@pytest.mark.parametrize("normalise", ["sum", "l2"])
def test_cmpm_matches_loop_oracle(pids, normalise):
    image, text = features(4, 6, seed=6)
    pids = torch.tensor(pids)
    loss = cmpm_loss(image, text, pids, label_normalization=normalise)
    assert loss.item() == pytest.approx(cmpm_oracle(image, text, pids, normalise), rel=1e-9)


def test_cmpm_label_normalizations_agree_without_repeated_identities():
    image, text = features(4, 6, seed=7)
    distinct, repeated = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 2, 3])
    assert cmpm_loss(image, text, distinct).item() == pytest.approx(
        cmpm_loss(image, text, distinct, label_normalization="l2").item(), rel=1e-12
    )
    assert cmpm_loss(image, text, repeated).item() != pytest.approx(
        cmpm_loss(image, text, repeated, label_normalization="l2").item(), rel=1e-6
    )


def test_cmpm_single_sample_batch():
    image, text = features(1, 4, seed=8)
    loss = cmpm_loss(image, text, torch.tensor([2]))
    assert loss.item() == pytest.approx(-2 * math.log(1 + EPS), abs=1e-15)


def test_cmpm_rejects_unknown_normalization():
    image, text = features(2, 3, seed=9)
    with pytest.raises(ValueError, match="label_normalization"):
        cmpm_loss(image, text, torch.tensor([0, 1]), label_normalization="max")


# ----------------------------------------------------------------------------- ID and MLM
def test_id_loss_matches_loop_oracle():
    gen = torch.Generator().manual_seed(10)
    image_logits = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    text_logits = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    pids = torch.tensor([5, 0, 0, 3])
    expected = (
        cross_entropy_oracle(image_logits.tolist(), pids.tolist())
        + cross_entropy_oracle(text_logits.tolist(), pids.tolist())
    ) / 2
    assert id_loss(image_logits, text_logits, pids).item() == pytest.approx(expected, rel=1e-12)


def test_mlm_loss_averages_over_labelled_positions_only():
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(2, 5, 9, generator=gen, dtype=torch.float64)  # (B, L, V)
    labels = torch.tensor([[0, 3, 0, 0, 8], [0, 0, 1, 0, 0]])
    rows = logits.reshape(-1, 9).tolist()
    flat_labels = labels.reshape(-1).tolist()
    labelled = [(row, t) for row, t in zip(rows, flat_labels, strict=True) if t != 0]
    expected = cross_entropy_oracle([r for r, _ in labelled], [t for _, t in labelled])
    assert mlm_loss(logits, labels).item() == pytest.approx(expected, rel=1e-12)
    assert mlm_loss(logits.reshape(-1, 9), labels.reshape(-1)).item() == pytest.approx(expected)
    # logits already restricted to the labelled positions
    mask = labels.reshape(-1) != 0
    restricted = mlm_loss(logits.reshape(-1, 9)[mask], labels.reshape(-1)[mask])
    assert restricted.item() == pytest.approx(expected, rel=1e-12)


def test_mlm_loss_custom_ignore_index():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, -100])  # label 0 counts here
    expected = cross_entropy_oracle([[2.0, 0.0, 0.0]], [0])
    assert mlm_loss(logits, labels, ignore_index=-100).item() == pytest.approx(expected)


def test_mlm_loss_without_labelled_positions_is_zero_and_differentiable():
    logits = torch.randn(4, 7, requires_grad=True)
    loss = mlm_loss(logits, torch.zeros(4, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


# ----------------------------------------------------------------------------- gradients
def test_gradcheck_all_losses():
    image, text = features(4, 3, seed=12)
    image.requires_grad_(True)
    text.requires_grad_(True)
    pids = torch.tensor([0, 1, 0, 2])
    assert torch.autograd.gradcheck(lambda i, t: sdm_loss(i, t, pids, 5.0), (image, text))
    assert torch.autograd.gradcheck(lambda i, t: itc_loss(i, t, 5.0), (image, text))
    assert torch.autograd.gradcheck(lambda i, t: cmpm_loss(i, t, pids), (image, text))
    gen = torch.Generator().manual_seed(13)
    logits = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    other = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: id_loss(a, b, pids), (logits, other))
    labels = torch.tensor([0, 3, 0, 1])
    assert torch.autograd.gradcheck(lambda a: mlm_loss(a, labels), (logits,))


@pytest.mark.parametrize("name", ["sdm", "itc", "cmpm"])
def test_gradients_are_finite_and_reach_both_modalities(name):
    image, text = features(6, 8, seed=14, dtype=torch.float32)
    image.requires_grad_(True)
    text.requires_grad_(True)
    pids = torch.tensor([0, 0, 1, 2, 3, 3])
    loss = {
        "sdm": lambda: sdm_loss(image, text, pids, 50.0),
        "itc": lambda: itc_loss(image, text, 50.0),
        "cmpm": lambda: cmpm_loss(image, text, pids),
    }[name]()
    loss.backward()
    for grad in (image.grad, text.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_shape_mismatches_fail_early():
    image, text = features(3, 4, seed=15)
    with pytest.raises(ValueError, match="same shape"):
        sdm_loss(image, text[:2], torch.arange(3), 50.0)
    with pytest.raises(ValueError, match="pids has 2 entries"):
        sdm_loss(image, text, torch.arange(2), 50.0)
    with pytest.raises(ValueError, match="same shape"):
        id_loss(torch.randn(3, 4), torch.randn(3, 5), torch.arange(3))
    with pytest.raises(ValueError, match="labels"):
        mlm_loss(torch.randn(3, 4), torch.ones(2, dtype=torch.long))


# ----------------------------------------------------------------------------- TAL (RDE)
def _tal_direction_oracle(rows, pids, tau, margin):
    """Per-row TAL by explicit loops: rows[i][j] = similarity of query i with candidate j."""
    out = []
    for i, row in enumerate(rows):
        same = [j for j in range(len(row)) if pids[j] == pids[i]]
        other = [j for j in range(len(row)) if pids[j] != pids[i]]
        top = max(row[j] / tau for j in same)
        z = sum(math.exp(row[j] / tau - top) for j in same)
        pos = sum(math.exp(row[j] / tau - top) / z * row[j] for j in same)
        if not other:
            out.append(0.0)
            continue
        top_neg = max(row[j] / tau for j in other)
        log_sum = top_neg + math.log(sum(math.exp(row[j] / tau - top_neg) for j in other))
        out.append(max(0.0, margin - pos + tau * log_sum))
    return out


def tal_oracle(image, text, pids, tau, margin):
    img, txt, pids = _unit(image.double().tolist()), _unit(text.double().tolist()), pids.tolist()
    t2i = [[_dot(t, i) for i in img] for t in txt]
    i2t = [[_dot(i, t) for t in txt] for i in img]
    a = _tal_direction_oracle(t2i, pids, tau, margin)
    b = _tal_direction_oracle(i2t, pids, tau, margin)
    return [x + y for x, y in zip(a, b, strict=True)]


@pytest.mark.parametrize("pids", [[0, 1, 2, 3, 4, 5], [0, 0, 1, 1, 1, 2], [3, 3, 3, 3, 7, 7]])
@pytest.mark.parametrize("tau,margin", [(0.015, 0.1), (0.2, 0.3)])
def test_tal_loss_matches_double_loop_oracle(pids, tau, margin) -> None:
    gen = torch.Generator().manual_seed(len(set(pids)) + 10)
    image = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    text = image + 2.0 * torch.randn(6, 5, generator=gen, dtype=torch.float64)
    pids_t = torch.tensor(pids)
    got = tal_loss(image, text, pids_t, temperature=tau, margin=margin)
    expected = torch.tensor(tal_oracle(image, text, pids_t, tau, margin), dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    assert got.shape == (6,)
    assert (got > 0).sum() >= 2  # some hinges active
    torch.testing.assert_close(tal_loss(image, text, pids_t, tau, margin, "sum"), expected.sum())
    torch.testing.assert_close(tal_loss(image, text, pids_t, tau, margin, "mean"), expected.mean())


def test_tal_loss_tends_to_hardest_negative_triplet_loss() -> None:
    gen = torch.Generator().manual_seed(5)
    image = torch.randn(8, 6, generator=gen, dtype=torch.float64)
    text = image + 0.7 * torch.randn(8, 6, generator=gen, dtype=torch.float64)
    pids = torch.tensor([0, 0, 1, 1, 2, 3, 3, 3])
    img, txt = _unit(image.tolist()), _unit(text.tolist())

    def triplet(rows):  # [m - most similar positive + most similar negative]_+ per row
        out = []
        for i, row in enumerate(rows):
            pos = max(row[j] for j in range(8) if pids[j] == pids[i])
            neg = max(row[j] for j in range(8) if pids[j] != pids[i])
            out.append(max(0.0, 0.1 - pos + neg))
        return out

    t2i = triplet([[_dot(t, i) for i in img] for t in txt])
    i2t = triplet([[_dot(i, t) for t in txt] for i in img])
    limit = torch.tensor([a + b for a, b in zip(t2i, i2t, strict=True)], dtype=torch.float64)
    assert limit.sum() > 0
    gaps = [
        float((tal_loss(image, text, pids, temperature=tau, margin=0.1) - limit).abs().max())
        for tau in (0.1, 0.01, 1e-3, 1e-5)
    ]
    assert gaps[-1] < 1e-4
    assert gaps == sorted(gaps, reverse=True)


def test_tal_loss_gradient_skips_the_positive_weights() -> None:
    """The softmax weights of the positives are detached: the gradient matches an oracle
    that treats them as constants."""
    gen = torch.Generator().manual_seed(2)
    image = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    text = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    pids = torch.tensor([0, 0, 1, 2])
    tau, margin = 0.5, 2.0  # a large margin keeps every hinge active
    tal_loss(image, text, pids, tau, margin, "sum").backward()
    img = torch.nn.functional.normalize(image, dim=-1)
    txt = torch.nn.functional.normalize(text, dim=-1)
    sims = txt @ img.T
    pos = pids[:, None] == pids[None, :]
    total = 0
    for s, p in ((sims, pos), (sims.T, pos.T)):
        w = torch.softmax((s / tau).masked_fill(~p, -torch.inf), 1).detach()
        neg = tau * torch.logsumexp((s / tau).masked_fill(p, -torch.inf), 1)
        total = total + (margin - (w * s).sum(1) + neg).sum()
    (expected,) = torch.autograd.grad(total, image)
    torch.testing.assert_close(image.grad, expected)


def test_tal_loss_rejects_bad_arguments() -> None:
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="temperature"):
        tal_loss(x, x, torch.arange(3), temperature=0.0)
    with pytest.raises(ValueError, match="reduction"):
        tal_loss(x, x, torch.arange(3), reduction="max")
