"""Batch samplers that are deterministic per ``(seed, epoch)`` and shard across processes.

Both samplers first compose the **global** batches of an epoch (``batch_size * world_size``
indices each) from a generator derived from ``(seed, epoch)``, identical in every process, then
give rank ``r`` the ``r``-th contiguous part of each global batch. So every process sees a disjoint
part of every global batch and all processes yield the same number of batches (no process waits
forever in a collective at the end of an epoch).

Use them as ``DataLoader(dataset, batch_sampler=sampler)``; call ``set_epoch(epoch)`` before each
epoch. ``state_dict()`` / ``load_state_dict()`` carry the epoch for resuming.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from irra.data.rng import derive_generator

__all__ = ["RandomBatchSampler", "IdentityBatchSampler"]


class _ShardedBatchSampler(Sampler[list[int]]):
    """Shared machinery: epoch, sharding, caching of one epoch's batches."""

    def __init__(self, batch_size: int, *, world_size: int, rank: int, seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world={world_size}")
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self._epoch = 0
        self._cache: tuple[tuple[int, int], list[list[int]]] | None = None

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self._epoch = int(epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._epoch = int(state["epoch"])
        self.seed = int(state.get("seed", self.seed))

    def _global_batches(self, generator: torch.Generator) -> list[list[int]]:
        raise NotImplementedError

    def _rank_batches(self) -> list[list[int]]:
        key = (self.seed, self._epoch)
        if self._cache is None or self._cache[0] != key:
            generator = derive_generator(self.seed, self._epoch, -1, "sampler")
            batches = []
            for batch in self._global_batches(generator):
                part = len(batch) // self.world_size
                batches.append(batch[self.rank * part : (self.rank + 1) * part])
            self._cache = (key, batches)
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._rank_batches()

    def __len__(self) -> int:
        return len(self._rank_batches())


class RandomBatchSampler(_ShardedBatchSampler):
    """Random batches of ``batch_size`` indices per process over ``range(num_samples)``.

    Each epoch uses one permutation of all samples (from ``(seed, epoch)``), cut into global
    batches of ``batch_size * world_size``.

    * ``drop_last=True`` (training default): an incomplete final global batch is dropped, so up
      to ``batch_size * world_size - 1`` samples (different ones each epoch) are not seen.
    * ``drop_last=False``: the final global batch is kept; its size is rounded up to a multiple of
      ``world_size`` by repeating samples from the start of the permutation (at most
      ``world_size - 1`` duplicates, none with one process) and split evenly, so the last batch of
      every process is smaller but of the same size.

    Args:
        num_samples: dataset length.
        batch_size: batch size per process.
        shuffle: False keeps index order (then the epoch does not matter).
        drop_last: see above.
        world_size, rank: the process group; rank ``r`` gets part ``r`` of each global batch.
        seed: run seed.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = True,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, world_size=world_size, rank=rank, seed=seed)
        global_batch = batch_size * world_size
        if num_samples < (global_batch if drop_last else 1):
            raise ValueError(
                f"{num_samples} samples make no batch of {batch_size} x {world_size} processes "
                "with drop_last=True; lower batch_size or pass drop_last=False"
            )
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.drop_last = drop_last

    def _global_batches(self, generator: torch.Generator) -> list[list[int]]:
        n = self.num_samples
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        indices = order.tolist()
        size = self.batch_size * self.world_size
        full = n // size
        batches = [indices[b * size : (b + 1) * size] for b in range(full)]
        rest = indices[full * size :]
        if rest and not self.drop_last:
            padded = math.ceil(len(rest) / self.world_size) * self.world_size
            repeats = math.ceil(padded / n) + 1
            rest = (rest + indices * repeats)[:padded]
            batches.append(rest)
        return batches


class IdentityBatchSampler(_ShardedBatchSampler):
    """P identities x K samples per batch (the reference's identity sampler, made shard-safe).

    Per epoch: each identity's samples are shuffled (an identity with fewer than K samples draws K
    with replacement) and cut into chunks of K (a trailing incomplete chunk is dropped). Then, while
    at least ``P_global = batch_size * world_size / K`` identities have chunks left, ``P_global`` of
    them are picked at random and one chunk of each forms a global batch. Rank ``r`` gets the
    chunks of identities ``r*P .. (r+1)*P - 1`` of each global batch (P = batch_size / K), so every
    process holds whole identities. Leftover chunks are dropped (``drop_last`` is implied); the
    number of batches is exact for the current epoch (it is computed, not estimated).

    Args:
        pids: (N,) identity of every sample, in dataset order.
        batch_size: batch size per process, a multiple of ``num_instances``.
        num_instances: K, samples per identity in a batch.
        world_size, rank, seed: as for :class:`RandomBatchSampler`.
    """

    def __init__(
        self,
        pids: Sequence[int],
        batch_size: int,
        num_instances: int = 4,
        *,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, world_size=world_size, rank=rank, seed=seed)
        if num_instances < 1 or batch_size % num_instances:
            raise ValueError(
                f"batch_size {batch_size} must be a multiple of num_instances {num_instances}"
            )
        self.num_instances = num_instances
        self.ids_per_batch = batch_size * world_size // num_instances
        groups: dict[int, list[int]] = {}
        for index, pid in enumerate(pids):
            groups.setdefault(int(pid), []).append(index)
        if len(groups) < self.ids_per_batch:
            raise ValueError(
                f"{len(groups)} identities cannot fill a batch of {self.ids_per_batch} identities "
                f"(batch_size {batch_size} x {world_size} processes / K={num_instances}); "
                "lower batch_size or num_instances"
            )
        self._groups = [groups[pid] for pid in sorted(groups)]

    def _chunks(self, generator: torch.Generator) -> list[list[list[int]]]:
        k = self.num_instances
        result = []
        for members in self._groups:
            n = len(members)
            if n < k:
                picks = torch.randint(0, n, (k,), generator=generator).tolist()
            else:
                picks = torch.randperm(n, generator=generator).tolist()
            chosen = [members[p] for p in picks]
            result.append([chosen[c * k : (c + 1) * k] for c in range(len(chosen) // k)])
        return result

    def _global_batches(self, generator: torch.Generator) -> list[list[int]]:
        chunks = self._chunks(generator)
        next_chunk = [0] * len(chunks)
        available = list(range(len(chunks)))
        batches: list[list[int]] = []
        p = self.ids_per_batch
        while len(available) >= p:
            picks = torch.randperm(len(available), generator=generator)[:p].tolist()
            batch: list[int] = []
            exhausted = []
            for pos in picks:
                group = available[pos]
                batch.extend(chunks[group][next_chunk[group]])
                next_chunk[group] += 1
                if next_chunk[group] == len(chunks[group]):
                    exhausted.append(pos)
            for pos in sorted(exhausted, reverse=True):
                del available[pos]
            batches.append(batch)
        return batches
