"""CLEAR-MOT counts of tracks against ground truth: misses, false positives, identity switches.

Per frame, a ground-truth box and a tracked box correspond when their IoU is at least
``iou_threshold`` (0.5, as MOTChallenge). Correspondences of the previous frame are kept while
their IoU stays above the threshold; the rest are matched greedily by decreasing IoU (the
benchmark uses the Hungarian algorithm; greedy can miss a match only where several boxes overlap
each other ambiguously, so MOTA here is "MOTA-like"). An identity switch is a ground-truth track
matched to another track id than at its previous match. ``MOTA = 1 - (FN + FP + IDSW) / GT``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from irra.footage.boxes import greedy_match, iou_matrix
from irra.footage.detections import Detection


@dataclass(frozen=True)
class MotCounts:
    """Totals over all frames; ``mota`` as defined in the module docstring."""

    gt: int
    matches: int
    misses: int
    false_positives: int
    id_switches: int

    @property
    def mota(self) -> float:
        """1 - (misses + false positives + identity switches) / ground-truth boxes."""
        errors = self.misses + self.false_positives + self.id_switches
        return 1.0 - errors / self.gt if self.gt else float("nan")


def clear_mot(
    truth: list[Detection], tracked: list[Detection], iou_threshold: float = 0.5
) -> MotCounts:
    """Count matches, misses, false positives and identity switches of ``tracked``.

    Args:
        truth: ground-truth boxes, each with a ``track`` id.
        tracked: tracker output, each with a ``track`` id.
        iou_threshold: the least IoU of a correspondence.

    Raises:
        ValueError: a box has no track id.
    """
    if any(d.track is None for d in truth) or any(d.track is None for d in tracked):
        raise ValueError("every ground-truth and tracked box needs a track id")
    gt_frames: dict[int, list[Detection]] = defaultdict(list)
    tr_frames: dict[int, list[Detection]] = defaultdict(list)
    for d in truth:
        gt_frames[d.frame].append(d)
    for d in tracked:
        tr_frames[d.frame].append(d)
    previous: dict[int, int] = {}  # gt id -> tracked id matched in the previous frame
    last_match: dict[int, int] = {}  # gt id -> tracked id of its latest match
    matches = switches = false_pos = misses = 0
    for frame in sorted(set(gt_frames) | set(tr_frames)):
        gts, trs = gt_frames.get(frame, []), tr_frames.get(frame, [])
        iou = iou_matrix(
            np.array([d.box for d in gts]).reshape(-1, 4),
            np.array([d.box for d in trs]).reshape(-1, 4),
        )
        pairs: list[tuple[int, int]] = []
        tr_index = {d.track: j for j, d in enumerate(trs)}
        for i, g in enumerate(gts):
            j = tr_index.get(previous.get(g.track, -1))  # type: ignore[arg-type]
            if j is not None and iou[i, j] >= iou_threshold:
                pairs.append((i, j))
        score = iou.copy()
        for i, j in pairs:
            score[i, :] = -np.inf
            score[:, j] = -np.inf
        pairs += greedy_match(score, iou_threshold)
        current: dict[int, int] = {}
        for i, j in pairs:
            gid, tid = gts[i].track, trs[j].track
            if gid in last_match and last_match[gid] != tid:
                switches += 1
            last_match[gid] = tid  # type: ignore[index]
            current[gid] = tid  # type: ignore[index]
        previous = current
        matches += len(pairs)
        misses += len(gts) - len(pairs)
        false_pos += len(trs) - len(pairs)
    return MotCounts(len(truth), matches, misses, false_pos, switches)


def truth_of_tracks(
    truth: list[Detection], tracked: list[Detection], iou_threshold: float = 0.5
) -> dict[int, int | None]:
    """The ground-truth id each tracked id stands for: the one its boxes overlap most often.

    In every frame, tracked and ground-truth boxes are paired greedily by IoU (at least
    ``iou_threshold``); a tracked id gets the ground-truth id it was paired with in most frames
    (ties: the smaller id), or None when it never was (a false track).

    Args:
        truth: ground-truth boxes with ``track`` ids.
        tracked: tracker output with ``track`` ids.
    """
    gt_frames: dict[int, list[Detection]] = defaultdict(list)
    for d in truth:
        gt_frames[d.frame].append(d)
    tr_frames: dict[int, list[Detection]] = defaultdict(list)
    for d in tracked:
        tr_frames[d.frame].append(d)
    votes: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for frame, trs in tr_frames.items():
        gts = gt_frames.get(frame, [])
        iou = iou_matrix(
            np.array([d.box for d in trs]).reshape(-1, 4),
            np.array([d.box for d in gts]).reshape(-1, 4),
        )
        for i, j in greedy_match(iou, iou_threshold):
            votes[trs[i].track][gts[j].track] += 1  # type: ignore[index]
    out: dict[int, int | None] = {}
    for tid in sorted({d.track for d in tracked}):  # type: ignore[type-var]
        counts = votes.get(tid)
        out[tid] = min(counts, key=lambda g: (-counts[g], g)) if counts else None
    return out
