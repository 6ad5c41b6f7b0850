"""Finding people in frames with a torchvision detector (COCO-trained: class 1 is a person).

:class:`PersonDetector` runs one of :data:`DETECTORS` on batches of frames and keeps the person
boxes scoring at least ``conf`` and at least ``min_height`` pixels tall. Weights come from a
local file (a state dict, as ``torch.save(model.state_dict())`` writes it, or ``{"model":
state_dict}``) or, where the machine is online, torchvision's own download of the COCO weights.

Needs PyTorch and torchvision (core dependencies); imported only when a detector is used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from irra.footage.detections import Detection, DetectionSet
from irra.footage.errors import FootageError
from irra.footage.frame import FrameSource

logger = logging.getLogger(__name__)

#: Detector names (torchvision builders of COCO detection models), fastest first.
DETECTORS: tuple[str, ...] = (
    "ssdlite320_mobilenet_v3_large",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "retinanet_resnet50_fpn",
    "fcos_resnet50_fpn",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
)
COCO_CLASSES = 91
PERSON = 1


def check_detector(name: str) -> str:
    """``name`` if it is a detector, else a FootageError listing the valid ones."""
    if name not in DETECTORS:
        raise FootageError(f"unknown detector {name!r}; valid: {', '.join(DETECTORS)}")
    return name


def keep_people(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, conf: float, min_height: float
) -> np.ndarray:
    """Person boxes of one frame that pass the thresholds.

    Args:
        boxes: (N, 4) float x0, y0, x1, y1 (torchvision's output).
        scores: (N,) confidences; labels: (N,) COCO class ids.
        conf: the lowest confidence kept; min_height: the lowest box height kept, in pixels.

    Returns:
        (M, 5) float64 rows ``x, y, w, h, conf``, in the detector's order.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
    ok = (np.asarray(labels) == PERSON) & (np.asarray(scores) >= conf)
    ok &= (xywh[:, 3] >= min_height) & (xywh[:, 2] > 0)
    return np.column_stack([xywh[ok], np.asarray(scores, dtype=np.float64)[ok]])


def _state_dict(path: Path) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise FootageError(f"{path}: no such detector weights file; check the path") from err
    except Exception as err:  # pickle, zip and torch errors alike: not a weights file
        raise FootageError(
            f"{path}: cannot read detector weights ({type(err).__name__}: {err}); give a "
            "state dict saved with torch.save(model.state_dict(), FILE)"
        ) from err
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise FootageError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


class PersonDetector:
    """A torchvision COCO detector that returns person boxes.

    Args:
        name: one of :data:`DETECTORS`.
        weights: a state-dict file; None: torchvision's download of the COCO weights.
        device: ``auto``, ``cpu``, ``cuda`` ... (see :func:`irra.runtime.resolve_device`).
        conf: the lowest confidence kept.
        min_height: the lowest box height kept, in pixels.
        batch_size: frames per forward pass.

    Raises:
        FootageError: an unknown name, or weights that do not load (named, with the fix).

    Example:
        >>> detector = PersonDetector("fasterrcnn_resnet50_fpn", "frcnn.pth")  # doctest: +SKIP
        >>> detector.detect([frame])[0]  # (M, 5): x, y, w, h, conf  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        weights: str | os.PathLike[str] | None = None,
        *,
        device: str = "auto",
        conf: float = 0.5,
        min_height: float = 24.0,
        batch_size: int = 4,
    ) -> None:
        import torch
        import torchvision

        from irra.runtime import resolve_device

        self.name = check_detector(name)
        if not 0 <= conf <= 1:
            raise FootageError(f"detector confidence must be in [0, 1], got {conf}")
        if batch_size < 1 or min_height < 0:
            raise FootageError("detector batch size must be >= 1 and minimum height >= 0")
        self.conf, self.min_height, self.batch_size = conf, min_height, batch_size
        self.weights = None if weights is None else Path(weights)
        builder: Callable[..., Any] = getattr(torchvision.models.detection, name)
        if self.weights is not None:
            state = _state_dict(self.weights)
            model = builder(weights=None, weights_backbone=None, num_classes=COCO_CLASSES)
            try:
                model.load_state_dict(state)
            except RuntimeError as err:
                first = str(err).strip().splitlines()[:2]
                raise FootageError(
                    f"{self.weights}: not weights of {name} with {COCO_CLASSES} COCO classes "
                    f"({' '.join(first)[:300]}); pass the weights of this detector, or the "
                    "detector these weights belong to"
                ) from err
        else:
            try:
                model = builder(weights="DEFAULT")
            except Exception as err:  # URLError, OSError, hash mismatch ...
                raise FootageError(
                    f"cannot download the COCO weights of {name} ({type(err).__name__}: {err}); "
                    "on a machine without network pass --detector-weights FILE"
                ) from err
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self._torch = torch

    @property
    def signature(self) -> str:
        """What identifies this detector's output (name, weights, thresholds)."""
        weights = "download" if self.weights is None else str(self.weights.resolve())
        return f"{self.name}|{weights}|conf={self.conf:g}|min_height={self.min_height:g}"

    def detect(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Person boxes of each frame.

        Args:
            frames: (H, W, 3) uint8 RGB images.

        Returns:
            one (M, 5) float64 array ``x, y, w, h, conf`` per frame.
        """
        torch = self._torch
        out: list[np.ndarray] = []
        for start in range(0, len(frames), self.batch_size):
            batch = [
                torch.from_numpy(np.array(f, copy=True)).permute(2, 0, 1).float().div(255)
                for f in frames[start : start + self.batch_size]
            ]
            with torch.inference_mode():
                results = self.model([b.to(self.device) for b in batch])
            for r in results:
                out.append(
                    keep_people(
                        r["boxes"].cpu().numpy(),
                        r["scores"].cpu().numpy(),
                        r["labels"].cpu().numpy(),
                        self.conf,
                        self.min_height,
                    )
                )
        return out

    def __call__(self, source: FrameSource, every: int = 1) -> DetectionSet:
        """The person boxes of frames ``1, 1 + every, ...`` of ``source``, as a detections set."""
        result = DetectionSet(Path(source.path))
        pending: list[tuple[int, np.ndarray]] = []

        def flush() -> None:
            found = self.detect([image for _, image in pending])
            for (number, _), rows in zip(pending, found, strict=True):
                for x, y, w, h, c in rows.tolist():
                    result.detections.append(Detection(number, (x, y, w, h), c))
            pending.clear()

        for frame in source.frames(every):
            pending.append((frame.number, frame.image))
            if len(pending) >= self.batch_size:
                flush()
        if pending:
            flush()
        logger.info(
            "%s: %s found %d people in %d frames",
            source.path,
            self.name,
            len(result.detections),
            source.report.decoded,
        )
        return result
