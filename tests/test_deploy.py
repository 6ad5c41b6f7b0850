"""Exported encoders (ONNX Runtime, TorchScript) against the PyTorch model, and bad export dirs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from retrieval_fixtures import IMAGE_SIZE, draw_image, tiny_model

from irra.data.transforms import build_eval_transform
from irra.deploy import export_model
from irra.inference import (
    ExportedEncoder,
    ExportError,
    model_fingerprint,
    open_encoder,
    preprocess_image,
    read_bundle,
)
from irra.inference.bundle import MANIFEST_NAME, encoder_files
from irra.model import IRRA, CLIPConfig, IRRAConfig, TextConfig, VisionConfig
from irra.tokenizer import tokenize

CAPTIONS = [
    "a young woman in a red down jacket, black leggings and white sneakers",
    "man",
    "The man wears a grey hoodie with a logo, blue jeans and carries a black backpack. "
    "He has short dark hair and glasses and walks with an umbrella in his left hand.",
    "a person in a yellow raincoat",
    "",
]


def full_model(seed: int = 3) -> IRRA:
    """A tiny IRRA with every training head (MLM branch and ID classifier)."""
    torch.manual_seed(seed)
    clip = CLIPConfig(
        embed_dim=32,
        vision=VisionConfig(
            IMAGE_SIZE, patch_size=16, width=32, layers=2, heads=2, stem_channels=(8,)
        ),
        # A vocabulary subset (even ids; odd ones share the "unknown" row) goes into the export.
        text=TextConfig(
            context_length=24, width=32, layers=2, heads=2, vocab_ids=tuple(range(0, 49408, 2))
        ),
    )
    model = IRRA(IRRAConfig(clip=clip, num_classes=7, cmt_depth=1))
    stem_norm = model.base_model.visual.stem[1]  # statistics as after training, not 0 / 1
    stem_norm.running_mean.uniform_(-0.5, 0.5)
    stem_norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference over the largest absolute expected value."""
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def model() -> IRRA:
    return full_model()


@pytest.fixture(scope="module", params=["onnx", "torchscript"])
def exported(request, model, tmp_path_factory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp(request.param) / "export"
    export_model(model, out, request.param, source="test-model")
    return request.param, out


def real_looking_images(folder: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"p{i}.{('png', 'jpg', 'bmp')[i % 3]}"
        draw_image(path, seed=100 + i)
        paths.append(path)
    return paths


@pytest.mark.parametrize("batch", [1, 3, 5])
def test_exported_encoders_equal_pytorch_on_random_inputs(exported, model, batch):
    fmt, out = exported
    encoder = ExportedEncoder.open(out, engine=fmt)
    generator = torch.Generator().manual_seed(batch)
    images = torch.randn(batch, 3, *IMAGE_SIZE, generator=generator)
    ids = torch.randint(1, 49405, (batch, 24), generator=generator)
    ids[:, 0] = 49406
    for row in range(batch):  # EOT at a different position in each row, zeros after it
        end = 2 + 5 * row
        ids[row, end] = 49407
        ids[row, end + 1 :] = 0
    with torch.no_grad():
        image_ref = model.encode_image(images).numpy()
        text_ref = model.encode_text(ids).numpy()
    assert relative_error(encoder.encode_pixels(images.numpy()), image_ref) < 1e-4
    assert relative_error(encoder.encode_text_ids(ids.numpy()), text_ref) < 1e-4


def test_exported_encoders_equal_pytorch_on_images_and_captions(exported, model, tmp_path):
    fmt, out = exported
    encoder = ExportedEncoder.open(out, engine=fmt)
    paths = real_looking_images(tmp_path, 7)
    transform = build_eval_transform(IMAGE_SIZE)
    with torch.no_grad():
        pixels = []
        for path in paths:
            with Image.open(path) as image:
                pixels.append(transform(image.convert("RGB")))
        image_ref = torch.nn.functional.normalize(model.encode_image(torch.stack(pixels)), dim=-1)
        ids = tokenize(CAPTIONS, 24)
        text_ref = torch.nn.functional.normalize(model.encode_text(ids), dim=-1)
    got_images = encoder.encode_images(paths, batch_size=3, workers=2)
    got_texts = encoder.encode_texts(CAPTIONS)
    assert relative_error(got_images, image_ref.numpy()) < 1e-4
    assert relative_error(got_texts, text_ref.numpy()) < 1e-4


def test_numpy_preprocessing_equals_the_torch_eval_transform(tmp_path):
    rng = np.random.default_rng(0)
    for size in [(64, 32), (384, 128), (50, 70)]:
        for shape in [(80, 40, 3), (300, 97, 3), (33, 200, 3)]:
            image = Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8))
            expected = build_eval_transform(size)(image).numpy()
            got = preprocess_image(image, size, (0.48, 0.45, 0.40), (0.26, 0.26, 0.27))
            custom = build_eval_transform(size, mean=(0.48, 0.45, 0.40), std=(0.26, 0.26, 0.27))
            assert got.shape == expected.shape == (3, *size)
            np.testing.assert_allclose(got, custom(image).numpy(), atol=1e-5)
    grey = Image.fromarray(rng.integers(0, 256, size=(40, 20), dtype=np.uint8))
    np.testing.assert_allclose(
        preprocess_image(grey, (64, 32), (0.5,) * 3, (0.25,) * 3),
        build_eval_transform((64, 32), mean=(0.5,) * 3, std=(0.25,) * 3)(grey.convert("RGB")),
        atol=1e-5,
    )


