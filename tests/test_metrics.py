"""Retrieval metrics against a brute-force oracle (a Python stable sort of every row)."""

from __future__ import annotations

import logging
import math
import random

import pytest
import torch

from irra import metrics
from irra.metrics import cmc_curve, per_query_stats, retrieval_metrics


def oracle_stats(similarity: torch.Tensor, query_pids, gallery_pids):
    """Per query: None without a correct item, else (first rank, AP, INP), by brute force."""
    rows = similarity.double().tolist()
    qp, gp = [int(p) for p in query_pids], [int(p) for p in gallery_pids]
    out = []
    for i, row in enumerate(rows):
        order = sorted(range(len(row)), key=lambda g: (-row[g], g))  # ties: lower index first
        ranks = [k + 1 for k, g in enumerate(order) if gp[g] == qp[i]]
        if not ranks:
            out.append(None)
            continue
        ap = sum((j + 1) / r for j, r in enumerate(ranks)) / len(ranks)
        out.append((ranks[0], ap, len(ranks) / ranks[-1]))
    return out


def oracle_metrics(similarity, query_pids, gallery_pids):
    stats = [s for s in oracle_stats(similarity, query_pids, gallery_pids) if s is not None]
    n = len(stats)
    result = {f"R{k}": 100.0 * sum(s[0] <= k for s in stats) / n for k in (1, 5, 10)}
    result["mAP"] = 100.0 * sum(s[1] for s in stats) / n
    result["mINP"] = 100.0 * sum(s[2] for s in stats) / n
    return result


def assert_matches_oracle(similarity, query_pids, gallery_pids, **kwargs):
    stats = per_query_stats(similarity, query_pids, gallery_pids, **kwargs)
    for i, expected in enumerate(oracle_stats(similarity, query_pids, gallery_pids)):
        if expected is None:
            assert stats.num_matches[i] == 0 and stats.first_rank[i] == 0
            assert math.isnan(stats.ap[i]) and math.isnan(stats.inp[i])
        else:
            first, ap, inp = expected
            assert stats.first_rank[i].item() == first, f"query {i}"
            assert stats.ap[i].item() == pytest.approx(ap, abs=1e-12), f"query {i}"
            assert stats.inp[i].item() == pytest.approx(inp, abs=1e-12), f"query {i}"
    return stats


def identity_problem(num_query, num_gallery, num_ids, seed, dtype=torch.float32):
    """Cosine similarities of noisy per-identity features: several gallery items per id."""
    gen = torch.Generator().manual_seed(seed)
    gallery_pids = torch.arange(num_gallery) % num_ids
    query_pids = torch.randint(0, num_ids, (num_query,), generator=gen)
    centroids = torch.randn(num_ids, 16, generator=gen)
    image = torch.nn.functional.normalize(
        centroids[gallery_pids] + torch.randn(num_gallery, 16, generator=gen), dim=1
    )
    text = torch.nn.functional.normalize(
        centroids[query_pids] + torch.randn(num_query, 16, generator=gen), dim=1
    )
    return (text @ image.T).to(dtype), query_pids, gallery_pids


