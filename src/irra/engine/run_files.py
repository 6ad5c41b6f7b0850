"""The layout of a run folder: every file name a training run writes, defined once.

::

    config.yaml        the resolved config (``irra train --resume`` reads it back)
    train.log          the log of every session of the run
    log.jsonl          one line per epoch: losses, learning rate, evaluation metrics
    tb/                TensorBoard scalars
    last.pt, best.pt   training checkpoints (model, optimiser, schedule, RNG, sampler, config)
    model/             the selected model in irra's format (``irra evaluate --checkpoint``)
    metrics.json       the final test metrics of the selected model (percent); written last, so
                       a folder that holds it is a finished run
    report/            training curves, CMC curve, retrieval grid and ``report.html``
    skipped_entries.json   bad dataset entries, when ``data.on_bad_entry=skip`` skipped any
"""

from __future__ import annotations

from pathlib import Path

from irra.data.validate import SKIPPED_FILENAME

__all__ = [
    "BEST",
    "CONFIG",
    "EPOCH_LOG",
    "LAST",
    "METRICS",
    "MODEL",
    "REPORT",
    "SKIPPED",
    "TENSORBOARD",
    "TRAIN_LOG",
    "is_finished",
    "is_run_dir",
]

CONFIG = "config.yaml"
TRAIN_LOG = "train.log"
EPOCH_LOG = "log.jsonl"
TENSORBOARD = "tb"
LAST = "last.pt"
BEST = "best.pt"
MODEL = "model"
METRICS = "metrics.json"
REPORT = "report"
SKIPPED = SKIPPED_FILENAME


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a run folder (it holds the run's ``config.yaml``)."""
    return path.is_dir() and (path / CONFIG).is_file()


def is_finished(path: Path) -> bool:
    """Whether the run in ``path`` has finished (its ``metrics.json`` is written last)."""
    return (path / METRICS).is_file()
