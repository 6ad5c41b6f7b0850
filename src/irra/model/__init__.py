"""The IRRA model: CLIP towers, IRRA heads, and all weight I/O.

Example:
    >>> from irra.model import build_model, load_model, save_model
    >>> model = build_model(pretrained="ViT-B-16.pt", num_classes=11003)  # doctest: +SKIP
    >>> save_model(model, "runs/exp/model")  # doctest: +SKIP
    >>> model = load_model("runs/exp/model")  # doctest: +SKIP
"""

from irra.model.checkpoint_io import WeightsError, load_irra_checkpoint, save_model
from irra.model.clip import (
    CLIP,
    CLIP_PRESETS,
    CLIPConfig,
    TextConfig,
    VisionConfig,
    clip_config,
)
from irra.model.irra import IRRA, LOSS_NAMES, IRRAConfig, IRRAOutput, parse_loss_names
from irra.model.official import load_official_irra
from irra.model.pretrained import (
    build_model,
    infer_clip_config,
    load_model,
    load_openai_state_dict,
    resize_pos_embed,
)

__all__ = [
    "CLIP",
    "CLIP_PRESETS",
    "IRRA",
    "LOSS_NAMES",
    "CLIPConfig",
    "IRRAConfig",
    "IRRAOutput",
    "TextConfig",
    "VisionConfig",
    "WeightsError",
    "build_model",
    "clip_config",
    "infer_clip_config",
    "load_irra_checkpoint",
    "load_model",
    "load_official_irra",
    "load_openai_state_dict",
    "parse_loss_names",
    "resize_pos_embed",
    "save_model",
]
