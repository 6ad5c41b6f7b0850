"""An RDE model indexes, searches and exports like an IRRA model, scored as RDE scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from retrieval_fixtures import IMAGE_SIZE, write_gallery

from irra.data.transforms import build_eval_transform
from irra.deploy import export_model
from irra.inference import ExportedEncoder, TorchEncoder
from irra.inference.bundle import MANIFEST_NAME
from irra.model import IRRA, CLIPConfig, IRRAConfig, TextConfig, VisionConfig, save_model
from irra.retrieval import Retriever, build_index
from irra.tokenizer import tokenize

QUERY = "a woman in a green coat with a white bag"


def rde_model(seed: int = 0) -> IRRA:
    torch.manual_seed(seed)
    clip = CLIPConfig(
        embed_dim=32,
        vision=VisionConfig(IMAGE_SIZE, patch_size=16, width=32, layers=1, heads=2),
        text=TextConfig(context_length=32, width=32, layers=1, heads=2),
    )
    model = IRRA(IRRAConfig(clip=clip, loss_names=("bge", "tse"), tse_dim=16))
    for head in (model.visul_emb_layer, model.texual_emb_layer):  # as after training
        head.mlp.bns[0].running_mean.uniform_(-0.3, 0.3)
        head.mlp.bns[0].running_var.uniform_(0.5, 2.0)
    return model.eval()


def rde_scores(model: IRRA, root: Path, paths: list[str], text: str) -> list[tuple[str, float]]:
    """(path, mean of the BGE and TSE cosines) of every image, best first, one at a time."""
    cos = torch.nn.functional.cosine_similarity
    transform = build_eval_transform(IMAGE_SIZE)
    with torch.no_grad():
        text_g, text_t = model.encode_text_parts(tokenize([text], 32))
        scores = []
        for rel in paths:
            with Image.open(root / rel) as image:
                pixels = transform(image.convert("RGB"))[None]
            image_g, image_t = model.encode_image_parts(pixels)
            score = (cos(text_g, image_g) + cos(text_t, image_t)) / 2
            scores.append((rel, float(score)))
    return sorted(scores, key=lambda item: -item[1])


def test_an_rde_index_ranks_by_the_mean_of_the_two_cosines(tmp_path: Path) -> None:
    model = rde_model()
    model_dir = save_model(model, tmp_path / "model")
    paths = write_gallery(tmp_path / "imgs", 30)
    encoder = TorchEncoder.from_checkpoint(model_dir, device="cpu")
    build_index(encoder, tmp_path / "imgs", tmp_path / "index", batch_size=7)
    expected = rde_scores(model, tmp_path / "imgs", paths, QUERY)
    hits = Retriever.open(tmp_path / "index", device="cpu").search(QUERY, k=10)
    assert [h.path for h in hits] == [p for p, _ in expected[:10]]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected[:10]], atol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_rde_export_holds_both_embeddings(tmp_path: Path, fmt: str) -> None:
    model = rde_model(1)
    export_model(model, tmp_path / "export", fmt)
    manifest = json.loads((tmp_path / "export" / MANIFEST_NAME).read_text())
    assert manifest["embed_dim"] == 32 + 16
    encoder = ExportedEncoder.open(tmp_path / "export", engine=fmt)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, *IMAGE_SIZE, generator=generator)
    ids = torch.zeros(3, 32, dtype=torch.long)
    for row, words in enumerate([[320, 1929], [320, 2308, 530, 1125, 11, 12, 13], [99]]):
        ids[row, : len(words) + 2] = torch.tensor([49406, *words, 49407])
    with torch.no_grad():
        image_ref = model.encode_image(images).numpy()
        text_ref = model.encode_text(ids).numpy()
    np.testing.assert_allclose(encoder.encode_pixels(images.numpy()), image_ref, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_text_ids(ids.numpy()), text_ref, atol=1e-5)
