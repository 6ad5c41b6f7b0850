"""Training settings through a real run: model selection (a planted, non-monotonic curve of the
selection metric), ``select_on`` / ``select_metric``, ``eval_every``, the optimiser and schedule,
``grad_clip``, ``model.pretrained``, ``train.compile``, ``train.precision``, ``log_every``,
``data.on_bad_entry``; each checked against values computed here. Every run is pinned to the CPU
(the tiny overrides set ``train.device=cpu``)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch
from test_pretrained import openai_archive, random_clip_state
from test_train_run import brute_force_metrics, overrides

import irra.engine.run as run_module
from irra.cli import main
from irra.config import load_config
from irra.data import DatasetError, build_eval_loaders, build_eval_transform, read_dataset
from irra.engine.checkpoint import load_checkpoint
from irra.engine.distributed import bare_module
from irra.engine.run import train
from irra.engine.trainer import Hook
from irra.model import clip_config, load_model

QUIET = ["train.report=false", "train.tensorboard=false"]


class RecordStates(Hook):
    """Keeps a copy of the model's weights at the start and after every epoch (before the
    evaluation hook runs), and of the parameters after every step when asked."""

    def __init__(self, steps: bool = False) -> None:
        self.start: dict[str, torch.Tensor] = {}
        self.epochs: list[dict[str, torch.Tensor]] = []
        self.steps: list[list[torch.Tensor]] = []
        self.record_steps = steps

    @staticmethod
    def _copy(trainer) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in bare_module(trainer.model).state_dict().items()}

    def on_fit_start(self, trainer) -> None:
        self.start = self._copy(trainer)

    def after_step(self, trainer, logs) -> None:
        if self.record_steps:
            self.steps.append([p.detach().clone() for p in trainer.model.parameters()])

    def after_epoch(self, trainer, epoch, logs) -> None:
        self.epochs.append(self._copy(trainer))


def plant(monkeypatch, curve: list[float], key: str = "R1") -> list[dict[str, float]]:
    """Replace ``key`` of the first ``len(curve)`` evaluations of the run with ``curve``; later
    ones (the final test) are left as computed. Returns every metrics dict handed out."""
    real = run_module.split_metrics
    handed: list[dict[str, float]] = []

    def planted(encoded, **kwargs):
        metrics = real(encoded, **kwargs)
        if len(handed) < len(curve):
            metrics = {**metrics, key: curve[len(handed)]}
        handed.append(metrics)
        return metrics

    monkeypatch.setattr(run_module, "split_metrics", planted)
    return handed


def oracle_test_metrics(model_dir: Path, state: dict[str, torch.Tensor], root: Path) -> dict:
    """R1/R5/R10/mAP of ``state`` (in the run's model) on the test split, by brute force."""
    model = load_model(model_dir)
    model.load_state_dict(state)
    model.eval()
    data = read_dataset("CUHK-PEDES", root)
    images, texts = build_eval_loaders(
        data.test, build_eval_transform((32, 16)), batch_size=7, num_workers=0, text_length=48
    )
    with torch.no_grad():
        img = torch.cat([model.encode_image(b["images"]) for b in images])
        txt = torch.cat([model.encode_text(b["caption_ids"]) for b in texts])
    sim = torch.nn.functional.normalize(txt, dim=-1) @ torch.nn.functional.normalize(img, dim=-1).T
    pids = torch.tensor(data.test.caption_pids), torch.tensor(data.test.image_pids)
    return brute_force_metrics(sim, *pids)


def assert_model_is(model_dir: Path, state: dict[str, torch.Tensor]) -> None:
    saved = safetensors.torch.load_file(model_dir / "model.safetensors")
    assert saved.keys() == state.keys()
    for key, value in saved.items():
        assert torch.equal(value, state[key]), key


def epoch_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_the_best_val_epoch_gives_model_and_metrics(synth_root, tmp_path, monkeypatch):
    curve = [20.0, 60.0, 40.0]  # val R1: the best epoch is 2, not the last
    handed = plant(monkeypatch, curve)
    states = RecordStates()
    config = load_config("synth", [*overrides(synth_root, 3), *QUIET])
    result = train(config, tmp_path / "run", hooks=[states])

    run = tmp_path / "run"
    assert [r["val/R1"] for r in epoch_log(run)] == curve
    assert len(handed) == 4  # 3 val evaluations, then the test
    assert result.best_epoch == 2
    assert load_checkpoint(run / "best.pt")["trainer"]["epoch"] == 2
    assert load_checkpoint(run / "last.pt")["trainer"]["epoch"] == 3
    assert json.loads((run / "model" / "irra.json").read_text())["metadata"]["epoch"] == 2
    assert_model_is(run / "model", states.epochs[1])
    metrics = json.loads((run / "metrics.json").read_text())
    expected = oracle_test_metrics(run / "model", states.epochs[1], synth_root)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-3), key


