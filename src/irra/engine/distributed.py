"""Process groups for multi-process training, and the collectives the losses and evaluation need.

A run is distributed when it is started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment).
:func:`distributed_session` then joins the process group (NCCL on CUDA, Gloo on CPU) and leaves it
at the end; a single process gets a :class:`DistContext` of world size 1 and every collective
below becomes the identity, so the same code serves both.

Loss convention across processes: every loss value a process returns is its *share*, chosen so
that the mean of the shares over processes is the loss of the whole global batch. DDP averages
gradients over processes, so the mean of the shares is also what the parameters see:

- losses of gathered features (SDM, ITC, CMPM) are computed on the global batch in every process,
  and :func:`gather_with_grad` sends each process's gradient back to the features' owner, summed
  over processes (the share is the global loss itself);
- per-sample means (ID, MLM, accuracies) are reweighted by :func:`mean_share`.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = [
    "DistContext",
    "all_gather_rows",
    "bare_module",
    "broadcast_object",
    "distributed_session",
    "env_world_size",
    "gather_with_grad",
    "mean_over_processes",
    "mean_share",
    "shard_range",
    "wrap_ddp",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the run.

    Attributes:
        world_size: number of processes (1 when not distributed).
        rank: this process's global rank (0 writes logs, checkpoints and reports).
        local_rank: rank on this machine (selects the CUDA device).
    """

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (no-op in one process)."""
        if self.distributed:
            dist.barrier()


def env_world_size() -> int:
    """``WORLD_SIZE`` as set by ``torchrun`` (1 when unset)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def distributed_session(device_type: str, timeout_s: float = 1800.0) -> Iterator[DistContext]:
    """Join the process group described by the ``torchrun`` environment for the ``with`` block.

    Args:
        device_type: ``"cuda"`` (NCCL backend, one device per local rank) or ``"cpu"`` (Gloo).
        timeout_s: how long a collective may wait before the run fails.

    Yields:
        The :class:`DistContext`. A group that already exists (initialised by the caller) is used
        as it is and left open; one created here is destroyed on exit.
    """
    if dist.is_available() and dist.is_initialized():
        yield DistContext(
            dist.get_world_size(), dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
        )
        return
    world_size = env_world_size()
    if world_size <= 1:
        yield DistContext()
        return
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield DistContext(dist.get_world_size(), dist.get_rank(), local_rank)
        # Tear down together: a process that leaves while another is still finishing its last
        # collective can abort that one ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """Wrap ``model`` (already on ``device``) for data-parallel training in the current group.

    Every parameter of the model takes part in every step (CLIP's ``logit_scale``, which IRRA
    does not use, is a buffer), so plain DDP needs neither ``find_unused_parameters`` nor
    ``static_graph``.

    Batch norms (a convolutional stem's) become ``SyncBatchNorm`` on CUDA, in place, so that they
    normalise with the statistics of the global batch. PyTorch has no synchronised batch norm on
    CPU: there each process normalises with its own part of the batch.
    """
    if device.type == "cuda" and any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
    ):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
    )


def bare_module(model: nn.Module) -> nn.Module:
    """The module inside DDP / ``torch.compile`` wrappers, whose state dict has no prefixes."""
    inner = model
    while True:
        if isinstance(inner, nn.parallel.DistributedDataParallel):
            inner = inner.module
        elif hasattr(inner, "_orig_mod") and isinstance(inner._orig_mod, nn.Module):
            inner = inner._orig_mod
        else:
            return inner


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; backward sums the gradients of every process's copy."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:  # type: ignore[override]
        world, rank = dist.get_world_size(), dist.get_rank()
        ctx.rows, ctx.rank = tensor.shape[0], rank
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        # Every process computed the same loss of the gathered tensor; the gradient of this
        # process's rows is the sum over processes of their gradient for these rows. An
        # all-reduce works on every backend (Gloo has no reduce-scatter); the tensors are small.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(tensor: Tensor, ctx: DistContext) -> Tensor:
    """Concatenate ``tensor`` of every process in rank order, keeping gradients to each owner.

    Args:
        tensor: (B, ...) with the same shape in every process.
        ctx: the process group; with one process ``tensor`` is returned as it is.

    Returns:
        (world_size * B, ...). The backward pass gives this process the sum over processes of the
        gradient of its rows, so a loss computed identically in every process and averaged over
        processes by DDP gets exactly the single-process gradient.
    """
    if not ctx.distributed:
        return tensor
    return _GatherWithGrad.apply(tensor)


def mean_share(local_mean: Tensor, count: int | Tensor, ctx: DistContext) -> Tensor:
    """This process's share of a global per-item mean.

    With ``local_mean`` the mean over this process's ``count`` items, returns
    ``local_mean * count * world_size / total_count``, whose mean over processes is the mean over
    all items of all processes (exact for unequal counts).

    Args:
        local_mean: scalar tensor (keeps its graph).
        count: number of items this process averaged over.
        ctx: the process group; with one process ``local_mean`` is returned.
    """
    if not ctx.distributed:
        return local_mean
    counts = torch.as_tensor(count, dtype=torch.float32, device=local_mean.device).reshape(1)
    total = counts.clone()
    dist.all_reduce(total)
    return local_mean * (counts[0] * ctx.world_size / total[0].clamp(min=1.0))


def mean_over_processes(values: Mapping[str, Tensor], ctx: DistContext) -> dict[str, Tensor]:
    """The mean over processes of each scalar in ``values`` (one all-reduce), detached."""
    names = list(values)
    if not ctx.distributed or not names:
        return {k: v.detach() for k, v in values.items()}
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in names])
    dist.all_reduce(stacked)
    stacked /= ctx.world_size
    return {k: stacked[i] for i, k in enumerate(names)}


def shard_range(length: int, ctx: DistContext) -> range:
    """The contiguous part of ``range(length)`` this process handles (sizes differ by <= 1)."""
    start = length * ctx.rank // ctx.world_size
    stop = length * (ctx.rank + 1) // ctx.world_size
    return range(start, stop)


def all_gather_rows(tensor: Tensor, ctx: DistContext) -> Tensor:
    """Concatenate per-process tensors of possibly different lengths in rank order (no grad).

    Args:
        tensor: (N_r, ...) on this process's device; N_r may differ between processes, the other
            dimensions and the dtype may not.

    Returns:
        (sum_r N_r, ...) in every process.
    """
    if not ctx.distributed:
        return tensor
    length = torch.tensor([tensor.shape[0]], device=tensor.device)
    lengths = [torch.empty_like(length) for _ in range(ctx.world_size)]
    dist.all_gather(lengths, length)
    sizes = [int(n) for n in lengths]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` in every process (picklable objects; identity in one process)."""
    if not ctx.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
