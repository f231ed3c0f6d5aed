"""Transformer layers: attention and a position-wise feed-forward network, each wrapped in a
residual connection with layer normalisation, either before the sub-layer (pre-norm, as in
GPT-2) or after it (post-norm, as in the original Transformer).

`TransformerBlock` is the encoder layer (and GPT's decoder-only layer); `TransformerDecoderBlock`
is the encoder-decoder Transformer's decoder layer (Vaswani et al. 2017, section 3.1), which
adds cross-attention to the encoder's output between its self-attention and its FFN.

The feed-forward network is act(x W_1) W_2 with GELU (GPT; `gelu_tanh` is GPT-2's tanh
approximation of it) or ReLU (the original Transformer), or the gated SwiGLU of LLaMA."""

from __future__ import annotations

from functools import partial
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from core.checks import require_positive, require_probability
from lit_models.modules.attention import KVCache, MultiHeadAttention
from lit_models.modules.norm import Norm, make_norm

Activation = Literal["gelu", "gelu_tanh", "relu"]
ACTIVATIONS = {  # torch's module of each Activation
    "gelu": nn.GELU,
    "gelu_tanh": partial(nn.GELU, approximate="tanh"),
    "relu": nn.ReLU,
}
FeedForwardKind = Literal["gelu", "gelu_tanh", "relu", "swiglu"]
FEED_FORWARD_KINDS: tuple[str, ...] = get_args(FeedForwardKind)


class FeedForward(nn.Module):
    """FFN(x) = act(x W_1 + b_1) W_2 + b_2, act GELU (GPT) or ReLU (the original Transformer)."""

    def __init__(
        self,
        n_embd: int,
        n_ff: int,
        dropout: float = 0.0,
        bias: bool = True,
        activation: Activation = "gelu",
    ):
        super().__init__()
        # Checked here as well: a block built in Python is not validated by the CLI's parser.
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation={activation!r} is not known; choose one of {', '.join(ACTIVATIONS)}"
            )
        require_positive("FeedForward", n_embd=n_embd, n_ff=n_ff)
        require_probability("FeedForward", dropout=dropout)
        self.fc = nn.Linear(n_embd, n_ff, bias=bias)
        self.act = ACTIVATIONS[activation]()
        self.proj = nn.Linear(n_ff, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.act(self.fc(x))))


class SwiGLU(nn.Module):
    """FFN(x) = (SiLU(x W_gate) * x W_up) W_down (Shazeer 2020; LLaMA). W_gate and W_up are one
    stacked matrix `fc` ([W_gate; W_up], 2 n_ff rows), W_down is `proj`: the names of
    FeedForward's two projections, which LoRA targets."""

    def __init__(self, n_embd: int, n_ff: int, dropout: float = 0.0, bias: bool = False):
        super().__init__()
        self.fc = nn.Linear(n_embd, 2 * n_ff, bias=bias)  # [W_gate; W_up]
        self.proj = nn.Linear(n_ff, n_embd, bias=bias)  # W_down
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.fc(x).chunk(2, dim=-1)
        return self.dropout(self.proj(F.silu(gate) * up))


def make_feed_forward(
    kind: FeedForwardKind, n_embd: int, n_ff: int, dropout: float = 0.0, bias: bool = True
) -> nn.Module:
    if kind == "swiglu":
        return SwiGLU(n_embd, n_ff, dropout=dropout, bias=bias)
    if kind in ACTIVATIONS:
        return FeedForward(n_embd, n_ff, dropout=dropout, bias=bias, activation=kind)
    raise ValueError(
        f"feed-forward {kind!r} is not known; choose one of {', '.join(FEED_FORWARD_KINDS)}"
    )


