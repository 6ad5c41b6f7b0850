"""Wall-clock timing with warm-up, repeats and medians (device-synchronised)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the queued work of ``device`` (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed repeat; ``median`` is what the tables report."""

    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """(max - min) / median: how much the repeats drifted."""
        return (max(self.seconds) - min(self.seconds)) / self.median


def time_call(
    fn: Callable[[], object], device: torch.device, *, warmup: int = 1, repeat: int = 3
) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeat`` times timed.

    Args:
        fn: the work to time (no arguments).
        device: synchronised before and after each timed call.
        warmup, repeat: untimed and timed calls (repeat >= 1).

    Returns:
        the per-call seconds of the timed calls.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return Timing(tuple(seconds))
