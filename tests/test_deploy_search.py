"""Indexing and searching with exported encoders: PyTorch's rankings, without PyTorch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from retrieval_fixtures import (
    brute_force_ranking,
    rows_by_path,
    tiny_model,
    write_gallery,
    write_model,
)

import irra
from irra.cli import main
from irra.deploy import export_model
from irra.inference import TorchEncoder, open_encoder
from irra.retrieval import IndexStoreError, Retriever, SearchFilter, build_index
from irra.retrieval.store import open_store

QUERIES = ["a man in a black jacket with a red backpack", "a woman in a white dress", "grey"]
SRC = Path(irra.__file__).resolve().parents[1]

# Runs in a fresh interpreter in which any import of torch (or torchvision) fails.
NO_TORCH_SEARCH = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision"):
                raise ImportError(f"importing {name} is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTorch())
    index, export, gallery, new_index, queries = sys.argv[1:6]
    from irra.cli import main
    from pathlib import Path
    from irra.retrieval import Retriever, SearchFilter

    retriever = Retriever.open(index, checkpoint=export, engine="onnx", device="cpu")
    api = {q: [h.path for h in retriever.search(q, k=20)] for q in json.loads(queries)}
    probe = sorted(p for p in Path(gallery).rglob("*") if p.is_file())[0]
    combined = retriever.search(
        json.loads(queries)[0], k=20, images=[probe], similar=[3], negatives=["red"],
        filter=SearchFilter(under="cam1"), rerank=True,
    )
    api["combined"] = [h.path for h in combined]
    assert main(["index", "--out", new_index, "--checkpoint", export, "--images", gallery,
                 "--engine", "onnx", "--workers", "0"]) == 0
    assert main(["search", "--index", new_index, "grey", "--json"]) == 0
    cli = Retriever.open(new_index, device="cpu")
    built = {q: [h.path for h in cli.search(q, k=20)] for q in json.loads(queries)}
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
    print(json.dumps({"api": api, "built": built, "torch_modules": loaded, "probe": str(probe)}))
    """
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("deploy")
    model_dir = write_model(root / "model")
    write_gallery(root / "imgs", 40)
    build_index(
        TorchEncoder.from_checkpoint(model_dir, device="cpu"), root / "imgs", root / "index"
    )
    model = tiny_model()
    export_model(model, root / "onnx", "onnx", source=str(model_dir))
    export_model(model, root / "torchscript", "torchscript", source=str(model_dir))
    return {"root": root, "model": model_dir}


def ranking(retriever: Retriever, query: str, k: int = 40) -> list[str]:
    return [h.path for h in retriever.search(query, k=k)]


@pytest.mark.parametrize("engine", ["onnx", "torchscript"])
def test_exported_engines_rank_an_index_like_the_torch_engine(setup, engine):
    root = setup["root"]
    torch_retriever = Retriever.open(root / "index", device="cpu")
    exported = Retriever.open(root / "index", checkpoint=root / engine, engine=engine, device="cpu")
    assert exported.encoder.engine == engine
    for query in QUERIES:
        assert ranking(exported, query) == ranking(torch_retriever, query)
        scores = [h.score for h in exported.search(query, k=40)]
        np.testing.assert_allclose(
            scores, [h.score for h in torch_retriever.search(query, 40)], atol=1e-5
        )


def test_an_index_built_with_onnx_equals_the_torch_one_and_brute_force(setup, tmp_path):
    root = setup["root"]
    build_index(open_encoder(root / "onnx"), root / "imgs", tmp_path / "index", batch_size=7)
    (a_paths, a_vectors), (b_paths, b_vectors) = (
        rows_by_path(tmp_path / "index"),
        rows_by_path(root / "index"),
    )
    assert a_paths == b_paths
    np.testing.assert_allclose(a_vectors, b_vectors, atol=1e-5)
    with open_store(tmp_path / "index") as a, open_store(root / "index") as b:
        assert a.settings()["model"]["engine"] == "onnx"
        assert a.settings()["model"]["fingerprint"] == b.settings()["model"]["fingerprint"]
    retriever = Retriever.open(
        tmp_path / "index", device="cpu"
    )  # reopens with the recorded onnx engine
    assert retriever.encoder.engine == "onnx"
    paths = sorted(str(p.relative_to(root / "imgs")) for p in (root / "imgs").rglob("*.*"))
    expected = brute_force_ranking(tiny_model(), root / "imgs", paths, QUERIES[0])
    assert ranking(retriever, QUERIES[0], 10) == [p for p, _ in expected[:10]]


def test_an_export_of_another_model_is_refused_by_the_index(setup, tmp_path):
    other = export_model(tiny_model(seed=1), tmp_path / "other", "onnx")
    with pytest.raises(IndexStoreError, match="the index was built with another model"):
        Retriever.open(setup["root"] / "index", checkpoint=other, engine="onnx", device="cpu")


def test_onnx_search_runs_with_torch_blocked(setup, tmp_path):
    root = setup["root"]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    args = [root / "index", root / "onnx", root / "imgs", tmp_path / "new", json.dumps(QUERIES)]
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH_SEARCH, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch_modules"] == []
    torch_retriever = Retriever.open(root / "index", device="cpu")
    for query in QUERIES:
        expected = ranking(torch_retriever, query, 20)
        assert result["api"][query] == expected
        assert result["built"][query] == expected
    combined = torch_retriever.search(
        QUERIES[0], k=20, images=[result["probe"]], similar=[3], negatives=["red"],
        filter=SearchFilter(under="cam1"), rerank=True,
    )  # fmt: skip
    assert result["api"]["combined"] == [h.path for h in combined]


def test_the_blocker_really_blocks_torch(tmp_path):
    script = NO_TORCH_SEARCH.split("index, export")[0] + "import irra.tokenizer\n"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "importing torch is blocked" in done.stderr


def test_export_index_and_search_from_the_command_line(setup, tmp_path, capsys, caplog):
    root = setup["root"]
    export = tmp_path / "export"
    assert main(["export", "--checkpoint", str(setup["model"]), "--out", str(export)]) == 0
    assert "onnx encoders, images 64x32, 32 tokens, D=32" in capsys.readouterr().out
    assert main(["export", "--checkpoint", str(setup["model"]), "--out", str(export)]) == 2
    assert "already exists; pass --overwrite" in caplog.text
    index = tmp_path / "index"
    argv = ["index", "--out", str(index), "--images", str(root / "imgs")]
    assert main([*argv, "--checkpoint", str(export), "--engine", "onnx", "--workers", "0"]) == 0
    capsys.readouterr()
    results = {}
    for engine, checkpoint in (("onnx", export), ("torch", setup["model"])):
        search = [
            "search",
            "--index",
            str(index),
            QUERIES[0],
            "-k",
            "40",
            "--json",
            "--device",
            "cpu",
        ]
        assert main([*search, "--checkpoint", str(checkpoint), "--engine", engine]) == 0
        results[engine] = [r["path"] for r in json.loads(capsys.readouterr().out)]
    assert results["onnx"] == results["torch"]
    assert len(results["onnx"]) == 40
    wrong = ["search", "--index", str(index), "red", "--checkpoint", str(export), "--engine"]
    assert main([*wrong, "torchscript"]) == 2
    assert "is an export in format onnx, not torchscript" in caplog.text
