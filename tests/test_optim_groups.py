"""Every parameter of IRRA gets the learning rate and weight decay of the paper's recipe."""

import math

from irra.config import OptimConfig
from irra.engine.optim import build_optimizer, param_groups
from irra.model import build_model


def expected(name: str) -> tuple[float, float]:
    """The recipe, written out per module (base lr 1e-5, decay 4e-5)."""
    head = name.startswith(("classifier.", "mlm_head."))
    cross = name.startswith(("cross_attn.", "cross_modal_transformer."))
    is_bias = "bias" in name.rsplit(".", 1)[-1]
    if head:
        return 5e-5, (0.0 if is_bias else 4e-5)
    if is_bias:
        return 2e-5, 0.0
    if cross:
        return 5e-5, 4e-5
    return 1e-5, 4e-5


def test_every_parameter_follows_the_recipe():
    model = build_model("tiny", num_classes=7, loss_names=("sdm", "mlm", "id"))
    groups = param_groups(model.named_parameters(), OptimConfig())
    seen = {}
    for group in groups:
        for name in group["names"]:
            seen[name] = (group["lr"], group["weight_decay"])
    names = [n for n, p in model.named_parameters()]
    assert sorted(seen) == sorted(names)
    # spot checks of the interesting cases, then all of them
    assert seen["classifier.bias"] == (5e-5, 0.0)
    assert seen["ln_pre_t.weight"] == (1e-5, 4e-5)
    assert seen["cross_attn.in_proj_bias"] == (2e-5, 0.0)
    for name in names:
        lr, wd = seen[name]
        want_lr, want_wd = expected(name)
        assert math.isclose(lr, want_lr) and math.isclose(wd, want_wd), name


def test_optimizer_groups_cover_each_parameter_once():
    model = build_model("tiny", num_classes=3)
    opt = build_optimizer(model, OptimConfig())
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert opt.defaults["eps"] == 1e-3
    assert opt.defaults["betas"] == (0.9, 0.999)
