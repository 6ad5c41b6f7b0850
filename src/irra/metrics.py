"""Retrieval metrics from a similarity matrix: CMC (Rank-k), mAP and mINP, exact and chunked.

Ranking convention (text-to-image, as in the IRRA reference): each query ranks the whole
gallery by *descending* similarity. **Ties are broken by gallery index, lower index first** -
the order a stable descending sort gives - so the rank of gallery item j for a query is::

    rank_j = #{g : s_g > s_j} + #{g < j : s_g == s_j} + 1

For a query with P correct gallery items at sorted ranks r_1 < ... < r_P:

- Rank-k (CMC): the query counts as a hit when r_1 <= k.
- AP = mean_i (i / r_i) (precision at each correct item).
- INP = P / r_P (inverse negative penalty: correct items over the rank of the last one).

Queries without any correct gallery item are excluded from every metric (a warning gives
their count); if no query has one a ValueError is raised. All metrics are in percent.

Algorithm (exact, never sorts a gallery row): the correct items of each query are found by
grouping the gallery by identity. Only the gallery items not scoring below a query's
lowest-scoring correct item ("candidates") can precede a correct item; the others are never
looked at individually (for a reasonable model they are the vast majority). Every candidate
and correct item gets one int64 key (query row, order-preserving integer code of the score,
reversed gallery index) whose order is exactly the ranking order, ties included; one
searchsorted of the candidates' keys into the sorted keys of the correct items, a histogram
and a cumulative sum then give, for every correct item, the number of items ranked before
it. Queries are processed in chunks, and candidates in blocks, whose working memory stays
within a budget (``MEMORY_BUDGET_BYTES``, 256 MB) whatever the gallery size. Comparisons
happen in the similarity's own dtype (float16 / bfloat16 scores are widened to float32 only to
compute their integer codes, which is exact), so the tie structure is never changed.
Everything runs on the similarity's device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["QueryStats", "cmc_curve", "per_query_stats", "retrieval_metrics"]

logger = logging.getLogger(__name__)

MEMORY_BUDGET_BYTES = 256 * 2**20
# Worst-case bytes of working memory, used to size the chunks: per (query, gallery) element
# (candidate mask + the indices of the candidates, if all are), per correct item, and per
# candidate in the ranking step.
_ELEMENT_BYTES = 1 + 8
_POSITIVE_BYTES = 128
_CANDIDATE_BYTES = 64

_CODE32_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@dataclass(frozen=True)
class QueryStats:
    """Per-query retrieval statistics, all (Q,) tensors on the similarity's device.

    Attributes:
        num_matches: (Q,) long, number of correct gallery items.
        first_rank: (Q,) long, 1-based rank of the first correct item (0 without a match).
        ap: (Q,) float64, average precision in [0, 1] (NaN without a match).
        inp: (Q,) float64, inverse negative penalty in [0, 1] (NaN without a match).
    """

    num_matches: Tensor
    first_rank: Tensor
    ap: Tensor
    inp: Tensor

    @property
    def valid(self) -> Tensor:
        """(Q,) bool, queries with at least one correct gallery item."""
        return self.num_matches > 0


@dataclass(frozen=True)
class _Groups:
    """The gallery grouped by identity: ``order[starts[k]:starts[k] + counts[k]]`` holds the
    gallery indices (ascending) of identity ``pids[k]``."""

    order: Tensor
    pids: Tensor
    counts: Tensor
    starts: Tensor


def _as_pids(pids: Tensor, name: str, expected: int, device: torch.device) -> Tensor:
    pids = torch.as_tensor(pids, device=device)
    if pids.ndim != 1 or pids.numel() != expected:
        raise ValueError(
            f"{name} must be 1-D with {expected} entries (one per similarity "
            f"{'column' if name == 'gallery_pids' else 'row'}); got shape {tuple(pids.shape)}"
        )
    if pids.is_floating_point() or pids.is_complex():
        raise ValueError(f"{name} must hold integer identities, got dtype {pids.dtype}")
    return pids.long()


def _group_gallery(gallery_pids: Tensor) -> _Groups:
    sorted_pids, order = torch.sort(gallery_pids, stable=True)
    pids, counts = torch.unique_consecutive(sorted_pids, return_counts=True)
    return _Groups(order, pids, counts, torch.cumsum(counts, 0) - counts)


def _match_counts(query_pids: Tensor, groups: _Groups) -> tuple[Tensor, Tensor]:
    """(group slot, number of correct gallery items) of each query, both (Q,) long."""
    slot = torch.searchsorted(groups.pids, query_pids).clamp_(max=groups.pids.numel() - 1)
    found = groups.pids[slot] == query_pids
    return slot, torch.where(found, groups.counts[slot], 0)


def _positives(query_pids: Tensor, groups: _Groups) -> tuple[Tensor, Tensor, Tensor]:
    """Correct items of each query as a ragged list in row-major order.

    Returns:
        counts: (c,) long, correct items per query; rows: (M,) long query row of each item;
        cols: (M,) long gallery index, ascending within a row.
    """
    device = query_pids.device
    slot, counts = _match_counts(query_pids, groups)
    rows = torch.repeat_interleave(torch.arange(query_pids.numel(), device=device), counts)
    row_start = torch.cumsum(counts, 0) - counts
    local = torch.arange(rows.numel(), device=device) - row_start[rows]
    cols = groups.order[groups.starts[slot][rows] + local]
    return counts, rows, cols


def _row_blocks(costs: Tensor, budget: int, max_rows: int | None = None) -> list[tuple[int, int]]:
    """Consecutive row ranges whose summed cost stays within ``budget`` (at least one row) and
    that hold at most ``max_rows`` rows."""
    blocks, start, total = [], 0, 0
    for row, cost in enumerate(costs.tolist()):
        if row > start and (total + cost > budget or row - start == max_rows):
            blocks.append((start, row))
            start, total = row, 0
        total += cost
    blocks.append((start, len(costs)))
    return blocks


def _order_codes(values: Tensor, positive_values: Tensor) -> tuple[Tensor, Tensor]:
    """int64 codes in [-2**31, 2**31) that compare like the scores they stand for.

    For float16/bfloat16/float32 the code is the float32 bit pattern made monotone (exact;
    -0.0 and +0.0 share a code). For other dtypes (float64) a value x is coded as
    #{u < x} + #{u <= x} over the positive values u, which preserves every comparison
    between a value and a positive value - the only comparisons the ranking needs.

    Returns:
        (codes of ``values``, codes of ``positive_values``).
    """
    if values.dtype in _CODE32_DTYPES:

        def code(x: Tensor) -> Tensor:
            bits = (x.float() + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
            return (bits ^ ((bits >> 31) & 0x7FFFFFFF)).long()

        return code(values), code(positive_values)
    reference = torch.sort(positive_values).values

    def code64(x: Tensor) -> Tensor:
        return torch.searchsorted(reference, x) + torch.searchsorted(reference, x, right=True)

    return code64(values), code64(positive_values)


def _rank_block(
    sim: Tensor,
    flat: Tensor,
    cand_counts: Tensor,
    row0: int,
    prow: Tensor,
    pcol: Tensor,
    pval: Tensor,
) -> Tensor:
    """Ranks of the correct items of rows ``row0 .. row0 + len(cand_counts)`` of a chunk.

    Args:
        sim: (c, G) contiguous similarities of the chunk.
        flat: (n,) long, flat indices (row * G + col) of these rows' candidates, ascending.
        cand_counts: (R,) long, candidates per row; R < 2**(31 - bits(G - 1)) - 1.
        prow, pcol, pval: (m,) row, column and score of these rows' correct items, row-major.

    Returns:
        (m,) long ranks, aligned with ``prow``.
    """
    device = sim.device
    num_rows, num_pos, num_gallery = cand_counts.numel(), prow.numel(), sim.shape[1]
    if num_pos == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    cval = sim.view(-1).index_select(0, flat)
    if bool(torch.isnan(cval).any()):
        raise ValueError("similarity contains NaN; rankings are undefined")
    ccode, pcode = _order_codes(cval, pval)
    del cval

    # One int64 key per item orders the items of a row exactly as the ranking does (score,
    # then lower gallery index first), and separates rows:
    #   key = local_row << (32 + k) | (code + 2**31) << k | (G - 1 - col),  k = bits(G - 1).
    # Keys are distinct, so no tie is left to resolve.
    shift = max(1, (num_gallery - 1).bit_length())
    local = torch.arange(num_rows, device=device)
    # base - flat = local << (32 + k) + 2**31 << k + G - 1 - col, as flat = row * G + col.
    base = (local << (32 + shift)) + (2**31 << shift) + (num_gallery - 1)
    base += (local + row0) * num_gallery
    ckey = torch.repeat_interleave(base, cand_counts, output_size=flat.numel()).sub_(flat)
    ckey += ccode.bitwise_left_shift_(shift)
    del ccode
    plocal = prow - row0
    pkey = base[plocal] - (prow * num_gallery + pcol) + (pcode << shift)
    closing = ((local + 1) << (32 + shift)) - 1  # above every key of its row
    keys, perm = torch.sort(torch.cat([pkey, closing]))
    where = torch.empty_like(perm)
    where[perm] = torch.arange(perm.numel(), device=device)
    # below = number of keys smaller than the candidate's: the candidate precedes exactly the
    # correct items of its row at sorted positions < below, and no item of another row.
    below = torch.searchsorted(keys, ckey)
    del ckey
    cum = torch.cumsum(torch.bincount(below, minlength=keys.numel()), 0)
    return cum[where[num_pos:][plocal]] - cum[where[:num_pos]] + 1


def _chunk_stats(
    sim: Tensor, query_pids: Tensor, groups: _Groups, budget: int, exclude: Tensor | None = None
) -> tuple[Tensor, ...]:
    """Exact per-query statistics for one chunk of queries.

    Args:
        sim: (c, G) float, contiguous similarities of the chunk.
        query_pids: (c,) long.
        budget: bytes allowed for the ranking step.
        exclude: (c,) long gallery index left out of each query's ranking (-1: none).

    Returns:
        counts (c,) long, first_rank (c,) long, ap (c,) float64, inp (c,) float64.
    """
    c, num_gallery = sim.shape
    device = sim.device
    counts, prow, pcol = _positives(query_pids, groups)
    if exclude is not None:
        # The left-out item scores -inf (ranked after every correct item) and is not correct.
        keep = pcol != exclude[prow]
        prow, pcol = prow[keep], pcol[keep]
        counts = torch.bincount(prow, minlength=c)
        rows = (exclude >= 0).nonzero().squeeze(1)
        sim = sim.clone()
        sim[rows, exclude[rows]] = float("-inf")
    num_pos = prow.numel()
    first = torch.zeros(c, dtype=torch.long, device=device)
    ap = torch.full((c,), float("nan"), dtype=torch.float64, device=device)
    inp = ap.clone()
    if num_pos == 0:
        return counts, first, ap, inp
    pval = sim[prow, pcol]
    if bool(torch.isnan(pval).any()):
        raise ValueError("similarity contains NaN; rankings are undefined")

    # Candidates: items not below the query's lowest correct score (NaN included, to detect it).
    # Only they can precede a correct item.
    lowest = torch.full((c,), float("inf"), dtype=sim.dtype, device=device)
    lowest.scatter_reduce_(0, prow, pval, reduce="amin")
    flat = torch.lt(sim, lowest[:, None]).logical_not_().view(-1).nonzero().squeeze(1)
    row_bounds = torch.searchsorted(flat, torch.arange(c + 1, device=device) * num_gallery)
    cand_counts = row_bounds.diff()
    row_start = torch.cumsum(counts, 0) - counts
    ranks = torch.empty_like(prow)
    bounds, pstarts = row_bounds.tolist(), [*row_start.tolist(), num_pos]
    # Keys need 32 + bits(G - 1) bits per row: this many rows per block keeps them in int64.
    max_rows = max(1, 2 ** (31 - max(1, (num_gallery - 1).bit_length())) - 1)
    for r0, r1 in _row_blocks((cand_counts * _CANDIDATE_BYTES).cpu(), budget, max_rows):
        p0, p1 = pstarts[r0], pstarts[r1]
        ranks[p0:p1] = _rank_block(
            sim,
            flat[bounds[r0] : bounds[r1]],
            cand_counts[r0:r1],
            r0,
            prow[p0:p1],
            pcol[p0:p1],
            pval[p0:p1],
        )
    del flat

    # Ranks sorted within each row -> first rank, AP, INP.
    ranks = torch.sort(prow * (num_gallery + 1) + ranks).values - prow * (num_gallery + 1)
    has = counts > 0
    first[has] = ranks[row_start[has]]
    hits = (torch.arange(num_pos, device=device) - row_start[prow] + 1).double()
    sum_prec = torch.zeros(c, dtype=torch.float64, device=device)
    sum_prec.index_add_(0, prow, hits / ranks.double())
    ap[has] = sum_prec[has] / counts[has].double()
    inp[has] = counts[has].double() / ranks[row_start[has] + counts[has] - 1].double()
    return counts, first, ap, inp


def per_query_stats(
    similarity: Tensor,
    query_pids: Tensor,
    gallery_pids: Tensor,
    *,
    chunk_size: int | None = None,
    exclude: Tensor | None = None,
) -> QueryStats:
    """Exact per-query first-match rank, AP and INP (see the module docstring).

    Args:
        similarity: (Q, G) float16/bfloat16/float32/float64, higher = more similar; any device.
        query_pids: (Q,) int identities of the queries (rows).
        gallery_pids: (G,) int identities of the gallery items (columns).
        chunk_size: queries processed at once; by default chosen so that the working memory
            stays within ``MEMORY_BUDGET_BYTES`` (256 MB). An explicit value sets the chunk
            (a (chunk_size, G) mask and its candidate indices); the ranking step still keeps
            to the budget. Results never depend on it.
        exclude: (Q,) int, a gallery index left out of each query's ranking, -1 for none (the
            re-identification protocol: an image query does not retrieve itself).

    Returns:
        :class:`QueryStats` on the similarity's device.

    Example:
        >>> stats = per_query_stats(text_feats @ image_feats.T, text_pids, image_pids)
        >>> stats.first_rank  # (Q,) 1-based, 0 for queries without a correct item
    """
    if not isinstance(similarity, Tensor) or similarity.ndim != 2:
        raise ValueError("similarity must be a 2-D tensor (queries x gallery)")
    if not similarity.is_floating_point():
        raise ValueError(
            f"similarity must be a floating-point tensor, got {similarity.dtype}; "
            "convert it with .float()"
        )
    num_query, num_gallery = similarity.shape
    if num_query == 0 or num_gallery == 0:
        raise ValueError(f"similarity is empty: shape {tuple(similarity.shape)}")
    if num_gallery >= 2**30:
        raise ValueError(f"gallery of {num_gallery} items is too large (at most 2**30 - 1)")
    device = similarity.device
    query_pids = _as_pids(query_pids, "query_pids", num_query, device)
    gallery_pids = _as_pids(gallery_pids, "gallery_pids", num_gallery, device)
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of queries, got {chunk_size}")
    if exclude is not None:
        exclude = _as_pids(exclude, "exclude", num_query, device)
        if bool(((exclude < -1) | (exclude >= num_gallery)).any()):
            raise ValueError(f"exclude holds gallery indices in [0, {num_gallery}) or -1")

    groups = _group_gallery(gallery_pids)
    budget = MEMORY_BUDGET_BYTES // 2
    if chunk_size is None:
        copy_bytes = 0 if similarity.is_contiguous() else similarity.element_size()
        _, match_counts = _match_counts(query_pids, groups)
        row_costs = num_gallery * (_ELEMENT_BYTES + copy_bytes) + match_counts * _POSITIVE_BYTES
        blocks = _row_blocks(row_costs.cpu(), budget)
    else:
        blocks = [(a, min(a + chunk_size, num_query)) for a in range(0, num_query, chunk_size)]
    parts = [
        _chunk_stats(
            similarity[a:b].contiguous(),
            query_pids[a:b],
            groups,
            budget,
            None if exclude is None else exclude[a:b],
        )
        for a, b in blocks
    ]
    counts, first, ap, inp = (torch.cat(column) for column in zip(*parts, strict=True))
    return QueryStats(num_matches=counts, first_rank=first, ap=ap, inp=inp)


def _valid_queries(stats: QueryStats) -> Tensor:
    valid = stats.valid
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError(
            "no query has a correct gallery item: check that query_pids and gallery_pids use "
            "the same identity labels"
        )
    if num_valid < valid.numel():
        logger.warning(
            "%d of %d queries have no correct gallery item and are excluded from the metrics",
            valid.numel() - num_valid,
            valid.numel(),
        )
    return valid


#: The keys of :func:`retrieval_metrics`, in the order tables show them.
METRIC_KEYS: tuple[str, ...] = ("R1", "R5", "R10", "mAP", "mINP")


def retrieval_metrics(
    similarity: Tensor,
    query_pids: Tensor,
    gallery_pids: Tensor,
    *,
    chunk_size: int | None = None,
    exclude: Tensor | None = None,
) -> dict[str, float]:
    """Rank-1/5/10 (CMC), mAP and mINP in percent, exact, ties broken by gallery index.

    Args:
        similarity: (Q, G) float, text queries x gallery images (any device, any float dtype).
        query_pids: (Q,) int.
        gallery_pids: (G,) int.
        chunk_size: queries per chunk (default: from a ~256 MB memory budget).
        exclude: (Q,) int gallery index left out of each query's ranking (-1: none), e.g.
            ``arange(G)`` for image-to-image retrieval over the gallery itself.

    Returns:
        ``{"R1", "R5", "R10", "mAP", "mINP"}`` as Python floats in [0, 100].

    Raises:
        ValueError: bad shapes or dtypes, NaN similarities, or no query with a correct item.

    Example:
        >>> retrieval_metrics(text_feats @ image_feats.T, text_pids, image_pids)["R1"]
    """
    stats = per_query_stats(
        similarity, query_pids, gallery_pids, chunk_size=chunk_size, exclude=exclude
    )
    valid = _valid_queries(stats)
    first = stats.first_rank[valid]
    result = {f"R{k}": 100.0 * (first <= k).double().mean().item() for k in (1, 5, 10)}
    result["mAP"] = 100.0 * stats.ap[valid].mean().item()
    result["mINP"] = 100.0 * stats.inp[valid].mean().item()
    return result


def cmc_curve(
    similarity: Tensor,
    query_pids: Tensor,
    gallery_pids: Tensor,
    max_rank: int = 20,
    *,
    chunk_size: int | None = None,
) -> Tensor:
    """Cumulative match characteristic: percent of queries with a correct item in the top k.

    Args:
        similarity: (Q, G) float; query_pids: (Q,) int; gallery_pids: (G,) int.
        max_rank: length of the curve.
        chunk_size: as in :func:`retrieval_metrics`.

    Returns:
        (max_rank,) float64 on the CPU; entry k-1 is Rank-k in percent.
    """
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    stats = per_query_stats(similarity, query_pids, gallery_pids, chunk_size=chunk_size)
    first = stats.first_rank[_valid_queries(stats)].cpu()
    hits = torch.bincount(first.clamp(max=max_rank + 1), minlength=max_rank + 2)[1 : max_rank + 1]
    return 100.0 * torch.cumsum(hits, 0).double() / first.numel()
