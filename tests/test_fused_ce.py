"""irra.fused_ce.linear_cross_entropy against plain autograd (F.linear + F.cross_entropy)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from irra.fused_ce import linear_cross_entropy

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def _inputs(n, d, v, *, bias=True, seed=0, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g)
    w = torch.randn(v, d, generator=g) / d**0.5
    b = torch.randn(v, generator=g) if bias else None
    y = torch.randint(0, v, (n,), generator=g)
    if n:  # make some rows correct so that the accuracy count is not trivially 0
        hit = F.linear(h, w, b).argmax(1)
        y[::2] = hit[::2]
    leaves = [t.to(device=device, dtype=dtype).requires_grad_() for t in (h, w)]
    b = None if b is None else b.to(device=device, dtype=dtype).requires_grad_()
    return leaves[0], leaves[1], b, y.to(device)


def _oracle(h, w, b, y, scale=1.0):
    """Loss, grads (h, w, b) and hit count of plain autograd, in float32 from the same values."""
    leaves = [t.detach().float().requires_grad_() for t in (h, w)]
    bb = None if b is None else b.detach().float().requires_grad_()
    logits = F.linear(leaves[0], leaves[1], bb)
    loss = F.cross_entropy(logits, y)
    (loss * scale).backward()
    grads = (leaves[0].grad, leaves[1].grad, None if bb is None else bb.grad)
    return loss.detach(), grads, (logits.argmax(1) == y).sum()


def _grads(h, w, b):
    return (h.grad, w.grad, None if b is None else b.grad)


def _assert_grads(got, want, **tol):
    for g, e in zip(got, want, strict=True):
        if e is None:
            assert g is None
        else:
            torch.testing.assert_close(g.float(), e, **tol)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk", [1, 7, 32, 4096])
@pytest.mark.parametrize(("d", "v"), [(8, 50), (8, 1000), (64, 50), (64, 1000)])
@pytest.mark.parametrize("n", [1, 7, 65])
def test_matches_pytorch(n, d, v, chunk, bias):
    h, w, b, y = _inputs(n, d, v, bias=bias, seed=n * 1000 + d + v)
    loss, correct = linear_cross_entropy(h, w, b, y, chunk_size=chunk)
    loss.backward()
    want_loss, want_grads, want_correct = _oracle(h, w, b, y)
    torch.testing.assert_close(loss, want_loss, atol=1e-5, rtol=1e-5)
    _assert_grads(_grads(h, w, b), want_grads, atol=1e-5, rtol=1e-5)
    assert correct.dtype == torch.long and not correct.requires_grad
    assert correct.item() == want_correct.item() > 0


@pytest.mark.parametrize("bias", [True, False])
def test_empty_rows_give_zero_loss_and_grads(bias):
    h, w, b, y = _inputs(0, 8, 50, bias=bias)
    loss, correct = linear_cross_entropy(h, w, b, y)
    assert loss.requires_grad and loss.item() == 0.0 and correct.item() == 0
    loss.backward()
    assert h.grad.shape == (0, 8)
    assert torch.count_nonzero(w.grad) == 0
    assert b is None or torch.count_nonzero(b.grad) == 0


@pytest.mark.parametrize("scale", [3.0, -0.5])
def test_grad_output_scales_grads(scale):
    h, w, b, y = _inputs(9, 8, 50)
    loss, _ = linear_cross_entropy(h, w, b, y, chunk_size=7)
    (loss * scale).backward()
    _, want_grads, _ = _oracle(h, w, b, y, scale=scale)
    _assert_grads(_grads(h, w, b), want_grads, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunk", [1, 16, 64])
def test_ties_count_the_first_arg_max(chunk):
    h, w, _, y = _inputs(40, 8, 50, bias=False)
    w = torch.zeros_like(w)  # all logits 0: the arg-max is class 0 in every row
    w[[3, 20, 45]] = 1.0  # ... or, where h sums > 0, class 3, tied with 20 and 45
    y[:10] = 0
    y[10:20] = 3
    y[20:30] = 20
    _, correct = linear_cross_entropy(h, w, None, y, chunk_size=chunk)
    _, _, want_correct = _oracle(h, w, None, y)
    assert correct.item() == want_correct.item() > 0


def test_backward_twice_with_retained_graph():
    h, w, b, y = _inputs(9, 8, 50)
    loss, _ = linear_cross_entropy(h, w, b, y, chunk_size=7)
    loss.backward(retain_graph=True)
    loss.backward()
    _, want_grads, _ = _oracle(h, w, b, y, scale=2.0)
    _assert_grads(_grads(h, w, b), want_grads, atol=1e-5, rtol=1e-5)


def test_only_requested_grads():
    h, w, b, y = _inputs(7, 8, 50)
    w.requires_grad_(False)
    loss, _ = linear_cross_entropy(h, w, b, y, chunk_size=3)
    loss.backward()
    _, want_grads, _ = _oracle(h, w, b, y)
    assert w.grad is None
    _assert_grads((h.grad, b.grad), (want_grads[0], want_grads[2]), atol=1e-5, rtol=1e-5)


def test_no_grad_mode():
    h, w, b, y = _inputs(7, 8, 50)
    with torch.no_grad():
        loss, correct = linear_cross_entropy(h, w, b, y, chunk_size=3)
    want_loss, _, want_correct = _oracle(h, w, b, y)
    assert loss.grad_fn is None and correct.item() == want_correct.item()
    torch.testing.assert_close(loss, want_loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_bfloat16_inputs_close_to_float32(device):
    h, w, b, y = _inputs(33, 64, 1000, dtype=torch.bfloat16, device=device)
    loss, correct = linear_cross_entropy(h, w, b, y, chunk_size=8)
    loss.backward()
    # oracle in float32 from the same bf16 values: the loss is float32 math, grads are rounded
    want_loss, want_grads, want_correct = _oracle(h, w, b, y)
    assert loss.dtype == torch.float32
    assert all(g.dtype == torch.bfloat16 for g in _grads(h, w, b))
    torch.testing.assert_close(loss, want_loss, atol=1e-4, rtol=1e-4)
    _assert_grads(_grads(h, w, b), want_grads, atol=1e-3, rtol=1e-2)
    assert correct.item() == want_correct.item()


def test_autocast_keeps_float32_math():
    h, w, b, y = _inputs(17, 8, 50)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = linear_cross_entropy(h, w, b, y, chunk_size=4)
    want_loss, _, _ = _oracle(h, w, b, y)
    torch.testing.assert_close(loss, want_loss, atol=1e-5, rtol=1e-5)


@pytest.mark.cuda
def test_cuda_matches_pytorch():
    h, w, b, y = _inputs(65, 64, 1000, device="cuda")
    loss, correct = linear_cross_entropy(h, w, b, y, chunk_size=16)
    loss.backward()
    want_loss, want_grads, want_correct = _oracle(h, w, b, y)
    torch.testing.assert_close(loss, want_loss, atol=1e-5, rtol=1e-5)
    _assert_grads(_grads(h, w, b), want_grads, atol=1e-5, rtol=1e-5)
    assert correct.item() == want_correct.item()


@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_float64(bias):
    h, w, b, y = _inputs(5, 3, 7, bias=bias, dtype=torch.float64)
    inputs = (h, w) if b is None else (h, w, b)

    def f(*t):
        return linear_cross_entropy(t[0], t[1], t[2] if bias else None, y, chunk_size=2)[0]

    assert torch.autograd.gradcheck(f, inputs)


def test_shape_errors():
    h, w, b, y = _inputs(7, 8, 50)
    with pytest.raises(ValueError, match=r"\(7,\).*\(6,\)"):
        linear_cross_entropy(h, w, b, y[:6])
    with pytest.raises(ValueError, match="labels"):
        linear_cross_entropy(h, w, b, y[:, None])
    with pytest.raises(ValueError, match="weight"):
        linear_cross_entropy(h, w[:, :4], b, y)
    with pytest.raises(ValueError, match="bias"):
        linear_cross_entropy(h, w, b[:10], y)
    with pytest.raises(ValueError, match="chunk_size"):
        linear_cross_entropy(h, w, b, y, chunk_size=0)
