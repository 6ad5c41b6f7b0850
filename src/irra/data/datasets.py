"""Torch datasets: training samples (one per caption) and the two eval sets (gallery, queries).

Every item is a dict with the reference's key names, so :func:`irra.data.loaders.collate_batch`
can stack them into the batch dict the model's losses take.

Randomness: a :class:`TrainDataset` item depends only on ``(seed, epoch, index)``. The epoch comes
with the key when the sampler sends ``(epoch, index)`` pairs (what the train loader does, which
keeps persistent workers right), else from :meth:`TrainDataset.set_epoch`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from irra.data.formats import SplitData
from irra.data.masking import mask_tokens
from irra.data.rng import derive_generator
from irra.data.transforms import EvalTransform
from irra.imageio import load_image
from irra.tokenizer import tokenize

__all__ = ["ImageDataset", "TextDataset", "TrainDataset", "load_image"]

ImageTransform = Callable[..., torch.Tensor]


def _split_key(key: int | tuple[int, int], default_epoch: int) -> tuple[int, int]:
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return default_epoch, int(key)


class TrainDataset(Dataset):
    """Training samples, one per caption, with augmentation and MLM masking.

    Args:
        split: the training :class:`SplitData` (pids already 0..N-1).
        transform: ``transform(image, generator) -> (3, H, W)``, e.g. a ``TrainTransform``.
        seed: run seed; with the epoch and the index it seeds every random choice.
        text_length: L, tokens per caption.
        mlm: produce ``mlm_ids`` / ``mlm_labels`` (set False when the MLM loss is off).
        masked_global_text: True (the reference's behaviour, used by the paper's configs):
            ``caption_ids`` is the masked caption, equal to ``mlm_ids``; False: ``caption_ids`` is
            the clean caption. Ignored when ``mlm`` is False (the caption is then clean).
        mask_prob: MLM choice probability.
        tokens: (num_captions, L) long, pre-tokenised captions (tokenised here if None).
        cache_images: keep each image in memory after its first load (in each loader worker):
            the transformed tensor when ``transform`` is an :class:`EvalTransform` (it has no
            randomness), otherwise the decoded image. Needs RAM for the whole split per worker
            (the demo's 11,200 images of 96x32: 413 MB); off by default.

    Items: ``{'index': int, 'pids': int, 'image_ids': int, 'images': (3, H, W) float,
    'caption_ids': (L,) long, 'mlm_ids': (L,) long, 'mlm_labels': (L,) long}``.
    """

    def __init__(
        self,
        split: SplitData,
        transform: ImageTransform,
        *,
        seed: int = 0,
        text_length: int = 77,
        mlm: bool = True,
        masked_global_text: bool = True,
        mask_prob: float = 0.15,
        tokens: torch.Tensor | None = None,
        cache_images: bool = False,
    ) -> None:
        self.image_paths = list(split.image_paths)
        self.pids = list(split.caption_pids)
        self.image_ids = list(split.caption_image_index)
        self.transform = transform
        self.seed = seed
        self.mlm = mlm
        self.masked_global_text = masked_global_text
        self.mask_prob = mask_prob
        if tokens is None:
            tokens = tokenize(split.captions, context_length=text_length)
        if tokens.shape[0] != len(self.pids):
            raise ValueError(f"tokens has {tokens.shape[0]} rows for {len(self.pids)} captions")
        self.tokens = tokens
        self.epoch = 0
        self._cache: dict[int, Any] | None = {} if cache_images else None

    def set_epoch(self, epoch: int) -> None:
        """The epoch used for keys that come without one."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pids)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = _split_key(key, self.epoch)
        image_generator = derive_generator(self.seed, epoch, index, "image")
        caption = self.tokens[index]
        item: dict[str, Any] = {
            "index": index,
            "pids": self.pids[index],
            "image_ids": self.image_ids[index],
            "images": self._image(self.image_ids[index], image_generator),
            "caption_ids": caption,
        }
        if self.mlm:
            mlm_generator = derive_generator(self.seed, epoch, index, "mlm")
            mlm_ids, mlm_labels = mask_tokens(caption, mlm_generator, mask_prob=self.mask_prob)
            item["mlm_ids"] = mlm_ids
            item["mlm_labels"] = mlm_labels
            if self.masked_global_text:
                item["caption_ids"] = mlm_ids.clone()
        return item

    def _image(self, image_index: int, generator: torch.Generator) -> torch.Tensor:
        """(3, H, W): the transformed image, through the cache when there is one."""
        cache = self._cache
        if cache is None:
            return self.transform(load_image(self.image_paths[image_index]), generator)
        deterministic = isinstance(self.transform, EvalTransform)
        if image_index not in cache:
            image = load_image(self.image_paths[image_index])
            cache[image_index] = self.transform(image) if deterministic else image
        if deterministic:
            return cache[image_index]
        return self.transform(cache[image_index], generator)


class ImageDataset(Dataset):
    """Gallery images for evaluation or indexing.

    Args:
        image_paths: image files.
        pids: identity per image (-1 for every image when None, e.g. an unlabelled folder).
        transform: ``transform(image) -> (3, H, W)``; defaults to the 384x128 eval transform.

    Items: ``{'index': int, 'pids': int, 'images': (3, H, W) float}``.
    """

    def __init__(
        self,
        image_paths: Sequence[Path | str],
        pids: Sequence[int] | None = None,
        transform: ImageTransform | None = None,
    ) -> None:
        self.image_paths = [Path(p) for p in image_paths]
        self.pids = list(pids) if pids is not None else [-1] * len(self.image_paths)
        if len(self.pids) != len(self.image_paths):
            raise ValueError(f"{len(self.pids)} pids for {len(self.image_paths)} images")
        self.transform = transform if transform is not None else EvalTransform()

    @classmethod
    def from_split(cls, split: SplitData, transform: ImageTransform | None = None) -> ImageDataset:
        return cls(split.image_paths, split.image_pids, transform)

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = load_image(self.image_paths[index])
        return {"index": index, "pids": self.pids[index], "images": self.transform(image)}


class TextDataset(Dataset):
    """Text queries for evaluation, tokenised once at construction.

    Args:
        captions: the query texts.
        pids: identity per caption (-1 for every caption when None).
        text_length: L, tokens per caption.
        tokens: (num_captions, L) long, pre-tokenised captions (tokenised here if None).

    Items: ``{'index': int, 'pids': int, 'caption_ids': (L,) long}``.
    """

    def __init__(
        self,
        captions: Sequence[str],
        pids: Sequence[int] | None = None,
        *,
        text_length: int = 77,
        tokens: torch.Tensor | None = None,
    ) -> None:
        self.captions = list(captions)
        self.pids = list(pids) if pids is not None else [-1] * len(self.captions)
        if len(self.pids) != len(self.captions):
            raise ValueError(f"{len(self.pids)} pids for {len(self.captions)} captions")
        if tokens is None:
            tokens = tokenize(self.captions, context_length=text_length)
        self.tokens = tokens

    @classmethod
    def from_split(cls, split: SplitData, *, text_length: int = 77) -> TextDataset:
        return cls(split.captions, split.caption_pids, text_length=text_length)

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"index": index, "pids": self.pids[index], "caption_ids": self.tokens[index]}
