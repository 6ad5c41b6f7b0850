"""Linking detections without ids into tracks: a simple, documented online tracker.

For each frame in order:

1. every live track predicts its box in this frame: its last box moved by its velocity (the
   mean motion per frame of box centre and size, smoothed over its recent matches) times the
   frames since it was last seen;
2. a track and a detection may match when the IoU of prediction and detection is at least
   ``iou_threshold``; their score is that IoU, or with embeddings (one unit vector per
   detection, e.g. the retrieval model's image features)
   ``(1 - embed_weight) * IoU + embed_weight * cosine(track appearance, detection)``, and
   ``min_similarity`` (when set) forbids a match whose cosine is lower: someone who looks
   different is a new person even where the boxes overlap. A track's appearance is a running
   mean of its detections' features;
3. pairs are taken greedily by decreasing score (:func:`~irra.footage.boxes.greedy_match`;
   no solver dependency, optimal in the common case, documented where it is not);
4. a matched track takes the detection's box; an unmatched detection with confidence at least
   ``new_track_conf`` starts a track; a track unseen for more than ``max_gap`` frames ends.

Tracks shorter than ``min_length`` detections are dropped at the end (mostly false positives).
Frame numbers may skip (sampled footage): gaps are measured in frame numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from irra.footage.boxes import greedy_match, iou_matrix
from irra.footage.detections import Detection


@dataclass(frozen=True)
class TrackerConfig:
    """Settings of :class:`Tracker` (see the module docstring for what each does)."""

    iou_threshold: float = 0.3
    embed_weight: float = 0.5
    min_similarity: float | None = None
    max_gap: int = 15
    min_length: int = 3
    new_track_conf: float = 0.0
    velocity_smoothing: float = 0.7  # weight of the previous velocity in each update


@dataclass
class _Track:
    id: int
    box: np.ndarray  # (4,) x, y, w, h of the last match
    frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    appearance: np.ndarray | None = None
    length: int = 1

    def predict(self, frame: int) -> np.ndarray:
        box = self.box + self.velocity * (frame - self.frame)
        box[2:] = np.maximum(box[2:], 1.0)
        return box


class Tracker:
    """Online tracker: feed the detections of each frame in order to :meth:`update`.

    Args:
        config: thresholds and gaps (:class:`TrackerConfig`).

    Example:
        >>> tracker = Tracker()
        >>> ids = tracker.update(1, np.array([[10.0, 10, 20, 50]]))
        >>> tracker.update(2, np.array([[12.0, 10, 20, 50]])) == ids
        True
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._live: list[_Track] = []
        self._next_id = 1
        self._last_frame: int | None = None

    def update(
        self,
        frame: int,
        boxes: np.ndarray,
        confs: np.ndarray | None = None,
        embeddings: np.ndarray | None = None,
    ) -> list[int | None]:
        """Assign the detections of ``frame`` to tracks.

        Args:
            frame: frame number, larger than the previous call's.
            boxes: (N, 4) float x, y, w, h.
            confs: (N,) detection confidences (1 when None).
            embeddings: (N, D) unit-length appearance features, or None (IoU only).

        Returns:
            a track id per detection; None for a detection that starts no track (its
            confidence is below ``new_track_conf``).
        """
        cfg = self.config
        if self._last_frame is not None and frame <= self._last_frame:
            raise ValueError(f"frames must increase: got {frame} after {self._last_frame}")
        self._last_frame = frame
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        n = len(boxes)
        confs = np.ones(n) if confs is None else np.asarray(confs, dtype=np.float64)
        self._live = [t for t in self._live if frame - t.frame <= cfg.max_gap]
        predicted = np.array([t.predict(frame) for t in self._live]).reshape(-1, 4)
        iou = iou_matrix(predicted, boxes)
        score = iou.copy()
        if embeddings is not None and cfg.embed_weight > 0 and self._live and n:
            sim = np.array(
                [
                    embeddings @ t.appearance if t.appearance is not None else np.zeros(n)
                    for t in self._live
                ]
            )
            score = (1 - cfg.embed_weight) * iou + cfg.embed_weight * sim
            if cfg.min_similarity is not None:
                score[sim < cfg.min_similarity] = -np.inf
        score[iou < cfg.iou_threshold] = -np.inf
        ids: list[int | None] = [None] * n
        for r, c in greedy_match(score):
            track = self._live[r]
            self._move(track, frame, boxes[c], None if embeddings is None else embeddings[c])
            ids[c] = track.id
        for c in range(n):
            if ids[c] is None and confs[c] >= cfg.new_track_conf:
                emb = None if embeddings is None else np.asarray(embeddings[c], dtype=np.float64)
                self._live.append(_Track(self._next_id, boxes[c].copy(), frame, appearance=emb))
                ids[c] = self._next_id
                self._next_id += 1
        return ids

    def _move(self, track: _Track, frame: int, box: np.ndarray, emb: np.ndarray | None) -> None:
        step = (box - track.box) / (frame - track.frame)
        a = self.config.velocity_smoothing if track.length > 1 else 0.0
        track.velocity = a * track.velocity + (1 - a) * step
        track.box, track.frame = box.copy(), frame
        track.length += 1
        if emb is not None:
            mixed = emb if track.appearance is None else 0.8 * track.appearance + 0.2 * emb
            track.appearance = mixed / max(float(np.linalg.norm(mixed)), 1e-12)


def track_detections(
    detections: list[Detection],
    config: TrackerConfig | None = None,
    embeddings: np.ndarray | None = None,
) -> list[Detection]:
    """Give every detection a track id (their own ids are ignored).

    Args:
        detections: boxes of any frames, in any order.
        config: tracker settings.
        embeddings: (len(detections), D) unit-length features in the same order, or None.

    Returns:
        the detections that belong to a track of at least ``config.min_length`` boxes, with
        ``track`` set, in frame order (file order within a frame).
    """
    config = config or TrackerConfig()
    tracker = Tracker(config)
    order = sorted(range(len(detections)), key=lambda i: (detections[i].frame, i))
    out: list[tuple[int, Detection]] = []
    start = 0
    while start < len(order):
        frame = detections[order[start]].frame
        end = start
        while end < len(order) and detections[order[end]].frame == frame:
            end += 1
        idx = order[start:end]
        boxes = np.array([detections[i].box for i in idx])
        confs = np.array([detections[i].conf for i in idx])
        emb = None if embeddings is None else np.asarray(embeddings)[idx]
        for i, tid in zip(idx, tracker.update(frame, boxes, confs, emb), strict=True):
            if tid is not None:
                out.append((i, replace(detections[i], track=tid)))
        start = end
    lengths: dict[int, int] = {}
    for _, d in out:
        lengths[d.track] = lengths.get(d.track, 0) + 1  # type: ignore[index]
    return [d for _, d in out if lengths[d.track] >= config.min_length]  # type: ignore[index]
