"""Weight I/O: OpenAI CLIP files, official IRRA checkpoints, irra's own format, and safety."""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from irra.model import (
    CLIPConfig,
    TextConfig,
    VisionConfig,
    WeightsError,
    build_model,
    infer_clip_config,
    load_model,
    load_openai_state_dict,
    resize_pos_embed,
    save_model,
)
from irra.model.clip import CLIP


def tiny_clip(image_size=(64, 32), stride=16, **vision) -> CLIPConfig:
    return CLIPConfig(
        embed_dim=64,
        vision=VisionConfig(
            image_size, patch_size=16, stride_size=stride, width=64, layers=2, heads=1, **vision
        ),
        text=TextConfig(context_length=77, vocab_size=49408, width=64, layers=2, heads=1),
    )


class Holder(nn.Module):
    """A scriptable module holding tensors under arbitrary dotted names (like OpenAI's .pt)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def openai_archive(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``state`` as a TorchScript archive with OpenAI's extra integer attributes."""
    root = Holder()
    for name, tensor in state.items():
        *parents, leaf = name.split(".")
        module = root
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        module.register_parameter(leaf, nn.Parameter(tensor.clone(), requires_grad=False))
    for extra, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
        root.register_buffer(extra, torch.tensor(value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(root).save(str(path))


def random_clip_state(config: CLIPConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in CLIP(config).state_dict().items()}


def images_and_ids(image_size=(64, 32)):
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, *image_size, generator=gen)
    ids = torch.zeros(2, 77, dtype=torch.long)
    ids[:, 0] = 49406
    ids[:, 1:6] = torch.randint(1, 49405, (2, 5), generator=gen)
    ids[:, 6] = 49407
    return images, ids


def assert_same_outputs(a, b, image_size=(64, 32)):
    images, ids = images_and_ids(image_size)
    a.eval()
    b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a.encode_image(images), b.encode_image(images))
        torch.testing.assert_close(a.encode_text(ids), b.encode_text(ids))
        if a.has_mlm:
            mlm = [
                m.mlm_logits(m.encode_text_tokens(ids), m.encode_image_tokens(images))
                for m in (a, b)
            ]
            torch.testing.assert_close(*mlm)


# ---------------------------------------------------------------- OpenAI CLIP weights


def test_torchscript_archive_loads_as_float32_state_dict(tmp_path):
    state = random_clip_state(tiny_clip())
    half = {k: v.half() if k != "logit_scale" else v for k, v in state.items()}
    openai_archive(half, tmp_path / "ViT-T.pt")
    loaded = load_openai_state_dict(tmp_path / "ViT-T.pt")
    assert set(loaded) == set(state)  # extra integer attributes dropped
    for key, value in loaded.items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, half[key].float())


def test_build_model_from_torchscript_archive_reproduces_the_weights(tmp_path):
    state = random_clip_state(tiny_clip())
    openai_archive(state, tmp_path / "clip.pt")
    model = build_model(tiny_clip(), pretrained=tmp_path / "clip.pt", num_classes=4)
    for key, value in model.base_model.state_dict().items():
        torch.testing.assert_close(value, state[key], msg=key)


def test_plain_state_dict_and_safetensors_load_too(tmp_path):
    from safetensors.torch import save_file

    state = random_clip_state(tiny_clip())
    torch.save({**state, "input_resolution": torch.tensor(224)}, tmp_path / "clip.pt")
    save_file(state, tmp_path / "clip.safetensors")
    for name in ("clip.pt", "clip.safetensors"):
        loaded = load_openai_state_dict(tmp_path / name)
        assert set(loaded) == set(state)
        for key in state:
            torch.testing.assert_close(loaded[key], state[key])


