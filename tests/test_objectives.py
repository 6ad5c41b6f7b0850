"""compute_losses: loss selection, weighting, the shared text pass and the MLM positions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from irra import losses
from irra.methods.irra import compute_losses
from irra.model import CLIPConfig, TextConfig, VisionConfig, build_model

MASK_ID = 49405


def tiny_model(loss_names="sdm+mlm+id", vocab_ids=(), **kwargs):
    torch.manual_seed(0)
    clip = CLIPConfig(
        embed_dim=64,
        vision=VisionConfig((48, 32), patch_size=16, stride_size=16, width=64, layers=1, heads=1),
        text=TextConfig(
            context_length=24, vocab_size=49408, width=64, layers=1, heads=1, vocab_ids=vocab_ids
        ),
    )
    return build_model(clip, num_classes=5, cmt_depth=1, loss_names=loss_names, **kwargs)


def make_batch(seed: int = 0, masked: bool = True) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    batch_size, context = 4, 24
    captions = torch.zeros(batch_size, context, dtype=torch.long)
    for row, n in enumerate([5, 9, 3, 12]):
        captions[row, 0] = 49406
        captions[row, 1 : n + 1] = torch.randint(1, MASK_ID, (n,), generator=gen)
        captions[row, n + 1] = 49407
    labels = torch.zeros_like(captions)
    mlm_ids = captions.clone()
    if masked:
        for row, col in [(0, 2), (1, 1), (1, 6), (2, 3), (3, 10)]:
            labels[row, col] = captions[row, col]
            mlm_ids[row, col] = MASK_ID
    return {
        "images": torch.randn(batch_size, 3, 48, 32, generator=gen),
        "caption_ids": captions,
        "mlm_ids": mlm_ids,
        "mlm_labels": labels,
        "pids": torch.tensor([0, 0, 3, 1]),
    }


def count_text_passes(model):
    calls = []
    handle = model.base_model.transformer.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


def test_masked_global_text_takes_one_text_pass_with_the_same_losses():
    model = tiny_model()
    batch = make_batch()
    shared = {**batch, "caption_ids": batch["mlm_ids"]}  # the reference: caption masked in place
    calls, handle = count_text_passes(model)
    one = compute_losses(model, shared, masked_global_text=True)
    assert len(calls) == 1
    two = compute_losses(model, shared, masked_global_text=False)
    assert len(calls) == 3
    handle.remove()
    for key in one:
        torch.testing.assert_close(one[key], two[key], msg=key)


def test_global_losses_use_the_clean_caption_unless_masked_global_text():
    model = tiny_model()
    batch = make_batch()
    out = compute_losses(model, batch, masked_global_text=False)
    with torch.no_grad():
        image = model.encode_image(batch["images"])
        text = model.encode_text(batch["caption_ids"])
    expected = losses.sdm_loss(image, text, batch["pids"], 1 / 0.02)
    torch.testing.assert_close(out["sdm"], expected)
    forced = compute_losses(model, batch, masked_global_text=True)  # reference behaviour
    with torch.no_grad():
        masked_text = model.encode_text(batch["mlm_ids"])
    torch.testing.assert_close(
        forced["sdm"], losses.sdm_loss(image, masked_text, batch["pids"], 1 / 0.02)
    )


def test_id_and_mlm_losses_match_hand_computed_cross_entropies():
    model = tiny_model()
    batch = make_batch()
    out = compute_losses(model, batch, masked_global_text=False, mlm_weight=2.5, id_weight=0.5)
    pids = batch["pids"]
    with torch.no_grad():
        image_tokens = model.encode_image_tokens(batch["images"])
        image = image_tokens[:, 0]
        text = model.encode_text(batch["caption_ids"])
        id_ce = (
            F.cross_entropy(model.classifier(image), pids)
            + F.cross_entropy(model.classifier(text), pids)
        ) / 2
        full = model.mlm_logits(model.encode_text_tokens(batch["mlm_ids"]), image_tokens)
        mlm_ce = F.cross_entropy(
            full.reshape(-1, full.shape[-1]), batch["mlm_labels"].reshape(-1), ignore_index=0
        )
        labelled = batch["mlm_labels"] != 0
        mlm_acc = (full[labelled].argmax(-1) == batch["mlm_labels"][labelled]).float().mean()
        img_acc = (model.classifier(image).argmax(-1) == pids).float().mean()
    torch.testing.assert_close(out["id"], 0.5 * id_ce)
    torch.testing.assert_close(out["mlm"], 2.5 * mlm_ce)
    torch.testing.assert_close(out["mlm_acc"], mlm_acc)
    torch.testing.assert_close(out["img_acc"], img_acc)
    torch.testing.assert_close(out["loss"], out["sdm"] + out["id"] + out["mlm"])


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ("sdm+mlm+id", {"sdm", "mlm", "id", "img_acc", "txt_acc", "mlm_acc"}),
        ("sdm+id", {"sdm", "id", "img_acc", "txt_acc"}),
        ("itc", {"itc"}),
        ("cmpm+sdm", {"cmpm", "sdm"}),
    ],
)
def test_loss_keys_follow_loss_names(names, expected):
    model = tiny_model()
    out = compute_losses(model, make_batch(), masked_global_text=False, loss_names=names)
    assert set(out) == expected | {"loss"}
    for key, value in out.items():
        assert value.ndim == 0 and torch.isfinite(value), key
        assert value.requires_grad == (not key.endswith("_acc")), key


def test_defaults_come_from_the_model_config():
    model = tiny_model(loss_names="sdm+id", id_loss_weight=3.0)
    batch = make_batch()
    out = compute_losses(model, batch, masked_global_text=False)
    assert set(out) == {"sdm", "id", "loss", "img_acc", "txt_acc"}
    torch.testing.assert_close(
        out["id"], 3.0 * compute_losses(model, batch, masked_global_text=False, id_weight=1.0)["id"]
    )


def test_backward_reaches_every_module():
    model = tiny_model()
    out = compute_losses(model, make_batch(), masked_global_text=False)
    out["loss"].backward()
    for name in (
        "base_model.visual.conv1.weight",
        "base_model.token_embedding.weight",
        "classifier.weight",
        "cross_attn.in_proj_weight",
        "mlm_head.fc.weight",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_batch_without_masked_tokens_gives_zero_mlm_loss():
    model = tiny_model()
    out = compute_losses(model, make_batch(masked=False), masked_global_text=False)
    assert out["mlm"].item() == 0.0
    assert torch.isfinite(out["loss"])
    out["loss"].backward()


class Wrapper(nn.Module):
    """Stands in for DistributedDataParallel: the model under ``.module``, called via forward."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.calls = 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.module(*args, **kwargs)


