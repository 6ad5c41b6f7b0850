"""``irra delete`` and ``Retriever.delete``: every selector removes exactly the rows it names
(vectors, metadata), the others keep their ids, and ids are never given again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from retrieval_fixtures import stored_rows, write_gallery, write_model

from irra.cli import main
from irra.retrieval import Retriever
from irra.retrieval.capture import parse_time
from irra.retrieval.store import RowSelector

QUERY = "a person"
BASE = parse_time("2024-05-01T08:00:00Z")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("delete")
    model = write_model(root / "model")
    paths = write_gallery(root / "imgs", 18)
    labels = root / "labels.json"
    entries = [
        {"path": p, "identity": f"person{i % 4}", "camera": f"c{i % 2}",
         "time": f"2024-05-01T{8 + i // 6:02d}:{(i * 7) % 60:02d}:00Z"}
        for i, p in enumerate(paths)
    ]  # fmt: skip
    labels.write_text(json.dumps(entries))
    return {"root": root, "model": model, "paths": paths, "labels": labels, "entries": entries}


def build(made: dict, out: Path) -> dict[str, int]:
    argv = ["index", "--checkpoint", str(made["model"]), "--images", str(made["root"] / "imgs")]
    argv += ["--labels", str(made["labels"]), "--out", str(out), "--workers", "0"]
    assert main([*argv, "--device", "cpu"]) == 0
    return {record.path: i for i, record in stored_rows(out)}


def searched(index: Path) -> dict[str, int]:
    with Retriever.open(index, device="cpu") as retriever:
        return {h.path: h.id for h in retriever.search(QUERY, k=100)}


CASES = {
    "ids": (["--id", "3", "--id", "5"], lambda i, e: i in (3, 5)),
    "path prefix": (["--path", "cam1/"], lambda i, e: e["path"].startswith("cam1/")),
    "identity": (["--identity", "person2"], lambda i, e: e["identity"] == "person2"),
    "before": (
        ["--before", "2024-05-01T10:00:00"],
        lambda i, e: parse_time(e["time"]) < BASE + 2 * 3600,
    ),
    "identity and before": (
        ["--identity", "person1", "--before", "2024-05-01T09:30"],
        lambda i, e: e["identity"] == "person1" and parse_time(e["time"]) < BASE + 5400,
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_each_selector_deletes_exactly_its_rows(made, tmp_path, case, capsys):
    ids = build(made, tmp_path / "index")
    args, picks = CASES[case]
    by_path = {e["path"]: e for e in made["entries"]}
    want = {p for p, i in ids.items() if picks(i, by_path[p])}
    assert want, "the case selects something"
    capsys.readouterr()
    assert main(["delete", "--index", str(tmp_path / "index"), *args]) == 0
    out = capsys.readouterr().out
    assert f"deleted {len(want)} rows ({18 - len(want)} remain)" in out
    after = searched(tmp_path / "index")
    assert set(after) == set(ids) - want
    assert all(after[p] == ids[p] for p in after)  # the others keep their ids
    with Retriever.open(tmp_path / "index", device="cpu") as retriever:
        for path in want:
            with pytest.raises(KeyError):
                retriever.record(ids[path])


def test_no_match_is_a_message_and_bad_input_an_error(made, tmp_path, capsys, caplog):
    build(made, tmp_path / "index")
    index = str(tmp_path / "index")
    capsys.readouterr()
    assert main(["delete", "--index", index, "--id", "999"]) == 0
    assert "no row matches the selector; nothing deleted (18 rows)" in capsys.readouterr().out
    assert main(["delete", "--index", index, "--identity", "nobody"]) == 0
    assert main(["delete", "--index", index, "--before", "noon"]) == 2
    assert "'noon' is not an ISO 8601 time" in caplog.text
    assert main(["delete", "--index", index]) == 2
    assert "needs a selector" in caplog.text
    assert main(["delete", "--index", index, "--track", "cam.mp4:x"]) == 2
    assert "SOURCE:TRACK" in caplog.text
    assert main(["delete", "--index", str(tmp_path / "nothing"), "--id", "1"]) == 2
    assert "not an irra index" in caplog.text
    assert len(stored_rows(tmp_path / "index")) == 18
    capsys.readouterr()
    assert main(["delete", "--index", index, "--path", "cam0/"]) == 0
    assert main(["index", "--out", index, "--compact"]) == 0
    assert "compacted, 12 rows" in capsys.readouterr().out
    assert len(searched(tmp_path / "index")) == 12


def test_ids_are_never_given_again_and_the_api_equals_the_cli(made, tmp_path):
    ids = build(made, tmp_path / "index")
    with Retriever.open(tmp_path / "index", device="cpu") as retriever:
        gone = retriever.delete(identities=["person0"], before="2024-05-01T11:00")
    want = sorted(
        ids[e["path"]]
        for e in made["entries"]
        if e["identity"] == "person0" and parse_time(e["time"]) < BASE + 3 * 3600
    )
    assert [i for i, _ in gone] == want
    assert all(r.identity == "person0" for _, r in gone)
    # the deleted files are still in the folder: the next index run encodes them anew
    again = build(made, tmp_path / "index")
    assert len(again) == 18
    assert all(again[p] == i for p, i in ids.items() if i not in want)
    assert min(again[r.path] for _, r in gone) > max(ids.values())  # new ids, never old ones
    assert RowSelector().is_empty and not RowSelector(ids=[1]).is_empty
