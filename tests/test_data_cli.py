"""``irra data stats`` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from test_data_support import make_entries, write_dataset

from irra.cli import main

NAME, ANNOTATION, KEY = "CUHK-PEDES", "reid_raw.json", "file_path"


def _dataset(tmp_path: Path) -> tuple[Path, list[dict]]:
    entries = make_entries({"train": {1: 2, 2: 1}, "val": {7: 1}, "test": {8: 2}}, KEY)
    return write_dataset(tmp_path, NAME, ANNOTATION, KEY, entries), entries


def test_stats_prints_table_and_verdict(tmp_path: Path, capsys) -> None:
    _dataset(tmp_path)
    assert main(["data", "stats", "--dataset", NAME, "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line[:5].strip()}
    assert rows["train"] == ["2", "3", "6"]
    assert rows["val"] == ["1", "1", "2"]
    assert rows["test"] == ["1", "2", "4"]
    assert "images decoded: all valid" in out


def test_stats_without_image_check(tmp_path: Path, capsys) -> None:
    folder, entries = _dataset(tmp_path)
    (folder / "imgs" / entries[0][KEY]).write_bytes(b"broken")
    args = ["data", "stats", "--dataset", NAME, "--root", str(folder), "--no-check-images"]
    assert main(args) == 0
    assert "images not decoded: all valid" in capsys.readouterr().out


def test_stats_fails_on_bad_entry_with_message(tmp_path: Path, capsys) -> None:
    folder, entries = _dataset(tmp_path)
    (folder / "imgs" / entries[4][KEY]).write_bytes(b"broken")
    assert main(["data", "stats", "--dataset", NAME, "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "entry 4" in err and "does not decode" in err and "--on-error skip" in err


def test_stats_skip_mode_writes_the_list(tmp_path: Path, capsys) -> None:
    folder, entries = _dataset(tmp_path)
    (folder / "imgs" / entries[5][KEY]).unlink()
    run_dir = tmp_path / "run"
    args = ["data", "stats", "--dataset", NAME, "--root", str(tmp_path), "--on-error", "skip"]
    assert main([*args, "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "1 bad entries, 5 kept" in out
    listed = json.loads((run_dir / "skipped_entries.json").read_text(encoding="utf-8"))
    assert [e["index"] for e in listed["entries"]] == [5]


def test_stats_unknown_dataset_lists_valid_names(tmp_path: Path, capsys) -> None:
    assert main(["data", "stats", "--dataset", "Market", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "CUHK-PEDES" in err and "ICFG-PEDES" in err and "RSTPReid" in err