def test_build_model_resizes_the_position_grid(tmp_path):
    source = tiny_clip(image_size=(64, 64))  # 4x4 grid, as a square pretraining resolution
    state = random_clip_state(source)
    torch.save(state, tmp_path / "clip.pt")
    model = build_model(
        tiny_clip(),
        pretrained=tmp_path / "clip.pt",
        image_size=(64, 32),
        stride_size=12,
        num_classes=4,
    )
    new_pos = model.base_model.visual.positional_embedding
    assert new_pos.shape == (5 * 2 + 1, 64)
    torch.testing.assert_close(
        new_pos, resize_pos_embed(state["visual.positional_embedding"], (5, 2))
    )
    torch.testing.assert_close(
        model.base_model.token_embedding.weight, state["token_embedding.weight"]
    )


def test_weights_that_do_not_fit_the_arch_are_refused(tmp_path):
    torch.save(random_clip_state(tiny_clip()), tmp_path / "clip.pt")
    with pytest.raises(ValueError, match="pass the matching arch"):
        build_model("ViT-B/16", pretrained=tmp_path / "clip.pt", num_classes=4)


def test_infer_clip_config_reads_every_size_from_shapes():
    config = CLIPConfig(
        embed_dim=48,
        vision=VisionConfig((40, 24), patch_size=8, stride_size=6, width=128, layers=3, heads=2),
        text=TextConfig(context_length=20, vocab_size=300, width=192, layers=1, heads=3),
    )
    state = random_clip_state(config)
    assert infer_clip_config(state, image_size=(40, 24), stride_size=6) == config


# ---------------------------------------------------------------- position-embedding resizing


def test_resize_keeps_constant_grids_constant_and_the_class_token():
    pos = torch.full((1 + 14 * 14, 3), 2.5)
    pos[0] = torch.tensor([1.0, -1.0, 7.0])
    out = resize_pos_embed(pos, (24, 8))
    assert out.shape == (1 + 24 * 8, 3)
    torch.testing.assert_close(out[0], pos[0])
    torch.testing.assert_close(out[1:], torch.full((24 * 8, 3), 2.5))


def bilinear_of_linear(old: int, new: int) -> torch.Tensor:
    """Where bilinear resizing (half-pixel centres, edges clamped) samples a linear ramp."""
    centres = (torch.arange(new, dtype=torch.float64) + 0.5) * old / new - 0.5
    return centres.clamp(0, old - 1)


def test_resize_of_a_linear_grid_matches_hand_computed_bilinear():
    rows, cols = torch.meshgrid(torch.arange(14.0), torch.arange(14.0), indexing="ij")
    grid = torch.stack([3 * rows + 1, -2 * cols], dim=-1).reshape(-1, 2)
    pos = torch.cat([torch.zeros(1, 2), grid])
    out = resize_pos_embed(pos, (24, 8))[1:].reshape(24, 8, 2).double()
    expected_rows = 3 * bilinear_of_linear(14, 24) + 1
    expected_cols = -2 * bilinear_of_linear(14, 8)
    torch.testing.assert_close(out[..., 0], expected_rows[:, None].expand(24, 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., 1], expected_cols[None, :].expand(24, 8), atol=1e-5, rtol=0)


def test_resize_of_a_non_square_grid():
    rows, cols = torch.meshgrid(torch.arange(6.0), torch.arange(4.0), indexing="ij")
    pos = torch.cat([torch.zeros(1, 1), (rows + 10 * cols).reshape(-1, 1)])
    out = resize_pos_embed(pos, (3, 2), old_grid=(6, 4))[1:].reshape(3, 2).double()
    expected = bilinear_of_linear(6, 3)[:, None] + 10 * bilinear_of_linear(4, 2)[None, :]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- official IRRA checkpoints


def write_official(model, folder: Path, args: dict | None, half: bool = True) -> Path:
    """Save like the official code: {'model': state_dict} (CLIP partly fp16) + configs.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    if half:  # the official code runs CLIP's linear / conv / projection weights in fp16
        state = {
            k: v.half() if k.startswith("base_model.") and v.ndim >= 2 else v
            for k, v in state.items()
        }
    torch.save({"model": state, "num_epoch": 7}, folder / "best.pth")
    if args is not None:
        with open(folder / "configs.yaml", "w") as handle:
            yaml.dump(vars(argparse.Namespace(**args)), handle, default_flow_style=False)
    return folder / "best.pth"


def official_args(loss_names: str, stride: int = 16) -> dict:
    return {
        "img_size": (64, 32),
        "stride_size": stride,
        "cmt_depth": 2,
        "loss_names": loss_names,
        "temperature": 0.02,
        "mlm_loss_weight": 1.0,
        "id_loss_weight": 1.0,
        "text_length": 77,
        "vocab_size": 49408,
        "pretrain_choice": "ViT-B/16",
        "name": "iira",
    }


def fp16_rounded(model):
    """The model as the official fp16 checkpoint stores it (fp16-rounded CLIP matrices)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("base_model.") and param.ndim >= 2:
                param.copy_(param.half().float())
    return model


