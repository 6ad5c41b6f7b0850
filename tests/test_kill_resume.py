"""A training run killed with SIGKILL at several moments resumes to the uninterrupted result.

Each attempt is a separate ``irra`` process (through the real CLI) that kills itself with SIGKILL
at a chosen point: in the middle of an epoch, half-way through writing ``last.pt`` or ``best.pt``,
and half-way through writing the final model. Every restart is the same command,
``irra train --resume RUN``. The oracle is the same config trained once without interruption.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from test_train_run import TINY as TRAIN_TINY

from irra.config import load_config
from irra.data.synth import generate_synthpedes
from irra.engine.checkpoint import load_checkpoint
from irra.engine.run import train

WORKER = Path(__file__).with_name("kill_worker.py")
SRC = Path(__file__).resolve().parents[1] / "src"
EPOCHS = 3
TINY = [
    *TRAIN_TINY,
    "train.threads=1",
    "train.report=false",
    "train.tensorboard=false",
    f"train.epochs={EPOCHS}",
]


def run_worker(kill_at: str, argv: list[str]) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(
        [sys.executable, str(WORKER), kill_at, "--", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"irra {argv} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.returncode


def last_epoch(run: Path) -> int:
    path = run / "last.pt"
    return int(load_checkpoint(path)["trainer"]["epoch"]) if path.is_file() else 0


def test_sigkill_at_random_moments_resumes_to_the_uninterrupted_result(tmp_path):
    # No val split: the last epoch is selected, so every epoch writes best.pt and last.pt.
    data = tmp_path / "data"
    generate_synthpedes(
        data / "CUHK-PEDES",
        num_ids=16,
        images_per_id=2,
        captions_per_image=2,
        image_size=(64, 32),
        split_fractions=(0.75, 0.0, 0.25),
    )
    overrides = [*TINY, f"data.root={data}"]
    straight = train(load_config("synth", overrides), tmp_path / "straight")

    run = tmp_path / "run"
    resume = ["train", "--resume", str(run)]
    rng = random.Random(8)
    steps = 6  # per epoch: 12 train ids x 2 images x 2 captions / batch 8
    # 1. mid-epoch 1, before any checkpoint exists: the resume starts over.
    first = ["train", "--config", "synth", "--out", str(run), *overrides]
    assert run_worker(f"step:{rng.randrange(1, steps)}", first) == -signal.SIGKILL
    assert last_epoch(run) == 0
    # 2. half-way through the second checkpoint file written after the last epoch (best.pt and
    # last.pt are both written every epoch here).
    assert run_worker(f"write:*.pt:{2 * EPOCHS}", resume) == -signal.SIGKILL
    # 3. at a random step of what is left.
    start = last_epoch(run)
    assert 0 < start < EPOCHS
    assert run_worker(f"step:{rng.randrange(start * steps + 1, EPOCHS * steps)}", resume) == (
        -signal.SIGKILL
    )
    # 4. half-way through writing the final model.
    assert run_worker("write:model.safetensors:1", resume) == -signal.SIGKILL
    assert not (run / "metrics.json").exists()
    # 5. to the end.
    assert run_worker("never", resume) == 0
    assert not list(run.glob(".*.tmp")), "a partial write was left behind"

    assert json.loads((run / "metrics.json").read_text()) == straight.metrics
    a = safetensors.torch.load_file(straight.model_dir / "model.safetensors")
    b = safetensors.torch.load_file(run / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for name in ("last.pt", "best.pt"):
        x, y = load_checkpoint(straight.run_dir / name), load_checkpoint(run / name)
        assert x["trainer"]["epoch"] == y["trainer"]["epoch"] == EPOCHS, name
        for key in x["model"]:
            assert torch.equal(x["model"][key], y["model"][key]), (name, key)

    def losses(folder: Path) -> list[tuple[int, float]]:
        lines = (folder / "log.jsonl").read_text().splitlines()
        return [(r["epoch"], r["loss"]) for r in map(json.loads, lines)]

    assert losses(run) == losses(straight.run_dir)
    assert [e for e, _ in losses(run)] == list(range(1, EPOCHS + 1))


@pytest.mark.parametrize("name", ["last.pt", "best.pt"])
def test_a_checkpoint_cut_short_names_the_file(tmp_path, name):
    from irra.engine.checkpoint import CheckpointError, save_checkpoint

    path = tmp_path / name
    save_checkpoint(path, {"model": {"w": torch.ones(1000)}})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
