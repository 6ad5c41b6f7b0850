"""Command-line options not covered elsewhere, each checked against a brute-force oracle:
``irra evaluate --split/--batch-size/--text-length/--precision/--skip-image-check`` and
``irra index --index-type ivf --nlist --nprobe`` with ``irra search --nprobe``."""

from __future__ import annotations

import json

import pytest
import torch
from retrieval_fixtures import brute_force_ranking, tiny_model, write_gallery, write_model
from test_train_run import brute_force_metrics

from irra.cli import main
from irra.data import build_eval_loaders, build_eval_transform, read_dataset
from irra.model import CLIPConfig, TextConfig, VisionConfig, build_model, save_model
from irra.retrieval.store import open_store

QUERY = "a woman in a red dress"


def test_evaluate_options_reach_the_evaluation(synth_root, tmp_path):
    """The val split, 20-token captions, 3 items per batch, fp32 on the CPU, no image check."""
    data = read_dataset("CUHK-PEDES", synth_root)
    clip = CLIPConfig(
        embed_dim=32,
        vision=VisionConfig((32, 16), patch_size=8, width=64, layers=1, heads=1),
        text=TextConfig(context_length=77, width=64, layers=1, heads=1),
    )
    torch.manual_seed(7)
    model = build_model(clip, num_classes=data.num_classes, cmt_depth=1).eval()
    folder = save_model(model, tmp_path / "model")
    out = tmp_path / "val.json"
    argv = ["evaluate", "--checkpoint", str(folder), "--dataset", "CUHK-PEDES"]
    argv += ["--root", str(synth_root), "--split", "val", "--batch-size", "3"]
    argv += ["--text-length", "20", "--precision", "fp32", "--skip-image-check", "--device", "cpu"]
    assert main([*argv, "--workers", "0", "--json", str(out)]) == 0
    got = json.loads(out.read_text())

    images, texts = build_eval_loaders(
        data.val, build_eval_transform((32, 16)), batch_size=50, num_workers=0, text_length=20
    )
    with torch.no_grad():
        img = torch.cat([model.encode_image(b["images"]) for b in images])
        txt = torch.cat([model.encode_text(b["caption_ids"]) for b in texts])
    assert txt.shape[0] == data.val.num_captions
    sim = torch.nn.functional.normalize(txt, dim=-1) @ torch.nn.functional.normalize(img, dim=-1).T
    expected = brute_force_metrics(
        sim, torch.tensor(data.val.caption_pids), torch.tensor(data.val.image_pids)
    )
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-3), key


def test_evaluate_refuses_an_unknown_precision(synth_root, tmp_path, caplog):
    folder = write_model(tmp_path / "model")
    argv = ["evaluate", "--checkpoint", str(folder), "--dataset", "CUHK-PEDES"]
    argv += ["--root", str(synth_root), "--precision", "fp8", "--device", "cpu"]
    assert main(argv) == 2
    assert "unknown precision 'fp8'" in caplog.text


def search_json(capsys, *argv: str) -> list[str]:
    capsys.readouterr()
    assert main(["search", *argv, "--json", "--device", "cpu"]) == 0
    return [row["path"] for row in json.loads(capsys.readouterr().out)]


def test_ivf_index_cli_options_and_search_nprobe(tmp_path, capsys):
    model = write_model(tmp_path / "model")
    paths = write_gallery(tmp_path / "imgs", 40)
    index = tmp_path / "index"
    argv = ["index", "--checkpoint", str(model), "--images", str(tmp_path / "imgs")]
    argv += ["--out", str(index), "--index-type", "ivf", "--nlist", "4", "--nprobe", "1"]
    assert main([*argv, "--workers", "0", "--device", "cpu", "--precision", "fp32"]) == 0
    with open_store(index) as store:
        manifest = store.settings()
    assert (manifest["index_type"], manifest["nlist"], manifest["nprobe"]) == ("ivf", 4, 1)

    exact = [p for p, _ in brute_force_ranking(tiny_model(), tmp_path / "imgs", paths, QUERY)]
    # every cell scanned: the exact ranking of all 40 images
    assert search_json(capsys, "--index", str(index), QUERY, "-k", "40", "--nprobe", "4") == exact
    # the index's own nprobe (1 of 4 cells): only the images of the nearest cell, in exact order
    one_cell = search_json(capsys, "--index", str(index), QUERY, "-k", "40")
    assert 0 < len(one_cell) < 40
    assert one_cell == [p for p in exact if p in set(one_cell)]
    write_gallery(tmp_path / "imgs", 2, start=40)  # an update without the index flags
    assert main(["index", "--out", str(index), "--workers", "0", "--device", "cpu"]) == 0
    with open_store(index) as store:
        kept = store.settings()
    assert (kept["index_type"], kept["nlist"], kept["nprobe"]) == ("ivf", 4, 1)  # kept


def test_labels_and_a_torchscript_export_through_the_cli(tmp_path, capsys, caplog):
    """``index --labels`` (identity and camera reach the results), ``export --format
    torchscript`` and ``search --engine torchscript --threads 1`` (the torch ranking)."""
    model = write_model(tmp_path / "model")
    paths = write_gallery(tmp_path / "imgs", 6)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "path,identity,camera\n" + "".join(f"{p},id{i},c{i}\n" for i, p in enumerate(paths))
    )
    index = tmp_path / "index"
    argv = ["index", "--checkpoint", str(model), "--images", str(tmp_path / "imgs")]
    argv += ["--out", str(index), "--labels", str(labels), "--workers", "0", "--device", "cpu"]
    assert main(argv) == 0
    export = tmp_path / "ts"
    argv = ["export", "--checkpoint", str(model), "--out", str(export), "--format", "torchscript"]
    assert main(argv) == 0
    assert [p.suffix for p in sorted(export.iterdir()) if p.suffix in (".pt", ".onnx")] == [
        ".pt"
    ] * 2
    assert main(argv) == 2  # an earlier export is kept unless --overwrite
    assert "--overwrite" in caplog.text
    assert main([*argv, "--overwrite"]) == 0

    capsys.readouterr()
    search = ["search", "--index", str(index), QUERY, "-k", "6", "--json"]
    assert main([*search, "--device", "cpu"]) == 0
    torch_rows = json.loads(capsys.readouterr().out)
    engine = ["--checkpoint", str(export), "--engine", "torchscript", "--threads", "1"]
    engine += ["--device", "cpu"]
    assert main([*search, *engine]) == 0
    script_rows = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in script_rows] == [r["path"] for r in torch_rows]
    threads = torch.get_num_threads()
    try:  # the torch engine takes --threads too
        torch.set_num_threads(2)
        assert main([*search, "--device", "cpu", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert json.loads(capsys.readouterr().out) == torch_rows
    with pytest.raises(SystemExit):
        main([*search, "--threads", "0"])
    assert "not a whole number of threads" in capsys.readouterr().err
    expected = {p: (f"id{i}", f"c{i}") for i, p in enumerate(paths)}
    assert {r["path"]: (r["identity"], r["camera"]) for r in script_rows} == expected