@pytest.mark.parametrize(("loss_names", "stride"), [("sdm+mlm+id", 16), ("sdm+id", 12)])
def test_official_checkpoint_with_configs_yaml_loads(tmp_path, loss_names, stride):
    torch.manual_seed(0)
    model = build_model(
        tiny_clip(stride=stride), num_classes=11, cmt_depth=2, loss_names=loss_names
    )
    fp16_rounded(model)
    path = write_official(model, tmp_path / "run", official_args(loss_names, stride))
    assert "!!python/tuple" in (tmp_path / "run" / "configs.yaml").read_text()
    loaded = load_model(path)
    assert loaded.config.loss_names == tuple(loss_names.split("+"))
    assert loaded.config.num_classes == 11
    assert loaded.has_mlm == ("mlm" in loss_names)
    assert loaded.config.clip.vision.stride_size == stride
    assert_same_outputs(model, loaded)
    assert_same_outputs(model, load_model(tmp_path / "run"))  # the run folder works too


def test_official_checkpoint_without_configs_yaml_warns_and_infers(tmp_path, caplog):
    torch.manual_seed(0)
    model = build_model(tiny_clip(image_size=(48, 48)), num_classes=5, cmt_depth=3)
    path = write_official(model, tmp_path / "run", None, half=False)
    with caplog.at_level(logging.WARNING):
        loaded = load_model(path)
    assert "configs.yaml" in caplog.text
    assert loaded.config.clip.vision.image_size == (48, 48)
    assert loaded.config.cmt_depth == 3
    assert loaded.config.loss_names == ("sdm", "mlm", "id")
    assert_same_outputs(model, loaded, image_size=(48, 48))


def test_official_non_square_grid_without_configs_needs_image_size(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_clip(), num_classes=5, loss_names="sdm")
    path = write_official(model, tmp_path / "run", None, half=False)
    with pytest.raises(WeightsError, match="image_size"):
        load_model(path)
    assert_same_outputs(model, load_model(path, image_size=(64, 32)))


def test_official_checkpoint_tolerates_only_logit_scale(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_clip(), num_classes=5, cmt_depth=2)
    state = {k: v for k, v in model.state_dict().items() if k != "base_model.logit_scale"}
    state = {f"module.{k}": v for k, v in state.items()}  # saved from a DDP-wrapped model
    (tmp_path / "a").mkdir()
    torch.save({"model": state}, tmp_path / "a" / "best.pth")
    with open(tmp_path / "a" / "configs.yaml", "w") as handle:
        yaml.dump(official_args("sdm+mlm+id"), handle)
    assert_same_outputs(model, load_model(tmp_path / "a" / "best.pth"))

    del state["module.ln_pre_t.bias"]
    state["module.extra.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "a" / "best.pth")
    with pytest.raises(WeightsError, match=r"best\.pth.*ln_pre_t\.bias.*extra\.weight"):
        load_model(tmp_path / "a" / "best.pth")


def test_unsafe_configs_yaml_is_refused(tmp_path):
    model = build_model(tiny_clip(), num_classes=5, loss_names="sdm")
    marker = tmp_path / "pwned"
    path = write_official(model, tmp_path / "run", None, half=False)
    (tmp_path / "run" / "configs.yaml").write_text(
        f"img_size: !!python/object/apply:builtins.open ['{marker}', 'w']\n"
    )
    with pytest.raises(WeightsError, match="configs.yaml"):
        load_model(path)
    assert not marker.exists()


# ---------------------------------------------------------------- irra's own format


@pytest.mark.parametrize("name", ["model_dir", "model.safetensors"])
def test_irra_checkpoint_round_trip(tmp_path, name):
    torch.manual_seed(0)
    model = build_model(tiny_clip(stride=12), num_classes=6, cmt_depth=2, temperature=0.03)
    save_model(model, tmp_path / name, metadata={"epoch": 3})
    loaded = load_model(tmp_path / name)
    assert loaded.config == model.config
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert_same_outputs(model, loaded)
    if name == "model_dir":
        description = json.loads((tmp_path / name / "irra.json").read_text())
        assert description["metadata"] == {"epoch": 3}
    assert not [p for p in tmp_path.rglob("*.tmp")]  # atomic writes leave no temp files


def test_conv_stem_and_its_batch_norm_statistics_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_clip(stem_channels=(8, 16)), num_classes=3, cmt_depth=1)
    model.train()
    model.encode_image(torch.randn(6, 3, 64, 32))  # moves the running statistics off 0 / 1
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config.clip.vision.stem_channels == (8, 16)
    running = "base_model.visual.stem.1.running_mean"
    assert running in loaded.state_dict()
    assert not torch.equal(loaded.state_dict()[running], torch.zeros(8))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert_same_outputs(model, loaded)


