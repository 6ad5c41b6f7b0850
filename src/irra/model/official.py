"""Checkpoints written by the official IRRA code and by the RDE authors' code (an IRRA fork).

``best.pth`` is ``torch.save({'model': state_dict, ...})`` with keys ``base_model.*`` (OpenAI
CLIP names), ``classifier.*`` and the MLM branch (IRRA) or the token selection heads
``visul_emb_layer.*`` and ``texual_emb_layer.*`` (RDE). ``configs.yaml`` (beside it) is
``yaml.dump`` of the training arguments; its ``img_size`` may be tagged ``!!python/tuple``, which
is read by a safe loader that knows only that one extra tag. An RDE run is recognised by its
heads or by the ``select_ratio`` argument of its ``configs.yaml``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from irra.model.checkpoint_io import (
    WeightsError,
    load_state_strict,
    safe_torch_load,
    strip_wrapper_prefixes,
)
from irra.model.clip import patch_grid
from irra.model.irra import IRRA, IRRAConfig, parse_loss_names
from irra.model.pretrained import REQUIRED_CLIP_KEYS, infer_clip_config

logger = logging.getLogger(__name__)

CONFIGS_FILE = "configs.yaml"
_PREFIX = "base_model."
_DEFAULT_IMAGE_SIZE = (384, 128)
_RDE_HEADS = ("visul_emb_layer.", "texual_emb_layer.")
#: Layers of the RDE authors' heads that their forward pass never uses (the image head's
#: ``linear``, the batch norm after the MLP's last layer): dropped on load.
_RDE_UNUSED = (
    "visul_emb_layer.linear.",
    "visul_emb_layer.mlp.bns.1.",
    "texual_emb_layer.mlp.bns.1.",
)
#: What irra's RDE model needs of the authors' heads.
_RDE_REQUIRED = (
    "visul_emb_layer.fc.weight",
    "visul_emb_layer.mlp.layers.0.weight",
    "visul_emb_layer.mlp.layers.1.weight",
    "visul_emb_layer.mlp.bns.0.running_mean",
    "texual_emb_layer.linear.weight",
    "texual_emb_layer.mlp.layers.0.weight",
    "texual_emb_layer.mlp.layers.1.weight",
    "texual_emb_layer.mlp.bns.0.running_mean",
)


class _ConfigsLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also builds tuples from ``!!python/tuple`` (nothing else)."""


def _construct_tuple(loader: yaml.SafeLoader, node: yaml.Node) -> tuple:
    return tuple(loader.construct_sequence(node))


_ConfigsLoader.add_constructor("tag:yaml.org,2002:python/tuple", _construct_tuple)


