"""Training checkpoints (``last.pt`` / ``best.pt``): everything needed to resume exactly.

A checkpoint is a ``torch.save`` archive holding only tensors, numbers, strings, lists and dicts, so
it loads with ``torch.load(weights_only=True)``: loading never runs code from the file. Writes go
through a temporary file and a rename, so a run killed mid-write leaves the previous checkpoint.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from irra.fileio import atomic_write_bytes

FORMAT = "irra-training-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read; the message names the file and the reason."""


def rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU and every CUDA device)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_bytes(payload: dict[str, Any]) -> bytes:
    """The content of a checkpoint file holding ``payload`` (plus format and version fields)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buffer)
    return buffer.getvalue()


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` (plus format and version fields) to ``path``."""
    atomic_write_bytes(path, checkpoint_bytes(payload))


def is_training_checkpoint(obj: Any) -> bool:
    """Whether an already loaded object is an irra training checkpoint."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, safely.

    Raises:
        CheckpointError: missing, truncated, corrupted, unsafe, or of an unknown format or version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused: the file holds objects other than tensors and plain data, and "
            f"loading it could run code ({err}). Only load checkpoints from sources you trust, "
            "and convert them to a state dict first."
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: truncated or corrupted checkpoint ({err})") from err
    if not is_training_checkpoint(data):
        raise CheckpointError(f"{path}: not an irra training checkpoint (no '{FORMAT}' marker)")
    version = data.get("version")
    if version != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version}, this irra reads version {VERSION}; "
            "use the irra release that wrote it"
        )
    return data
