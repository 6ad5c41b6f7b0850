"""RDE's token selection heads and the last-layer attention rows they read, against oracles."""

from __future__ import annotations

import torch
from torch import nn

from irra.model.clip import MultiheadAttention, Transformer
from irra.model.tse import ImageTokenSelection, TextTokenSelection


def test_attention_row_equals_torch_multihead_attention_weights() -> None:
    torch.manual_seed(0)
    width, heads, length = 16, 4, 7
    ours = MultiheadAttention(width, heads)
    ref = nn.MultiheadAttention(width, heads, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, length, width)
    positions = torch.tensor([6, 2, 4])
    causal = torch.triu(torch.full((length, length), float("-inf")), diagonal=1)
    for is_causal, mask in ((False, None), (True, causal)):
        _, full = ref(x, x, x, need_weights=True, attn_mask=mask, average_attn_weights=True)
        expected = full[torch.arange(3), positions]
        got = ours.attention_weights(x, positions, is_causal=is_causal)
        torch.testing.assert_close(got, expected)


def test_forward_with_attention_keeps_the_plain_forward_output() -> None:
    torch.manual_seed(1)
    stack = Transformer(16, 2, 2, causal=True)
    x = torch.randn(2, 5, 16)
    out, weights = stack.forward_with_attention(x, torch.tensor([4, 3]))
    torch.testing.assert_close(out, stack(x))
    assert weights.shape == (2, 5)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))
    assert weights[1, 4] == 0  # causal: token 3 does not see token 4


def _head_oracle(head, selected_rows):
    """mlp(x) + shortcut(x) of the unit tokens, then the max over them, token by token."""
    outs = []
    for tokens in selected_rows:
        vectors = []
        for t in tokens:
            u = t / t.norm()
            hidden = head.mlp.layers[0](u)
            bn = head.mlp.bns[0]
            hidden = (hidden - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
            hidden = torch.relu(hidden * bn.weight + bn.bias)
            vectors.append(head.mlp.layers[1](hidden) + head.shortcut(u))
        outs.append(torch.stack(vectors).max(dim=0).values)
    return torch.stack(outs)


def _randomise_batch_norm(head) -> None:
    bn = head.mlp.bns[0]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.2, 0.2)


def test_image_head_pools_the_patches_the_class_token_attends_to_most() -> None:
    torch.manual_seed(2)
    head = ImageTokenSelection(8, 12, ratio=0.3).eval()
    _randomise_batch_norm(head)
    tokens = torch.randn(2, 11, 8)  # class token + 10 patches: K = 3
    attention = torch.rand(2, 11)
    attention[:, 0] = 5.0  # the class token's own weight never counts
    rows = []
    for b in range(2):
        order = sorted(range(1, 11), key=lambda j: -float(attention[b, j]))[:3]
        rows.append([tokens[b, j] for j in order])
    with torch.no_grad():
        torch.testing.assert_close(head(tokens, attention), _head_oracle(head, rows))


def test_text_head_pools_the_word_tokens_the_end_token_attends_to_most() -> None:
    torch.manual_seed(3)
    head = TextTokenSelection(8, 12, ratio=0.3, context_length=12).eval()  # K = int(10 * 0.3)
    _randomise_batch_norm(head)
    ids = torch.tensor(
        [
            [49406, 11, 12, 13, 14, 15, 49407, 0, 0, 0, 0, 0],  # 5 words: pool the top 3
            [49406, 21, 49407, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # 1 word: pool that word alone
        ]
    )
    tokens = torch.randn(2, 12, 8)
    attention = torch.rand(2, 12)
    rows = []
    for b in range(2):
        end = int(ids[b].argmax())
        words = [j for j in range(1, end)]
        order = sorted(words, key=lambda j: -float(attention[b, j]))[:3]
        rows.append([tokens[b, j] for j in order])
    with torch.no_grad():
        torch.testing.assert_close(head(tokens, ids, attention), _head_oracle(head, rows))
        # columns after the last end token change nothing (evaluation trims them)
        torch.testing.assert_close(
            head(tokens[:, :7], ids[:, :7], attention[:, :7]), head(tokens, ids, attention)
        )
