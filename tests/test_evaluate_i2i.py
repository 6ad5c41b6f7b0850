"""``irra evaluate --i2i``: image-to-image metrics, each image a query with itself left out."""

from __future__ import annotations

import json

import torch
from retrieval_fixtures import IMAGE_SIZE, tiny_model, write_model
from test_metrics import oracle_metrics

from irra.cli import main
from irra.data import build_eval_loaders, build_eval_transform, read_dataset
from irra.data.synth import generate_synthpedes


def test_i2i_metrics_equal_an_oracle_that_deletes_each_query_image(tmp_path):
    root = tmp_path / "data"
    generate_synthpedes(
        root / "CUHK-PEDES",
        num_ids=20,
        images_per_id=3,
        captions_per_image=1,
        image_size=IMAGE_SIZE,
        split_fractions=(0.5, 0.0, 0.5),
    )
    model_dir = write_model(tmp_path / "model")
    out = tmp_path / "metrics.json"
    argv = ["evaluate", "--checkpoint", str(model_dir), "--dataset", "CUHK-PEDES"]
    argv += ["--root", str(root), "--json", str(out), "--workers", "0", "--device", "cpu"]
    assert main([*argv, "--i2i"]) == 0
    got = json.loads(out.read_text())

    split = read_dataset("CUHK-PEDES", root).test
    loader, _ = build_eval_loaders(
        split, build_eval_transform(IMAGE_SIZE), batch_size=4, num_workers=0, text_length=32
    )
    model = tiny_model()
    with torch.no_grad():
        feats = torch.cat([model.encode_image(b["images"]) for b in loader])
    feats = torch.nn.functional.normalize(feats, dim=-1)
    pids = torch.tensor(split.image_pids)
    # The oracle ranks, for each image, the gallery without that image.
    per_query = []
    for i in range(len(pids)):
        keep = [g for g in range(len(pids)) if g != i]
        per_query.append(
            oracle_metrics(feats[i : i + 1] @ feats[keep].T, pids[i : i + 1], pids[keep])
        )
    for key in ("R1", "R5", "mAP", "mINP"):
        expected = sum(m[key] for m in per_query) / len(per_query)
        assert abs(got[f"i2i_{key}"] - expected) < 1e-3, key
    assert "R1" in got and "i2t_R1" not in got
