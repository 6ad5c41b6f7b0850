"""Corrupted, truncated, hostile or half-written index files: a clear error naming the file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from retrieval_fixtures import write_gallery, write_model

from irra.inference import TorchEncoder
from irra.retrieval import IndexStoreError, Retriever, build_index
from irra.retrieval.store import CURRENT, MANIFEST, METADATA, VECTORS, current_version

QUERY = "a woman in a white dress"
SRC = Path(__file__).resolve().parents[1] / "src"
WORKER = Path(__file__).with_name("kill_worker.py")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("hostile")
    model = write_model(root / "model")
    write_gallery(root / "imgs", 12)
    build_index(TorchEncoder.from_checkpoint(model, device="cpu"), root / "imgs", root / "index")
    return root / "index", root / "imgs", model


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _manifest(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return edit


# (file in the live version or the index folder, how it is spoiled, text expected)
CASES = {
    "vectors truncated": (VECTORS, _truncate, "corrupted vector file"),
    "vectors zero bytes": (VECTORS, lambda p: p.write_bytes(b""), "corrupted vector file"),
    "vectors garbage": (VECTORS, lambda p: p.write_bytes(os.urandom(4096)), "vector file"),
    "vectors is a pickle": (
        VECTORS,
        lambda p: p.write_bytes(b"cos\nsystem\n(S'touch pwned'\ntR."),
        "vector file",
    ),
    "metadata truncated": (METADATA, _truncate, "metadata database"),
    "metadata garbage": (METADATA, lambda p: p.write_bytes(b"x" * 5000), "metadata database"),
    "manifest truncated": (MANIFEST, _truncate, "cannot read the index manifest"),
    "manifest not utf-8": (MANIFEST, lambda p: p.write_bytes(b"\xff\xfe{"), "index manifest"),
    "manifest deeply nested": (
        MANIFEST,
        lambda p: p.write_bytes(b"[" * 100_000 + b"]" * 100_000),
        "index manifest",
    ),
    "manifest newer format": (
        MANIFEST,
        _manifest(lambda d: d.update(format_version=99)),
        "newer than this irra",
    ),
    "manifest version not a number": (
        MANIFEST,
        _manifest(lambda d: d.update(format_version="1")),
        "not a version",
    ),
    "manifest without index_type": (
        MANIFEST,
        _manifest(lambda d: d.pop("index_type")),
        "lacks or mistypes index_type",
    ),
    "manifest count differs": (
        MANIFEST,
        _manifest(lambda d: d.update(count=13)),
        "manifest count 13",
    ),
    "pointer escapes the folder": (
        CURRENT,
        lambda p: p.write_text("v-../../etc\n"),
        "missing or invalid version",
    ),
    "pointer not utf-8": (CURRENT, lambda p: p.write_bytes(b"\xff\xfe"), "cannot read"),
    "pointer empty": (CURRENT, lambda p: p.write_text(""), "missing or invalid version"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_spoiled_index_is_refused_naming_the_file(built, tmp_path, case):
    index, _, model = built
    copy = tmp_path / "index"
    shutil.copytree(index, copy)
    name, spoil, expected = CASES[case]
    target = copy / CURRENT if name == CURRENT else current_version(copy) / name
    spoil(target)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # a pickle that ran would create tmp_path/pwned
    try:
        with pytest.raises(IndexStoreError) as info:
            Retriever.open(copy, checkpoint=model, device="cpu")
    finally:
        os.chdir(cwd)
    message = str(info.value)
    assert expected in message, message
    assert str(copy) in message, message
    assert not (tmp_path / "pwned").exists()


def test_an_index_build_killed_mid_way_leaves_the_previous_index(built, tmp_path):
    _, images, model = built
    copy, gallery = tmp_path / "index", tmp_path / "imgs"
    shutil.copytree(images, gallery)
    build_index(TorchEncoder.from_checkpoint(model, device="cpu"), gallery, copy)
    before = [
        (h.path, h.score)
        for h in Retriever.open(copy, checkpoint=model, device="cpu").search(QUERY, 12)
    ]
    write_gallery(gallery, 4, start=100)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    # Killed half-way through writing the pointer to the new version: the very last step.
    argv = ["index", "--checkpoint", str(model), "--images", str(gallery), "--out", str(copy)]
    proc = subprocess.run(
        [sys.executable, str(WORKER), f"write:{CURRENT}:1", "--", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert [p.name for p in copy.iterdir() if p.name.endswith(".tmp")], "no partial write"
    after = [
        (h.path, h.score)
        for h in Retriever.open(copy, checkpoint=model, device="cpu").search(QUERY, 16)
    ]
    assert after == before
    # The next build completes and clears what the killed one left.
    build_index(TorchEncoder.from_checkpoint(model, device="cpu"), gallery, copy)
    assert len(Retriever.open(copy, checkpoint=model, device="cpu")) == 16
    leftovers = [p.name for p in copy.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    assert leftovers == []
    assert len([p for p in copy.iterdir() if p.name.startswith("v-")]) == 1
