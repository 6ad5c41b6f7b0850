"""Building IRRA models and reading every kind of weight file.

* OpenAI CLIP weights: a TorchScript archive (OpenAI's ``ViT-B-16.pt``), a plain state dict
  (``torch.save``) or a safetensors file with OpenAI's key names.
* Official IRRA checkpoints: ``best.pth`` (``{'model': state_dict}``) with ``configs.yaml``
  beside it (see :mod:`irra.model.official`).
* irra's own format (see :mod:`irra.model.checkpoint_io`).

:func:`load_model` tells them apart; :func:`build_model` makes a new model, randomly initialised or
from OpenAI CLIP weights.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from irra.model.checkpoint_io import (
    WeightsError,
    is_irra_checkpoint,
    is_torchscript_archive,
    is_training_checkpoint,
    load_irra_checkpoint,
    load_state_strict,
    model_from_training_checkpoint,
    read_safetensors,
    safe_torch_load,
    strip_wrapper_prefixes,
)
from irra.model.clip import CLIPConfig, TextConfig, VisionConfig, clip_config
from irra.model.irra import IRRA, IRRAConfig

logger = logging.getLogger(__name__)

OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
REQUIRED_CLIP_KEYS = (
    "visual.conv1.weight",
    "visual.positional_embedding",
    "visual.proj",
    "token_embedding.weight",
    "positional_embedding",
    "ln_final.weight",
    "text_projection",
)


def load_openai_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """OpenAI CLIP weights as a float32 state dict on CPU with OpenAI's key names.

    Reads a TorchScript archive, a ``torch.save`` state dict or a safetensors file; drops
    ``input_resolution``, ``context_length`` and ``vocab_size``.

    Raises:
        WeightsError: unreadable or unsafe file, or not CLIP weights.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        state: Any = read_safetensors(path)[0]
    else:
        state = _read_torchscript(path) if is_torchscript_archive(path) else safe_torch_load(path)
    return _clean_openai_state(state, path)


def _read_torchscript(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a TorchScript archive (OpenAI's format); its code is compiled, never called."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*jit.load.*deprecated", category=FutureWarning
            )
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    except (RuntimeError, OSError, ValueError) as err:
        raise WeightsError(f"{path}: cannot read TorchScript archive ({err})") from err


def _clean_openai_state(state: Any, source: Path | str) -> dict[str, torch.Tensor]:
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(f"{source}: not a CLIP state dict (expected a mapping of tensors)")
    state = strip_wrapper_prefixes(state)
    missing = [k for k in REQUIRED_CLIP_KEYS if k not in state]
    if missing:
        hint = (
            " (ResNet CLIP models are not supported)"
            if "visual.layer1.0.conv1.weight" in state
            else ""
        )
        raise WeightsError(
            f"{source}: not OpenAI ViT CLIP weights{hint}; missing {', '.join(missing)}; "
            f"found keys like {', '.join(list(state)[:5])}"
        )
    return {
        k: v.float() if v.is_floating_point() else v
        for k, v in state.items()
        if k not in OPENAI_EXTRA_KEYS
    }


def _count_layers(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})