def test_eval_every_evaluates_every_nth_and_the_last_epoch(synth_root, tmp_path, monkeypatch):
    curve = [30.0, 10.0, 20.0]  # evaluations after epochs 2, 4 and 5 (the last)
    plant(monkeypatch, curve)
    states = RecordStates()
    config = load_config("synth", [*overrides(synth_root, 5), *QUIET, "train.eval_every=2"])
    result = train(config, tmp_path / "run", hooks=[states])
    log = epoch_log(tmp_path / "run")
    assert [r["epoch"] for r in log] == [1, 2, 3, 4, 5]
    assert [r.get("val/R1") for r in log] == [None, 30.0, None, 10.0, 20.0]
    assert result.best_epoch == 2
    assert_model_is(tmp_path / "run" / "model", states.epochs[1])


def test_select_on_test_selects_by_the_test_split(synth_root, tmp_path, monkeypatch):
    """... and by another metric: train.select_metric=mAP (R1 stays as computed)."""
    curve = [50.0, 20.0, 40.0]  # test mAP during training: the best epoch is 1
    handed = plant(monkeypatch, curve, key="mAP")
    states = RecordStates()
    settings = ["train.select_on=test", "train.select_metric=mAP"]
    config = load_config("synth", [*overrides(synth_root, 3), *QUIET, *settings])
    result = train(config, tmp_path / "run", hooks=[states])
    log = epoch_log(tmp_path / "run")
    assert [r["test/mAP"] for r in log] == curve
    assert not any(key.startswith("val/") for record in log for key in record)
    assert len(handed) == 4 and result.best_epoch == 1
    meta = json.loads((tmp_path / "run" / "model" / "irra.json").read_text())["metadata"]
    assert (meta["epoch"], meta["selected_on"]) == (1, "test")
    assert_model_is(tmp_path / "run" / "model", states.epochs[0])


def linear_factor(epoch: int, epochs: int, warmup: int, warmup_factor: float) -> float:
    """Linear warm-up from ``warmup_factor``, then a straight line to 0 after the last epoch."""
    if epoch < warmup:
        return warmup_factor + (1 - warmup_factor) * epoch / warmup
    return 1 - (epoch - warmup) / (epochs - warmup)


def test_sgd_with_the_linear_schedule_through_the_config(synth_root, tmp_path):
    settings = [
        "optim.optimizer=sgd",
        "optim.schedule=linear",
        "optim.lr=0.01",
        "optim.warmup_epochs=1",
        "optim.warmup_factor=0.25",
    ]
    config = load_config("synth", [*overrides(synth_root, 4), *QUIET, *settings])
    train(config, tmp_path / "run")
    log = epoch_log(tmp_path / "run")
    # the first parameter group holds the backbone weights: the base rate
    want = [0.01 * linear_factor(e, 4, 1, 0.25) for e in range(4)]  # 0.0025, 0.01, 0.0067, 0.0033
    assert [r["lr"] for r in log] == pytest.approx(want, rel=1e-9)
    state = load_checkpoint(tmp_path / "run" / "last.pt")["optimizer"]["state"]
    assert all(set(s) == {"momentum_buffer"} for s in state.values())  # SGD's state, not Adam's


def test_grad_clip_bounds_every_step_through_the_config(synth_root, tmp_path):
    """Plain SGD at one learning rate for every parameter: each step moves the parameters by
    exactly lr x min(|g|, clip); with a clip far below the gradient norm, lr x clip."""
    lr, clip = 0.1, 1e-3
    settings = [
        "optim.optimizer=sgd",
        "optim.momentum=0",
        f"optim.lr={lr}",
        "optim.lr_factor=1",
        "optim.bias_lr_factor=1",
        "optim.weight_decay=0",
        "optim.weight_decay_bias=0",
        "optim.warmup_epochs=0",
        "optim.schedule=constant",
        f"optim.grad_clip={clip}",
    ]
    states = RecordStates(steps=True)
    config = load_config("synth", [*overrides(synth_root, 1), *QUIET, *settings])
    train(config, tmp_path / "run", hooks=[states])
    assert len(states.steps) >= 2
    for before, after in zip(states.steps, states.steps[1:], strict=False):
        pairs = zip(after, before, strict=True)
        moved = math.sqrt(sum(float((a - b).double().pow(2).sum()) for a, b in pairs))
        assert moved == pytest.approx(lr * clip, rel=1e-3)


