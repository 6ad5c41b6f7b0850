"""Progress bars (tqdm) for the command line; library code takes these as callbacks.

No PyTorch here: ``irra index --engine onnx`` draws these without importing it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tqdm.auto import tqdm


def bar(iterable: Iterable, desc: str = "", total: int | None = None) -> Iterable:
    """Wrap ``iterable`` in a progress bar (hidden when stderr is not a terminal and long)."""
    return tqdm(iterable, desc=desc, total=total or None, leave=False, dynamic_ncols=True)


def counter(desc: str) -> Callable[[int, int], None]:
    """A ``callback(done, total)`` that drives a bar, closed when ``done`` reaches ``total``."""
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        pbar = state.get("bar")
        if pbar is None:
            pbar = state["bar"] = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
        pbar.update(done - pbar.n)
        if done >= total:
            pbar.close()
            state.pop("bar")

    return update