def test_wrapped_models_are_called_through_their_forward():
    model = tiny_model()
    wrapper = Wrapper(model)
    batch = make_batch()
    out = compute_losses(wrapper, batch, masked_global_text=False)
    assert wrapper.calls == 1
    torch.testing.assert_close(
        out["loss"], compute_losses(model, batch, masked_global_text=False)["loss"]
    )


def test_losses_the_model_cannot_compute_are_refused():
    model = tiny_model(loss_names="sdm")
    with pytest.raises(ValueError, match="'mlm'"):
        compute_losses(model, make_batch(), masked_global_text=False, loss_names="sdm+mlm")
    with pytest.raises(ValueError, match="'id'"):
        compute_losses(model, make_batch(), masked_global_text=False, loss_names="sdm+id")
    with pytest.raises(ValueError, match=r"\['tse'\] are not IRRA losses"):
        compute_losses(model, make_batch(), masked_global_text=False, loss_names="sdm+tse")


def test_losses_are_computed_in_float32_under_autocast():
    model = tiny_model()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = compute_losses(model, make_batch(), masked_global_text=False)
    for key, value in out.items():
        assert value.dtype == torch.float32, key
    out["loss"].backward()


def test_fused_mlm_loss_equals_loss_on_logits_with_the_same_gradients():
    model = tiny_model()
    batch = make_batch(seed=3)
    mask = batch["mlm_labels"] != 0
    inputs = (batch["images"], batch["caption_ids"], batch["mlm_ids"], mask)

    def mlm_and_grads(fused: bool):
        model.zero_grad()
        out = model(*inputs, mlm_labels=batch["mlm_labels"][mask] if fused else None)
        if fused:
            assert out.mlm_logits is None
            loss = out.mlm_loss
        else:  # oracle: plain cross-entropy on the materialised logits
            loss = F.cross_entropy(out.mlm_logits, batch["mlm_labels"][mask])
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads, out

    loss_f, grads_f, out_f = mlm_and_grads(True)
    loss_p, grads_p, out_p = mlm_and_grads(False)
    torch.testing.assert_close(loss_f, loss_p, rtol=1e-5, atol=1e-6)
    assert grads_f.keys() == grads_p.keys()
    assert any(n.startswith("mlm_head.fc") for n in grads_f)
    for name in grads_p:
        torch.testing.assert_close(grads_f[name], grads_p[name], rtol=1e-4, atol=1e-6)
    correct = (out_p.mlm_logits.argmax(-1) == batch["mlm_labels"][mask]).sum()
    assert int(out_f.mlm_correct) == int(correct)


def test_mlm_over_a_vocabulary_subset_classifies_into_its_rows():
    batch = make_batch(seed=5)
    labelled = batch["mlm_labels"] != 0
    targets = batch["mlm_labels"][labelled]
    # Keep the first three labelled ids (and the specials): the other two become "unknown".
    kept = sorted({*targets[:3].tolist(), MASK_ID, 49406, 49407})
    model = tiny_model(vocab_ids=tuple(kept))
    classes = [kept.index(t) if t in kept else len(kept) for t in targets.tolist()]
    assert classes.count(len(kept)) == 2
    out = compute_losses(model, batch, masked_global_text=False)
    with torch.no_grad():
        image_tokens = model.encode_image_tokens(batch["images"])
        logits = model.mlm_logits(model.encode_text_tokens(batch["mlm_ids"]), image_tokens)
        logits = logits[labelled]
    assert logits.shape == (5, len(kept) + 1)
    torch.testing.assert_close(out["mlm"], F.cross_entropy(logits, torch.tensor(classes)))
    correct = (logits.argmax(-1) == torch.tensor(classes)).float().mean()
    torch.testing.assert_close(out["mlm_acc"], correct)
