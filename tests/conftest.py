"""Test-suite settings: tests marked ``cuda`` run only where a CUDA device is present.

Every other test runs on the CPU (each comparison with a CPU oracle names its device), so the
suite gives the same results with and without a GPU.
"""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
