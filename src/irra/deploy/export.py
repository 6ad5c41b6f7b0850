"""Writing an export directory: the image and text encoders as ONNX or TorchScript files.

Only the retrieval embeddings are exported (``IRRA.encode_image`` / ``IRRA.encode_text``: the global
features, or for RDE both embeddings joined so that their dot product is RDE's score); the
training-only heads (cross-modal encoder, MLM head, ID classifier) are dropped. The batch size is
dynamic; the image size and the context length are fixed by the model. ONNX files are written by
PyTorch's TorchScript-based exporter (opset 17): it needs no extra package, and the traced graph
of these two encoders is plain (matmuls, LayerNorm, softmax attention, argmax + gather).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

import irra
from irra.bpe import default_bpe_path
from irra.data.transforms import CLIP_MEAN, CLIP_STD
from irra.fileio import atomic_write_text
from irra.inference.bundle import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    VOCAB_FILE,
    ExportError,
    check_format,
    encoder_files,
    file_sha256,
    is_export_dir,
)
from irra.inference.torch_encoder import model_fingerprint
from irra.model.irra import IRRA, join_parts

logger = logging.getLogger(__name__)

#: ONNX opset of exported files (ONNX Runtime 1.14 and later run it).
ONNX_OPSET = 17
_EXAMPLE_BATCH = 2


class ImageEncoder(nn.Module):
    """``IRRA.encode_image`` as a module: images (B, 3, H, W) float32 -> (B, D) float32.

    With RDE's token selection heads: (B, D + E), the joined unit embeddings (``join_parts``).
    """

    def __init__(self, model: IRRA) -> None:
        super().__init__()
        self.visual = model.base_model.visual
        self.tse = model.visul_emb_layer if model.has_tse else None

    def forward(self, images: Tensor) -> Tensor:
        if self.tse is None:
            return self.visual(images)[:, 0].float()
        tokens, attention = self.visual.forward_with_attention(images)
        return join_parts(tokens[:, 0], self.tse(tokens, attention))


class TextEncoder(nn.Module):
    """``IRRA.encode_text`` as a module: ids (B, L) int64 -> (B, D) float32 (EOT token).

    Holds only the text tower's parameters (a traced module saves every parameter it holds).
    """

    def __init__(self, model: IRRA) -> None:
        super().__init__()
        clip = model.base_model
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.tse = model.texual_emb_layer if model.has_tse else None

    def forward(self, ids: Tensor) -> Tensor:
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        if self.tse is None:
            x = self.transformer(x)
        else:
            x, attention = self.transformer.forward_with_attention(x, ids.argmax(dim=-1))
        tokens = self.ln_final(x) @ self.text_projection  # (B, L, D)
        # Gather the end-of-text token (the largest id) of every row.
        index = ids.argmax(dim=-1)[:, None, None].expand(-1, 1, tokens.shape[-1])
        global_feats = tokens.gather(1, index)[:, 0].float()
        if self.tse is None:
            return global_feats
        return join_parts(global_feats, self.tse(tokens, ids, attention))


def example_inputs(model: IRRA, batch: int = _EXAMPLE_BATCH) -> tuple[Tensor, Tensor]:
    """Inputs to trace with: images (B, 3, H, W) and ids (B, L) with EOT at varied positions."""
    height, width = model.config.clip.vision.image_size
    length = model.config.clip.text.context_length
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, height, width, generator=generator)
    ids = torch.zeros(batch, length, dtype=torch.long)
    for row in range(batch):
        end = 2 + row % max(1, length - 2)
        ids[row, :end] = torch.randint(1, 49405, (end,), generator=generator)
        ids[row, end - 1] = model.config.clip.text.vocab_size - 1
    return images, ids


def _write_onnx(module: nn.Module, example: Tensor, path: Path, input_name: str) -> None:
    with warnings.catch_warnings():
        # The legacy exporter is deprecated in favour of torch.export (which needs onnxscript);
        # the tracer warns about the image-size check, a constant for a fixed-size model.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*advanced indexing.*")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            input_names=[input_name],
            output_names=["features"],
            dynamic_axes={input_name: {0: "batch"}, "features": {0: "batch"}},
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
        )


def _write_torchscript(module: nn.Module, example: Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.trace deprecation
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(module, (example,), check_trace=False)
    traced.save(str(path))


def export_model(
    model: IRRA,
    out: str | os.PathLike[str],
    fmt: str = "onnx",
    *,
    source: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Export the two encoders of ``model`` to ``out`` (see :mod:`irra.inference.bundle`).

    The directory is written under a temporary name beside ``out`` and renamed when complete,
    so an interrupted export leaves no half-written directory.

    Args:
        model: the IRRA model (any device; exported from a float32 CPU copy in eval mode).
        out: the export directory to create.
        fmt: ``onnx`` or ``torchscript``.
        source: where the model was read from (recorded in the manifest).
        overwrite: replace ``out`` if it is an earlier export.

    Returns:
        ``out`` as a Path.

    Raises:
        ExportError: unknown format, or ``out`` exists (and is not an export to overwrite).
    """
    fmt = check_format(fmt)
    out = Path(out)
    if out.exists() and not (overwrite and is_export_dir(out)):
        hint = "pass --overwrite to replace it" if is_export_dir(out) else "choose another --out"
        raise ExportError(f"{out}: already exists; {hint}")
    fingerprint = model_fingerprint(model)  # of the model as given, as an index records it
    model = _cpu_float_copy(model)
    images, ids = example_inputs(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        image_file, text_file = encoder_files(fmt)
        with torch.no_grad():
            for module, example, name, input_name in (
                (ImageEncoder(model).eval(), images, image_file, "images"),
                (TextEncoder(model).eval(), ids, text_file, "ids"),
            ):
                if fmt == "onnx":
                    _write_onnx(module, example, tmp / name, input_name)
                else:
                    _write_torchscript(module, example, tmp / name)
                logger.info("wrote %s (%.1f MB)", name, (tmp / name).stat().st_size / 1e6)
        shutil.copyfile(default_bpe_path(), tmp / VOCAB_FILE)
        config = model.config
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "irra_version": irra.__version__,
            "export_format": fmt,
            "onnx_opset": ONNX_OPSET if fmt == "onnx" else None,
            "image_size": list(config.clip.vision.image_size),
            "mean": list(CLIP_MEAN),
            "std": list(CLIP_STD),
            "context_length": config.clip.text.context_length,
            "embed_dim": model.embed_dim,
            "inputs": {
                "images": "float32 (B, 3, H, W), RGB, resized bicubic, scaled to [0, 1], "
                "(x - mean) / std",
                "ids": "int64 (B, L): SOT + CLIP BPE ids + EOT, zero padded (irra.bpe.token_ids)",
            },
            "outputs": {"features": _features_doc(model)},
            "model": {
                "fingerprint": fingerprint,
                "source": source,
                "config": config.to_dict(),
            },
            "files": {
                name: file_sha256(tmp / name) for name in (image_file, text_file, VOCAB_FILE)
            },
        }
        atomic_write_text(tmp / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("exported %s encoders of %s to %s", fmt, source or "the model", out)
    return out


def _cpu_float_copy(model: IRRA) -> IRRA:
    """A float32 CPU copy of ``model`` in eval mode (the caller's model is left untouched)."""
    return copy.deepcopy(model).float().cpu().eval()


def _replace_dir(new: Path, out: Path) -> None:
    """Move the finished directory ``new`` to ``out``, replacing an earlier export there."""
    os.chmod(new, 0o755)  # mkdtemp made it private; an export is meant to be shared
    if not out.exists():
        os.replace(new, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)
    os.replace(new, out)
    shutil.rmtree(old, ignore_errors=True)


def _features_doc(model: IRRA) -> str:
    if model.has_tse:
        return (
            "float32 (B, D + E): RDE's unit global and token selection embeddings joined and "
            "scaled by 1/sqrt(2) (norm 1; their dot product is RDE's score)"
        )
    return "float32 (B, D) global features, not normalised"
