"""Corrupted, truncated, hostile or half-written index files: a clear error naming the file, or,
for the ANN checkpoint (a cache of the database), a rebuild that gives the same results."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from legacy_index import to_legacy
from retrieval_fixtures import write_gallery, write_model

from irra.cli import main
from irra.inference import TorchEncoder
from irra.retrieval import IndexStoreError, Retriever, build_index
from irra.retrieval.embedded import DATABASE, EmbeddedStore

QUERY = "a woman in a white dress"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("hostile")
    model = write_model(root / "model")
    write_gallery(root / "imgs", 12)
    build_index(TorchEncoder.from_checkpoint(model, device="cpu"), root / "imgs", root / "index")
    with EmbeddedStore.open(root / "index", writer=True) as store:
        store.checkpoint()  # an ANN checkpoint on disk to spoil
    return root / "index", root / "imgs", model


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _settings(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        conn = sqlite3.connect(path)
        text = conn.execute("SELECT value FROM settings WHERE key = 'manifest'").fetchone()[0]
        data = json.loads(text)
        change(data)
        conn.execute("UPDATE settings SET value = ? WHERE key = 'manifest'", (json.dumps(data),))
        conn.commit()
        conn.close()

    return edit


def _sql(statement: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        conn = sqlite3.connect(path)
        conn.execute(statement)
        conn.commit()
        conn.close()

    return edit


# (how the database is spoiled, text expected)
CASES = {
    "database truncated": (_truncate, "index database"),
    "database zero bytes": (lambda p: p.write_bytes(b""), "index database"),
    "database garbage": (lambda p: p.write_bytes(os.urandom(8192)), "index database"),
    "database is a pickle": (
        lambda p: p.write_bytes(b"cos\nsystem\n(S'touch pwned'\ntR."),
        "index database",
    ),
    "newer format": (
        _sql("UPDATE settings SET value = '99' WHERE key = 'format_version'"),
        "index format 99, this irra reads 4; upgrade irra",
    ),
    "settings not json": (
        _sql("UPDATE settings SET value = '{nope' WHERE key = 'manifest'"),
        "unreadable settings",
    ),
    "settings without fingerprint": (
        _settings(lambda d: d["model"].pop("fingerprint")),
        "lack the model's fingerprint",
    ),
    "rows table gone": (_sql("DROP TABLE rows"), "index database"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_spoiled_database_is_refused_naming_the_file(built, tmp_path, case):
    index, _, model = built
    copy = tmp_path / "index"
    shutil.copytree(index, copy)
    spoil, expected = CASES[case]
    spoil(copy / DATABASE)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # a pickle that ran would create tmp_path/pwned
    try:
        with pytest.raises(IndexStoreError) as info:
            retriever = Retriever.open(copy, checkpoint=model, device="cpu")
            retriever.search(QUERY, 12)
    finally:
        os.chdir(cwd)
    message = str(info.value)
    assert expected in message, message
    assert str(copy) in message, message
    assert not (tmp_path / "pwned").exists()


ANN_SPOILS = {
    "truncated": _truncate,
    "zero bytes": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(os.urandom(4096)),
    "a pickle": lambda p: p.write_bytes(b"cos\nsystem\n(S'touch pwned'\ntR."),
    "missing": lambda p: p.unlink(),
}


@pytest.mark.parametrize("case", list(ANN_SPOILS), ids=list(ANN_SPOILS))
def test_a_spoiled_ann_checkpoint_is_rebuilt_from_the_database(built, tmp_path, case, caplog):
    index, _, model = built
    with Retriever.open(index, checkpoint=model, device="cpu") as retriever:
        before = [(h.id, h.score) for h in retriever.search(QUERY, 12)]
    copy = tmp_path / "index"
    shutil.copytree(index, copy)
    (ann,) = copy.glob("ann-*.faiss")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        ANN_SPOILS[case](ann)
        with Retriever.open(copy, checkpoint=model, device="cpu") as retriever:
            after = [(h.id, h.score) for h in retriever.search(QUERY, 12)]
    finally:
        os.chdir(cwd)
    assert [i for i, _ in after] == [i for i, _ in before]
    assert [s for _, s in after] == pytest.approx([s for _, s in before], abs=1e-5)
    assert not (tmp_path / "pwned").exists()
    if case != "missing":
        assert "ANN checkpoint" in caplog.text


def test_a_legacy_index_with_a_hostile_pointer_is_refused(built, tmp_path):
    index, _, model = built
    copy = tmp_path / "index"
    shutil.copytree(index, copy)
    to_legacy(copy)
    (copy / "CURRENT").write_text("v-../../etc\n")
    assert main(["index", "--out", str(copy), "--device", "cpu"]) == 2
    with pytest.raises(IndexStoreError, match="missing or invalid version"):
        from irra.retrieval.legacy import migrate

        migrate(copy)
    assert (copy / "CURRENT").exists() and not (copy / DATABASE).exists()  # left as it was


def test_a_second_writer_is_refused_with_a_message(built, tmp_path):
    index, images, model = built
    copy = tmp_path / "index"
    shutil.copytree(index, copy)
    with EmbeddedStore.open(copy, writer=True):
        with pytest.raises(IndexStoreError, match="another process is writing this index"):
            build_index(TorchEncoder.from_checkpoint(model, device="cpu"), images, copy)
        assert main(["delete", "--index", str(copy), "--id", "1"]) == 2
    assert main(["delete", "--index", str(copy), "--id", "1"]) == 0  # once it has finished
