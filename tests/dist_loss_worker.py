"""One training step of a tiny IRRA in each of several processes (run by ``torchrun``).

``python -m torch.distributed.run --nproc_per_node N tests/dist_loss_worker.py OUT`` gives each
rank its contiguous part of the same global batch (:func:`make_batch`), wraps the model in DDP,
computes the losses of every case in :data:`CASES`, back-propagates and saves the losses averaged
over processes and the gradients to ``OUT/rank<r>.pt``. ``tests/test_distributed.py`` compares
them with one process on the whole batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from irra.model import CLIPConfig, TextConfig, VisionConfig, build_model

MASK_ID = 49405
GLOBAL_BATCH = 16
CONTEXT = 16

#: (name, loss names, caption masked in place (one shared text pass), global batch).
CASES: tuple[tuple[str, str, bool, bool], ...] = (
    ("sdm_mlm_id", "sdm+mlm+id", True, True),
    ("itc_mlm_id_clean_caption", "itc+mlm+id", False, True),
    ("per_process", "sdm+mlm+id", True, False),
)


def make_model(loss_names: str) -> torch.nn.Module:
    """A tiny randomly initialised IRRA, the same in every process."""
    torch.manual_seed(0)
    clip = CLIPConfig(
        embed_dim=32,
        vision=VisionConfig((32, 16), patch_size=8, stride_size=8, width=32, layers=1, heads=1),
        text=TextConfig(context_length=CONTEXT, vocab_size=49408, width=32, layers=1, heads=1),
    )
    model = build_model(clip, num_classes=7, cmt_depth=1, loss_names=loss_names)
    with torch.no_grad():  # a classifier of N(0, 0.001) gives ID gradients too small to compare
        model.classifier.weight.normal_(0.0, 0.1)
    return model


def make_batch(shared_text: bool) -> dict[str, torch.Tensor]:
    """The global batch: identities that span both halves, uneven numbers of masked positions."""
    gen = torch.Generator().manual_seed(1)
    captions = torch.zeros(GLOBAL_BATCH, CONTEXT, dtype=torch.long)
    labels = torch.zeros_like(captions)
    for row in range(GLOBAL_BATCH):
        n = 4 + row % 9
        captions[row, 0] = 49406
        captions[row, 1 : n + 1] = torch.randint(1, MASK_ID, (n,), generator=gen)
        captions[row, n + 1] = 49407
        # the first half carries more masked positions than the second
        for col in range(1, n + 1, 2 if row < GLOBAL_BATCH // 2 else 5):
            labels[row, col] = captions[row, col]
    mlm_ids = torch.where(labels > 0, torch.full_like(captions, MASK_ID), captions)
    pids = torch.tensor([0, 1, 2, 0, 3, 4, 1, 5, 2, 6, 0, 3, 5, 5, 6, 4])
    return {
        "images": torch.randn(GLOBAL_BATCH, 3, 32, 16, generator=gen),
        "caption_ids": mlm_ids if shared_text else captions,
        "mlm_ids": mlm_ids,
        "mlm_labels": labels,
        "pids": pids,
    }


def make_rde_model() -> torch.nn.Module:
    """A tiny randomly initialised RDE model (BGE + TSE heads), the same in every process."""
    torch.manual_seed(0)
    clip = CLIPConfig(
        embed_dim=32,
        vision=VisionConfig((32, 16), patch_size=8, stride_size=8, width=32, layers=1, heads=1),
        text=TextConfig(context_length=CONTEXT, vocab_size=49408, width=32, layers=1, heads=1),
    )
    return build_model(clip, loss_names="bge+tse", tse_dim=16)


def make_rde_batch() -> dict[str, torch.Tensor]:
    """The global batch with sample indices (into a training set of 40 pairs)."""
    batch = make_batch(False)
    del batch["mlm_ids"], batch["mlm_labels"]
    batch["index"] = torch.arange(3, 3 + 2 * GLOBAL_BATCH, 2)
    return batch


def rde_objective(ctx=None):
    """RDE's objective with per-sample weights: every third training pair judged noisy."""
    from irra.methods.rde import RDEObjective

    objective = RDEObjective(("bge", "tse"), temperature=0.05, margin=0.3, dist_ctx=ctx)
    objective.weights = (torch.arange(40) % 3 != 0).float()
    return objective


def main(out: Path) -> None:
    import torch.distributed as dist

    from irra.engine.distributed import distributed_session, mean_over_processes, wrap_ddp
    from irra.methods.irra import compute_losses

    torch.set_num_threads(1)
    results = {}
    with distributed_session("cpu") as ctx:
        part = GLOBAL_BATCH // ctx.world_size
        rows = slice(ctx.rank * part, (ctx.rank + 1) * part)
        for name, loss_names, shared, global_batch in CASES:
            model = make_model(loss_names)
            ddp = wrap_ddp(model, torch.device("cpu"))
            batch = {k: v[rows] for k, v in make_batch(shared).items()}
            losses = compute_losses(
                ddp, batch, masked_global_text=shared, dist_ctx=ctx, global_batch=global_batch
            )
            losses["loss"].backward()
            results[name] = {
                "losses": {k: float(v) for k, v in mean_over_processes(losses, ctx).items()},
                "grads": {
                    n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
                },
            }
        # RDE: TAL of the gathered global batch, weighted per sample by its global index
        model = make_rde_model().eval()  # eval mode: batch norm independent of the split
        ddp = wrap_ddp(model, torch.device("cpu"))
        batch = {k: v[rows] for k, v in make_rde_batch().items()}
        losses = rde_objective(ctx)(ddp, batch)
        losses["loss"].backward()
        results["rde"] = {
            "losses": {k: float(v) for k, v in mean_over_processes(losses, ctx).items()},
            "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
        }
        results["world_size"] = dist.get_world_size()
        torch.save(results, out / f"rank{ctx.rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
