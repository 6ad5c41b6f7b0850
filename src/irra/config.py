"""Typed experiment configuration: dataclasses, YAML files that inherit, dotted overrides.

A config file is YAML with the sections below. ``base: other.yaml`` (a path relative to the file)
makes it inherit everything from ``other.yaml``; the file's own keys override the base, section by
section. Command-line overrides use dotted keys, values parsed as YAML::

    irra train --config configs/cuhk_pedes.yaml train.epochs=1 data.batch_size=32

Every run writes the fully resolved config to ``<run>/config.yaml``; that file loads back into the
same :class:`Config`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from irra.fileio import atomic_write_text


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key and the fix."""


@dataclass
class ModelConfig:
    """Architecture of the IRRA model.

    ``arch`` is a preset name ("ViT-B/16", "ViT-B/32", "ViT-L/14", "tiny") or "custom", in which
    case the explicit sizes below are used. With ``pretrained`` (a path to OpenAI CLIP weights, or
    "openai" to download them where online) the sizes are read from the weights instead.
    """

    arch: str = "ViT-B/16"
    pretrained: str | None = None
    image_size: tuple[int, int] = (384, 128)
    stride_size: int = 16
    cmt_depth: int = 4
    # Sizes used when arch == "custom".
    embed_dim: int = 512
    patch_size: int = 16
    vision_width: int = 768
    vision_layers: int = 12
    text_width: int = 512
    text_layers: int = 12
    context_length: int = 77
    stem_channels: tuple[int, ...] = ()  # a convolutional stem before the patch embedding
    vision_heads: int | None = None  # None: one head per 64 channels, as in CLIP
    text_heads: int | None = None
    # "full": an embedding row (and MLM class) for each of the tokenizer's 49,408 ids; "train"
    # (custom arch): only for the ids in the training captions, others share an "unknown" row.
    vocab: str = "full"
    # The method (irra.methods): "irra" or "rde". RDE's token selection heads: embedding width
    # and the share of tokens selected.
    method: str = "irra"
    tse_dim: int = 1024
    select_ratio: float = 0.3


@dataclass
class LossConfig:
    """Which objectives train the model and how they are weighted (total = sum)."""

    names: tuple[str, ...] = ("sdm", "mlm", "id")  # a subset of the method's losses
    temperature: float = 0.02  # SDM / ITC (logit scale 1 / temperature); RDE: TAL's tau
    mlm_weight: float = 1.0
    id_weight: float = 1.0
    # With several processes: True computes every loss on the global batch (features gathered
    # from all processes); False on each process's part only, as the reference code does.
    global_batch: bool = True
    # The margin of RDE's triplet alignment loss (its temperature is ``temperature``).
    margin: float = 0.1


@dataclass
class DataConfig:
    """Dataset, sampling, augmentation and masking."""

    dataset: str = "CUHK-PEDES"
    root: str = "data"
    text_length: int = 77
    batch_size: int = 64
    eval_batch_size: int = 256
    num_workers: int = 4
    sampler: str = "random"  # "random" or "identity"
    num_instance: int = 4  # K of the identity sampler (P = batch_size // K)
    augment: bool = True
    # Keep the training images in memory after their first load, in each loader worker (the
    # transformed tensors when augment is off, else the decoded images): for small datasets.
    cache_images: bool = False
    mask_prob: float = 0.15
    # Official IRRA behaviour: the masking mutates the caption in place, so the global text pass
    # (SDM, ID) also sees the masked caption. False gives it the clean caption instead.
    masked_global_text: bool = True
    on_bad_entry: str = "fail"  # "fail" or "skip"
    check_images: bool = True
    # Noisy correspondences: the captions of this share of the training pairs are shuffled
    # among them (seeded by noise_seed), or as the permutation in noise_index (the RDE
    # authors' noiseindex/{dataset}_{rate}.npy files).
    noise_rate: float = 0.0
    noise_index: str | None = None
    noise_seed: int = 1


