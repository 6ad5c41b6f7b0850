"""CPU threads per training process: several processes on one machine share its cores.

``torchrun`` leaves ``OMP_NUM_THREADS`` as the shell exported it, so two processes started with
``OMP_NUM_THREADS=2`` on a 2-core machine run 4 compute threads that spin against each other (one
epoch of the demo took 9.3x as long as in one process; capped, 0.99x: README, Distributed
training). On CPU each process therefore takes at
most its share of the cores, unless ``train.threads`` names a number.
"""

from __future__ import annotations

import logging
import os

import torch

logger = logging.getLogger(__name__)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_processes() -> int:
    """Training processes on this machine: ``LOCAL_WORLD_SIZE`` as set by ``torchrun`` (else 1)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def threads_per_process(cores: int, processes: int) -> int:
    """The cores shared evenly over ``processes`` (at least 1 each)."""
    return max(1, cores // max(1, processes))


def choose_threads(
    requested: int | None, device_type: str, *, current: int, cores: int, processes: int
) -> int:
    """The number of CPU threads a training process should use.

    Args:
        requested: ``train.threads`` (None: choose).
        device_type: ``"cpu"`` or ``"cuda"``; on CUDA the compute is on the GPU and the current
            number is kept.
        current: the threads torch would use now (``OMP_NUM_THREADS`` or the core count).
        cores: the machine's usable cores.
        processes: training processes on this machine.

    Returns:
        ``requested`` when given; on CPU with several processes, ``current`` capped at
        ``cores // processes``; else ``current``.
    """
    if requested:
        return requested
    if device_type == "cpu" and processes > 1:
        return min(current, threads_per_process(cores, processes))
    return current


def set_process_threads(requested: int | None, device_type: str, *, warn: bool = True) -> int:
    """Set torch's CPU threads for this training process (see :func:`choose_threads`).

    With ``warn`` (one process per machine should pass it, e.g. local rank 0) a warning says when
    the threads of all local processes exceed the cores.

    Returns:
        The number of threads set.
    """
    cores, processes = usable_cores(), local_processes()
    threads = choose_threads(
        requested, device_type, current=torch.get_num_threads(), cores=cores, processes=processes
    )
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    if warn and threads * processes > cores:
        logger.warning(
            "%d processes x %d CPU threads exceed the %d usable cores: the threads will compete "
            "for them and every step slows down; lower train.threads to %d",
            processes,
            threads,
            cores,
            threads_per_process(cores, processes),
        )
    return threads
