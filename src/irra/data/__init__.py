"""Data pipeline: benchmark readers, validation, transforms, MLM masking, samplers, loaders.

Modules (one job each):

* :mod:`irra.data.formats`: the CUHK-PEDES / ICFG-PEDES / RSTPReid formats and ``read_dataset``.
* :mod:`irra.data.validate`: checks on annotation files and images (``DatasetError``).
* :mod:`irra.data.transforms`: train / eval image transforms driven by explicit generators.
* :mod:`irra.data.masking`: MLM masking of a tokenised caption.
* :mod:`irra.data.samplers`: random and identity batch samplers sharded by rank.
* :mod:`irra.data.datasets`: ``TrainDataset``, ``ImageDataset``, ``TextDataset``.
* :mod:`irra.data.loaders`: DataLoader builders and the batch collate.
* :mod:`irra.data.rng`: generators derived from ``(seed, epoch, index)``.
* :mod:`irra.data.synth`: the SynthPedes synthetic dataset generator.

Names listed in ``__all__`` are importable from ``irra.data``; they are imported on first use, so
``import irra.data`` itself stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "FORMATS": "formats",
    "DatasetFormat": "formats",
    "PedesData": "formats",
    "SplitData": "formats",
    "TrainSample": "formats",
    "get_format": "formats",
    "read_dataset": "formats",
    "DatasetError": "validate",
    "ValidationReport": "validate",
    "build_eval_transform": "transforms",
    "build_train_transform": "transforms",
    "mask_tokens": "masking",
    "IdentityBatchSampler": "samplers",
    "RandomBatchSampler": "samplers",
    "ImageDataset": "datasets",
    "TextDataset": "datasets",
    "TrainDataset": "datasets",
    "load_image": "datasets",
    "build_eval_loaders": "loaders",
    "build_train_loader": "loaders",
    "collate_batch": "loaders",
    "set_loader_epoch": "loaders",
    "derive_generator": "rng",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'irra.data' has no attribute {name!r}")
    module = importlib.import_module(f"irra.data.{_EXPORTS[name]}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
