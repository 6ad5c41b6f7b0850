"""Config files inherit, overrides are typed, and the resolved config round-trips."""

from pathlib import Path

import pytest

from irra.config import Config, ConfigError, load_config, save_config

REPO = Path(__file__).resolve().parents[1]


def test_paper_configs_hold_the_recipe():
    for name, dataset in [
        ("cuhk_pedes", "CUHK-PEDES"),
        ("icfg_pedes", "ICFG-PEDES"),
        ("rstpreid", "RSTPReid"),
    ]:
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        assert cfg.data.dataset == dataset
        assert cfg.model.arch == "ViT-B/16"
        assert cfg.model.image_size == (384, 128)
        assert cfg.model.stride_size == 16
        assert cfg.model.cmt_depth == 4
        assert set(cfg.loss.names) == {"sdm", "mlm", "id"}
        assert cfg.loss.temperature == 0.02
        assert (cfg.loss.mlm_weight, cfg.loss.id_weight) == (1.0, 1.0)
        assert cfg.data.batch_size == 64
        assert cfg.data.masked_global_text is True
        assert cfg.optim.optimizer == "adam"
        assert cfg.optim.lr == 1e-5
        assert cfg.optim.betas == (0.9, 0.999)
        assert (cfg.optim.lr_factor, cfg.optim.bias_lr_factor) == (5.0, 2.0)
        assert (cfg.optim.weight_decay, cfg.optim.weight_decay_bias) == (4e-5, 0.0)
        assert (cfg.optim.warmup_epochs, cfg.optim.warmup_factor) == (5, 0.1)
        assert cfg.optim.schedule == "cosine"
        assert cfg.train.epochs == 60


def test_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  epochs: 7\n  seed: 3\ndata:\n  batch_size: 16\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ntrain:\n  epochs: 9\n")
    cfg = load_config(tmp_path / "child.yaml", ["data.batch_size=4", "model.image_size=[96, 32]"])
    assert cfg.train.epochs == 9  # child wins
    assert cfg.train.seed == 3  # inherited
    assert cfg.data.batch_size == 4  # override wins
    assert cfg.model.image_size == (96, 32)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["loss.names=[sdm, id]", "optim.grad_clip=1.5"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert isinstance(again, Config)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoch=3", "train.epochs"),  # lists the valid keys
        ("train.epochs=three", "must be of type int"),
        ("model.image_size=[1, 2, 3]", "must have 2 items"),
        ("epochs=3", "must be dotted"),
        ("nosection.key=1", "unknown key"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_inheritance_loop_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "a.yaml")


def test_scientific_notation_without_a_dot_is_a_float(tmp_path):
    # YAML 1.1 reads "1e-3" as a string; a float field must still get 0.001
    (tmp_path / "c.yaml").write_text("optim:\n  lr: 1e-3\n  eps: 1e-8\n")
    cfg = load_config(tmp_path / "c.yaml", ["loss.temperature=5e-2"])
    assert cfg.optim.lr == 0.001 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.eps == 1e-8
    assert cfg.loss.temperature == 0.05
    with pytest.raises(ConfigError, match="float"):
        load_config(None, ["optim.lr=fast"])


def test_shipped_configs_resolve_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    by_name = load_config("synth")
    by_path = load_config(REPO / "configs" / "synth.yaml")
    assert by_name == by_path
    assert by_name.model.arch == "custom"
    assert load_config("cuhk_pedes.yaml").data.dataset == "CUHK-PEDES"
    with pytest.raises(ConfigError, match="synth"):  # the error lists what is shipped
        load_config("no_such_config")
