"""CLIP towers and the IRRA model: parameter names, attention, masks, pooling, config."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from irra.model import IRRA, CLIPConfig, IRRAConfig, TextConfig, VisionConfig, build_model
from irra.model.clip import CLIP, MultiheadAttention, patch_grid

BLOCK_PARAMS = [
    "attn.in_proj_weight",
    "attn.in_proj_bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "ln_1.weight",
    "ln_1.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
]


def tiny_clip(stride: int = 16, image_size: tuple[int, int] = (64, 32)) -> CLIPConfig:
    return CLIPConfig(
        embed_dim=64,
        vision=VisionConfig(
            image_size, patch_size=16, stride_size=stride, width=64, layers=2, heads=4
        ),
        text=TextConfig(context_length=77, vocab_size=49408, width=64, layers=2, heads=2),
    )


def openai_clip_keys(vision_layers: int, text_layers: int) -> set[str]:
    """The key names of an OpenAI ViT CLIP checkpoint, written out by hand."""
    keys = {
        "positional_embedding",
        "text_projection",
        "logit_scale",
        "visual.class_embedding",
        "visual.positional_embedding",
        "visual.proj",
        "visual.conv1.weight",
        "visual.ln_pre.weight",
        "visual.ln_pre.bias",
        "visual.ln_post.weight",
        "visual.ln_post.bias",
        "token_embedding.weight",
        "ln_final.weight",
        "ln_final.bias",
    }
    for i in range(vision_layers):
        keys |= {f"visual.transformer.resblocks.{i}.{p}" for p in BLOCK_PARAMS}
    for i in range(text_layers):
        keys |= {f"transformer.resblocks.{i}.{p}" for p in BLOCK_PARAMS}
    return keys


def official_irra_keys(loss_names: str, cmt_depth: int) -> set[str]:
    """Keys of an official IRRA checkpoint (``base_model.`` + CLIP, then the heads)."""
    keys = {f"base_model.{k}" for k in openai_clip_keys(2, 2)}
    if "id" in loss_names:
        keys |= {"classifier.weight", "classifier.bias"}
    if "mlm" in loss_names:
        keys |= {
            "cross_attn.in_proj_weight",
            "cross_attn.in_proj_bias",
            "cross_attn.out_proj.weight",
            "cross_attn.out_proj.bias",
        }
        for i in range(cmt_depth):
            keys |= {f"cross_modal_transformer.resblocks.{i}.{p}" for p in BLOCK_PARAMS}
        for ln in ("ln_pre_t", "ln_pre_i", "ln_post", "mlm_head.ln"):
            keys |= {f"{ln}.weight", f"{ln}.bias"}
        for linear in ("mlm_head.dense", "mlm_head.fc"):
            keys |= {f"{linear}.weight", f"{linear}.bias"}
    return keys


def caption_ids(lengths: list[int], context: int = 77, seed: int = 0) -> torch.Tensor:
    """SOT, random word ids, EOT, zero padding."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), context, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, 0] = 49406
        ids[row, 1 : n + 1] = torch.randint(1, 49405, (n,), generator=gen)
        ids[row, n + 1] = 49407
    return ids


def test_clip_state_dict_keys_are_openai_names():
    model = CLIP(tiny_clip())
    assert set(model.state_dict()) == openai_clip_keys(2, 2)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["visual.conv1.weight"] == (64, 3, 16, 16)
    assert shapes["visual.positional_embedding"] == (4 * 2 + 1, 64)
    assert shapes["visual.proj"] == (64, 64)
    assert shapes["text_projection"] == (64, 64)
    assert shapes["transformer.resblocks.0.attn.in_proj_weight"] == (192, 64)
    assert shapes["logit_scale"] == ()


