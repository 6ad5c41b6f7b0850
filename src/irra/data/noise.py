"""Noisy correspondences: training pairs whose caption belongs to another pair.

As in RDE's experiments, a share of the training pairs (one pair per caption) is chosen and
their captions are shuffled among them. The corruption is a permutation ``index`` of the pairs:
pair i takes the caption of pair ``index[i]``; it is clean where ``index[i] == i``. The RDE
authors ship theirs as ``noiseindex/{dataset}_{rate}.npy`` (a 1-D integer array of this form).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from irra.fileio import atomic_write_bytes

#: Where a run folder keeps the permutation of its corrupted training pairs.
NOISE_FILE = "noise_index.npy"


class NoiseError(ValueError):
    """Bad noise settings or a noise index that does not fit the dataset."""


def noise_permutation(num_pairs: int, rate: float, seed: int) -> np.ndarray:
    """The permutation that shuffles the captions of ``int(rate * num_pairs)`` random pairs.

    Args:
        num_pairs: N, the training pairs.
        rate: the share of pairs chosen, in [0, 1).
        seed: seeds the choice and the shuffle.

    Returns:
        (N,) int64: pair i takes the caption of pair ``index[i]``. A chosen pair may draw its own
        caption back (then it stays clean).
    """
    check_noise_rate(rate)
    rng = np.random.default_rng(seed)
    index = np.arange(num_pairs, dtype=np.int64)
    chosen = rng.permutation(num_pairs)[: int(rate * num_pairs)]
    index[chosen] = rng.permutation(chosen)
    return index


def check_noise_rate(rate: float) -> None:
    """Raise :class:`NoiseError` unless ``0 <= rate < 1``."""
    if not 0.0 <= rate < 1.0:
        raise NoiseError(f"data.noise_rate must be in [0, 1), got {rate}")


def load_noise_index(path: str | os.PathLike[str], num_pairs: int) -> np.ndarray:
    """Read a noise index file (``.npy``) and check it is a permutation of ``num_pairs`` pairs.

    Raises:
        NoiseError: unreadable, not 1-D integers, another size (both sizes named), or not a
            permutation.
    """
    path = Path(path).expanduser()
    try:
        index = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise NoiseError(f"{path}: cannot read the noise index ({err}); pass a .npy file") from err
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise NoiseError(
            f"{path}: a noise index is a 1-D integer array, got shape {index.shape} of "
            f"{index.dtype}"
        )
    if index.size != num_pairs:
        raise NoiseError(
            f"{path}: the noise index has {index.size} entries but the training split has "
            f"{num_pairs} pairs (captions); use the index file made for this dataset"
        )
    if not np.array_equal(np.sort(index), np.arange(num_pairs)):
        raise NoiseError(f"{path}: the noise index is not a permutation of 0..{num_pairs - 1}")
    return index.astype(np.int64)


def resolve_noise(
    rate: float, index_file: str | None, num_pairs: int, seed: int
) -> np.ndarray | None:
    """The permutation of ``data.noise_index`` or ``data.noise_rate``; None when there is none.

    Raises:
        NoiseError: both are set, the rate is outside [0, 1), or the file does not fit.
    """
    check_noise_rate(rate)
    if index_file:
        if rate:
            raise NoiseError(
                "set data.noise_rate or data.noise_index, not both (the index file fixes the rate)"
            )
        return load_noise_index(index_file, num_pairs)
    if rate == 0:
        return None
    return noise_permutation(num_pairs, rate, seed)


def save_noise_index(index: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write ``index`` as ``.npy`` (loadable as ``data.noise_index``), atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(index, dtype=np.int64), allow_pickle=False)
    atomic_write_bytes(Path(path), buffer.getvalue())