def read_configs_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The training arguments stored by the official code, as a dict.

    Raises:
        WeightsError: unreadable file, YAML that needs an unsafe loader, or not a mapping.
    """
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_ConfigsLoader)  # noqa: S506
    except (OSError, yaml.YAMLError) as err:
        raise WeightsError(f"{path}: cannot read the IRRA training configs ({err})") from err
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a mapping of training arguments")
    return data


def is_official_state(obj: Any) -> bool:
    """Whether a loaded object is an official IRRA checkpoint (or its bare state dict)."""
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    return isinstance(obj, Mapping) and any(
        isinstance(k, str)
        and k.removeprefix("module.").removeprefix("_orig_mod.").startswith(_PREFIX)
        for k in obj
    )


def load_official_irra(
    path: str | os.PathLike[str],
    *,
    state: Any = None,
    image_size: tuple[int, int] | None = None,
    stride_size: int | None = None,
) -> IRRA:
    """Build and load an IRRA model from an official ``best.pth`` (CPU, eval mode).

    The architecture comes from the tensor shapes (``num_classes`` from ``classifier.weight``)
    and from ``configs.yaml`` beside the file (image size, stride, losses, temperature, weights).
    Without ``configs.yaml`` a warning is logged, the losses are read from the keys present and
    the image size from the position grid (384x128 if it fits, else square), with stride = patch.

    Args:
        path: the ``best.pth`` file.
        state: the already loaded file content (it is read from ``path`` when None).
        image_size, stride_size: used where ``configs.yaml`` is missing or lacks them.

    Raises:
        WeightsError: unreadable or unsafe file, or weights that do not fit the architecture
            (the message lists the missing and unexpected keys).
    """
    path = Path(path)
    obj = safe_torch_load(path) if state is None else state
    if not is_official_state(obj):
        raise WeightsError(f"{path}: not an official IRRA checkpoint (no 'base_model.*' weights)")
    weights = obj["model"] if isinstance(obj.get("model"), Mapping) else obj
    weights = strip_wrapper_prefixes(weights)
    not_tensors = [k for k, v in weights.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise WeightsError(f"{path}: the model state holds non-tensor entries {not_tensors[:5]}")
    weights = {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}
    clip_state = {k[len(_PREFIX) :]: v for k, v in weights.items() if k.startswith(_PREFIX)}
    missing = [_PREFIX + k for k in REQUIRED_CLIP_KEYS if k not in clip_state]
    if missing:
        raise WeightsError(f"{path}: not an IRRA ViT checkpoint; missing {', '.join(missing)}")

    configs_path = path.parent / CONFIGS_FILE
    if configs_path.is_file():
        args = read_configs_yaml(configs_path)
    else:
        args = {}
        logger.warning(
            "%s: no %s beside it; inferring the architecture from the weights (image size from "
            "the position grid, stride = patch size, losses from the heads present)",
            path,
            CONFIGS_FILE,
        )
    rde = "select_ratio" in args or any(k.startswith(_RDE_HEADS) for k in weights)
    if rde:
        weights = _rde_weights(weights, path)
    try:
        config = _official_config(weights, clip_state, args, image_size, stride_size)
        if rde:
            config = dataclasses.replace(
                config,
                loss_names=("bge", "tse"),
                tse_dim=int(weights["visul_emb_layer.fc.weight"].shape[0]),
                select_ratio=float(args.get("select_ratio", 0.3)),
            )
    except (ValueError, TypeError) as err:
        raise WeightsError(f"{path}: {err}") from err
    model = IRRA(config)
    load_state_strict(model, weights, path, tolerated=frozenset({_PREFIX + "logit_scale"}))
    return model.eval()


def _official_config(
    weights: dict[str, torch.Tensor],
    clip_state: dict[str, torch.Tensor],
    args: dict[str, Any],
    image_size: tuple[int, int] | None,
    stride_size: int | None,
) -> IRRAConfig:
    patch = clip_state["visual.conv1.weight"].shape[-1]
    stride = int(args.get("stride_size") or stride_size or patch)
    size = args.get("img_size") or image_size
    if size is None:
        size = _guess_image_size(
            clip_state["visual.positional_embedding"].shape[0] - 1, patch, stride
        )
    clip = infer_clip_config(clip_state, tuple(int(s) for s in size), stride)
    found = clip_state["visual.positional_embedding"].shape[0] - 1
    grid = clip.vision.grid
    if grid[0] * grid[1] != found:
        raise ValueError(
            f"image size {clip.vision.image_size} at stride {stride} gives a {grid} patch grid, "
            f"but the checkpoint has {found} position embeddings; fix img_size/stride_size"
        )
    if "loss_names" in args and "select_ratio" not in args:  # RDE's are not IRRA's names
        loss_names = parse_loss_names(str(args["loss_names"]))
    else:
        loss_names = ("sdm",)
        loss_names += ("mlm",) * ("mlm_head.fc.weight" in weights)
        loss_names += ("id",) * ("classifier.weight" in weights)
    classifier = weights.get("classifier.weight")
    cmt_depth = _count_blocks(weights, "cross_modal_transformer.resblocks.")
    return IRRAConfig(
        clip=clip,
        num_classes=int(classifier.shape[0]) if classifier is not None else 0,
        cmt_depth=cmt_depth or int(args.get("cmt_depth", 4)),
        temperature=float(args.get("temperature", 0.02)),
        loss_names=loss_names,
        mlm_loss_weight=float(args.get("mlm_loss_weight", 1.0)),
        id_loss_weight=float(args.get("id_loss_weight", 1.0)),
    )


def _rde_weights(weights: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The RDE checkpoint's weights without the unused layers; raises if TSE layers are missing."""
    missing = [k for k in _RDE_REQUIRED if k not in weights]
    if missing:
        raise WeightsError(
            f"{path}: an RDE checkpoint (configs.yaml has select_ratio, or some TSE weights are "
            f"present) without its token selection layers: missing {', '.join(missing)}. "
            "Use the run's best.pth, not a checkpoint of another model"
        )
    return {k: v for k, v in weights.items() if not k.startswith(_RDE_UNUSED)}


def _count_blocks(state: Mapping[str, Any], prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})


def _guess_image_size(count: int, patch: int, stride: int) -> tuple[int, int]:
    grid = patch_grid(_DEFAULT_IMAGE_SIZE, patch, stride)
    if grid[0] * grid[1] == count:
        return _DEFAULT_IMAGE_SIZE
    side = math.isqrt(count)
    if side * side == count:
        return ((side - 1) * stride + patch,) * 2
    raise ValueError(
        f"cannot tell the image size from {count} position embeddings without configs.yaml; "
        "pass image_size=(height, width) and stride_size"
    )
