"""Safe reading of weight files, and irra's own model format (safetensors + JSON).

Nothing here unpickles arbitrary objects: ``torch.load`` always runs with ``weights_only=True``,
so a file that would run code when unpickled is refused before any of it runs.

irra's model format is either

* a directory holding ``model.safetensors`` and ``irra.json`` (written when the path does not end
  in ``.safetensors``), or
* a single ``.safetensors`` file carrying the same JSON in its header metadata.

The JSON holds the :class:`~irra.model.irra.IRRAConfig`, a format version and free metadata.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

import irra
from irra.fileio import atomic_write_bytes, atomic_write_text
from irra.model.irra import IRRA, IRRAConfig

logger = logging.getLogger(__name__)

FORMAT = "irra-model"
FORMAT_VERSION = 1
TRAINING_FORMAT = "irra-training-checkpoint"  # written by irra.engine.checkpoint
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "irra.json"
_METADATA_KEY = "irra"


class WeightsError(RuntimeError):
    """A weight file cannot be used; the message names the file, the reason and the fix."""


def safe_torch_load(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with clear errors.

    Raises:
        WeightsError: missing, truncated or corrupted file, or one holding objects other than
            tensors and plain data (loading it could run code; it is refused and nothing runs).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsError(
            f"{path}: refused: the file holds Python objects other than tensors and plain data, "
            f"and unpickling it could run code ({_first_line(err)}). Load only files from "
            "sources you trust, and re-save them as a plain state dict."
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as err:
        raise WeightsError(
            f"{path}: cannot read: truncated, corrupted or not a PyTorch file ({_first_line(err)})"
        ) from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def is_torchscript_archive(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a zip archive holding TorchScript code (like OpenAI's ``*.pt``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and header metadata of a safetensors file (on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (safetensors.SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise WeightsError(
            f"{path}: cannot read: truncated, corrupted or not a safetensors file "
            f"({_first_line(err)})"
        ) from err
    return tensors, metadata


def save_model(
    model: IRRA, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` in irra's format, atomically.

    Args:
        model: the model (any device; weights are written as they are, from CPU copies).
        path: a ``*.safetensors`` file, or a directory (created) for ``model.safetensors`` +
            ``irra.json``.
        metadata: JSON-serialisable extras stored beside the config (e.g. dataset, epoch).

    Returns:
        The path written (the file, or the directory).
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "irra_version": irra.__version__,
        "config": model.config.to_dict(),
        "metadata": dict(metadata or {}),
    }
    text = json.dumps(payload, indent=2, sort_keys=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = safetensors.torch.save(tensors, metadata={_METADATA_KEY: text})
    if path.suffix == ".safetensors":
        atomic_write_bytes(path, blob)
    else:
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path / MODEL_FILE, blob)
        atomic_write_text(path / CONFIG_FILE, text + "\n")
    logger.info("saved IRRA model to %s", path)
    return path


def is_irra_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an irra model directory or an irra ``.safetensors`` file."""
    path = Path(path)
    if path.is_dir():
        return (path / CONFIG_FILE).is_file()
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as handle:
            return _METADATA_KEY in (handle.metadata() or {})
    except (safetensors.SafetensorError, OSError, ValueError, RuntimeError):
        return False


def load_irra_checkpoint(path: str | os.PathLike[str]) -> IRRA:
    """Read a model written by :func:`save_model` (on CPU, in eval mode).

    Raises:
        WeightsError: unreadable file, unknown format, a newer format version, or weights that
            do not match the stored config.
    """
    path = Path(path)
    if path.is_dir():
        config_path, weights_path = path / CONFIG_FILE, path / MODEL_FILE
        if not config_path.is_file():
            raise WeightsError(f"{path}: not an irra model directory (no {CONFIG_FILE})")
        try:
            text = config_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise WeightsError(f"{config_path}: cannot read ({err})") from err
        tensors, _ = read_safetensors(weights_path)
        source = config_path
    else:
        tensors, header = read_safetensors(path)
        if _METADATA_KEY not in header:
            raise WeightsError(
                f"{path}: a safetensors file without irra metadata; if it holds OpenAI CLIP "
                "weights, use build_model(pretrained=...)"
            )
        text, source, weights_path = header[_METADATA_KEY], path, path
    config = _parse_payload(text, source)
    model = IRRA(config)
    load_state_strict(model, tensors, weights_path)
    return model.eval()


def _parse_payload(text: str, source: Path) -> IRRAConfig:
    try:
        payload = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise WeightsError(
            f"{source}: the irra model description is not valid JSON ({err})"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{source}: not an irra model description (format != '{FORMAT}')")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise WeightsError(
            f"{source}: model format version {version!r} (written by irra "
            f"{payload.get('irra_version', '?')}); this irra {irra.__version__} reads versions "
            f"up to {FORMAT_VERSION}: upgrade irra to load it"
        )
    try:
        return IRRAConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise WeightsError(f"{source}: invalid model config ({err})") from err


def strip_wrapper_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes from all keys."""
    state = dict(state)
    for prefix in ("module.", "_orig_mod.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def is_training_checkpoint(obj: Any) -> bool:
    """Whether a loaded object is an irra training checkpoint (``last.pt`` / ``best.pt``)."""
    return isinstance(obj, Mapping) and obj.get("format") == TRAINING_FORMAT


def model_from_training_checkpoint(data: Mapping[str, Any], source: str | os.PathLike[str]) -> IRRA:
    """The model of an irra training checkpoint: ``model`` (state dict) + ``model_config``.

    ``model_config`` is :meth:`IRRAConfig.to_dict` of the trained model.
    """
    config_dict = data.get("model_config")
    if not isinstance(config_dict, Mapping):
        raise WeightsError(
            f"{source}: this training checkpoint does not record the model architecture "
            "('model_config'); rebuild the model from the run's config and load_state_dict "
            "its 'model' entry"
        )
    try:
        config = IRRAConfig.from_dict(dict(config_dict))
    except (KeyError, TypeError, ValueError) as err:
        raise WeightsError(f"{source}: invalid 'model_config' ({err})") from err
    model = IRRA(config)
    load_state_strict(model, strip_wrapper_prefixes(data["model"]), source)
    return model.eval()


def load_state_strict(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    source: str | os.PathLike[str],
    *,
    tolerated: frozenset[str] = frozenset(),
) -> None:
    """``load_state_dict`` that names the file and the offending keys on any mismatch.

    Keys in ``tolerated`` may be missing or extra without error. Shapes must match.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state) - tolerated)
    unexpected = sorted(set(state) - set(own) - tolerated)
    wrong = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or wrong:
        parts = [
            f"{label} ({len(keys)}): {', '.join(keys[:12])}{' ...' if len(keys) > 12 else ''}"
            for label, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", wrong),
            )
            if keys
        ]
        raise WeightsError(
            f"{source}: weights do not match the model architecture; " + "; ".join(parts)
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
