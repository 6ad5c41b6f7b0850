"""Training methods by name: ``irra`` (the paper's, the default) and ``rde``.

Select one with ``model.method``; see :class:`irra.methods.base.Method` for what a method
defines, and README "Adding a method".
"""

from __future__ import annotations

import functools

from irra.methods import irra as irra_method
from irra.methods import rde
from irra.methods.base import Method, MethodError, MethodSetup
from irra.methods.irra import compute_losses

__all__ = ["METHODS", "Method", "MethodError", "MethodSetup", "get_method"]


def _irra_objective(setup: MethodSetup):
    loss, data = setup.config.loss, setup.config.data
    return functools.partial(
        compute_losses,
        loss_names=loss.names,
        mlm_weight=loss.mlm_weight,
        id_weight=loss.id_weight,
        masked_global_text=data.masked_global_text,
        dist_ctx=setup.dist_ctx,
        global_batch=loss.global_batch,
    )


METHODS: dict[str, Method] = {
    "irra": Method(
        name="irra",
        description="IRRA (CVPR 2023): SDM + implicit relation reasoning (MLM) + ID",
        losses=irra_method.LOSSES,
        build_objective=_irra_objective,
    ),
    "rde": Method(
        name="rde",
        description="RDE (CVPR 2024): BGE + TSE embeddings, TAL, consensus clean-sample division",
        losses=rde.LOSSES,
        build_objective=rde.build_objective,
        build_hooks=rde.build_hooks,
        train_mode=lambda config: not config.rde.eval_mode_training,
    ),
}


def get_method(name: str) -> Method:
    """The method registered as ``name``; :class:`MethodError` lists the valid names."""
    try:
        return METHODS[name]
    except KeyError:
        raise MethodError(
            f"unknown method {name!r}; valid: {', '.join(METHODS)} (set model.method)"
        ) from None