def infer_clip_config(
    state_dict: Mapping[str, torch.Tensor],
    image_size: tuple[int, int] = (384, 128),
    stride_size: int | None = None,
) -> CLIPConfig:
    """The :class:`CLIPConfig` of CLIP weights, read from tensor shapes.

    Args:
        state_dict: OpenAI key names (no ``base_model.`` prefix).
        image_size: (height, width) the model will take (the position grid is resized to it).
        stride_size: patch stride; the patch size when None.

    Heads are width // 64 in both towers, as in every OpenAI CLIP.
    """
    missing = [k for k in REQUIRED_CLIP_KEYS if k not in state_dict]
    if missing:
        raise WeightsError(f"not CLIP ViT weights: missing {', '.join(missing)}")
    vision_width, _, patch, _ = state_dict["visual.conv1.weight"].shape
    text_width = state_dict["ln_final.weight"].shape[0]
    vision = VisionConfig(
        image_size=tuple(image_size),
        patch_size=patch,
        stride_size=patch if stride_size is None else stride_size,
        width=vision_width,
        layers=_count_layers(state_dict, "visual.transformer.resblocks."),
        heads=max(1, vision_width // 64),
    )
    text = TextConfig(
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        width=text_width,
        layers=_count_layers(state_dict, "transformer.resblocks."),
        heads=max(1, text_width // 64),
    )
    return CLIPConfig(embed_dim=state_dict["visual.proj"].shape[1], vision=vision, text=text)


def resize_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Bilinearly resize a ViT position embedding to a new patch grid.

    Args:
        pos_embed: (1 + gh * gw, C); row 0 (class token) is kept as is.
        new_grid: (rows, columns) wanted.
        old_grid: (rows, columns) of ``pos_embed``; when None, the new grid if the counts agree,
            else square.

    Returns:
        (1 + rows * columns, C) in the dtype of ``pos_embed`` (interpolated in float32,
        ``align_corners=False``, no antialiasing, as the reference).
    """
    count = pos_embed.shape[0] - 1
    if old_grid is None and count == new_grid[0] * new_grid[1]:
        old_grid = tuple(new_grid)
    if old_grid is None:
        side = math.isqrt(count)
        if side * side != count:
            raise ValueError(f"{count} position embeddings are not a square grid; pass old_grid")
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != count:
        raise ValueError(f"old_grid {old_grid} does not hold {count} position embeddings")
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed.clone()
    cls_token, grid = pos_embed[:1].float(), pos_embed[1:].float()
    grid = grid.reshape(1, *old_grid, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bilinear", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1)
    return torch.cat([cls_token, grid]).to(pos_embed.dtype)


def _requested_config(
    arch: str | CLIPConfig, image_size: tuple[int, int] | None, stride_size: int | None
) -> CLIPConfig:
    if isinstance(arch, CLIPConfig):
        vision = arch.vision
        vision = dataclasses.replace(
            vision,
            image_size=vision.image_size if image_size is None else tuple(image_size),
            stride_size=vision.stride_size if stride_size is None else stride_size,
        )
        return dataclasses.replace(arch, vision=vision)
    return clip_config(arch, image_size=image_size, stride_size=stride_size)


def _openai_path(arch: str | CLIPConfig) -> Path:
    """Download OpenAI's weights for a preset through open_clip (needs the network)."""
    if not isinstance(arch, str) or arch == "tiny":
        raise ValueError("pretrained='openai' needs arch 'ViT-B/16', 'ViT-B/32' or 'ViT-L/14'")
    from open_clip import pretrained as open_clip_pretrained

    cfg = open_clip_pretrained.get_pretrained_cfg(arch.replace("/", "-"), "openai")
    logger.info("downloading OpenAI CLIP %s through open_clip", arch)
    return Path(open_clip_pretrained.download_pretrained(cfg, prefer_hf_hub=False))


def build_model(
    arch: str | CLIPConfig = "ViT-B/16",
    *,
    pretrained: str | os.PathLike[str] | None = None,
    image_size: tuple[int, int] | None = None,
    stride_size: int | None = None,
    num_classes: int = 0,
    cmt_depth: int = 4,
    loss_names: str | Sequence[str] = ("sdm", "mlm", "id"),
    temperature: float = 0.02,
    mlm_loss_weight: float = 1.0,
    id_loss_weight: float = 1.0,
    tse_dim: int = 1024,
    select_ratio: float = 0.3,
) -> IRRA:
    """A new IRRA model, randomly initialised or with CLIP initialised from OpenAI weights.

    Args:
        arch: a preset name ("ViT-B/16", "ViT-B/32", "ViT-L/14", "tiny") or a CLIPConfig.
        pretrained: path to OpenAI CLIP weights (TorchScript, state dict or safetensors);
            "openai" downloads them through open_clip (network needed); None: random.
        image_size: (height, width); None keeps the arch's (384x128 for the ViT presets).
        stride_size: patch stride; None keeps the arch's (the patch size for presets).
        num_classes: training identities (needed when "id" is in ``loss_names``).
        cmt_depth, loss_names, temperature, mlm_loss_weight, id_loss_weight, tse_dim,
            select_ratio: see IRRAConfig ("tse" in ``loss_names`` adds RDE's TSE heads).

    Raises:
        ValueError: unknown arch (lists the valid names), or weights that do not fit the arch.

    Example:
        >>> model = build_model("tiny", num_classes=5)
        >>> model.encode_text(torch.tensor([[49406, 320, 49407]])).shape
        torch.Size([1, 64])
    """
    requested = _requested_config(arch, image_size, stride_size)
    config = IRRAConfig(
        clip=requested,
        num_classes=num_classes,
        cmt_depth=cmt_depth,
        temperature=temperature,
        loss_names=loss_names,
        mlm_loss_weight=mlm_loss_weight,
        id_loss_weight=id_loss_weight,
        tse_dim=tse_dim,
        select_ratio=select_ratio,
    )
    if pretrained is None:
        return IRRA(config)
    source = _openai_path(arch) if str(pretrained) == "openai" else Path(pretrained)
    state = load_openai_state_dict(source)
    found = infer_clip_config(state, requested.vision.image_size, requested.vision.stride_size)
    if found != requested:
        raise ValueError(
            f"{source}: the weights are {describe(found)}, but arch {arch!r} is "
            f"{describe(requested)}; pass the matching arch"
        )
    model = IRRA(config)
    load_clip_weights(model, state, source=source)
    return model


def describe(config: CLIPConfig) -> str:
    """A one-line summary of a CLIP architecture, for messages."""
    v, t = config.vision, config.text
    return (
        f"ViT patch {v.patch_size} width {v.width} x {v.layers} layers ({v.heads} heads), text "
        f"width {t.width} x {t.layers} layers ({t.heads} heads, context {t.context_length}, "
        f"vocab {t.vocab_size}), "
        f"embed {config.embed_dim}"
    )


def load_clip_weights(
    model: IRRA,
    state: Mapping[str, torch.Tensor],
    *,
    source: str | os.PathLike[str],
    old_grid: tuple[int, int] | None = None,
) -> None:
    """Copy OpenAI-named CLIP weights into ``model.base_model``, resizing the position grid."""
    state = dict(state)
    key = "visual.positional_embedding"
    state[key] = resize_pos_embed(state[key], model.config.clip.vision.grid, old_grid)
    load_state_strict(model.base_model, state, source, tolerated=frozenset({"logit_scale"}))


def load_model(
    path: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    image_size: tuple[int, int] | None = None,
    stride_size: int | None = None,
) -> IRRA:
    """Load a model from any supported weight file, in eval mode, on ``map_location``.

    Args:
        path: an irra model (directory or ``.safetensors``), an irra training checkpoint
            (``last.pt`` / ``best.pt`` recording ``model_config``), an official IRRA ``best.pth``
            (or the folder holding it with ``configs.yaml``), or OpenAI CLIP weights (the IRRA
            heads are then random and there is no ID classifier; a warning says so).
        map_location: device for the returned model.
        image_size, stride_size: for official checkpoints without ``configs.yaml`` and for OpenAI
            weights (default 384x128, stride = patch size).

    Raises:
        WeightsError: missing, unreadable, unsafe or unrecognised file (the message says why).
    """
    from irra.model.official import is_official_state, load_official_irra

    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: no such file or directory")
    if is_irra_checkpoint(path):
        model = load_irra_checkpoint(path)
    elif path.is_dir():
        if not (path / "best.pth").is_file():
            raise WeightsError(
                f"{path}: a directory without irra.json (irra model) or best.pth (official IRRA)"
            )
        model = load_official_irra(
            path / "best.pth", image_size=image_size, stride_size=stride_size
        )
    else:
        state = _read_any(path)
        if is_training_checkpoint(state):
            model = model_from_training_checkpoint(state, path)
        elif is_official_state(state):
            model = load_official_irra(
                path, state=state, image_size=image_size, stride_size=stride_size
            )
        elif _looks_like_clip(state):
            model = _model_from_openai(
                _clean_openai_state(state, path), path, image_size, stride_size
            )
        else:
            keys = list(state)[:5] if isinstance(state, Mapping) else type(state).__name__
            raise WeightsError(
                f"{path}: not a recognised model file (an irra model or training checkpoint, an "
                f"official IRRA best.pth, or OpenAI CLIP ViT weights); found {keys}"
            )
    return model.to(map_location).eval()


def _looks_like_clip(obj: Any) -> bool:
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    return isinstance(obj, Mapping) and any(
        isinstance(k, str) and k.endswith("visual.conv1.weight") for k in obj
    )


def _read_any(path: Path) -> Any:
    if path.suffix == ".safetensors":
        return read_safetensors(path)[0]
    return _read_torchscript(path) if is_torchscript_archive(path) else safe_torch_load(path)


def _model_from_openai(
    state: dict[str, torch.Tensor],
    path: Path,
    image_size: tuple[int, int] | None,
    stride_size: int | None,
) -> IRRA:
    config = infer_clip_config(state, image_size or (384, 128), stride_size)
    logger.warning(
        "%s holds CLIP weights only: the IRRA cross-modal encoder and MLM head are randomly "
        "initialised and there is no ID classifier; fine for zero-shot retrieval, train it first "
        "for IRRA results",
        path,
    )
    model = IRRA(IRRAConfig(clip=config, loss_names=("sdm", "mlm")))
    load_clip_weights(model, state, source=path)
    return model
