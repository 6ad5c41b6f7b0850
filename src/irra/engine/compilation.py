"""``train.compile``: the image and text towers under ``torch.compile``, in place.

Each tower module is compiled with :meth:`torch.nn.Module.compile`, which keeps the module (and
so every state-dict key, checkpoint and DDP wrapper) as it is and only swaps its call for the
compiled one. The first steps of a run, and the first evaluation, pay the compilation (tens of
seconds); where it pays back is measured in docs/performance.md.
"""

from __future__ import annotations

import logging

from torch import nn

logger = logging.getLogger(__name__)


def compile_towers(model: nn.Module) -> list[str]:
    """Compile the vision transformer and the text transformer of an IRRA model in place.

    Args:
        model: an :class:`~irra.model.IRRA` (its ``base_model`` is the CLIP).

    Returns:
        The names of the compiled submodules.
    """
    clip = model.base_model
    towers = {"base_model.visual": clip.visual, "base_model.transformer": clip.transformer}
    for module in towers.values():
        module.compile()
    logger.info("torch.compile: %s (compiled on first use)", ", ".join(towers))
    return list(towers)
