"""Test-suite settings: tests marked ``cuda`` run only where a CUDA device is present; the
small SynthPedes fixture the training tests share.

Every other test runs on the CPU (each comparison with a CPU oracle names its device), so the
suite gives the same results with and without a GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from irra.data.synth import generate_synthpedes


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SynthPedes (20 ids x 2 images x 2 captions) in <root>/CUHK-PEDES, per module."""
    root = tmp_path_factory.mktemp("synth")
    generate_synthpedes(
        root / "CUHK-PEDES",
        num_ids=20,
        images_per_id=2,
        captions_per_image=2,
        image_size=(64, 32),
        split_fractions=(0.6, 0.2, 0.2),
    )
    return root
