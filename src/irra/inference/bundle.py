"""The export directory written by ``irra export`` and how it is checked before use.

Layout (``FORMAT`` is ``onnx`` or ``torchscript``)::

    EXPORT/irra_export.json            format, input size, normalisation, model identity, files
    EXPORT/image_encoder.onnx|.pt      images (B, 3, H, W) float32 -> features (B, D) float32
    EXPORT/text_encoder.onnx|.pt       ids (B, L) int64 -> features (B, D) float32
    EXPORT/bpe_simple_vocab_16e6.txt.gz  the tokenizer's BPE merges (CLIP's, MIT)

Features are the model's global features, not normalised (equal to ``IRRA.encode_image`` and
``IRRA.encode_text``). ``fingerprint`` is :func:`irra.inference.model_fingerprint` of the model
that was exported, so an index built with it, by any engine, accepts the export and vice versa.
This module does not import PyTorch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "irra_export.json"
FORMAT = "irra-export"
FORMAT_VERSION = 1
#: Export format -> suffix of its encoder files.
EXPORT_FORMATS: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt"}
IMAGE_ENCODER = "image_encoder"
TEXT_ENCODER = "text_encoder"
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"


class ExportError(ValueError):
    """An export directory that cannot be used; the message names the file and the fix."""


def check_format(name: str) -> str:
    """``name`` if it is an export format, else ExportError listing the valid ones."""
    if name not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {name!r}; valid: {', '.join(EXPORT_FORMATS)}")
    return name


def encoder_files(fmt: str) -> tuple[str, str]:
    """File names of the (image, text) encoders of an export in format ``fmt``."""
    suffix = EXPORT_FORMATS[check_format(fmt)]
    return IMAGE_ENCODER + suffix, TEXT_ENCODER + suffix


@dataclass(frozen=True)
class ExportBundle:
    """A checked export directory (see the module docstring for its layout)."""

    directory: Path
    format: str
    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    context_length: int
    embed_dim: int
    fingerprint: str
    model_config: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    @property
    def image_encoder(self) -> Path:
        """Path of the image encoder file."""
        return self.directory / encoder_files(self.format)[0]

    @property
    def text_encoder(self) -> Path:
        """Path of the text encoder file."""
        return self.directory / encoder_files(self.format)[1]

    @property
    def vocab(self) -> Path:
        """Path of the BPE merges file."""
        return self.directory / VOCAB_FILE


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_export_dir(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a directory holding an ``irra_export.json``."""
    return (Path(path) / MANIFEST_NAME).is_file()


def read_bundle(directory: str | os.PathLike[str], *, verify: bool = True) -> ExportBundle:
    """Read and check an export directory.

    Args:
        directory: written by ``irra export`` / :func:`irra.deploy.export_model`.
        verify: also compare every file's sha256 with the one recorded at export time (catches
            a truncated copy or an encoder file taken from another export).

    Raises:
        ExportError: a missing or malformed manifest, a missing file, or a file whose content
            is not the one exported; the message names the file and the fix.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST_NAME
    redo = f"export the model again with `irra export --checkpoint CKPT --out {directory}`"
    if not directory.is_dir():
        raise ExportError(f"{directory}: no such export directory; {redo}")
    if not manifest_path.is_file():
        raise ExportError(f"{manifest_path}: missing, so {directory} is not an irra export; {redo}")
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"'format' is {data.get('format')!r}, expected {FORMAT!r}")
        if int(data["format_version"]) > FORMAT_VERSION:
            raise ValueError(
                f"format_version {data['format_version']} is newer than this irra reads "
                f"({FORMAT_VERSION}); upgrade irra"
            )
        bundle = ExportBundle(
            directory=directory,
            format=check_format(data["export_format"]),
            image_size=_ints(data["image_size"], 2),
            mean=_floats(data["mean"]),
            std=_floats(data["std"]),
            context_length=int(data["context_length"]),
            embed_dim=int(data["embed_dim"]),
            fingerprint=str(data["model"]["fingerprint"]),
            model_config=dict(data["model"]["config"]),
            files={str(k): str(v) for k, v in data["files"].items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ExportError(f"{manifest_path}: malformed ({err!r}); {redo}") from err
    required = (*encoder_files(bundle.format), VOCAB_FILE)
    for name in required:
        path = directory / name
        if not path.is_file():
            raise ExportError(f"{path}: missing from the export directory; {redo}")
        if name not in bundle.files:
            raise ExportError(f"{manifest_path}: records no sha256 for {name}; {redo}")
        if verify and file_sha256(path) != bundle.files[name]:
            raise ExportError(
                f"{path}: its content differs from the file exported with {manifest_path} "
                f"(sha256 mismatch: truncated, or copied from another export); {redo}"
            )
    return bundle


def _ints(values: Any, count: int) -> tuple[int, ...]:
    out = tuple(int(v) for v in values)
    if len(out) != count:
        raise ValueError(f"expected {count} integers, got {values!r}")
    return out


def _floats(values: Any) -> tuple[float, float, float]:
    out = tuple(float(v) for v in values)
    if len(out) != 3:
        raise ValueError(f"expected 3 channel values, got {values!r}")
    return out  # type: ignore[return-value]
