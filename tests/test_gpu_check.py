"""``bench/gpu_check.sh --dry-run``: the GPU check's every step, on CPU at tiny sizes, so that the
script cannot rot while no GPU is at hand."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"
STEPS = ["tests", "train-bf16", "train-fp32", "encode", "data", "epoch", "torchrun-2"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_dry_run_runs_every_step_and_prints_the_summary(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=os.pathsep.join(sys.path))
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--out", str(tmp_path / "check")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = tmp_path / "check"
    logs = {p.name: p.read_text()[-2000:] for p in out.glob("*.log")}
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + str(logs)
    rows = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()]
    assert [r[0] for r in rows] == STEPS
    assert all(r[1] == "ok" for r in rows), rows
    # the summary table: one row per step, with the figures of each
    summary = (out / "summary.md").read_text().splitlines()
    assert summary[0] == "| step | status | seconds | figures |"
    table = {line.split("|")[1].strip(): line for line in summary[2:]}
    assert list(table) == STEPS
    assert "skipped" in table["tests"]  # only CUDA-marked tests, skipped without a GPU
    assert "irra: s/step" in table["train-bf16"] and "irra: s/step" in table["train-fp32"]
    assert "images: items/s" in table["encode"] and "captions: items/s" in table["encode"]
    for name in ("epoch", "torchrun-2"):
        figures = json.loads((out / f"{name}.json").read_text())
        assert figures["samples/s"] > 0 and figures["peak RSS GiB"] > 0
        assert f"samples/s {figures['samples/s']}" in table[name]
    bf16 = json.loads((out / "train-bf16.json").read_text())["train-step"]["title"]
    assert "cpu bf16, 1 threads" in bf16
    assert summary == result.stdout.strip().splitlines()[-len(summary) - 2 : -2]
