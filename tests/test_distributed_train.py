"""``torchrun -m irra train`` with 2 Gloo processes: one epoch, evaluation, resume in 1 process."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_distributed import torchrun
from test_train_run import overrides

from irra.cli import main
from irra.cli.train import launch_command
from irra.engine.cpu_threads import (
    choose_threads,
    set_process_threads,
    threads_per_process,
    usable_cores,
)

# No convolutional stem: its batch norms see each process's part of the batch on CPU (there is no
# synchronised batch norm there), so only a model without one trains exactly like one process.
ARGS = ["train.report=false", "train.tensorboard=false", "model.stem_channels=[]"]


def epochs_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_process_run(synth_root, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("dist") / "run"
    result = torchrun(
        2,
        "-m",
        "irra",
        "train",
        "--config",
        "synth",
        "--out",
        str(run),
        *overrides(synth_root, 1),
        *ARGS,
    )
    log = (run / "train.log").read_text()
    assert "world size 2 (gloo backend)" in log
    assert log.count("starting run") == 1  # rank 0 alone writes the log
    assert "test metrics:" in result.stdout
    return run


@pytest.fixture(scope="module")
def one_process_run(synth_root, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("single") / "run"
    argv = ["train", "--config", "synth", "--out", str(run), *overrides(synth_root, 1), *ARGS]
    assert main(argv) == 0
    return run


def key_bias_rows(name: str, tensor: torch.Tensor) -> slice | None:
    """The key third of an attention's in_proj_bias (its gradient is exactly zero in theory)."""
    if name.endswith("in_proj_bias"):
        third = tensor.shape[0] // 3
        return slice(third, 2 * third)
    return None


def test_two_processes_train_one_epoch_like_one_process(two_process_run, one_process_run):
    two, one = epochs_of(two_process_run), epochs_of(one_process_run)
    assert len(two) == len(one) == 1
    assert two[0]["samples"] == one[0]["samples"]  # the global batch, not each process's part
    for key in ("sdm", "mlm", "id", "loss"):
        assert two[0][key] == pytest.approx(one[0][key], rel=1e-5), key
    metrics = json.loads((two_process_run / "metrics.json").read_text())
    assert metrics == json.loads((one_process_run / "metrics.json").read_text())
    assert set(metrics) == {"R1", "R5", "R10", "mAP", "mINP"}

    a = torch.load(two_process_run / "last.pt", weights_only=True)["model"]
    b = torch.load(one_process_run / "last.pt", weights_only=True)["model"]
    assert list(a) == list(b)  # no "module." prefixes
    for name, value in b.items():
        other = a[name].clone()
        rows = key_bias_rows(name, value)
        if rows is not None:  # Adam turns the rounding noise of a zero gradient into full steps
            other[rows] = value[rows]
        torch.testing.assert_close(other, value, rtol=1e-3, atol=1e-4, msg=name)


def test_a_two_process_checkpoint_resumes_in_one_process(two_process_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "last.pt", "log.jsonl"):
        (run / name).write_bytes((two_process_run / name).read_bytes())
    assert main(["train", "--resume", str(run), "train.epochs=2"]) == 0
    epochs = epochs_of(run)
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert torch.load(run / "last.pt", weights_only=True)["trainer"]["epoch"] == 2
    assert (run / "metrics.json").is_file()
    assert "world size 1" in (run / "train.log").read_text()


def test_a_one_process_checkpoint_resumes_with_nproc_2(one_process_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "last.pt", "log.jsonl"):
        (run / name).write_bytes((one_process_run / name).read_bytes())
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))  # the children import this irra
    assert main(["train", "--nproc", "2", "--resume", str(run), "train.epochs=2"]) == 0
    assert [e["epoch"] for e in epochs_of(run)] == [1, 2]
    assert "resumed after epoch 1 of 2" in (run / "train.log").read_text()
    assert "world size 2" in (run / "train.log").read_text()


def test_nproc_launches_torchrun_with_the_same_arguments(tmp_path):
    args = argparse.Namespace(
        nproc=4, resume=None, config="synth", overrides=["train.epochs=1"], verbose=False
    )
    command = launch_command(args, str(tmp_path / "run"))
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    tail = ["-m", "irra", "train", "--config", "synth", "--out", str(tmp_path / "run")]
    assert command[5:12] == tail
    assert command[-1] == "train.epochs=1"


def test_a_global_batch_that_does_not_split_over_the_processes_is_refused(
    synth_root,
    tmp_path,
):
    run = tmp_path / "run"
    args = ["-m", "irra", "train", "--config", "synth", "--out", str(run)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [*command, *args, *overrides(synth_root, 1), "data.batch_size=7"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "does not split evenly over 2 processes" in result.stderr + result.stdout


def test_threads_per_process_share_the_cores():
    assert threads_per_process(8, 1) == 8
    assert threads_per_process(8, 3) == 2
    assert threads_per_process(2, 4) == 1  # never zero


@pytest.mark.parametrize(
    ("requested", "device", "current", "cores", "processes", "expected"),
    [
        (None, "cpu", 2, 2, 2, 1),  # OMP_NUM_THREADS=2 under torchrun on 2 cores: capped
        (None, "cpu", 1, 16, 2, 1),  # torchrun's default of 1 thread is kept
        (None, "cpu", 16, 16, 1, 16),  # one process keeps every core
        (None, "cuda", 8, 8, 2, 8),  # on CUDA the CPU threads are left as they are
        (3, "cpu", 2, 2, 2, 3),  # train.threads says otherwise
    ],
)
def test_choose_threads(requested, device, current, cores, processes, expected):
    got = choose_threads(requested, device, current=current, cores=cores, processes=processes)
    assert got == expected


def test_oversubscribed_threads_are_warned_about(monkeypatch, caplog):
    before = torch.get_num_threads()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    try:
        with caplog.at_level("WARNING", logger="irra"):
            set_process_threads(usable_cores(), "cpu")
            assert f"2 processes x {usable_cores()} CPU threads exceed" in caplog.text
            caplog.clear()
            assert set_process_threads(None, "cpu") == threads_per_process(usable_cores(), 2)
            assert torch.get_num_threads() == threads_per_process(usable_cores(), 2)
            assert "exceed" not in caplog.text
    finally:
        torch.set_num_threads(before)


def test_torchrun_processes_take_their_share_of_the_cores(synth_root, tmp_path):
    """OMP_NUM_THREADS=<all cores> exported, 2 processes: each trains with cores / 2 threads."""
    run = tmp_path / "run"
    argv = ["-m", "irra", "train", "--config", "synth", "--out", str(run)]
    torchrun(2, *argv, *overrides(synth_root, 1), *ARGS, omp_threads=usable_cores())
    share = threads_per_process(usable_cores(), 2)
    assert f"{share} CPU threads per process" in (run / "train.log").read_text()
