"""irra.bench and ``irra bench``: FLOP counting against formulas, variants against the irra step,
and the command line on tiny sizes (speed goals live in the benchmark, never in tests)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from irra.bench.peak import count_flops, matmul_peak
from irra.bench.timing import time_call
from irra.bench.train_step import VARIANTS, _loss_fn, build_step
from irra.bench.workload import build_bench_model, training_batch
from irra.cli import main
from irra.config import OptimConfig
from irra.engine.optim import build_optimizer


def test_count_flops_matches_the_matmul_formula():
    a, b = torch.randn(6, 5), torch.randn(5, 7)
    assert count_flops(lambda: a @ b) == 2 * 6 * 5 * 7
    linear = torch.nn.Linear(5, 7)
    assert count_flops(lambda: linear(torch.randn(3, 4, 5))) == 2 * 12 * 5 * 7


def test_count_flops_counts_cpu_fused_attention_forward_and_backward():
    batch, heads, length, dim = 2, 3, 9, 8
    q, k, v = (torch.randn(batch, heads, length, dim, requires_grad=True) for _ in range(3))

    def attend():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            F.scaled_dot_product_attention(q, k, v).sum().backward()

    per_product = 2 * batch * heads * length * length * dim  # q @ k^T, or scores @ v
    # forward: 2 products; backward: 5 (recomputed scores, grads of v, scores, q and k)
    assert count_flops(attend) == 7 * per_product


def test_time_call_runs_warmup_then_timed_calls():
    calls = []
    timing = time_call(lambda: calls.append(1), torch.device("cpu"), warmup=2, repeat=3)
    assert len(calls) == 5 and len(timing.seconds) == 3
    assert timing.median >= 0
    with pytest.raises(ValueError, match="repeat"):
        time_call(lambda: None, torch.device("cpu"), repeat=0)


def test_matmul_peak_is_flops_over_median_time():
    peak = matmul_peak(torch.device("cpu"), size=64, repeat=2)
    assert peak.flops_per_second == pytest.approx(2 * 64**3 / peak.timing.median)


def _losses_and_grads(model, batch, loss_fn, context=None):
    model.zero_grad(set_to_none=True)
    with context or torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        out = loss_fn(model, batch)
        out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: out[k].detach() for k in ("sdm", "id", "mlm", "loss")}, grads


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build_bench_model("tiny", torch.device("cpu"))
    return model, training_batch(model, 6, seed=1)


@pytest.mark.parametrize("variant", ["two-text-passes", "mlm-all-positions", "mlm-materialised"])
def test_undone_optimisations_give_the_same_losses_and_gradients(tiny, variant):
    model, batch = tiny
    want_losses, want_grads = _losses_and_grads(model, batch, _loss_fn("irra"))
    got_losses, got_grads = _losses_and_grads(model, batch, _loss_fn(variant))
    for name, value in want_losses.items():
        torch.testing.assert_close(got_losses[name], value, rtol=1e-5, atol=1e-6)
    assert got_grads.keys() == want_grads.keys()
    for name, grad in want_grads.items():
        scale = float(grad.abs().max())  # float32 rounding of sums in another order
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_fused_attention_step_matches_the_math_attention_step(tiny):
    model, batch = tiny
    want_losses, want_grads = _losses_and_grads(model, batch, _loss_fn("irra"))
    math = sdpa_kernel(SDPBackend.MATH)
    got_losses, got_grads = _losses_and_grads(model, batch, _loss_fn("irra"), math)
    torch.testing.assert_close(got_losses["loss"], want_losses["loss"], rtol=1e-5, atol=1e-6)
    for name, grad in want_grads.items():
        scale = float(grad.abs().max())
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_foreach_and_for_loop_adam_steps_give_the_same_weights():
    weights = {}
    for variant in ("irra", "for-loop-adam"):
        model = build_bench_model("tiny", torch.device("cpu"))
        optimizer = build_optimizer(model, OptimConfig(warmup_epochs=0, schedule="constant"))
        batch = training_batch(model, 4)
        step = build_step(model, optimizer, batch, variant, torch.device("cpu"), "fp32")
        step()
        step()
        assert all(group["foreach"] for group in optimizer.param_groups)  # restored
        weights[variant] = {n: p.detach().clone() for n, p in model.named_parameters()}
    for name, value in weights["irra"].items():
        torch.testing.assert_close(weights["for-loop-adam"][name], value, msg=name)


def test_unknown_variant_lists_the_valid_ones(tiny):
    model, batch = tiny
    optimizer = build_optimizer(model, OptimConfig())
    with pytest.raises(ValueError, match="two-text-passes"):
        build_step(model, optimizer, batch, "nope", torch.device("cpu"), "fp32")
    assert VARIANTS[0] == "irra"


def test_cli_train_step_and_encode_report_utilisation(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "train-step", "--size", "tiny", "--batch", "4", "--repeat", "1"]
    assert (
        main([*args, "--variants", "two-text-passes", "--device", "cpu", "--json", str(out)]) == 0
    )
    report = json.loads(out.read_text())["train-step"]
    rows = {row["variant"]: row for row in report["rows"]}
    assert set(rows) == {"irra", "two-text-passes"}
    assert 0 < rows["irra"]["MFU"] < 1.5
    assert rows["two-text-passes"]["GFLOP run"] > rows["irra"]["GFLOP run"]  # the extra pass
    args = ["bench", "encode", "--size", "tiny", "--batch", "4", "--repeat", "1", "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "train-step tiny" in printed and "captions" in printed


def test_cli_metrics_are_identical_to_the_baseline(tmp_path):
    out = tmp_path / "metrics.json"
    assert main(["bench", "metrics", "--gallery", "400", "--repeat", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())["metrics"]
    assert report["identical"] is True
    irra, baseline = report["rows"]
    for key in ("R1", "R5", "R10", "mAP", "mINP"):
        assert irra[key] == pytest.approx(baseline[key], abs=1e-6)


def test_cli_data_reports_samples_per_second_and_shares(tmp_path):
    out = tmp_path / "data.json"
    args = ["bench", "data", "--samples", "8", "--batch", "4", "--repeat", "1"]
    assert main([*args, "--json", str(out)]) == 0
    rows = {row["stage"]: row for row in json.loads(out.read_text())["data"]["rows"]}
    assert rows["loader (all stages)"]["samples/s"] > 0
    assert 0 < rows["augment"]["share"] < 1.5