@dataclass
class RDEConfig:
    """Settings of the RDE method's clean-sample division (used when model.method is rde)."""

    # The authors' published runs train in eval mode: their division pass switches the model to
    # eval mode and (in the code of the paper) never back. True reproduces that (batch norm of
    # the TSE heads then uses its initial statistics); False restores train mode after it.
    eval_mode_training: bool = True
    # The first epoch (from 1) trained with the division; the epochs before it weigh every pair
    # 1. The authors divide from the first epoch, when pretrained CLIP already ranks matching
    # pairs above shuffled ones; a model from random weights has no such signal yet.
    division_start_epoch: int = 1
    # EM of the two-component Gaussian mixtures (the authors use 100, 1e-4, 1e-6 above 40%
    # noise and on RSTPReid).
    gmm_max_iter: int = 10
    gmm_tol: float = 1e-2
    gmm_reg_covar: float = 5e-4


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (the IRRA reference recipe by default)."""

    optimizer: str = "adam"  # "adam", "adamw" or "sgd"
    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-3  # the reference's Adam uses eps=1e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 4e-5
    weight_decay_bias: float = 0.0
    lr_factor: float = 5.0  # cross-modal modules, MLM head, classifier
    bias_lr_factor: float = 2.0
    warmup_epochs: int = 5
    warmup_factor: float = 0.1
    schedule: str = "cosine"  # "cosine", "linear" or "constant"
    target_lr: float = 0.0
    grad_clip: float | None = None
    fused: bool | None = None  # None: fused on CUDA, foreach on CPU
    # RDE's token selection heads (visul_emb_layer, texual_emb_layer): this learning rate for
    # all their parameters (the authors: 1e-3); None applies the rules above to them too.
    tse_lr: float | None = None


@dataclass
class TrainConfig:
    """The training loop."""

    epochs: int = 60
    seed: int = 1
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    precision: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU), "fp32", "bf16", "fp16"
    eval_every: int = 1
    select_on: str = "val"  # "val" (test evaluated once at the end) or "test" (reference protocol)
    select_metric: str = "R1"
    log_every: int = 50
    tensorboard: bool = True
    report: bool = True
    # torch.compile the image and text towers (irra.engine.compilation; see docs/performance.md)
    compile: bool = False
    # CPU threads of each training process. None: torch's default (OMP_NUM_THREADS or the
    # cores), capped on CPU at cores / processes on this machine when several processes train.
    threads: int | None = None


@dataclass
class Config:
    """A whole experiment."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rde: RDEConfig = field(default_factory=RDEConfig)

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML- and JSON-friendly dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> Config:
        """Build a config from a (possibly partial) nested dict; unknown keys raise."""
        return _build(cls, data, source, prefix="")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check ``value`` against the type hint ``hint`` and convert lists to tuples."""
    origin = get_origin(hint)
    args = get_args(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key, source) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{source}: '{key}' must have {len(args)} items, got {value!r}")
        return tuple(_coerce(v, a, key, source) for v, a in zip(value, args, strict=True))
    if args and type(None) in args:  # Optional[...]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, source)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(
            f"{source}: '{key}' must be of type {hint.__name__}, got {value!r} "
            f"({type(value).__name__})"
        )
    return value


def _build(cls: type, data: dict[str, Any], source: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: section '{prefix.rstrip('.')}' must be a mapping")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys here: {', '.join(prefix + n for n in names)}"
        )
    kwargs: dict[str, Any] = {}
    for name in names:
        if name not in data:
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, data[name] or {}, source, prefix + name + ".")
        else:
            kwargs[name] = _coerce(data[name], hint, prefix + name, source)
    return cls(**kwargs)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml_tree(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"config inheritance loops: {chain}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections")
    base = data.pop("base", None)
    if base is None:
        return data
    return _merge(_read_yaml_tree(path.parent / base, (*seen, path)), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"train.epochs=1"`` into ``(["train", "epochs"], 1)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"override '{text}': the key must be dotted, like train.epochs=1")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override '{text}': value is not valid YAML: {err}") from err
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return ``data`` with dotted ``key=value`` overrides applied."""
    out = _merge({}, data)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
        node[parts[-1]] = value
    return out


def load_config(path: str | os.PathLike[str] | None, overrides: list[str] | None = None) -> Config:
    """Load a config file (with inheritance) and apply dotted overrides.

    Args:
        path: YAML file, the name of a config shipped with irra ("cuhk_pedes", "synth", ...),
            or None for the defaults.
        overrides: strings like ``"train.epochs=1"``.

    Returns:
        The validated :class:`Config`.

    Example:
        >>> cfg = load_config(None, ["train.epochs=2"])
        >>> cfg.train.epochs
        2
    """
    resolved = resolve_config_path(path) if path is not None else None
    data = _read_yaml_tree(resolved) if resolved is not None else {}
    data = apply_overrides(data, list(overrides or []))
    source = str(resolved) if resolved is not None else "<defaults>"
    return Config.from_dict(data, source=source)


def packaged_configs() -> dict[str, Path]:
    """The configs shipped with irra, by name (file name without ``.yaml``)."""
    folder = Path(__file__).with_name("configs")
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve_config_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if it is a file, else the shipped config of that name (``synth``, ``synth.yaml``).

    Raises:
        ConfigError: neither exists; the message lists the shipped configs.
    """
    candidate = Path(path).expanduser()
    if candidate.is_file():
        return candidate
    shipped = packaged_configs()
    name = candidate.name.removesuffix(".yaml")
    if name in shipped and candidate.parent in (Path("."), Path("configs")):
        return shipped[name]
    raise ConfigError(
        f"config file not found: {candidate}; pass a path to a YAML file or the name of a "
        f"shipped config ({', '.join(shipped)})"
    )


def save_config(config: Config, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML, atomically."""
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    atomic_write_text(Path(path), text)
