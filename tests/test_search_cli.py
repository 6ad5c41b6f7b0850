"""``irra search`` as a user runs it: query parts, weights, filters and the three output formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from retrieval_fixtures import write_gallery, write_model

from irra.cli import main
from irra.cli.search import add_parser, build_query
from irra.inference import TorchEncoder
from irra.retrieval import ImagePart, Retriever, SimilarPart, TextPart, build_index, read_labels
from irra.viz import BLUE

TEXT = "a man in a grey coat"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cli")
    model = write_model(root / "model")
    paths = sorted(write_gallery(root / "imgs", 12))
    labels = root / "labels.csv"
    labels.write_text(
        "path,identity,camera,time\n"
        + "".join(
            f"{p},{i % 4},cam{i % 3},2024-05-0{1 + i % 3}T10:00:00\n" for i, p in enumerate(paths)
        )
    )
    encoder = TorchEncoder.from_checkpoint(model, device="cpu")
    build_index(encoder, root / "imgs", root / "index", labels=read_labels(labels))
    return {"root": root, "paths": paths, "index": root / "index"}


def search(built, *argv: str) -> list[str]:
    return ["search", "--index", str(built["index"]), "--device", "cpu", *argv]


def parse(*argv: str):
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return build_query(parser.parse_args(["search", "--index", "x", *argv]))


def test_weight_applies_to_the_part_just_before_it():
    query, search_filter = parse(
        "red coat", "--weight", "2", "--image", "a.jpg", "--similar", "4", "--weight", "0.5",
        "--not", "hat", "--image", "b.jpg", "--weight", "3", "--camera", "c1", "--camera", "c2",
    )  # fmt: skip
    assert query.text == TextPart("red coat", 2.0)
    assert query.images == (ImagePart("a.jpg", 1.0), ImagePart("b.jpg", 3.0))
    assert query.similar == (SimilarPart(4, 0.5),)
    assert query.negatives == (TextPart("hat", 1.0),)
    assert search_filter.cameras == ["c1", "c2"]


def test_json_lists_the_hits_with_the_documented_keys(built, capsys):
    capsys.readouterr()
    assert main(search(built, TEXT, "-k", "4", "--json", "--camera", "cam1")) == 0
    rows = json.loads(capsys.readouterr().out)
    with Retriever.open(built["index"], device="cpu") as retriever:
        expected = retriever.search(TEXT, 12)
    assert [r["path"] for r in rows] == [h.path for h in expected if h.camera == "cam1"][:4]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        assert list(row) == [
            "rank",
            "id",
            "path",
            "score",
            "identity",
            "camera",
            "time",
            "source",
            "frame",
            "box",
            "track",
        ]
        assert row["camera"] == "cam1" and row["time"].endswith("T10:00:00Z")
        assert row["source"] is row["frame"] is row["box"] is row["track"] is None  # not footage


def test_paths_prints_one_file_per_line(built, capsys):
    capsys.readouterr()
    assert main(search(built, "--similar", "3", "-k", "5", "--paths")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        len(lines) == 5 and Path(lines[0]) == built["root"].resolve() / "imgs" / built["paths"][3]
    )
    assert all(Path(line).is_file() for line in lines)


@pytest.mark.parametrize("kind", ["text", "image", "similar"])
def test_grid_shows_the_query_image_first(built, tmp_path, kind):
    probe = built["root"] / "imgs" / built["paths"][2]
    argv = {"text": [TEXT], "image": ["--image", str(probe)], "similar": ["--similar", "2"]}[kind]
    grid = tmp_path / "grid.png"
    assert main(search(built, *argv, "-k", "3", "--grid", str(grid))) == 0
    with Image.open(grid) as image:
        pixels = np.asarray(image.convert("RGB"))
    # The first cell's frame (6 px padding, below the caption) is blue for a query image.
    frames = {tuple(p) for p in pixels[:, 6]}
    assert (BLUE in frames) == (kind != "text")


def test_an_empty_filter_prints_nothing_and_says_why(built, capsys, caplog):
    capsys.readouterr()
    assert main(search(built, TEXT, "--json", "--camera", "cam9")) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert "passes the filter" in caplog.text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--not", "a hat"], "no positive part"),
        (["--similar", "99"], "no image with id 99"),
        ([TEXT, "--after", "soon"], "ISO 8601"),
        ([TEXT, "--after", "2024-06-01", "--before", "2024-05-01"], "later than before"),
        (["--image", "missing.jpg"], "no such file"),
        ([TEXT, "--weight", "inf"], "number in"),
    ],
)
def test_bad_input_exits_2_with_the_reason(built, caplog, argv, message):
    assert main(search(built, *argv)) == 2
    assert message in caplog.text


def test_a_weight_that_is_not_a_number_is_a_usage_error(built, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(search(built, TEXT, "--weight", "heavy"))
    assert exit_info.value.code == 2
    assert "invalid float value: 'heavy'" in capsys.readouterr().err


@pytest.mark.parametrize("absolute", [False, True])
def test_under_keeps_the_images_of_one_folder(built, capsys, absolute):
    folder = built["root"] / "imgs" / "cam1" if absolute else "cam1"
    capsys.readouterr()
    assert main(search(built, TEXT, "-k", "12", "--under", str(folder), "--paths")) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = {p for p in built["paths"] if p.startswith("cam1/")}
    assert {
        Path(line).relative_to(built["root"].resolve() / "imgs").as_posix() for line in lines
    } == expected