def test_model_pretrained_in_a_config_initialises_the_run(synth_root, tmp_path, monkeypatch):
    """OpenAI-format weights (a TorchScript archive) named with ~ in the config are the weights
    the run starts from; the rest of the model (heads) is new."""
    monkeypatch.setenv("HOME", str(tmp_path))
    clip = clip_config("tiny", image_size=(32, 16), stride_size=16)
    weights = random_clip_state(clip, seed=5)
    openai_archive(weights, tmp_path / "tiny-clip.pt")
    settings = [
        "model.arch=tiny",
        "model.pretrained=~/tiny-clip.pt",
        "model.stem_channels=[]",
        "model.vision_heads=null",
        "model.text_heads=null",
        "model.vocab=full",
        "model.stride_size=16",
        "model.context_length=77",
        "data.text_length=77",
    ]
    states = RecordStates()
    config = load_config("synth", [*overrides(synth_root, 1), *QUIET, *settings])
    train(config, tmp_path / "run", hooks=[states])
    for key, value in weights.items():
        assert torch.equal(states.start[f"base_model.{key}"], value), key
    assert states.start.keys() - {f"base_model.{k}" for k in weights}  # the heads are new


def test_train_compile_gives_the_losses_of_the_eager_run(synth_root, tmp_path):
    """Same losses, epoch by epoch (the weights themselves drift apart within Adam's step size:
    its first steps are about +-lr wherever a gradient is nearly zero)."""
    base = [*overrides(synth_root, 2), *QUIET]
    train(load_config("synth", base), tmp_path / "eager")
    train(load_config("synth", [*base, "train.compile=true"]), tmp_path / "compiled")
    for want, got in zip(
        epoch_log(tmp_path / "eager"), epoch_log(tmp_path / "compiled"), strict=True
    ):
        for key in ("loss", "sdm", "mlm", "id"):
            assert got[key] == pytest.approx(want[key], rel=1e-3), key
    log = (tmp_path / "compiled" / "train.log").read_text()
    assert "torch.compile: base_model.visual, base_model.transformer" in log
    assert "torch.compile" not in (tmp_path / "eager" / "train.log").read_text()


def test_log_every_writes_step_scalars_every_nth_step(synth_root, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    settings = ["train.report=false", "train.tensorboard=true", "train.log_every=2"]
    settings.append("data.augment=true")  # the training transform with flips, crops, erasing
    config = load_config("synth", [*overrides(synth_root, 1), *settings])
    train(config, tmp_path / "run")
    steps = epoch_log(tmp_path / "run")[0]["step"]
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("step/loss")] == list(range(2, steps + 1, 2))
    assert [e.step for e in events.Scalars("epoch/loss")] == [1]
    assert [e.step for e in events.Scalars("val/R1")] == [1]


def test_on_bad_entry_skip_trains_without_the_bad_image(synth_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    entries = json.loads((root / "CUHK-PEDES" / "reid_raw.json").read_text())
    bad = next(e for e in entries if e["split"] == "train")
    (root / "CUHK-PEDES" / "imgs" / bad["file_path"]).unlink()
    base = [*overrides(root, 1), *QUIET]
    with pytest.raises(DatasetError, match=bad["file_path"]):
        train(load_config("synth", base), tmp_path / "strict")
    train(load_config("synth", [*base, "data.on_bad_entry=skip"]), tmp_path / "run")
    skipped = json.loads((tmp_path / "run" / "skipped_entries.json").read_text())
    assert bad["file_path"] in json.dumps(skipped)
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_train_precision_bf16_through_the_config(synth_root, tmp_path):
    """bf16 autocast (fp32 weights): the epoch's losses within 2% of the fp32 run's."""
    base = [*overrides(synth_root, 1), *QUIET]
    train(load_config("synth", base), tmp_path / "fp32")
    train(load_config("synth", [*base, "train.precision=bf16"]), tmp_path / "bf16")
    assert "on cpu (bf16)" in (tmp_path / "bf16" / "train.log").read_text()
    want, got = epoch_log(tmp_path / "fp32")[0], epoch_log(tmp_path / "bf16")[0]
    for key in ("loss", "sdm", "mlm", "id"):
        assert math.isfinite(got[key]) and got[key] == pytest.approx(want[key], rel=2e-2), key


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.precision=fp16", "train.precision='fp16': fp16 needs CUDA"),
        ("train.precision=fp8", "train.precision='fp8': unknown precision 'fp8'"),
        ("train.device=quantum", "train.device='quantum'"),
    ],
)
def test_a_bad_device_or_precision_is_an_error_naming_the_setting(
    synth_root,
    tmp_path,
    caplog,
    setting,
    message,
):
    argv = ["train", "--config", "synth", "--out", str(tmp_path / "run")]
    assert main([*argv, *overrides(synth_root, 1), setting]) == 2
    assert message in caplog.text
