"""DataLoaders for training and evaluation.

The train loader's batch sampler yields ``(epoch, index)`` keys, so each sample's augmentation and
masking depend on ``(seed, epoch, index)`` only: batches are identical for any number of workers,
and persistent workers (which keep their own copy of the dataset) still see the current epoch.
Call :func:`set_loader_epoch` before each epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from irra.data.datasets import ImageDataset, TextDataset, TrainDataset
from irra.data.formats import SplitData
from irra.data.samplers import IdentityBatchSampler, RandomBatchSampler
from irra.data.transforms import EvalTransform

__all__ = [
    "SAMPLERS",
    "EpochTaggedBatchSampler",
    "build_eval_loaders",
    "build_train_loader",
    "collate_batch",
    "set_loader_epoch",
]

SamplerName = Literal["random", "identity"]
#: Training sampler names.
SAMPLERS: tuple[str, ...] = ("random", "identity")


def collate_batch(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack a list of item dicts into one batch dict.

    Ints become a (B,) long tensor; tensors of shape S are stacked into (B, *S).
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, torch.Tensor] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        else:
            batch[key] = torch.tensor(values, dtype=torch.long)
    return batch


class EpochTaggedBatchSampler(Sampler[list[tuple[int, int]]]):
    """Wraps a batch sampler with ``set_epoch``; yields ``[(epoch, index), ...]`` batches."""

    def __init__(self, inner: RandomBatchSampler | IdentityBatchSampler) -> None:
        self.inner = inner

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self.inner.epoch

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.inner.epoch
        for batch in self.inner:
            yield [(epoch, index) for index in batch]

    def __len__(self) -> int:
        return len(self.inner)


def _loader_options(num_workers: int, pin_memory: bool | None) -> dict[str, Any]:
    return {
        "num_workers": num_workers,
        "pin_memory": torch.cuda.is_available() if pin_memory is None else pin_memory,
        "persistent_workers": num_workers > 0,
        "collate_fn": collate_batch,
    }


def build_train_loader(
    dataset: TrainDataset,
    *,
    batch_size: int,
    sampler: SamplerName = "random",
    num_instances: int = 4,
    num_workers: int = 4,
    seed: int | None = None,
    world_size: int = 1,
    rank: int = 0,
    drop_last: bool = True,
    pin_memory: bool | None = None,
) -> DataLoader:
    """The training loader.

    Args:
        dataset: the training samples.
        batch_size: batch size per process.
        sampler: ``"random"`` (:class:`RandomBatchSampler`) or ``"identity"``
            (:class:`IdentityBatchSampler`, P x K with K = ``num_instances``).
        num_instances: K for the identity sampler.
        num_workers: loader worker processes (0 = load in this process).
        seed: sampler seed; defaults to the dataset's seed.
        world_size, rank: the process group (each rank gets a disjoint part of each batch).
        drop_last: for the random sampler (see :class:`RandomBatchSampler`).
        pin_memory: defaults to True when CUDA is available.

    Returns:
        a DataLoader yielding batch dicts (see :class:`TrainDataset` for the keys, with a leading
        batch dimension B).
    """
    seed = dataset.seed if seed is None else seed
    if sampler == "random":
        inner: RandomBatchSampler | IdentityBatchSampler = RandomBatchSampler(
            len(dataset),
            batch_size,
            drop_last=drop_last,
            world_size=world_size,
            rank=rank,
            seed=seed,
        )
    elif sampler == "identity":
        inner = IdentityBatchSampler(
            dataset.pids, batch_size, num_instances, world_size=world_size, rank=rank, seed=seed
        )
    else:
        raise KeyError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    return DataLoader(
        dataset,
        batch_sampler=EpochTaggedBatchSampler(inner),
        **_loader_options(num_workers, pin_memory),
    )


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Make ``loader`` yield the batches of ``epoch`` (sampler order, augmentation, masking)."""
    batch_sampler = loader.batch_sampler
    if hasattr(batch_sampler, "set_epoch"):
        batch_sampler.set_epoch(epoch)
    dataset: Dataset = loader.dataset
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


def _shard(dataset: Dataset, shard: tuple[int, int]) -> Subset:
    rank, world_size = shard
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got shard {shard}")
    length = len(dataset)  # type: ignore[arg-type]
    start, stop = length * rank // world_size, length * (rank + 1) // world_size
    return Subset(dataset, range(start, stop))


def build_eval_loaders(
    split: SplitData,
    transform: EvalTransform | None = None,
    *,
    batch_size: int = 512,
    num_workers: int = 4,
    text_length: int = 77,
    pin_memory: bool | None = None,
    shard: tuple[int, int] | None = None,
) -> tuple[DataLoader, DataLoader]:
    """Loaders over a split's gallery images and text queries, in split order (no shuffling).

    Args:
        shard: ``(rank, world_size)``: only the rank-th of ``world_size`` contiguous parts of the
            images and of the captions (for encoding a split with several processes;
            concatenating the parts in rank order gives the whole split in order).

    Returns:
        ``(image_loader, text_loader)``; image batches hold ``index``, ``pids``, ``images``
        (B, 3, H, W); text batches hold ``index``, ``pids``, ``caption_ids`` (B, L).
    """
    options = _loader_options(num_workers, pin_memory)
    images: Dataset = ImageDataset.from_split(split, transform)
    texts: Dataset = TextDataset.from_split(split, text_length=text_length)
    if shard is not None:
        images, texts = _shard(images, shard), _shard(texts, shard)
    image_loader = DataLoader(images, batch_size=batch_size, shuffle=False, **options)
    text_loader = DataLoader(texts, batch_size=batch_size, shuffle=False, **options)
    return image_loader, text_loader
