"""Training with several processes (Gloo on CPU) equals one process on the global batch."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from irra.engine.distributed import DistContext, all_gather_rows, bare_module, shard_range
from irra.methods.irra import compute_losses

HERE = Path(__file__).parent


def _worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dist_loss_worker", HERE / "dist_loss_worker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torchrun(
    nproc: int, *args: str, timeout: float = 600, omp_threads: int = 1
) -> subprocess.CompletedProcess:
    """Run ``torchrun --standalone --nproc_per_node nproc ARGS`` with this checkout's irra."""
    env = dict(os.environ, OMP_NUM_THREADS=str(omp_threads), PYTHONPATH=os.pathsep.join(sys.path))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        *args,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


@pytest.fixture(scope="module")
def two_process_step(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("dist_step")
    torchrun(2, str(HERE / "dist_loss_worker.py"), str(out))
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def single_process(case: str, halves: int = 1) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Losses and gradients of one process: on the whole batch, or averaged over its halves."""
    worker = _worker()
    _, loss_names, shared, _ = next(c for c in worker.CASES if c[0] == case)
    batch = worker.make_batch(shared)
    model = worker.make_model(loss_names)
    part = worker.GLOBAL_BATCH // halves
    sums: dict[str, float] = {}
    for h in range(halves):
        piece = {k: v[h * part : (h + 1) * part] for k, v in batch.items()}
        losses = compute_losses(model, piece, masked_global_text=shared)
        (losses["loss"] / halves).backward()
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) / halves
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return sums, grads


def assert_same_step(dist_result: dict, losses: dict, grads: dict) -> None:
    assert set(dist_result["losses"]) == set(losses)
    for key, value in losses.items():
        assert dist_result["losses"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert set(dist_result["grads"]) == set(grads)
    for name, grad in grads.items():
        # float32 sums in another order: errors relative to the tensor's scale
        scale = float(grad.abs().max())
        torch.testing.assert_close(
            dist_result["grads"][name], grad, rtol=1e-4, atol=1e-5 * scale, msg=name
        )


@pytest.mark.parametrize("case", ["sdm_mlm_id", "itc_mlm_id_clean_caption"])
def test_two_processes_of_8_equal_one_process_of_16(two_process_step, case):
    losses, grads = single_process(case)
    assert {"sdm", "mlm", "id"} <= set(losses) or {"itc", "mlm", "id"} <= set(losses)
    for rank in range(2):
        assert two_process_step[rank]["world_size"] == 2
        assert_same_step(two_process_step[rank][case], losses, grads)


def test_per_process_setting_averages_the_losses_of_each_part(two_process_step):
    losses, grads = single_process("per_process", halves=2)
    global_losses, _ = single_process("sdm_mlm_id")
    assert losses["sdm"] != pytest.approx(global_losses["sdm"], rel=1e-3)  # the modes differ
    for rank in range(2):
        assert_same_step(two_process_step[rank]["per_process"], losses, grads)


def test_rde_with_two_processes_equals_one_process(two_process_step):
    worker = _worker()
    model = worker.make_rde_model().eval()
    losses = worker.rde_objective()(model, worker.make_rde_batch())
    losses["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    values = {k: float(v.detach()) for k, v in losses.items()}
    assert 0 < values["clean_share"] < 1 and values["bge"] > 0 and values["tse"] > 0
    for rank in range(2):
        assert_same_step(two_process_step[rank]["rde"], values, grads)


def test_one_process_helpers_are_identities():
    ctx = DistContext()
    x = torch.randn(5, 3)
    assert all_gather_rows(x, ctx) is x
    assert shard_range(7, ctx) == range(7)
    model = torch.nn.Linear(2, 2)
    assert bare_module(model) is model


def test_shards_cover_a_split_in_order():
    parts = [shard_range(11, DistContext(world_size=3, rank=r)) for r in range(3)]
    assert [i for part in parts for i in part] == list(range(11))
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