@pytest.mark.parametrize("loss_names", ["sdm+mlm+id", "sdm+id", "sdm+mlm", "itc"])
def test_irra_state_dict_keys_are_official_names(loss_names):
    config = IRRAConfig(tiny_clip(), num_classes=7, cmt_depth=3, loss_names=loss_names)
    model = IRRA(config)
    assert set(model.state_dict()) == official_irra_keys(loss_names, 3)
    if "id" in loss_names:
        assert model.classifier.weight.shape == (7, 64)
    else:
        assert model.classifier is None
    if "mlm" in loss_names:
        assert model.mlm_head.fc.weight.shape == (49408, 64)


def test_overlapping_stride_gives_larger_grid():
    model = CLIP(tiny_clip(stride=12))
    grid = ((64 - 16) // 12 + 1, (32 - 16) // 12 + 1)  # 5 x 2
    assert model.visual.positional_embedding.shape == (grid[0] * grid[1] + 1, 64)
    tokens = model.encode_image_tokens(torch.randn(2, 3, 64, 32))
    assert tokens.shape == (2, 11, 64)


def test_wrong_image_size_is_rejected_with_the_expected_size():
    model = CLIP(tiny_clip())
    with pytest.raises(ValueError, match=r"\(64, 32\)"):
        model.encode_image_tokens(torch.randn(1, 3, 32, 64))


@pytest.mark.parametrize("causal", [False, True])
def test_attention_equals_torch_multihead_attention(causal):
    torch.manual_seed(0)
    ours = MultiheadAttention(32, 4)
    ours.init_weights(0.2, 0.1)
    nn.init.normal_(ours.in_proj_bias, std=0.1)
    oracle = nn.MultiheadAttention(32, 4, batch_first=True)
    oracle.load_state_dict(ours.state_dict())
    x = torch.randn(3, 7, 32)
    mask = torch.triu(torch.ones(7, 7, dtype=torch.bool), diagonal=1) if causal else None
    expected, _ = oracle(x, x, x, attn_mask=mask, need_weights=False)
    torch.testing.assert_close(ours(x, x, x, is_causal=causal), expected)


def test_cross_attention_equals_torch_multihead_attention():
    torch.manual_seed(1)
    ours = MultiheadAttention(32, 2)
    nn.init.normal_(ours.in_proj_bias, std=0.1)
    oracle = nn.MultiheadAttention(32, 2, batch_first=True)
    oracle.load_state_dict(ours.state_dict())
    query, memory = torch.randn(2, 5, 32), torch.randn(2, 9, 32)
    expected, _ = oracle(query, memory, memory, need_weights=False)
    torch.testing.assert_close(ours(query, memory, memory), expected)


def reference_text_tokens(model: CLIP, ids: torch.Tensor) -> torch.Tensor:
    """OpenAI's text forward written independently: sequence-first nn.MultiheadAttention."""
    x = model.token_embedding.weight[ids] + model.positional_embedding
    x = x.permute(1, 0, 2)
    length = ids.shape[1]
    mask = torch.full((length, length), float("-inf")).triu(1)
    for block in model.transformer.resblocks:
        attn = nn.MultiheadAttention(x.shape[-1], block.attn.heads)
        attn.load_state_dict(block.attn.state_dict())
        h = F.layer_norm(x, x.shape[-1:], block.ln_1.weight, block.ln_1.bias)
        x = x + attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        h = F.layer_norm(x, x.shape[-1:], block.ln_2.weight, block.ln_2.bias)
        h = F.linear(h, block.mlp.c_fc.weight, block.mlp.c_fc.bias)
        h = h * torch.sigmoid(1.702 * h)
        x = x + F.linear(h, block.mlp.c_proj.weight, block.mlp.c_proj.bias)
    x = F.layer_norm(x.permute(1, 0, 2), x.shape[-1:], model.ln_final.weight, model.ln_final.bias)
    return x @ model.text_projection


def test_text_tower_matches_reference_forward():
    torch.manual_seed(0)
    model = CLIP(tiny_clip())
    ids = caption_ids([5, 20, 0])
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode_text_tokens(ids), reference_text_tokens(model, ids), atol=1e-5, rtol=1e-4
        )


