"""Train / eval datasets and loaders: item contents, image modes, worker-count independence."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_support import make_entries, write_dataset, write_images

from irra.data.datasets import ImageDataset, TextDataset, TrainDataset, load_image
from irra.data.formats import SplitData, read_dataset
from irra.data.loaders import (
    build_eval_loaders,
    build_train_loader,
    collate_batch,
    set_loader_epoch,
)
from irra.data.transforms import build_eval_transform, build_train_transform
from irra.tokenizer import tokenize

SIZE = (16, 8)
MASK = 49405


def _gradient_png() -> bytes:
    array = np.zeros((12, 6, 3), dtype=np.uint8)
    array[..., 0] = np.arange(6, dtype=np.uint8)[None, :] * 40
    array[..., 1] = np.arange(12, dtype=np.uint8)[:, None] * 20
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rstp")
    entries = make_entries(
        {"train": {pid: 1 + pid % 3 for pid in range(8)}, "test": {90: 2, 91: 1}}, "img_path"
    )
    folder = write_dataset(root, "RSTPReid", "data_captions.json", "img_path", entries)
    write_images(folder / "imgs", [e["img_path"] for e in entries], _gradient_png())
    return read_dataset("RSTPReid", root)


def _train_set(data, **kwargs) -> TrainDataset:
    return TrainDataset(data.split("train"), build_train_transform(SIZE), seed=11, **kwargs)


def test_train_item_has_official_keys_shapes_and_tokens(data) -> None:
    split = data.split("train")
    dataset = _train_set(data, text_length=32)
    assert len(dataset) == split.num_captions == 30  # 15 images x 2
    item = dataset[5]
    assert item["index"] == 5
    assert item["pids"] == split.caption_pids[5]
    assert item["image_ids"] == split.caption_image_index[5]
    assert item["images"].shape == (3, *SIZE) and item["images"].dtype == torch.float32
    clean = tokenize(split.captions[5], context_length=32)[0]
    for key in ("caption_ids", "mlm_ids", "mlm_labels"):
        assert item[key].shape == (32,) and item[key].dtype == torch.long
    chosen = item["mlm_labels"] > 0
    assert torch.equal(item["mlm_labels"][chosen], clean[chosen])
    assert torch.equal(item["mlm_ids"][~chosen], clean[~chosen])


def test_masked_global_text_switch(data) -> None:
    clean = tokenize(data.split("train").captions[3])[0]
    reference = _train_set(data, masked_global_text=True)[3]
    assert torch.equal(reference["caption_ids"], reference["mlm_ids"])
    assert (reference["mlm_ids"] == MASK).any() or (reference["mlm_labels"] > 0).any()
    separate = _train_set(data, masked_global_text=False)[3]
    assert torch.equal(separate["caption_ids"], clean)
    assert torch.equal(separate["mlm_ids"], reference["mlm_ids"])
    no_mlm = _train_set(data, mlm=False)[3]
    assert "mlm_ids" not in no_mlm and torch.equal(no_mlm["caption_ids"], clean)


def test_epoch_changes_augmentation_and_masks(data) -> None:
    dataset = _train_set(data)
    same = dataset[(0, 7)]
    assert torch.equal(same["images"], dataset[7]["images"])  # default epoch 0
    dataset.set_epoch(1)
    assert torch.equal(dataset[7]["images"], dataset[(1, 7)]["images"])
    differs = [
        not torch.equal(dataset[(0, i)]["mlm_labels"], dataset[(1, i)]["mlm_labels"])
        or not torch.equal(dataset[(0, i)]["images"], dataset[(1, i)]["images"])
        for i in range(len(dataset))
    ]
    assert sum(differs) > len(dataset) // 2


@pytest.mark.parametrize("augment", [True, False])
def test_cached_images_give_the_same_items_and_each_file_is_read_once(
    data, augment: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    transform = build_train_transform(SIZE) if augment else build_eval_transform(SIZE)
    split = data.split("train")
    plain = TrainDataset(split, transform, seed=11)
    cached = TrainDataset(split, transform, seed=11, cache_images=True)
    reads: list[str] = []

    def counting_load(path):
        reads.append(str(path))
        return load_image(path)

    monkeypatch.setattr("irra.data.datasets.load_image", counting_load)
    for epoch in (0, 1):
        for index in range(len(plain)):
            a, b = plain[(epoch, index)], cached[(epoch, index)]
            for key in a:
                assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), key
    uncached_reads = 2 * len(plain)  # two epochs, one read per caption
    assert len(reads) == uncached_reads + len(set(split.caption_image_index))


def _collect(loader, epochs: int = 2) -> list[dict[str, torch.Tensor]]:
    out = []
    for epoch in range(epochs):
        set_loader_epoch(loader, epoch)
        out.extend(loader)
    return out


@pytest.mark.parametrize("sampler", ["random", "identity"])
def test_same_batches_with_0_1_2_workers(data, sampler: str) -> None:
    runs = []
    for workers in (0, 1, 2):
        loader = build_train_loader(
            _train_set(data), batch_size=4, sampler=sampler, num_instances=2, num_workers=workers
        )
        runs.append(_collect(loader))
    assert len(runs[0]) > 2
    for other in runs[1:]:
        assert len(other) == len(runs[0])
        for a, b in zip(runs[0], other, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                assert torch.equal(a[key], b[key]), key
    first_epoch = runs[0][: len(runs[0]) // 2]
    second_epoch = runs[0][len(runs[0]) // 2 :]
    assert any(
        not torch.equal(a["index"], b["index"])
        for a, b in zip(first_epoch, second_epoch, strict=True)
    )


def test_train_batch_dict_shapes(data) -> None:
    loader = build_train_loader(_train_set(data), batch_size=4, num_workers=0)
    batch = next(iter(loader))
    assert batch["images"].shape == (4, 3, *SIZE)
    assert batch["caption_ids"].shape == batch["mlm_labels"].shape == (4, 77)
    assert batch["pids"].dtype == torch.long and batch["pids"].shape == (4,)
    with pytest.raises(KeyError, match="random, identity"):
        build_train_loader(_train_set(data), batch_size=4, sampler="pk")  # type: ignore[arg-type]


def test_eval_loaders_keep_split_order(data) -> None:
    split = data.split("test")
    images, texts = build_eval_loaders(
        split, build_eval_transform(SIZE), batch_size=2, num_workers=0
    )
    image_batches = list(images)
    assert torch.cat([b["pids"] for b in image_batches]).tolist() == [90, 90, 91]
    assert image_batches[0]["images"].shape == (2, 3, *SIZE)
    text_batches = list(texts)
    assert torch.cat([b["pids"] for b in text_batches]).tolist() == split.caption_pids
    expected = tokenize(split.captions)
    assert torch.equal(torch.cat([b["caption_ids"] for b in text_batches]), expected)


def test_unlabelled_eval_sets_use_minus_one(tmp_path: Path) -> None:
    write_images(tmp_path, ["a.png"])
    assert ImageDataset([tmp_path / "a.png"])[0]["pids"] == -1
    assert TextDataset(["a man"])[0]["pids"] == -1
    with pytest.raises(ValueError, match="2 pids for 1 captions"):
        TextDataset(["a man"], [1, 2])


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 77, 77),
        ("P", 3, None),
        ("CMYK", (0, 0, 0, 0), 255),
        ("RGBA", (10, 20, 30, 0), 10),
        ("1", 1, 255),
        ("LA", (60, 255), 60),
        ("I;16", 65535, 255),
        ("I;16", 32896, 128),
    ],
)
def test_load_image_converts_any_mode_to_8bit_rgb(tmp_path, mode, value, expected) -> None:
    path = tmp_path / "img.png" if mode != "CMYK" else tmp_path / "img.jpg"
    image = Image.new(mode, (5, 7), value)
    if mode == "P":
        image.putpalette([0, 0, 0] * 3 + [250, 10, 20] + [0, 0, 0] * 252)
        expected = 250
    image.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (5, 7)
    assert abs(int(np.asarray(loaded)[0, 0, 0]) - expected) <= 2


def test_unreadable_image_raises_naming_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 nope")
    with pytest.raises(OSError, match="bad.jpg"):
        load_image(bad)
    split = SplitData("train", [bad], [0], ["a man"], [0], [0])
    with pytest.raises(OSError, match="cannot read image"):
        TrainDataset(split, build_train_transform(SIZE))[0]


def test_collate_stacks_ints_and_tensors() -> None:
    batch = collate_batch([{"a": 1, "t": torch.ones(2)}, {"a": 3, "t": torch.zeros(2)}])
    assert batch["a"].tolist() == [1, 3] and batch["a"].dtype == torch.long
    assert batch["t"].shape == (2, 2)
