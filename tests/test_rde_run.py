"""The RDE method end to end: training with noisy pairs, the division's log, bad settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from irra.config import load_config
from irra.engine.run import RunError, train
from irra.methods import MethodError

TINY = [
    "model.arch=custom",
    "model.method=rde",
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
    "model.vocab=train",
    "model.tse_dim=16",
    "loss.names=[bge,tse]",
    "loss.temperature=0.05",
    "data.text_length=48",
    "data.batch_size=8",
    "data.eval_batch_size=32",
    "data.num_workers=0",
    "optim.lr=1e-3",
    "optim.warmup_epochs=0",
    "train.device=cpu",
    "train.report=false",
    "train.tensorboard=false",
]


def test_rde_trains_on_noisy_pairs_and_logs_the_division(synth_root: Path, tmp_path: Path) -> None:
    config = load_config(
        "synth", [*TINY, f"data.root={synth_root}", "train.epochs=2", "data.noise_rate=0.5"]
    )
    result = train(config, tmp_path / "run")
    noise = np.load(tmp_path / "run" / "noise_index.npy")
    num_pairs = 12 * 2 * 2  # 60% of 20 ids, 2 images, 2 captions
    assert noise.shape == (num_pairs,)
    assert np.array_equal(np.sort(noise), np.arange(num_pairs))
    corrupted = int((noise != np.arange(num_pairs)).sum())
    assert 0 < corrupted <= num_pairs // 2
    log = (tmp_path / "run" / "log.jsonl").read_text()
    records = [json.loads(line) for line in log.splitlines()]
    assert len(records) == 2
    for record in records:
        assert 0 <= record["division/clean_precision"] <= 100
        assert 0 <= record["division/clean_recall"] <= 100
        assert record["bge"] >= 0 and record["tse"] >= 0
    assert set(result.metrics) == {"R1", "R5", "R10", "mAP", "mINP"}
    saved = json.loads((tmp_path / "run" / "model" / "irra.json").read_text())
    assert saved["config"]["loss_names"] == ["bge", "tse"]
    assert saved["metadata"]["method"] == "rde"


def test_the_division_starts_at_the_epoch_asked_for(synth_root: Path, tmp_path: Path) -> None:
    """``rde.division_start_epoch=2``: epoch 1 weighs every pair 1 (no division, no clean share
    below 1), epoch 2 divides."""
    overrides = [*TINY, f"data.root={synth_root}", "train.epochs=2", "data.noise_rate=0.5"]
    train(load_config("synth", [*overrides, "rde.division_start_epoch=2"]), tmp_path / "run")
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    first, second = (json.loads(line) for line in log)
    assert not any(k.startswith("division/") or k == "clean_share" for k in first)
    assert 0 <= second["division/clean_precision"] <= 100 and 0 <= second["clean_share"] <= 1


def test_rde_scores_are_the_mean_of_the_two_cosines(synth_root: Path) -> None:
    from irra.engine.run import build_model_from_config

    config = load_config("synth", [*TINY, "model.vocab=full"])
    torch.manual_seed(0)
    model = build_model_from_config(config, num_classes=12).eval()
    images = torch.randn(3, 3, 32, 16)
    ids = torch.zeros(2, 48, dtype=torch.long)
    ids[0, :5] = torch.tensor([49406, 320, 1929, 530, 49407])
    ids[1, :4] = torch.tensor([49406, 320, 2308, 49407])
    with torch.no_grad():
        score = model.encode_text(ids) @ model.encode_image(images).T
        ig, it = model.encode_image_parts(images)
        tg, tt = model.encode_text_parts(ids)
    cos = torch.nn.functional.cosine_similarity
    expected = (cos(tg[:, None], ig[None], dim=-1) + cos(tt[:, None], it[None], dim=-1)) / 2
    torch.testing.assert_close(score, expected)
    assert model.embed_dim == 32 + 16


@pytest.mark.parametrize(
    "setting,error,match",
    [
        ("model.method=nope", MethodError, "valid: irra, rde"),
        ("loss.names=[sdm,tse]", MethodError, r"\['sdm'\] not losses of method 'rde'"),
        ("data.noise_rate=1.0", RunError, r"in \[0, 1\)"),
        ("data.noise_rate=-0.1", RunError, r"in \[0, 1\)"),
        ("rde.division_start_epoch=0", MethodError, "division_start_epoch must be 1 or more"),
    ],
)
def test_bad_method_settings_fail_early(synth_root, tmp_path, setting, error, match) -> None:
    config = load_config("synth", [*TINY, f"data.root={synth_root}", "train.epochs=1", setting])
    with pytest.raises(error, match=match):
        train(config, tmp_path / "run")


def test_a_noise_index_for_another_dataset_size_is_refused(synth_root, tmp_path) -> None:
    index = tmp_path / "CUHK-PEDES_0.2.npy"
    np.save(index, np.arange(68126))
    config = load_config(
        "synth", [*TINY, f"data.root={synth_root}", "train.epochs=1", f"data.noise_index={index}"]
    )
    with pytest.raises(RunError, match="68126 entries but the training split has 48 pairs"):
        train(config, tmp_path / "run")


def test_ablate_crosses_methods_and_noise_rates(synth_root: Path, tmp_path: Path) -> None:
    from irra.cli import main

    common = [o for o in TINY if not o.startswith(("model.method", "loss."))]
    out = tmp_path / "table"
    argv = ["ablate", "--config", "synth", "rde_synth", "--noise", "0", "0.5", "--out", str(out)]
    extra = ["model.cmt_depth=1", "train.epochs=1", f"data.root={synth_root}"]
    assert main([*argv, *common, *extra]) == 0
    rows = json.loads((out / "ablation.json").read_text())
    assert [(r["method"], r["noise"]) for r in rows] == [
        ("irra", 0.0),
        ("irra", 0.5),
        ("rde", 0.0),
        ("rde", 0.5),
    ]
    assert not (out / "irra_sdm_mlm_id_noise0" / "noise_index.npy").exists()
    assert (out / "rde_bge_tse_noise0.5" / "noise_index.npy").is_file()
    assert [d["epoch"] for d in rows[3]["division"]] == [1]
    assert "division" not in rows[0]
    table = (out / "ablation.md").read_text().splitlines()
    assert table[0].startswith("| method | losses | noise | R1 |")
    assert table[5].startswith("| rde | bge+tse | 50% | ")
    d = rows[3]["division"][0]
    assert table[5].endswith(f"| {d['precision']:.1f} / {d['recall']:.1f} |")


def test_the_table_says_from_which_epoch_the_division_ran() -> None:
    from irra.cli.ablate import ablation_table

    metrics = {"R1": 1.0, "R5": 2.0, "R10": 3.0, "mAP": 4.0, "mINP": 5.0}
    late = [{"epoch": 3, "precision": 70.14, "recall": 93.5}, {"epoch": 4, "precision": 71.0,
             "recall": 97.26}]  # fmt: skip
    rows = [
        {"method": "rde", "losses": "bge+tse", **metrics, "division": late},
        {"method": "irra", "losses": "sdm", **metrics},
    ]
    table = ablation_table(rows, method=True).splitlines()
    assert table[2].endswith("| from epoch 3: 70.1 / 93.5, 71.0 / 97.3 |")
    assert table[3].endswith("| 5.00 |  |")


def write_rde_checkpoint(model, folder: Path, image_size) -> Path:
    """Save like the RDE authors' code: {'model': state_dict} in fp16 with their unused layers
    (the image head's ``linear``, the MLPs' second batch norm) + configs.yaml of the args."""
    folder.mkdir(parents=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    width, dim = state["visul_emb_layer.fc.weight"].shape
    state["visul_emb_layer.linear.weight"] = torch.randn(width, dim).half()
    state["visul_emb_layer.linear.bias"] = torch.zeros(width).half()
    for head in ("visul_emb_layer", "texual_emb_layer"):
        state[f"{head}.mlp.bns.1.weight"] = torch.ones(width)
        state[f"{head}.mlp.bns.1.bias"] = torch.zeros(width)
        state[f"{head}.mlp.bns.1.running_mean"] = torch.zeros(width)
        state[f"{head}.mlp.bns.1.running_var"] = torch.ones(width)
        state[f"{head}.mlp.bns.1.num_batches_tracked"] = torch.tensor(0)
    torch.save({"model": state, "num_epoch": 60}, folder / "best.pth")
    args = {
        "img_size": tuple(image_size),
        "stride_size": 8,
        "loss_names": "TAL+sr0.3_tau0.015_margin0.1_n0.2",
        "select_ratio": 0.3,
        "tau": 0.015,
        "margin": 0.1,
        "temperature": 0.02,
        "noisy_rate": 0.2,
        "text_length": 77,
        "pretrain_choice": "ViT-B/16",
    }
    (folder / "configs.yaml").write_text(yaml.dump(args))  # tuples tagged !!python/tuple
    return folder / "best.pth"


def tiny_rde(seed: int = 3):
    from irra.model import CLIPConfig, TextConfig, VisionConfig, build_model

    clip = CLIPConfig(
        embed_dim=32,
        vision=VisionConfig((48, 24), patch_size=8, stride_size=8, width=64, layers=1, heads=1),
        text=TextConfig(context_length=77, width=64, layers=1, heads=1),
    )
    torch.manual_seed(seed)
    model = build_model(clip, loss_names="bge+tse", tse_dim=24).eval()
    with torch.no_grad():  # stored in fp16 by the authors' code: round like it
        for param in model.parameters():
            param.copy_(param.half().float())
        for head in (model.visul_emb_layer, model.texual_emb_layer):
            head.mlp.bns[0].running_mean.uniform_(-0.1, 0.1).copy_(
                head.mlp.bns[0].running_mean.half().float()
            )
    return model


def test_an_rde_checkpoint_of_the_authors_evaluates(synth_root: Path, tmp_path: Path) -> None:
    from irra.cli import main
    from irra.data import build_eval_loaders, build_eval_transform, read_dataset

    model = tiny_rde()
    path = write_rde_checkpoint(model, tmp_path / "rde", (48, 24))
    out = tmp_path / "m.json"
    argv = ["evaluate", "--checkpoint", str(path), "--dataset", "CUHK-PEDES"]
    argv += ["--root", str(synth_root), "--json", str(out), "--workers", "0"]
    assert main(argv) == 0
    got = json.loads(out.read_text())

    data = read_dataset("CUHK-PEDES", synth_root)
    image_loader, text_loader = build_eval_loaders(
        data.test, build_eval_transform((48, 24)), batch_size=5, num_workers=0, text_length=77
    )
    cos = torch.nn.functional.cosine_similarity
    with torch.no_grad():
        img = [
            torch.cat(p)
            for p in zip(
                *(model.encode_image_parts(b["images"]) for b in image_loader), strict=True
            )
        ]
        txt = [
            torch.cat(p)
            for p in zip(
                *(model.encode_text_parts(b["caption_ids"]) for b in text_loader), strict=True
            )
        ]
    sim = (
        cos(txt[0][:, None], img[0][None], dim=-1) + cos(txt[1][:, None], img[1][None], dim=-1)
    ) / 2
    qpids, gpids = torch.tensor(data.test.caption_pids), torch.tensor(data.test.image_pids)
    r1 = 100 * float((gpids[sim.argmax(dim=1)] == qpids).float().mean())
    aps = []
    for row, pid in zip(sim, qpids, strict=True):
        hits = (gpids[row.argsort(descending=True, stable=True)] == pid).float()
        precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1)
        aps.append(float((precision * hits).sum() / hits.sum()))
    assert got["R1"] == pytest.approx(r1, abs=1e-3)
    assert got["mAP"] == pytest.approx(100 * sum(aps) / len(aps), abs=1e-3)


def test_an_rde_checkpoint_without_its_tse_layers_is_refused(tmp_path: Path) -> None:
    from irra.model import load_model
    from irra.model.checkpoint_io import WeightsError

    path = write_rde_checkpoint(tiny_rde(), tmp_path / "rde", (48, 24))
    blob = torch.load(path, weights_only=True)
    blob["model"] = {k: v for k, v in blob["model"].items() if "texual_emb_layer" not in k}
    torch.save(blob, path)
    with pytest.raises(WeightsError, match="missing texual_emb_layer.linear.weight"):
        load_model(path)


@pytest.mark.parametrize("eval_mode", [True, False])
def test_eval_mode_training_is_the_published_behaviour(synth_root, tmp_path, eval_mode) -> None:
    """In eval mode (the authors' published runs) batch norm never updates its statistics."""
    from irra.model import load_model

    config = load_config(
        "synth",
        [
            *TINY,
            f"data.root={synth_root}",
            "train.epochs=1",
            f"rde.eval_mode_training={str(eval_mode).lower()}",
        ],
    )
    train(config, tmp_path / "run")
    model = load_model(tmp_path / "run" / "model")
    stats = model.texual_emb_layer.mlp.bns[0].running_mean
    assert bool((stats == 0).all()) is eval_mode
    stem = model.base_model.visual.stem[1].running_mean
    assert bool((stem == 0).all()) is eval_mode


def test_a_resumed_rde_run_equals_an_uninterrupted_one(synth_root, tmp_path) -> None:
    from irra.engine.trainer import Hook

    class StopAtSecondEpoch(Hook):
        def on_epoch_start(self, trainer, epoch: int) -> None:
            if epoch == 1:
                raise KeyboardInterrupt

    config = load_config(
        "synth", [*TINY, f"data.root={synth_root}", "data.noise_rate=0.3", "train.epochs=2"]
    )
    straight = train(config, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "b", hooks=[StopAtSecondEpoch()])
    resumed = train(None, tmp_path / "b", resume=True)
    assert resumed.metrics == straight.metrics
    logs = [
        [json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
        for run in ("a", "b")
    ]
    assert len(logs[1]) == 2
    for key in ("loss", "division/clean_precision", "division/clean_recall"):
        assert [r[key] for r in logs[0]] == [r[key] for r in logs[1]], key