def test_export_dir_holds_the_encoders_the_vocabulary_and_the_model_identity(exported, model):
    fmt, out = exported
    bundle = read_bundle(out)
    assert bundle.format == fmt
    assert bundle.fingerprint == model_fingerprint(model)
    assert bundle.image_size == IMAGE_SIZE and bundle.context_length == 24
    assert bundle.embed_dim == 32
    assert bundle.model_config == json.loads(json.dumps(model.config.to_dict()))
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([*encoder_files(fmt), MANIFEST_NAME, "bpe_simple_vocab_16e6.txt.gz"])
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # no temp dir left


def test_onnx_export_drops_the_training_heads(model, tmp_path):
    out = export_model(model, tmp_path / "export", "onnx")
    stored = 0
    for name in encoder_files("onnx"):
        graph = onnx.load(str(out / name)).graph
        stored += sum(int(np.prod(t.dims)) for t in graph.initializer)
        assert [i.name for i in graph.input] in (["images"], ["ids"])
        batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
        assert batch_dim.dim_param == "batch"  # dynamic batch size
    towers = sum(p.numel() for p in model.base_model.parameters())
    heads = sum(p.numel() for p in model.parameters()) - towers
    assert heads > 0
    assert stored <= towers  # the heads are not in the export


def test_torchscript_export_holds_only_each_towers_parameters(model, tmp_path):
    out = export_model(model, tmp_path / "export", "torchscript")
    image_file, text_file = (out / name for name in encoder_files("torchscript"))
    clip = model.base_model
    visual = sum(p.numel() for p in clip.visual.parameters())
    text = sum(p.numel() for n, p in clip.named_parameters() if not n.startswith("visual."))
    for path, expected in ((image_file, visual), (text_file, text)):
        stored = sum(p.numel() for p in torch.jit.load(str(path)).parameters())
        assert stored == expected, path.name


def test_export_refuses_an_existing_dir_unless_overwriting_an_export(model, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(ExportError, match="already exists; choose another --out"):
        export_model(model, tmp_path / "taken", "onnx")
    out = export_model(model, tmp_path / "export", "onnx")
    with pytest.raises(ExportError, match="--overwrite"):
        export_model(model, out, "onnx")
    other = full_model(seed=9)
    export_model(other, out, "onnx", overwrite=True)
    assert read_bundle(out).fingerprint == model_fingerprint(other)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "taken"]
    with pytest.raises(ExportError, match="unknown export format 'tflite'; valid: onnx, torch"):
        export_model(model, tmp_path / "x", "tflite")


def test_a_broken_export_dir_fails_naming_the_file_and_the_fix(model, tmp_path):
    out = export_model(model, tmp_path / "export", "onnx")
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "text_encoder.onnx").unlink()
    with pytest.raises(ExportError, match=r"text_encoder.onnx: missing .*irra export"):
        ExportedEncoder.open(broken)
    shutil.copytree(out, tmp_path / "swapped")
    other = export_model(full_model(seed=5), tmp_path / "other", "onnx")
    shutil.copyfile(other / "image_encoder.onnx", tmp_path / "swapped" / "image_encoder.onnx")
    with pytest.raises(ExportError, match=r"image_encoder.onnx: its content differs"):
        ExportedEncoder.open(tmp_path / "swapped")
    (tmp_path / "nomanifest").mkdir()
    with pytest.raises(ExportError, match=r"irra_export.json: missing"):
        ExportedEncoder.open(tmp_path / "nomanifest")
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    del manifest["image_size"]
    shutil.copytree(out, tmp_path / "malformed")
    (tmp_path / "malformed" / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=r"irra_export.json: malformed .*image_size"):
        ExportedEncoder.open(tmp_path / "malformed")
    with pytest.raises(ExportError, match="is an export in format onnx, not torchscript"):
        open_encoder(out, "torchscript")
    with pytest.raises(ValueError, match="export directory, which the torch engine cannot read"):
        open_encoder(out, "torch")
    with pytest.raises(ValueError, match="unknown engine 'tensorrt'; valid: torch, onnx"):
        open_encoder(out, "tensorrt")


def test_open_encoder_detects_an_export_dir(model, tmp_path):
    out = export_model(model, tmp_path / "export", "torchscript")
    assert open_encoder(out).engine == "torchscript"
    model_dir = tmp_path / "model"
    from irra.model import save_model

    save_model(tiny_model(), model_dir)
    assert open_encoder(model_dir, device="cpu").engine == "torch"