def test_newer_format_version_is_refused(tmp_path):
    model = build_model(tiny_clip(), num_classes=2, loss_names="sdm")
    save_model(model, tmp_path / "m")
    description = json.loads((tmp_path / "m" / "irra.json").read_text())
    description["format_version"] = 99
    (tmp_path / "m" / "irra.json").write_text(json.dumps(description))
    with pytest.raises(WeightsError, match="upgrade irra"):
        load_model(tmp_path / "m")


def test_training_checkpoint_with_model_config_loads(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_clip(), num_classes=3, cmt_depth=2)
    state = {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}  # a compiled model
    payload = {"format": "irra-training-checkpoint", "version": 1, "model": state, "epoch": 2}
    torch.save({**payload, "model_config": model.config.to_dict()}, tmp_path / "last.pt")
    assert_same_outputs(model, load_model(tmp_path / "last.pt"))
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(WeightsError, match="old.pt.*model_config"):
        load_model(tmp_path / "old.pt")


def test_openai_weights_through_load_model_warn_about_random_heads(tmp_path, caplog):
    state = random_clip_state(tiny_clip())
    openai_archive(state, tmp_path / "clip.pt")
    with caplog.at_level(logging.WARNING):
        model = load_model(tmp_path / "clip.pt", image_size=(64, 32))
    assert "randomly" in caplog.text
    assert model.classifier is None
    torch.testing.assert_close(model.base_model.visual.proj, state["visual.proj"])


# ---------------------------------------------------------------- safety and corruption


class Malicious:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_that_would_run_code_is_refused(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "best.pth"
    payload = {"model": {"base_model.x": torch.zeros(1)}, "evil": Malicious(str(marker))}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(payload, handle)
    for loader in (load_model, load_openai_state_dict):
        with pytest.raises(WeightsError, match=r"best\.pth.*refused"):
            loader(path)
    assert not marker.exists()


def test_truncated_files_give_an_error_naming_the_file(tmp_path):
    model = build_model(tiny_clip(), num_classes=2, loss_names="sdm")
    torch.save({"model": model.state_dict()}, tmp_path / "best.pth")
    save_model(model, tmp_path / "m.safetensors")
    for name in ("best.pth", "m.safetensors"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(WeightsError, match=rf"{name}.*(truncated|cannot read)"):
            load_model(tmp_path / name)


def test_missing_path_and_unknown_content_are_reported(tmp_path):
    with pytest.raises(WeightsError, match="nowhere.pt"):
        load_model(tmp_path / "nowhere.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="other.pt.*not a recognised model file"):
        load_model(tmp_path / "other.pt")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(WeightsError, match="empty"):
        load_model(tmp_path / "empty")