def test_hand_computed_three_by_four_example():
    gallery_pids = torch.tensor([1, 2, 1, 3])
    query_pids = torch.tensor([1, 2, 3])
    similarity = torch.tensor(
        [
            # order g0 (.9), g1 (.8), g3 (.5), g2 (.3); correct g0, g2 at ranks 1 and 4:
            # first 1, AP = (1/1 + 2/4) / 2 = 0.75, INP = 2/4 = 0.5
            [0.9, 0.8, 0.3, 0.5],
            # g0 and g1 tie: the lower index g0 comes first, so the correct g1 has rank 2:
            # first 2, AP = 1/2, INP = 1/2
            [0.7, 0.7, 0.2, 0.1],
            # all tie: gallery order, the correct g3 has rank 4: AP = INP = 1/4
            [0.4, 0.4, 0.4, 0.4],
        ]
    )
    # R1 = 1/3, R5 = R10 = 3/3, mAP = (0.75 + 0.5 + 0.25) / 3 = 0.5,
    # mINP = (0.5 + 0.5 + 0.25) / 3 = 0.41666...
    result = retrieval_metrics(similarity, query_pids, gallery_pids)
    assert result == pytest.approx(
        {"R1": 100 / 3, "R5": 100.0, "R10": 100.0, "mAP": 50.0, "mINP": 125 / 3}
    )
    # CMC: hits by rank 1: q0; by rank 2: q0, q1; by rank 4: all three.
    curve = cmc_curve(similarity, query_pids, gallery_pids, max_rank=4)
    assert curve.tolist() == pytest.approx([100 / 3, 200 / 3, 200 / 3, 100.0])
    stats = per_query_stats(similarity, query_pids, gallery_pids)
    assert stats.first_rank.tolist() == [1, 2, 4]
    assert stats.num_matches.tolist() == [2, 1, 1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_identity_structure_matches_oracle(dtype, seed):
    similarity, query_pids, gallery_pids = identity_problem(40, 90, 12, seed, dtype)
    assert_matches_oracle(similarity, query_pids, gallery_pids)
    assert retrieval_metrics(similarity, query_pids, gallery_pids) == pytest.approx(
        oracle_metrics(similarity, query_pids, gallery_pids), abs=1e-9
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_integer_scores_with_many_ties_match_oracle(dtype):
    gen = torch.Generator().manual_seed(3)
    similarity = torch.randint(-3, 4, (30, 50), generator=gen).to(dtype)
    query_pids = torch.randint(0, 6, (30,), generator=gen)
    gallery_pids = torch.randint(0, 6, (50,), generator=gen)
    assert_matches_oracle(similarity, query_pids, gallery_pids)


def test_fuzz_small_problems_against_oracle():
    rng = random.Random(0)
    for _ in range(60):
        num_query, num_gallery, num_ids = rng.randint(1, 8), rng.randint(1, 25), rng.randint(1, 5)
        gen = torch.Generator().manual_seed(rng.randrange(10**6))
        if rng.random() < 0.5:
            similarity = torch.randint(-2, 3, (num_query, num_gallery), generator=gen).float()
        else:
            similarity = torch.randn(num_query, num_gallery, generator=gen)
        query_pids = torch.randint(0, num_ids + 1, (num_query,), generator=gen)
        gallery_pids = torch.randint(0, num_ids, (num_gallery,), generator=gen)
        assert_matches_oracle(
            similarity, query_pids, gallery_pids, chunk_size=rng.choice([None, 1, 2, 5])
        )


def test_single_match_queries():
    similarity, query_pids, _ = identity_problem(25, 25, 25, 4)
    gallery_pids = torch.arange(25)  # one correct item per query
    stats = assert_matches_oracle(similarity, query_pids, gallery_pids)
    assert (stats.num_matches == 1).all()
    # with a single correct item AP = INP = 1 / rank
    assert torch.allclose(stats.ap, 1.0 / stats.first_rank.double())
    assert torch.allclose(stats.inp, stats.ap)


def test_query_whose_whole_gallery_is_correct():
    gen = torch.Generator().manual_seed(5)
    similarity = torch.randn(3, 7, generator=gen)
    gallery_pids = torch.full((7,), 4)
    query_pids = torch.tensor([4, 4, 4])
    stats = assert_matches_oracle(similarity, query_pids, gallery_pids)
    assert stats.first_rank.tolist() == [1, 1, 1]
    assert stats.ap.tolist() == [1.0, 1.0, 1.0] and stats.inp.tolist() == [1.0, 1.0, 1.0]


def test_queries_without_match_are_excluded_with_a_warning(caplog):
    similarity, query_pids, gallery_pids = identity_problem(12, 30, 5, 6)
    query_pids = query_pids.clone()
    query_pids[[2, 7]] = 99  # identity absent from the gallery
    with caplog.at_level(logging.WARNING, logger="irra.metrics"):
        result = retrieval_metrics(similarity, query_pids, gallery_pids)
    assert "2 of 12 queries" in caplog.text
    keep = query_pids != 99
    expected = oracle_metrics(similarity[keep], query_pids[keep], gallery_pids)
    assert result == pytest.approx(expected, abs=1e-9)
    curve = cmc_curve(similarity, query_pids, gallery_pids, 10)
    assert torch.equal(curve, cmc_curve(similarity[keep], query_pids[keep], gallery_pids, 10))
    assert curve[[0, 4, 9]].tolist() == pytest.approx([expected[k] for k in ("R1", "R5", "R10")])


def test_no_query_with_a_match_raises():
    with pytest.raises(ValueError, match="no query has a correct gallery item"):
        retrieval_metrics(torch.randn(2, 3), torch.tensor([7, 8]), torch.tensor([1, 2, 3]))


def test_chunk_sizes_give_identical_results():
    similarity, query_pids, gallery_pids = identity_problem(17, 40, 6, 7)
    reference = per_query_stats(similarity, query_pids, gallery_pids)
    for chunk_size in (1, 3, 17, 100):
        stats = per_query_stats(similarity, query_pids, gallery_pids, chunk_size=chunk_size)
        assert torch.equal(stats.first_rank, reference.first_rank)
        assert torch.equal(stats.ap, reference.ap)
        assert torch.equal(stats.inp, reference.inp)
        assert retrieval_metrics(
            similarity, query_pids, gallery_pids, chunk_size=chunk_size
        ) == retrieval_metrics(similarity, query_pids, gallery_pids)


def test_tiny_memory_budget_splits_work_without_changing_results(monkeypatch):
    similarity, query_pids, gallery_pids = identity_problem(20, 60, 4, 8)
    reference = per_query_stats(similarity, query_pids, gallery_pids)
    monkeypatch.setattr(metrics, "MEMORY_BUDGET_BYTES", 1)  # one row per block at every level
    stats = assert_matches_oracle(similarity, query_pids, gallery_pids)
    assert torch.equal(stats.ap, reference.ap) and torch.equal(stats.inp, reference.inp)


def test_transposed_similarity_gives_image_to_text_metrics():
    similarity, query_pids, gallery_pids = identity_problem(30, 20, 5, 9)
    assert_matches_oracle(similarity.T, gallery_pids, query_pids)


def test_wide_gallery_keys_stay_exact():
    gen = torch.Generator().manual_seed(10)
    similarity = torch.randint(0, 50, (3, 70_000), generator=gen).float()
    gallery_pids = torch.randint(0, 3, (70_000,), generator=gen)
    assert_matches_oracle(similarity, torch.tensor([0, 1, 2]), gallery_pids)


def test_signed_zeros_tie_and_infinities_rank():
    inf = float("inf")
    similarity = torch.tensor([[0.0, -0.0, 1.0, -inf], [-inf, inf, -0.0, 0.0]])
    query_pids = torch.tensor([1, 2])
    gallery_pids = torch.tensor([0, 1, 2, 1])
    # row 0 order: g2 (1.0), g0 (0.0), g1 (-0.0, ties g0), g3 (-inf): correct g1, g3 at 3, 4
    # row 1 order: g1 (inf), g2 (-0.0), g3 (0.0, ties g2), g0 (-inf): correct g2 at 2
    stats = assert_matches_oracle(similarity, query_pids, gallery_pids)
    assert stats.first_rank.tolist() == [3, 2]


def test_nan_similarity_is_rejected():
    similarity = torch.tensor([[0.5, float("nan"), 0.1]])
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(similarity, torch.tensor([1]), torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="NaN"):  # NaN on a correct item
        retrieval_metrics(similarity, torch.tensor([0]), torch.tensor([1, 0, 1]))


def test_cmc_curve_matches_oracle():
    similarity, query_pids, gallery_pids = identity_problem(30, 60, 10, 11)
    firsts = [s[0] for s in oracle_stats(similarity, query_pids, gallery_pids) if s]
    expected = [100.0 * sum(f <= k for f in firsts) / len(firsts) for k in range(1, 21)]
    curve = cmc_curve(similarity, query_pids, gallery_pids, max_rank=20)
    assert curve.shape == (20,) and curve.tolist() == pytest.approx(expected)


def test_pids_as_lists_are_accepted():
    similarity, query_pids, gallery_pids = identity_problem(5, 9, 3, 12)
    assert retrieval_metrics(similarity, query_pids.tolist(), gallery_pids.tolist()) == (
        retrieval_metrics(similarity, query_pids, gallery_pids)
    )


@pytest.mark.parametrize(
    ("similarity", "query_pids", "gallery_pids", "message"),
    [
        (torch.randn(3), [0, 1, 2], [0], "2-D"),
        (torch.randint(0, 3, (2, 3)), [0, 1], [0, 1, 2], "floating-point"),
        (torch.randn(2, 3), [0, 1, 2], [0, 1, 2], "query_pids must be 1-D with 2"),
        (torch.randn(2, 3), [0, 1], [0, 1], "gallery_pids must be 1-D with 3"),
        (torch.randn(2, 3), [0.5, 1.0], [0, 1, 2], "integer identities"),
        (torch.randn(0, 3), [], [0, 1, 2], "empty"),
    ],
)
def test_bad_inputs_fail_early(similarity, query_pids, gallery_pids, message):
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(similarity, torch.tensor(query_pids), torch.tensor(gallery_pids))


def test_bad_chunk_size_and_max_rank():
    similarity, query_pids, gallery_pids = identity_problem(4, 6, 2, 13)
    with pytest.raises(ValueError, match="chunk_size"):
        retrieval_metrics(similarity, query_pids, gallery_pids, chunk_size=0)
    with pytest.raises(ValueError, match="max_rank"):
        cmc_curve(similarity, query_pids, gallery_pids, max_rank=0)


def test_row_blocks_respect_budget_and_row_limit():
    costs = torch.tensor([5, 5, 5, 20, 1, 1, 1, 1])
    assert metrics._row_blocks(costs, 10) == [(0, 2), (2, 3), (3, 4), (4, 8)]
    assert metrics._row_blocks(costs, 100, max_rows=3) == [(0, 3), (3, 6), (6, 8)]


@pytest.mark.parametrize("chunk_size", [None, 7])
def test_excluded_items_match_an_oracle_that_deletes_them(chunk_size):
    # Image-to-image over the gallery itself: query i must not retrieve gallery item i. The
    # oracle deletes that column from row i and ranks what is left.
    gen = torch.Generator().manual_seed(3)
    pids = torch.arange(50) % 9
    feats = torch.nn.functional.normalize(torch.randn(50, 8, generator=gen), dim=1)
    similarity = feats @ feats.T
    exclude = torch.arange(50)
    exclude[::5] = -1  # some queries keep every item
    stats = per_query_stats(similarity, pids, pids, exclude=exclude, chunk_size=chunk_size)
    for i in range(50):
        keep = [g for g in range(50) if g != int(exclude[i])]
        (expected,) = oracle_stats(similarity[i : i + 1, keep], pids[i : i + 1], pids[keep])
        first, ap, inp = expected
        assert stats.first_rank[i].item() == first, f"query {i}"
        assert stats.num_matches[i].item() == sum(int(pids[g]) == int(pids[i]) for g in keep)
        assert stats.ap[i].item() == pytest.approx(ap, abs=1e-12)
        assert stats.inp[i].item() == pytest.approx(inp, abs=1e-12)
    assert torch.equal(similarity, feats @ feats.T)  # the caller's matrix is left as it was
    with pytest.raises(ValueError, match="exclude"):
        per_query_stats(similarity, pids, pids, exclude=torch.full((50,), 50))
