"""A Transformer layer: attention and a position-wise feed-forward network, each wrapped in
a residual connection with layer normalisation, either before the sub-layer (pre-norm, as in
GPT-2) or after it (post-norm, as in the original Transformer)."""

from __future__ import annotations

import torch
from torch import nn

from lit_models.modules.attention import KVCache, MultiHeadAttention


class FeedForward(nn.Module):
    """FFN(x) = GELU(x W_1 + b_1) W_2 + b_2."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff, bias=bias)
        self.act = nn.GELU()
        self.proj = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.act(self.fc(x))))


class TransformerBlock(nn.Module):
    """Self-attention then feed-forward, each as x + Dropout(SubLayer(LN(x))) when `norm_first`,
    else LN(x + Dropout(SubLayer(x)))."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        bias: bool = True,
        norm_first: bool = True,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.ln_attn = nn.LayerNorm(d_model, bias=bias)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)
        self.ln_ff = nn.LayerNorm(d_model, bias=bias)
        self.ff = FeedForward(d_model, d_ff, dropout=dropout, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """`cache` holds the keys and values of earlier positions when decoding step by step."""

        def attend(h: torch.Tensor) -> torch.Tensor:
            return self.attn_dropout(
                self.attn(h, attn_mask=attn_mask, is_causal=is_causal, cache=cache)
            )

        if self.norm_first:
            x = x + attend(self.ln_attn(x))
            return x + self.ff(self.ln_ff(x))
        x = self.ln_attn(x + attend(x))
        return self.ln_ff(x + self.ff(x))