class TransformerBlock(nn.Module):
    """Self-attention then feed-forward, each as x + Dropout(SubLayer(LN(x))) when `norm_first`,
    else LN(x + Dropout(SubLayer(x))). LN is LayerNorm or RMSNorm (`norm`); the attention may
    have fewer key/value heads (`n_kv_head`) and take rotary angles (`rotary` in forward)."""

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        n_ff: int,
        dropout: float = 0.0,
        bias: bool = True,
        norm_first: bool = True,
        activation: FeedForwardKind = "gelu",
        norm: Norm = "layernorm",
        norm_eps: float = 1e-5,
        n_kv_head: int | None = None,
        qkv_bias: bool | None = None,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.ln_attn = make_norm(norm, n_embd, bias=bias, eps=norm_eps)
        self.attn = MultiHeadAttention(
            n_embd, n_head, dropout=dropout, bias=bias, n_kv_head=n_kv_head, qkv_bias=qkv_bias
        )
        self.attn_dropout = nn.Dropout(dropout)
        self.ln_ff = make_norm(norm, n_embd, bias=bias, eps=norm_eps)
        self.ff = make_feed_forward(activation, n_embd, n_ff, dropout=dropout, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """`cache` holds the keys and values of earlier positions when decoding step by step;
        `rotary` is RoPE's (cos, sin) at the positions of x."""

        def attend(h: torch.Tensor) -> torch.Tensor:
            return self.attn_dropout(
                self.attn(h, attn_mask=attn_mask, is_causal=is_causal, cache=cache, rotary=rotary)
            )

        if self.norm_first:
            x = x + attend(self.ln_attn(x))
            return x + self.ff(self.ln_ff(x))
        x = self.ln_attn(x + attend(x))
        return self.ln_ff(x + self.ff(x))


class TransformerDecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to the encoder's output (the memory), then the
    feed-forward network; each sub-layer as x + Dropout(SubLayer(LN(x))) when `norm_first`,
    else LN(x + Dropout(SubLayer(x)))."""

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        n_ff: int,
        dropout: float = 0.0,
        bias: bool = True,
        norm_first: bool = True,
        activation: Activation = "relu",
    ):
        super().__init__()
        self.norm_first = norm_first
        self.ln_self = nn.LayerNorm(n_embd, bias=bias)
        self.self_attn = MultiHeadAttention(n_embd, n_head, dropout=dropout, bias=bias)
        self.ln_cross = nn.LayerNorm(n_embd, bias=bias)
        self.cross_attn = MultiHeadAttention(n_embd, n_head, dropout=dropout, bias=bias)
        self.ln_ff = nn.LayerNorm(n_embd, bias=bias)
        self.ff = FeedForward(n_embd, n_ff, dropout=dropout, bias=bias, activation=activation)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, d]: the target positions, after those in `cache` when decoding step by step.

        The self-attention is causal: a position sees the cached ones and those up to itself
        (right padding of the target then never reaches a real position). `memory` [B, S, d]
        is the encoder's output, or `memory_kv` its keys and values, projected once per source
        (`cross_attn.project_memory`); `memory_mask` broadcasts to [B, h, T, S], True at real
        source positions. `need_weights` also returns the cross-attention weights [B, h, T, S].
        """
        # With a cache, the T new queries sit after the cached keys: causal, aligned at the end.
        past = 0 if cache is None else cache.length
        causal = None
        if past and x.size(1) > 1:
            T = x.size(1)
            causal = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(past)

        def self_attend(h: torch.Tensor) -> torch.Tensor:
            y = self.self_attn(h, attn_mask=causal, is_causal=past == 0, cache=cache)
            return self.dropout(y)

        weights = None

        def cross_attend(h: torch.Tensor) -> torch.Tensor:
            nonlocal weights
            y = self.cross_attn(
                h, memory, attn_mask=memory_mask, memory_kv=memory_kv, need_weights=need_weights
            )
            if need_weights:
                y, weights = y
            return self.dropout(y)

        if self.norm_first:
            x = x + self_attend(self.ln_self(x))
            x = x + cross_attend(self.ln_cross(x))
            x = x + self.ff(self.ln_ff(x))
        else:
            x = self.ln_self(x + self_attend(x))
            x = self.ln_cross(x + cross_attend(x))
            x = self.ln_ff(x + self.ff(x))
        return (x, weights) if need_weights else x
