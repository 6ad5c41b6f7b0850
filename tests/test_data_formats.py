"""Reading the three benchmark formats (and the real CUHK-PEDES val annotation)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_data_support import (
    REAL_CUHK_VAL,
    REAL_CUHK_VAL_ABSENT,
    make_entries,
    write_dataset,
    write_images,
)

from irra.data.formats import FORMATS, get_format, read_dataset
from irra.data.validate import DatasetError

REAL_VAL = REAL_CUHK_VAL

LAYOUTS = [
    # name, annotation file, image key, offset the test expects
    ("CUHK-PEDES", "reid_raw.json", "file_path", -1),
    ("ICFG-PEDES", "ICFG-PEDES.json", "file_path", 0),
    ("RSTPReid", "data_captions.json", "img_path", 0),
]


@pytest.mark.skipif(not REAL_VAL.is_file(), reason=REAL_CUHK_VAL_ABSENT)
def test_real_cuhk_val_annotation_reads_with_published_counts(tmp_path: Path) -> None:
    entries = json.loads(REAL_VAL.read_text(encoding="utf-8"))
    folder = tmp_path / "CUHK-PEDES"
    (folder / "imgs").mkdir(parents=True)
    shutil.copy(REAL_VAL, folder / "reid_raw.json")
    write_images(folder / "imgs", [e["file_path"] for e in entries])

    data = read_dataset("CUHK-PEDES", tmp_path, check_images=True, num_workers=2)

    assert list(data.splits) == ["val"]
    val = data.split("val")
    assert (val.num_ids, val.num_images, val.num_captions) == (1000, 3078, 6158)
    # file order kept, eval ids as in the file, captions of image 0 first
    assert val.image_pids[0] == entries[0]["id"]
    assert val.captions[:2] == entries[0]["captions"]
    assert val.image_paths[5] == (folder / "imgs" / entries[5]["file_path"]).resolve()
    assert data.summary() == [{"split": "val", "ids": 1000, "images": 3078, "captions": 6158}]
    assert data.report is not None and data.report.ok


@pytest.mark.parametrize(("name", "annotation", "key", "offset"), LAYOUTS)
def test_each_format_reads_a_small_dataset(
    tmp_path: Path, name: str, annotation: str, key: str, offset: int
) -> None:
    first = -offset  # the file's first training id (1 for CUHK-PEDES, 0 otherwise)
    train_ids = {first + k: 2 for k in range(3)}
    entries = make_entries(
        {"train": train_ids, "test": {500: 1, 501: 2}, "validation": {700: 1}}, key
    )
    write_dataset(tmp_path, name, annotation, key, entries)

    data = read_dataset(name, tmp_path)

    assert list(data.splits) == ["train", "val", "test"]  # "validation" counts as val
    train = data.split("train")
    assert train.image_pids == [0, 0, 1, 1, 2, 2]
    assert (train.num_ids, train.num_images, train.num_captions) == (3, 6, 12)
    assert data.num_classes == 3
    samples = train.samples()
    assert len(samples) == 12
    assert samples[3].pid == 0 and samples[3].image_id == 1
    assert samples[3].caption == entries[1]["captions"][1]
    assert samples[3].image_path == (tmp_path / name / "imgs" / entries[1][key]).resolve()
    test = data.split("test")
    assert test.image_pids == [500, 501, 501]  # eval ids as in the file
    assert test.caption_image_index == [0, 0, 1, 1, 2, 2]
    assert data.split("val").caption_pids == [700, 700]


def test_root_may_point_at_the_dataset_folder(tmp_path: Path) -> None:
    entries = make_entries({"train": {0: 1}}, "img_path")
    folder = write_dataset(tmp_path, "RSTPReid", "data_captions.json", "img_path", entries)
    data = read_dataset("RSTPReid", folder)
    assert data.dataset_dir == folder
    assert data.split("train").num_images == 1


def test_unknown_dataset_name_lists_valid_names() -> None:
    with pytest.raises(KeyError) as info:
        get_format("Market-1501")
    for name in FORMATS:
        assert name in str(info.value)


def test_format_lookup_is_case_insensitive() -> None:
    assert get_format("rstpreid").image_key == "img_path"
    assert get_format("cuhk-pedes").train_pid(1) == 0


def test_absent_split_raises_with_present_ones(tmp_path: Path) -> None:
    entries = make_entries({"train": {0: 1}, "test": {3: 1}}, "file_path")
    write_dataset(tmp_path, "ICFG-PEDES", "ICFG-PEDES.json", "file_path", entries)
    data = read_dataset("ICFG-PEDES", tmp_path)
    assert data.val is None
    with pytest.raises(KeyError, match="present: train, test"):
        data.split("val")


def test_summary_table_lists_each_split(tmp_path: Path) -> None:
    entries = make_entries({"train": {0: 2, 1: 1}, "test": {9: 1}}, "file_path")
    write_dataset(tmp_path, "ICFG-PEDES", "ICFG-PEDES.json", "file_path", entries)
    table = read_dataset("ICFG-PEDES", tmp_path).summary_table()
    rows = [line.split() for line in table.splitlines()[3:]]
    assert rows == [["train", "2", "3", "6"], ["test", "1", "1", "2"]]


def test_missing_dataset_folder_names_both_places(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="CUHK-PEDES not found") as info:
        read_dataset("CUHK-PEDES", tmp_path)
    assert "reid_raw.json" in str(info.value)
