"""Box geometry on (N, 4) arrays of ``x, y, w, h``."""

from __future__ import annotations

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (N, 4) with every box of ``b`` (M, 4).

    Returns:
        (N, M) float64 in 0..1 (0 where a box has no area).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = (a[:, 2:3] * a[:, 3:4]) + (b[:, 2] * b[:, 3]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def greedy_match(score: np.ndarray, threshold: float = -np.inf) -> list[tuple[int, int]]:
    """Pairs ``(row, col)`` taken in order of decreasing ``score``, each row and column once.

    Only pairs with a finite ``score >= threshold`` are taken (``-inf`` marks a pair that may
    not match); ties go to the lower row, then column.
    Greedy matching equals the optimal (Hungarian) assignment when every row's best column is
    also that column's best row, the usual case for boxes of one person in consecutive frames;
    where people cross it can differ.

    Args:
        score: (N, M) similarity (higher is better).
        threshold: the lowest score that may match.
    """
    score = np.asarray(score, dtype=np.float64)
    if score.size == 0:
        return []
    rows, cols = np.nonzero(np.isfinite(score) & (score >= threshold))
    order = np.lexsort((cols, rows, -score[rows, cols]))
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs
