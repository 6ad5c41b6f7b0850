"""Training runs end to end: the CLI, the run folder, exact resume, evaluation of checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml

from irra.cli import main
from irra.config import ConfigError, load_config
from irra.data import build_eval_loaders, build_eval_transform, read_dataset
from irra.engine.run import build_model_from_config, train
from irra.engine.trainer import Hook
from irra.model import CLIPConfig, TextConfig, VisionConfig, build_model
from irra.tokenizer import tokenize

TINY = [
    "model.arch=custom",
    "model.image_size=[32,16]",
    "model.patch_size=8",
    "model.stride_size=8",
    "model.stem_channels=[8]",
    "model.embed_dim=32",
    "model.vision_width=64",
    "model.vision_layers=1",
    "model.text_width=64",
    "model.text_layers=1",
    "model.context_length=48",
    "model.cmt_depth=1",
    "model.vocab=train",
    "data.text_length=48",
    "data.batch_size=8",
    "data.eval_batch_size=32",
    "data.num_workers=0",
    "optim.lr=1e-3",
    "optim.warmup_epochs=1",
    "train.device=cpu",
]


def overrides(root: Path, epochs: int) -> list[str]:
    return [*TINY, f"data.root={root}", f"train.epochs={epochs}"]


@pytest.mark.parametrize("setting", ["model.stem_channels=[8]", "model.vocab=train"])
def test_custom_sizes_need_the_custom_arch(setting):
    config = load_config("cuhk_pedes", [setting])
    with pytest.raises(ConfigError, match="arch=custom"):
        build_model_from_config(config, num_classes=10, train_tokens=tokenize(["a man"]))


def test_a_training_vocabulary_needs_captions_and_a_known_mode():
    with pytest.raises(ConfigError, match="needs the training captions"):
        build_model_from_config(load_config("synth", ["model.vocab=train"]), num_classes=10)
    with pytest.raises(ConfigError, match="'full' or 'train'"):
        build_model_from_config(load_config("synth", ["model.vocab=small"]), num_classes=10)


def brute_force_metrics(sim: torch.Tensor, qpids: torch.Tensor, gpids: torch.Tensor) -> dict:
    """R1/R5/R10/mAP by sorting each row (stable, ties by gallery index), in percent."""
    r = {1: 0, 5: 0, 10: 0}
    ap_sum = 0.0
    for q in range(sim.shape[0]):
        order = sorted(range(sim.shape[1]), key=lambda g: (-float(sim[q, g]), g))
        hits = [int(gpids[g] == qpids[q]) for g in order]
        first = hits.index(1) + 1
        for k in r:
            r[k] += first <= k
        found, precisions = 0, []
        for rank, hit in enumerate(hits, start=1):
            if hit:
                found += 1
                precisions.append(found / rank)
        ap_sum += sum(precisions) / found
    n = sim.shape[0]
    return {
        "R1": 100 * r[1] / n,
        "R5": 100 * r[5] / n,
        "R10": 100 * r[10] / n,
        "mAP": 100 * ap_sum / n,
    }


def test_one_epoch_through_the_cli_writes_a_complete_run(synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--config", "synth", "--out", str(run), *overrides(synth_root, 1)]
    assert main(argv) == 0
    for name in ("config.yaml", "train.log", "log.jsonl", "last.pt", "best.pt", "metrics.json"):
        assert (run / name).is_file(), name
    for name in ("report.html", "training_curves.png", "cmc.png", "retrieval_grid.png"):
        assert (run / "report" / name).is_file(), name
    assert (run / "model" / "model.safetensors").is_file()
    assert list((run / "tb").iterdir()), "no TensorBoard events"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"R1", "R5", "R10", "mAP", "mINP"}
    assert all(0.0 <= v <= 100.0 for v in metrics.values())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1]
    assert {"loss", "sdm", "mlm", "id", "lr", "val/R1"} <= set(log[0])
    # The resolved config loads back and names the absolute data root.
    saved = load_config(run / "config.yaml")
    assert saved.train.epochs == 1 and Path(saved.data.root) == synth_root.resolve()
    assert "R1" in capsys.readouterr().out

    # Independent check of metrics.json: re-encode the test split with the exported model and
    # rank by brute force.
    from irra.model import load_model

    model = load_model(run / "model")
    data = read_dataset("CUHK-PEDES", synth_root)
    # model.vocab=train: an embedding row for each id of the tokenised training captions.
    train_ids = set(tokenize(data.train.captions, context_length=48).unique().tolist())
    assert model.config.clip.text.vocab_ids == tuple(sorted(train_ids | {49405, 49406, 49407}))
    image_loader, text_loader = build_eval_loaders(
        data.test, build_eval_transform((32, 16)), batch_size=7, num_workers=0, text_length=48
    )
    with torch.no_grad():
        img = torch.cat([model.encode_image(b["images"]) for b in image_loader])
        txt = torch.cat([model.encode_text(b["caption_ids"]) for b in text_loader])
    img = torch.nn.functional.normalize(img, dim=-1)
    txt = torch.nn.functional.normalize(txt, dim=-1)
    expected = brute_force_metrics(
        txt @ img.T, torch.tensor(data.test.caption_pids), torch.tensor(data.test.image_pids)
    )
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-3), key

    # `irra evaluate` on the run folder gives the same numbers.
    out_json = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(run),
                "--json",
                str(out_json),
                "--workers",
                "0",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    evaluated = json.loads(out_json.read_text())
    for key in metrics:
        assert evaluated[key] == pytest.approx(metrics[key], abs=1e-3), key


def test_a_new_run_refuses_a_folder_that_holds_a_run(synth_root, tmp_path):
    config = load_config("synth", overrides(synth_root, 1) + ["train.report=false"])
    train(config, tmp_path / "run")
    assert (
        main(
            [
                "train",
                "--config",
                "synth",
                "--out",
                str(tmp_path / "run"),
                *overrides(synth_root, 1),
            ]
        )
        == 2
    )


class _StopBeforeEpoch(Hook):
    """Simulates a kill: raises once epoch ``epoch`` (0-based) is about to start."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch: int) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("sampler", ["random", "identity"])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(synth_root, tmp_path, sampler):
    config = load_config(
        "synth",
        overrides(synth_root, 3)
        + [f"data.sampler={sampler}", "data.num_instance=2", "train.report=false"],
    )
    straight = train(config, tmp_path / "straight")

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", hooks=[_StopBeforeEpoch(2)])
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    resumed = train(None, tmp_path / "resumed", resume=True)

    assert resumed.metrics == straight.metrics
    a = safetensors.torch.load_file(straight.model_dir / "model.safetensors")
    b = safetensors.torch.load_file(resumed.model_dir / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key

    def losses(run: Path) -> list[tuple[int, float, float]]:
        lines = (run / "log.jsonl").read_text().splitlines()
        return [(r["epoch"], r["loss"], r.get("val/R1")) for r in map(json.loads, lines)]

    assert losses(tmp_path / "resumed") == losses(tmp_path / "straight")
    assert [e for e, _, _ in losses(tmp_path / "resumed")] == [1, 2, 3]


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    assert main(["train", "--resume", str(tmp_path / "run")]) == 2


def write_official_checkpoint(model, folder: Path, image_size: tuple[int, int]) -> Path:
    """Save like the official IRRA code: {'model': state_dict} + configs.yaml of its args."""
    folder.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "num_epoch": 3}, folder / "best.pth")
    args = {
        "img_size": tuple(image_size),
        "stride_size": 8,
        "cmt_depth": 1,
        "loss_names": "sdm+mlm+id",
        "temperature": 0.02,
        "text_length": 77,
        "pretrain_choice": "ViT-B/16",
    }
    (folder / "configs.yaml").write_text(yaml.dump(args))  # tuples tagged !!python/tuple
    return folder / "best.pth"


def test_official_checkpoint_evaluates_through_the_cli(synth_root, tmp_path):
    data = read_dataset("CUHK-PEDES", synth_root)
    clip = CLIPConfig(
        embed_dim=32,
        vision=VisionConfig((48, 24), patch_size=8, stride_size=8, width=64, layers=1, heads=1),
        text=TextConfig(context_length=77, width=64, layers=1, heads=1),
    )
    torch.manual_seed(3)
    model = build_model(clip, num_classes=data.num_classes, cmt_depth=1).eval()
    path = write_official_checkpoint(model, tmp_path / "official", (48, 24))

    out = tmp_path / "m.json"
    argv = [
        "evaluate",
        "--checkpoint",
        str(path),
        "--dataset",
        "CUHK-PEDES",
        "--root",
        str(synth_root),
        "--json",
        str(out),
        "--workers",
        "0",
        "--i2t",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    got = json.loads(out.read_text())

    image_loader, text_loader = build_eval_loaders(
        data.test, build_eval_transform((48, 24)), batch_size=5, num_workers=0, text_length=77
    )
    with torch.no_grad():
        img = torch.cat([model.encode_image(b["images"]) for b in image_loader])
        txt = torch.cat([model.encode_text(b["caption_ids"]) for b in text_loader])
    sim = torch.nn.functional.normalize(txt, dim=-1) @ torch.nn.functional.normalize(img, dim=-1).T
    qpids, gpids = torch.tensor(data.test.caption_pids), torch.tensor(data.test.image_pids)
    expected = brute_force_metrics(sim, qpids, gpids)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-3), key
    reverse = brute_force_metrics(sim.T, gpids, qpids)
    assert got["i2t_R1"] == pytest.approx(reverse["R1"], abs=1e-3)


