"""The shared building blocks: attention checked against torch's own (and grouped-query
attention against the full attention it abbreviates), the sinusoidal encoding, rotary
embeddings, RMSNorm and SwiGLU against their formulas, and the two Transformer block layouts."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lit_models.modules import (
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    RMSNorm,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    SwiGLU,
    TransformerBlock,
    apply_rotary,
    make_norm,
    make_positional,
)

D_MODEL, N_HEADS = 16, 4


def _pair(bias: bool = True) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    """Our attention and torch's, with the same weights, both in eval mode."""
    torch.manual_seed(0)
    ours = MultiHeadAttention(D_MODEL, N_HEADS, bias=bias).eval()
    ref = nn.MultiheadAttention(D_MODEL, N_HEADS, bias=bias, batch_first=True).eval()
    with torch.no_grad():
        # Random biases too, so that a bias applied to the wrong slice would show.
        if bias:
            ours.in_proj.bias.normal_()
            ours.out_proj.bias.normal_()
            ref.in_proj_bias.copy_(ours.in_proj.bias)
            ref.out_proj.bias.copy_(ours.out_proj.bias)
        ref.in_proj_weight.copy_(ours.in_proj.weight)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
    return ours, ref


@pytest.mark.parametrize("bias", [True, False])
def test_self_attention_matches_torch(bias):
    ours, ref = _pair(bias)
    x = torch.randn(3, 7, D_MODEL)
    expected, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)


def test_cross_attention_matches_torch():
    ours, ref = _pair()
    query, memory = torch.randn(2, 5, D_MODEL), torch.randn(2, 9, D_MODEL)
    expected, _ = ref(query, memory, memory, need_weights=False)
    out = ours(query, memory=memory)
    assert out.shape == (2, 5, D_MODEL)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # The keys and values really come from the memory: other memory, other output.
    assert not torch.allclose(out, ours(query, memory=torch.randn(2, 9, D_MODEL)), atol=1e-4)


def test_causal_attention_matches_torch():
    ours, ref = _pair()
    T = 6
    x = torch.randn(2, T, D_MODEL)
    hidden = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)  # torch: True = masked
    expected, _ = ref(x, x, x, attn_mask=hidden, need_weights=False)
    torch.testing.assert_close(ours(x, is_causal=True), expected, atol=1e-5, rtol=1e-5)
    # Our mask convention is the opposite one: True where attending is allowed.
    torch.testing.assert_close(ours(x, attn_mask=~hidden), expected, atol=1e-5, rtol=1e-5)
    # And the mask matters: without it the output differs.
    assert not torch.allclose(ours(x), expected, atol=1e-4)


def test_padding_mask_matches_torch():
    ours, ref = _pair()
    query, memory = torch.randn(2, 4, D_MODEL), torch.randn(2, 6, D_MODEL)
    padding = torch.tensor([[False] * 6, [False] * 3 + [True] * 3])  # torch: True = padding
    expected, _ = ref(query, memory, memory, key_padding_mask=padding, need_weights=False)
    allowed = ~padding[:, None, None, :]  # [B, 1, 1, S], broadcast over heads and queries
    out = ours(query, memory=memory, attn_mask=allowed)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # Whatever sits at padded memory positions cannot change the output.
    scrambled = memory.clone()
    scrambled[1, 3:] = torch.randn(3, D_MODEL) * 10
    torch.testing.assert_close(ours(query, memory=scrambled, attn_mask=allowed), out)


def test_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="n_head must be a positive divisor of .*n_embd=10"):
        MultiHeadAttention(10, 3)


@pytest.mark.parametrize("d_model", [16, 7])
def test_sinusoidal_encoding_matches_formula(d_model):
    max_len = 50
    pe = SinusoidalPositionalEncoding(max_len, d_model)(max_len)
    expected = torch.zeros(max_len, d_model)
    for pos in range(max_len):
        for i in range(0, d_model, 2):  # i here is the even index 2i of the formula
            angle = pos / 10000 ** (i / d_model)
            expected[pos, i] = math.sin(angle)
            if i + 1 < d_model:
                expected[pos, i + 1] = math.cos(angle)
    torch.testing.assert_close(pe, expected, atol=1e-5, rtol=1e-4)


def test_positional_offset_and_bounds():
    for module in (SinusoidalPositionalEncoding(10, 8), LearnedPositionalEmbedding(10, 8)):
        torch.testing.assert_close(module(4, offset=3), module(10)[3:7])
        with pytest.raises(ValueError, match="past the 10"):
            module(8, offset=3)
    assert isinstance(make_positional("sinusoidal", 10, 8), SinusoidalPositionalEncoding)
    assert isinstance(make_positional("learned", 10, 8), LearnedPositionalEmbedding)
    with pytest.raises(ValueError, match="learned, sinusoidal"):
        make_positional("rotary", 10, 8)


def _blocks() -> tuple[TransformerBlock, TransformerBlock]:
    torch.manual_seed(0)
    pre = TransformerBlock(D_MODEL, N_HEADS, 4 * D_MODEL, norm_first=True).eval()
    post = TransformerBlock(D_MODEL, N_HEADS, 4 * D_MODEL, norm_first=False).eval()
    post.load_state_dict(pre.state_dict())  # same weights: only the layout differs
    return pre, post


