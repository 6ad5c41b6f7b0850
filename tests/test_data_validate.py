"""Every kind of bad input gives the documented error (fail) or skip count and list (skip)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from test_data_support import make_entries, write_dataset

from irra.data.formats import read_dataset
from irra.data.validate import MAX_LISTED, SKIPPED_FILENAME, DatasetError

NAME, ANNOTATION, KEY = "ICFG-PEDES", "ICFG-PEDES.json", "file_path"


def _good_entries() -> list[dict]:
    return make_entries({"train": {0: 2, 1: 2, 2: 1}, "test": {10: 2}}, KEY)


def _write(tmp_path: Path, entries: list) -> Path:
    return write_dataset(tmp_path, NAME, ANNOTATION, KEY, entries)


# (description, function that breaks entry 2 of the good list, text expected in the message)
ENTRY_BREAKS = [
    ("not an object", lambda e: ["a", "list"], "expected a JSON object"),
    ("missing key", lambda e: {k: v for k, v in e.items() if k != "captions"}, "missing key"),
    ("id not int", lambda e: {**e, "id": "1"}, "'id' is '1'"),
    ("id bool", lambda e: {**e, "id": True}, "expected an integer"),
    ("split not str", lambda e: {**e, "split": 3}, "'split' is a int"),
    ("captions not list", lambda e: {**e, "captions": "a man"}, "'captions' is a str"),
    ("empty caption list", lambda e: {**e, "captions": []}, "empty list"),
    ("empty caption", lambda e: {**e, "captions": ["ok", "  "]}, "captions[1] is empty"),
    ("caption not str", lambda e: {**e, "captions": ["ok", 7]}, "captions[1] is a int"),
    ("path not str", lambda e: {**e, KEY: 12}, f"'{KEY}' is 12"),
]


@pytest.mark.parametrize(
    ("what", "brake", "expected"), ENTRY_BREAKS, ids=[b[0] for b in ENTRY_BREAKS]
)
def test_bad_entry_fails_naming_file_entry_and_fix(tmp_path, what, brake, expected) -> None:
    entries = _good_entries()
    entries[2] = brake(entries[2])
    folder = _write(tmp_path, entries)
    with pytest.raises(DatasetError) as info:
        read_dataset(NAME, tmp_path)
    message = str(info.value)
    assert str(folder / ANNOTATION) in message
    assert "entry 2" in message
    assert expected in message
    assert "Fix" in message
    assert "1 bad entries" in message


def test_missing_image_names_path(tmp_path: Path) -> None:
    entries = _good_entries()
    folder = _write(tmp_path, entries)
    (folder / "imgs" / entries[3][KEY]).unlink()
    with pytest.raises(DatasetError, match="does not exist") as info:
        read_dataset(NAME, tmp_path, check_images=False)
    assert f"entry 3 (image '{entries[3][KEY]}')" in str(info.value)


def test_undecodable_image_fails_only_when_images_are_checked(tmp_path: Path) -> None:
    entries = _good_entries()
    folder = _write(tmp_path, entries)
    (folder / "imgs" / entries[1][KEY]).write_bytes(b"not an image at all")
    truncated = folder / "imgs" / entries[4][KEY]
    truncated.write_bytes(truncated.read_bytes()[:40])
    with pytest.raises(DatasetError) as info:
        read_dataset(NAME, tmp_path, check_images=True)
    message = str(info.value)
    assert "entry 1" in message and "entry 4" in message
    assert message.count("does not decode") == 2
    assert read_dataset(NAME, tmp_path, check_images=False).split("train").num_images == 5


def test_duplicate_image_entry_flags_the_second(tmp_path: Path) -> None:
    entries = _good_entries()
    entries.append(dict(entries[0]))
    _write(tmp_path, entries)
    with pytest.raises(DatasetError, match="already listed by entry 0") as info:
        read_dataset(NAME, tmp_path)
    assert f"entry {len(entries) - 1}" in str(info.value)


def test_non_contiguous_training_ids_name_the_missing_ones(tmp_path: Path) -> None:
    entries = make_entries({"train": {0: 1, 2: 1, 5: 1}}, KEY)
    _write(tmp_path, entries)
    for mode in ("fail", "skip"):
        with pytest.raises(DatasetError, match=r"3 id\(s\) have no training image: 1, 3, 4"):
            read_dataset(NAME, tmp_path, on_error=mode)


def test_training_id_negative_after_offset_is_an_entry_error(tmp_path: Path) -> None:
    entries = make_entries({"train": {0: 1, 1: 1}}, KEY)  # CUHK ids start at 1: 0 -> -1
    write_dataset(tmp_path, "CUHK-PEDES", "reid_raw.json", KEY, entries)
    with pytest.raises(DatasetError, match="becomes -1 after the CUHK-PEDES offset -1"):
        read_dataset("CUHK-PEDES", tmp_path)


def test_missing_annotation_file_and_image_folder(tmp_path: Path) -> None:
    folder = _write(tmp_path, _good_entries())
    (folder / ANNOTATION).unlink()
    with pytest.raises(DatasetError, match="annotation file not found"):
        read_dataset(NAME, tmp_path)
    other = tmp_path / "other"
    write_dataset(other, NAME, ANNOTATION, KEY, _good_entries(), images=False)
    (other / NAME / "imgs").rmdir()
    with pytest.raises(DatasetError, match="image folder not found"):
        read_dataset(NAME, other)


@pytest.mark.parametrize(
    ("content", "expected"), [("{not json", "not valid JSON"), ('{"a": 1}', "found a dict")]
)
def test_annotation_that_is_not_a_json_list(tmp_path: Path, content: str, expected: str) -> None:
    folder = _write(tmp_path, _good_entries())
    (folder / ANNOTATION).write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=expected):
        read_dataset(NAME, tmp_path)


def test_fail_mode_reports_all_problems_listing_the_first_few(tmp_path: Path) -> None:
    entries = make_entries({"train": {0: 1}, "test": {k: 1 for k in range(1, 16)}}, KEY)
    for k in range(1, 16):
        entries[k]["captions"] = []
    _write(tmp_path, entries)
    run_dir = tmp_path / "run"
    with pytest.raises(DatasetError) as info:
        read_dataset(NAME, tmp_path, run_dir=run_dir)
    message = str(info.value)
    assert "15 bad entries" in message
    assert message.count("is an empty list") == MAX_LISTED
    assert f"and {15 - MAX_LISTED} more" in message
    written = json.loads((run_dir / SKIPPED_FILENAME).read_text(encoding="utf-8"))
    assert [e["index"] for e in written["entries"]] == list(range(1, 16))


def test_skip_mode_drops_bad_entries_counts_and_lists_them(tmp_path: Path, caplog) -> None:
    entries = _good_entries()  # train: 0,0,1,1,2 ; test: 10,10
    entries[1]["captions"] = [""]
    entries[6]["id"] = "x"
    folder = _write(tmp_path, entries)
    (folder / "imgs" / entries[3][KEY]).write_bytes(b"garbage")
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="irra.data.validate"):
        data = read_dataset(NAME, tmp_path, on_error="skip", run_dir=run_dir)
    assert data.split("train").image_pids == [0, 1, 2]
    assert data.split("test").num_images == 1
    assert data.report is not None and data.report.kept == [0, 2, 4, 5]
    written = json.loads((run_dir / SKIPPED_FILENAME).read_text(encoding="utf-8"))
    assert written["count"] == 3
    assert [(e["index"], e["image"]) for e in written["entries"]] == [
        (1, entries[1][KEY]),
        (3, entries[3][KEY]),
        (6, entries[6][KEY]),
    ]
    assert "skipped 3 of 7 entries" in caplog.text


def test_skip_mode_without_run_dir_logs_every_skipped_entry(tmp_path: Path, caplog) -> None:
    entries = _good_entries()
    entries[5]["captions"] = [3]
    entries[6]["captions"] = []
    _write(tmp_path, entries)
    with caplog.at_level(logging.WARNING, logger="irra.data.validate"):
        read_dataset(NAME, tmp_path, on_error="skip")
    assert "entry 5" in caplog.text and "entry 6" in caplog.text


def test_skipping_the_only_image_of_an_id_is_reported_as_a_gap(tmp_path: Path) -> None:
    entries = _good_entries()
    entries[2]["captions"] = []
    entries[3]["captions"] = []  # both images of training id 1
    _write(tmp_path, entries)
    with pytest.raises(DatasetError, match="1 id\\(s\\) have no training image: 1 \\(2 entries"):
        read_dataset(NAME, tmp_path, on_error="skip")


def test_progress_callback_sees_every_image(tmp_path: Path) -> None:
    _write(tmp_path, _good_entries())
    calls: list[tuple[int, int]] = []
    read_dataset(NAME, tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 7) and calls[-1] == (7, 7)
    assert [done for done, _ in calls] == list(range(8))