def reference_image_tokens(v: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The ViT after the patch embedding, written out with functional ops: x is (B, 64, gh, gw)."""
    with torch.no_grad():
        patches = x.reshape(2, 64, -1).permute(0, 2, 1)
        x = torch.cat([v.class_embedding.expand(2, 1, 64), patches], 1) + v.positional_embedding
        x = F.layer_norm(x, (64,), v.ln_pre.weight, v.ln_pre.bias)
        for block in v.transformer.resblocks:
            attn = nn.MultiheadAttention(64, 4, batch_first=True)
            attn.load_state_dict(block.attn.state_dict())
            h = F.layer_norm(x, (64,), block.ln_1.weight, block.ln_1.bias)
            x = x + attn(h, h, h, need_weights=False)[0]
            h = F.layer_norm(x, (64,), block.ln_2.weight, block.ln_2.bias)
            h = F.linear(h, block.mlp.c_fc.weight, block.mlp.c_fc.bias)
            x = x + F.linear(
                h * torch.sigmoid(1.702 * h), block.mlp.c_proj.weight, block.mlp.c_proj.bias
            )
        return F.layer_norm(x, (64,), v.ln_post.weight, v.ln_post.bias) @ v.proj


@pytest.mark.parametrize("stride", [16, 12])
def test_image_tower_matches_reference_forward(stride):
    torch.manual_seed(0)
    model = CLIP(tiny_clip(stride=stride))
    images = torch.randn(2, 3, 64, 32)
    v = model.visual
    with torch.no_grad():
        expected = reference_image_tokens(v, F.conv2d(images, v.conv1.weight, stride=stride))
        torch.testing.assert_close(
            model.encode_image_tokens(images), expected, atol=1e-5, rtol=1e-4
        )


def stem_clip(stem: tuple[int, ...], stride: int = 16) -> CLIPConfig:
    config = tiny_clip(stride=stride)
    return dataclasses.replace(
        config, vision=dataclasses.replace(config.vision, stem_channels=stem)
    )


@pytest.mark.parametrize(("stride", "grid"), [(16, (4, 2)), (8, (7, 3))])
def test_conv_stem_matches_reference_forward_and_keeps_the_grid(stride, grid):
    torch.manual_seed(0)
    model = CLIP(stem_clip((8, 16), stride=stride)).eval()
    v = model.visual
    for bn in (v.stem[1], v.stem[5]):  # eval mode: the running statistics normalise
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        x = images
        for conv, bn in ((v.stem[0], v.stem[1]), (v.stem[4], v.stem[5])):
            x = F.conv2d(x, conv.weight, padding=1)
            x = (x - bn.running_mean[:, None, None]) / torch.sqrt(
                bn.running_var[:, None, None] + bn.eps
            )
            x = F.relu(x * bn.weight[:, None, None] + bn.bias[:, None, None])
            x = F.max_pool2d(x, 2)  # 64x32 -> 32x16 -> 16x8
        x = F.conv2d(x, v.conv1.weight, stride=stride // 4)  # kernel 16 / 4 = 4
        assert tuple(x.shape[-2:]) == grid == patch_grid((64, 32), 16, stride)
        expected = reference_image_tokens(v, x)
        torch.testing.assert_close(
            model.encode_image_tokens(images), expected, atol=5e-5, rtol=1e-4
        )


def test_conv_stem_parameters_and_bad_sizes():
    torch.manual_seed(0)
    model = CLIP(stem_clip((8,)))
    for name in ("class_embedding", "positional_embedding", "proj"):  # CLIP's std: width^-0.5
        std = float(getattr(model.visual, name).detach().std())
        assert 0.7 * 64**-0.5 < std < 1.3 * 64**-0.5, name
    keys = {k for k in model.state_dict() if k.startswith("visual.stem.")}
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    assert keys == {"visual.stem.0.weight"} | {f"visual.stem.1.{p}" for p in bn}
    assert model.visual.conv1.weight.shape == (64, 8, 8, 8)  # 16 / 2 = 8
    with pytest.raises(ValueError, match="multiples of 32"):
        stem_clip((4, 4, 4, 4, 4))  # 2**5 = 32 does not divide the patch size 16
    with pytest.raises(ValueError, match="multiples of 4"):
        stem_clip((4, 4), stride=6)


def subset_clip(vocab_ids: tuple[int, ...]) -> CLIPConfig:
    config = tiny_clip()
    return dataclasses.replace(config, text=dataclasses.replace(config.text, vocab_ids=vocab_ids))


def test_vocabulary_subset_equals_a_full_model_whose_other_rows_share_one_vector():
    kept = (0, 320, 786, 2308, 49405, 49406, 49407)
    torch.manual_seed(0)
    subset = CLIP(subset_clip((49407, 320, 0, 786, 2308, 49406, 49405, 320))).eval()
    assert subset.config.text.vocab_ids == kept  # sorted, duplicates dropped
    assert subset.token_embedding.weight.shape == (len(kept) + 1, 64)
    assert not any("token_rows" in key for key in subset.state_dict())  # rebuilt from the config
    # The oracle: a full-vocabulary CLIP with the same weights, in which each kept id has its
    # row and every other id the subset's last ("unknown") row.
    full = CLIP(tiny_clip()).eval()
    state = subset.state_dict()
    small = state.pop("token_embedding.weight")
    table = small[-1].repeat(49408, 1)
    for row, token in enumerate(kept):
        table[token] = small[row]
    full.load_state_dict({**state, "token_embedding.weight": table})
    ids = torch.tensor(
        [[49406, 320, 786, 1125, 2308, 49407, 0], [49406, 9, 320, 49405, 49407, 0, 0]]
    )
    with torch.no_grad():
        torch.testing.assert_close(subset.encode_text_tokens(ids), full.encode_text_tokens(ids))
    rows = subset.embedding_rows(torch.tensor([0, 320, 1125, 49407, 9]))
    assert rows.tolist() == [0, 1, 7, 6, 7]


def test_vocabulary_subset_sizes_the_mlm_head_and_round_trips_through_json():
    config = IRRAConfig(subset_clip((320, 786, 49405)), loss_names="sdm+mlm")
    assert build_model(config.clip, loss_names="sdm+mlm").mlm_head.fc.out_features == 4
    assert IRRAConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match=r"vocab_ids must lie in \[0, 49408\)"):
        subset_clip((5, 49408))


def test_text_is_causal():
    torch.manual_seed(0)
    model = CLIP(tiny_clip())
    ids = caption_ids([12])
    changed = ids.clone()
    changed[0, 8] = (changed[0, 8] % 49000) + 1
    with torch.no_grad():
        a, b = model.encode_text_tokens(ids), model.encode_text_tokens(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_shorter_context_gives_the_same_prefix_outputs():
    torch.manual_seed(0)
    model = CLIP(tiny_clip())
    ids = caption_ids([6])
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode_text_tokens(ids[:, :10]), model.encode_text_tokens(ids)[:, :10]
        )


def test_encode_text_takes_the_end_of_text_token():
    torch.manual_seed(0)
    model = build_model(tiny_clip(), num_classes=3)
    ids = caption_ids([3, 10, 1])
    with torch.no_grad():
        tokens = model.encode_text_tokens(ids)
        feats = model.encode_text(ids)
    for row, eot in enumerate([4, 11, 2]):
        torch.testing.assert_close(feats[row], tokens[row, eot])
    assert feats.dtype == torch.float32


def test_encode_text_runs_the_tower_only_up_to_the_last_end_of_text_token(monkeypatch):
    torch.manual_seed(0)
    model = build_model(tiny_clip(), num_classes=3)
    ids = caption_ids([3, 10, 1])
    with torch.no_grad():
        want = model.encode_text_tokens(ids)[torch.arange(3), torch.tensor([4, 11, 2])]
    lengths = []
    full = model.encode_text_tokens
    monkeypatch.setattr(
        model, "encode_text_tokens", lambda x: lengths.append(x.shape[1]) or full(x)
    )
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(ids), want)
    assert lengths == [12]  # SOT + 10 words + EOT of the longest caption


def test_encode_image_takes_the_class_token():
    torch.manual_seed(0)
    model = build_model(tiny_clip(), num_classes=3)
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode_image(images), model.encode_image_tokens(images)[:, 0]
        )


def test_mlm_logits_at_selected_positions_equal_full_logits():
    torch.manual_seed(0)
    model = build_model(tiny_clip(), num_classes=3, cmt_depth=2).eval()
    ids = caption_ids([5, 9])
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[0, 2] = mask[1, 1] = mask[1, 7] = True
    with torch.no_grad():
        text = model.encode_text_tokens(ids)
        image = model.encode_image_tokens(torch.randn(2, 3, 64, 32))
        full = model.mlm_logits(text, image)
        part = model.mlm_logits(text, image, mask)
    assert full.shape == (2, 77, 49408)
    assert part.shape == (3, 49408)
    torch.testing.assert_close(part, torch.stack([full[0, 2], full[1, 1], full[1, 7]]))


def test_model_without_mlm_branch_refuses_mlm_calls():
    model = build_model(tiny_clip(), num_classes=3, loss_names="sdm+id")
    with pytest.raises(RuntimeError, match="no MLM branch"):
        model.cross_former(torch.zeros(1, 77, 64), torch.zeros(1, 9, 64))


def test_new_modules_are_initialised_like_irra():
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=2000, cmt_depth=4)
    dim = 64
    assert model.classifier.weight.std().item() == pytest.approx(0.001, rel=0.05)
    assert torch.all(model.classifier.bias == 0)
    assert model.mlm_head.fc.weight.std().item() == pytest.approx(dim**-0.5 * 8**-0.5, rel=0.05)
    assert model.cross_attn.in_proj_weight.std().item() == pytest.approx(dim**-0.5, rel=0.05)
    assert model.base_model.token_embedding.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.base_model.logit_scale.exp().item() == pytest.approx(1 / 0.07)


def test_irra_config_round_trips_through_json():
    config = IRRAConfig(tiny_clip(stride=12), num_classes=9, loss_names="sdm+mlm", temperature=0.05)
    assert IRRAConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.loss_names == ("sdm", "mlm")


def test_bad_configs_fail_early():
    with pytest.raises(ValueError, match="num_classes"):
        IRRAConfig(tiny_clip(), num_classes=0, loss_names="sdm+id")
    with pytest.raises(ValueError, match="valid: sdm, itc, cmpm, id, mlm"):
        IRRAConfig(tiny_clip(), loss_names="sdm+triplet")
    with pytest.raises(ValueError, match="unknown IRRAConfig keys"):
        IRRAConfig.from_dict({**IRRAConfig(tiny_clip(), num_classes=3).to_dict(), "colour": 1})


def test_unknown_arch_lists_valid_names():
    with pytest.raises(ValueError, match="ViT-B/16, ViT-B/32, ViT-L/14, tiny"):
        build_model("ViT-H/14")


def test_presets_have_the_published_sizes():
    model = build_model("ViT-B/16", num_classes=1, loss_names="sdm")
    assert model.base_model.visual.positional_embedding.shape == (24 * 8 + 1, 768)
    params = sum(p.numel() for p in model.base_model.parameters())
    assert 149e6 < params < 150e6  # OpenAI ViT-B/16 CLIP has 149.6M parameters
