"""Where a generator writes: reuse a finished output, refuse to clobber a foreign folder, and
switch a fully written temporary folder into place in one rename."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


def existing_params(out: Path, meta_file: str, generator: str) -> dict[str, Any] | None:
    """Parameters recorded in ``out/meta_file`` by ``generator``, or None if it is not there."""
    try:
        meta = json.loads((out / meta_file).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("generator") != generator:
        return None
    return meta.get("params")


def check_target(
    out: Path,
    params: dict[str, Any],
    overwrite: bool,
    *,
    meta_file: str,
    generator: str,
    complete_file: str,
    what: str,
) -> bool:
    """True when ``out`` already holds this exact output (reuse it); raises if it is in the way.

    Args:
        out: the output folder.
        params: the parameters of the output about to be written.
        overwrite: replace an output of the same generator made with other parameters.
        meta_file: file (in ``out``) that records ``{"generator": ..., "params": ...}``.
        generator: the generator's name in ``meta_file``.
        complete_file: file written last, whose presence marks the output complete.
        what: how to name the output in messages ("a SynthPedes dataset").

    Raises:
        FileExistsError: ``out`` is a file, a foreign non-empty folder, or (without
            ``overwrite``) an output made with other parameters.
    """
    if not out.exists():
        return False
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another output path")
    if not any(out.iterdir()):
        return False
    existing = existing_params(out, meta_file, generator)
    if existing == params and (out / complete_file).is_file() and not overwrite:
        return True
    if existing is None:
        raise FileExistsError(
            f"{out} is not empty and is not {what} (no {meta_file} from {generator}); choose "
            "an empty or new folder (it is never deleted for you)"
        )
    if not overwrite:
        raise FileExistsError(
            f"{out} holds {what} made with other parameters ({existing}); pass overwrite=True "
            "(CLI: --overwrite) to replace it, or choose another folder"
        )
    return False


def partial_dir(out: Path) -> Path:
    """A fresh hidden sibling of ``out`` to build the output in (removed first if left over)."""
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def move_into_place(tmp: Path, out: Path) -> None:
    """Replace ``out`` (absent, empty or an older output) with the finished folder ``tmp``."""
    if out.exists() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