def test_pre_norm_and_post_norm_blocks_differ():
    pre, post = _blocks()
    x = torch.randn(2, 5, D_MODEL) * 3 + 1
    y_pre, y_post = pre(x, is_causal=True), post(x, is_causal=True)
    assert y_pre.shape == y_post.shape == x.shape
    assert torch.isfinite(y_pre).all() and torch.isfinite(y_post).all()
    assert not torch.allclose(y_pre, y_post, atol=1e-3)
    # Post-norm ends in a LayerNorm (unit gain, zero bias at init): every position is normalised.
    torch.testing.assert_close(y_post.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y_post.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3, rtol=0)
    # Pre-norm keeps the residual stream un-normalised.
    assert not torch.allclose(y_pre.mean(-1), torch.zeros(2, 5), atol=1e-2)


def test_block_layouts_compute_their_formulas():
    pre, post = _blocks()
    x = torch.randn(2, 5, D_MODEL)
    with torch.no_grad():
        h = x + pre.attn(pre.ln_attn(x), is_causal=True)
        torch.testing.assert_close(pre(x, is_causal=True), h + pre.ff(pre.ln_ff(h)))
        h = post.ln_attn(x + post.attn(x, is_causal=True))
        torch.testing.assert_close(post(x, is_causal=True), post.ln_ff(h + post.ff(h)))


# --- the modern decoder's blocks: RMSNorm, RoPE, grouped-query attention, SwiGLU -------------


def test_rms_norm_matches_its_formula():
    norm = RMSNorm(D_MODEL, eps=1e-3)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(2, 5, D_MODEL) * 3 + 1
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-3) * norm.weight
    torch.testing.assert_close(norm(x), expected)
    assert isinstance(make_norm("layernorm", 8, eps=1e-6), nn.LayerNorm)
    assert make_norm("layernorm", 8, eps=1e-6).eps == 1e-6
    with pytest.raises(ValueError, match="layernorm, rmsnorm"):
        make_norm("batchnorm", 8)


def test_rotary_scores_depend_on_the_distance_only():
    head_dim, rope = 8, RotaryEmbedding(8, theta=100.0)
    q, k = torch.randn(1, 1, 1, head_dim), torch.randn(1, 1, 1, head_dim)

    def score(m: int, n: int) -> torch.Tensor:
        rotated_q = apply_rotary(q, *rope(torch.tensor([m])))
        rotated_k = apply_rotary(k, *rope(torch.tensor([n])))
        return (rotated_q * rotated_k).sum()

    torch.testing.assert_close(score(7, 3), score(104, 100))
    assert not torch.allclose(score(7, 3), score(7, 4))
    # position 0 turns nothing; any position keeps the length (a rotation)
    torch.testing.assert_close(apply_rotary(q, *rope(torch.tensor([0]))), q)
    turned = apply_rotary(q, *rope(torch.tensor([57])))
    torch.testing.assert_close(turned.norm(), q.norm())
    # dimension i turns with i + d/2 (transformers' layout), at theta^(-2i/d) per position
    pair = torch.zeros(1, 1, 1, head_dim)
    pair[..., 1] = 1.0
    turned = apply_rotary(pair, *rope(torch.tensor([3])))[0, 0, 0]
    angle = 3 * 100.0 ** (-2 / head_dim)
    torch.testing.assert_close(turned[[1, 5]], torch.tensor([math.cos(angle), math.sin(angle)]))


def test_grouped_query_attention_is_full_attention_with_shared_key_value_heads():
    """n_kv_head=2 of 4: each key/value head serves two query heads, so the layer equals a
    full one whose K and V heads are each repeated twice; its cache holds 2 heads."""
    torch.manual_seed(0)
    gqa = MultiHeadAttention(D_MODEL, N_HEADS, n_kv_head=2).eval()
    full = MultiHeadAttention(D_MODEL, N_HEADS).eval()
    head = D_MODEL // N_HEADS
    assert gqa.in_proj.weight.shape == ((N_HEADS + 2 * 2) * head, D_MODEL)
    q, k, v = gqa.in_proj.weight.split([D_MODEL, 2 * head, 2 * head])
    qb, kb, vb = gqa.in_proj.bias.split([D_MODEL, 2 * head, 2 * head])

    def repeated(t):  # [2 heads x head] -> [4 heads x head], heads 0 0 1 1
        return t.unflatten(0, (2, head)).repeat_interleave(2, dim=0).flatten(0, 1)

    with torch.no_grad():
        full.in_proj.weight.copy_(torch.cat([q, repeated(k), repeated(v)]))
        full.in_proj.bias.copy_(torch.cat([qb, repeated(kb), repeated(vb)]))
        full.out_proj.load_state_dict(gqa.out_proj.state_dict())
    x = torch.randn(2, 7, D_MODEL)
    rope = RotaryEmbedding(head)(torch.arange(7))
    torch.testing.assert_close(gqa(x, is_causal=True), full(x, is_causal=True))
    torch.testing.assert_close(
        gqa(x, is_causal=True, rotary=rope), full(x, is_causal=True, rotary=rope)
    )
    assert gqa.new_cache(2, 10, x).k.shape == (2, 2, 10, head)
    with pytest.raises(
        ValueError,
        match="n_kv_head must be a positive divisor of MultiHeadAttention.n_head=4, got 3",
    ):
        MultiHeadAttention(D_MODEL, N_HEADS, n_kv_head=3)


def test_qkv_biases_without_other_biases():
    attn = MultiHeadAttention(D_MODEL, N_HEADS, bias=False, qkv_bias=True)
    assert attn.in_proj.bias is not None and attn.out_proj.bias is None


def test_swiglu_matches_its_formula():
    torch.manual_seed(0)
    ff = SwiGLU(D_MODEL, 24).eval()
    x = torch.randn(2, 5, D_MODEL)
    gate, up = ff.fc.weight[:24], ff.fc.weight[24:]
    expected = (nn.functional.silu(x @ gate.T) * (x @ up.T)) @ ff.proj.weight.T
    torch.testing.assert_close(ff(x), expected)