def test_evaluate_reports_a_missing_checkpoint(tmp_path, caplog):
    argv = [
        "evaluate",
        "--checkpoint",
        str(tmp_path / "nope.pth"),
        "--dataset",
        "CUHK-PEDES",
        "--root",
        str(tmp_path),
    ]
    assert main(argv) == 2
    assert "nope.pth" in caplog.text


def test_ablate_trains_each_variant_and_tabulates_its_test_metrics(tmp_path, synth_root):
    out = tmp_path / "ablation"
    args = ["ablate", "--out", str(out), "--variants", "sdm", "itc+id"]
    assert main([*args, *overrides(synth_root, 1)]) == 0
    rows = json.loads((out / "ablation.json").read_text())
    assert [r["losses"] for r in rows] == ["sdm", "itc+id"]
    for row, folder in zip(rows, ["sdm", "itc_id"], strict=True):
        saved = json.loads((out / folder / "metrics.json").read_text())
        assert {k: row[k] for k in saved} == saved
        assert load_config(out / folder / "config.yaml").loss.names == tuple(
            row["losses"].split("+")
        )
    table = (out / "ablation.md").read_text().splitlines()
    assert table[0].split("|")[1].strip() == "losses" and len(table) == 4
    assert table[3].startswith("| itc+id | ") and f"{rows[1]['R1']:.2f}" in table[3]
    # a second call reuses the finished runs instead of training again
    stamp = (out / "sdm" / "last.pt").stat().st_mtime_ns
    assert main([*args, *overrides(synth_root, 1)]) == 0
    assert (out / "sdm" / "last.pt").stat().st_mtime_ns == stamp


def test_demo_is_deterministic_and_its_next_steps_run(synth_root, tmp_path, capsys):
    """Two demos with the same config give identical metrics; the printed commands work."""
    import shlex
    import shutil

    tiny = [o for o in TINY if not o.startswith("data.root")] + ["train.epochs=1"]
    results = []
    for name in ("a", "b"):
        out = tmp_path / name
        shutil.copytree(synth_root / "CUHK-PEDES", out / "data" / "CUHK-PEDES")  # reused as is
        assert main(["demo", "--out", str(out), *tiny]) == 0
        results.append(json.loads((out / "metrics.json").read_text()))
        printed = capsys.readouterr().out
    assert results[0] == results[1]
    assert set(results[0]) >= {"R1", "R5", "R10", "mAP", "mINP"}
    commands = [
        shlex.split(line.strip())[1:]
        for line in printed.splitlines()
        if line.strip().startswith(("irra index", "irra search"))
    ]
    assert [c[0] for c in commands] == ["index", "search"]
    for argv in commands:
        assert main(argv) == 0
    hits = capsys.readouterr().out
    assert str(tmp_path / "b" / "data" / "CUHK-PEDES" / "imgs") in hits
