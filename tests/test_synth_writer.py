"""SynthPedes on disk: CUHK-PEDES format, splits, determinism, atomic writes, CLI, contact sheet."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from irra.cli import main
from irra.data.synth import Identity, generate_synthpedes, make_contact_sheet
from irra.data.synth import writer as synth_writer

SMALL = {"num_ids": 20, "images_per_id": 2, "image_size": (96, 40), "seed": 3}


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "SynthPedes"
    generate_synthpedes(out, **SMALL)
    return out


def test_writes_valid_cuhk_pedes_format(dataset):
    entries = json.loads((dataset / "reid_raw.json").read_text())
    assert isinstance(entries, list) and len(entries) == 20 * 2
    for e in entries:
        assert set(e) == {"split", "id", "file_path", "captions"}
        assert e["split"] in ("train", "val", "test") and isinstance(e["id"], int)
        path = dataset / "imgs" / e["file_path"]
        assert path.is_file() and not Path(e["file_path"]).is_absolute()
        with Image.open(path) as im:
            im.load()
            assert im.size == (40, 96) and im.mode == "RGB"
        assert len(e["captions"]) == 2
        assert all(isinstance(c, str) and c.strip() for c in e["captions"])
    assert not list(dataset.parent.glob(".*partial*"))  # no leftovers


def test_splits_are_disjoint_and_train_ids_contiguous(dataset):
    entries = json.loads((dataset / "reid_raw.json").read_text())
    ids = {s: [e["id"] for e in entries if e["split"] == s] for s in ("train", "val", "test")}
    # 20 ids at 0.8 / 0.1 / 0.1 -> 16 / 2 / 2 identities, in that order in the file
    assert sorted(set(ids["train"])) == list(range(1, 17))
    assert sorted(set(ids["val"])) == [17, 18] and sorted(set(ids["test"])) == [19, 20]
    assert [e["split"] for e in entries] == ["train"] * 32 + ["val"] * 4 + ["test"] * 4
    order = [e["id"] for e in entries]
    assert order == sorted(order)


def test_attributes_file_matches_captions(dataset):
    from test_synth import check_caption  # the independent caption reader

    meta = json.loads((dataset / "attributes.json").read_text())
    assert meta["params"]["num_ids"] == 20
    by_id = {row["id"]: Identity.from_dict(row["attributes"]) for row in meta["identities"]}
    assert len(by_id) == 20 and len(set(by_id.values())) == 20
    for row in meta["identities"]:
        if row["base_id"] != row["id"]:
            base, me = by_id[row["base_id"]], by_id[row["id"]]
            diff = [k for k, v in base.to_dict().items() if me.to_dict()[k] != v]
            assert 1 <= len(diff) <= 2
    for e in json.loads((dataset / "reid_raw.json").read_text()):
        for c in e["captions"]:
            assert len(check_caption(c, by_id[e["id"]])) >= 3


def test_same_seed_same_bytes_any_workers(dataset, tmp_path):
    again = tmp_path / "again"
    generate_synthpedes(again, **SMALL, workers=2)
    assert file_hashes(again) == file_hashes(dataset)
    other = tmp_path / "other"
    generate_synthpedes(other, **(SMALL | {"seed": 4}))
    assert file_hashes(other)["reid_raw.json"] != file_hashes(dataset)["reid_raw.json"]


def test_progress_reports_every_image(tmp_path):
    calls = []
    generate_synthpedes(
        tmp_path / "p",
        num_ids=3,
        images_per_id=2,
        image_size=(64, 32),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(k, 6) for k in range(1, 7)]


def test_existing_folders(tmp_path, dataset):
    small = {"num_ids": 3, "images_per_id": 1, "image_size": (64, 32)}
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not a SynthPedes dataset"):
            generate_synthpedes(stranger, **small, overwrite=overwrite)
    assert (stranger / "notes.txt").read_text() == "keep me"

    out = tmp_path / "ds"
    first = generate_synthpedes(out, **small)
    assert not first.reused and first.num_images == 3
    assert generate_synthpedes(out, **small).reused  # same parameters: reused as is
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_synthpedes(out, **(small | {"seed": 9}))
    replaced = generate_synthpedes(out, **(small | {"seed": 9}), overwrite=True)
    assert not replaced.reused
    assert json.loads((out / "attributes.json").read_text())["params"]["seed"] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "stranger"]


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(synth_writer, "render_person", broken)
    with pytest.raises(RuntimeError, match="boom"):
        generate_synthpedes(tmp_path / "ds", num_ids=2, images_per_id=1, image_size=(64, 32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split_fractions": (0.5, 0.3, 0.3)}, "sum to 1"),
        ({"split_fractions": {"train": 0.9, "dev": 0.1}}, "unknown split"),
        ({"num_ids": 0}, "at least 1"),
        ({"seed": -1}, "non-negative"),
        ({"image_format": "gif"}, "image_format"),
    ],
)
def test_bad_arguments_fail_early(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_synthpedes(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_cli_writes_dataset_and_contact_sheet(tmp_path):
    out, sheet = tmp_path / "cli", tmp_path / "sheet.png"
    argv = ["synth", "--out", str(out), "--ids", "10", "--images-per-id", "3", "--seed", "1"]
    argv += ["--height", "64", "--width", "32", "--workers", "1", "--no-progress"]
    assert main([*argv, "--contact-sheet", str(sheet), "--format", "png"]) == 0
    entries = json.loads((out / "reid_raw.json").read_text())
    assert len(entries) == 30 and all(e["file_path"].endswith(".png") for e in entries)
    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.height == 4 + 8 * (64 + 4)
    assert main([*argv, "--seed", "2"]) == 2  # different dataset in the way, no --overwrite
    # --overwrite replaces it; 3 captions per image; identities split 0.5 / 0.2 / 0.3
    more = ["--overwrite", "--captions-per-image", "3", "--splits", "0.5", "0.2", "0.3"]
    assert main([*argv, "--seed", "2", *more]) == 0
    entries = json.loads((out / "reid_raw.json").read_text())
    assert all(len(e["captions"]) == 3 for e in entries)
    ids = {split: {e["id"] for e in entries if e["split"] == split} for split in ("train", "test")}
    assert (len(ids["train"]), len(ids["test"])) == (5, 3)
    assert len({e["id"] for e in entries}) == 10


def test_contact_sheet_of_one_split(dataset, tmp_path):
    path = make_contact_sheet(dataset, tmp_path / "a" / "s.png", num_ids=2, split="test")
    with Image.open(path) as im:
        assert im.height == 4 + 2 * (96 + 4)
    with pytest.raises(ValueError, match="no entries"):
        make_contact_sheet(dataset, tmp_path / "b.png", split="nope")


def test_cuhk_pedes_reader_reads_it(dataset):
    formats = pytest.importorskip("irra.data.formats")
    data = formats.read_dataset("CUHK-PEDES", dataset, num_workers=1)
    train = data.splits["train"]
    assert sorted(set(train.image_pids)) == list(range(16))  # file ids 1..16 minus one
    assert len(train.captions) == 16 * 2 * 2
    assert sorted(set(data.splits["test"].image_pids)) == [19, 20]
