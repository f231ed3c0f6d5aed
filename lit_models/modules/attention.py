"""Multi-head scaled dot-product attention (Vaswani et al. 2017, section 3.2).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V,   one such head per h,
    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O.

The kernel is `F.scaled_dot_product_attention`, which picks a fused implementation (flash or
memory-efficient) where the hardware has one. Q, K and V projections are one stacked matrix,
laid out like `nn.MultiheadAttention.in_proj_weight`, so self-attention is a single matmul
and the layer can be checked against torch's own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Keys and values of the positions seen so far, for one attention layer, preallocated to
    `max_len` so that each decoding step writes in place instead of concatenating."""

    def __init__(self, batch: int, n_heads: int, max_len: int, head_dim: int, like: torch.Tensor):
        shape = (batch, n_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=like.dtype, device=like.device)
        self.v = torch.zeros(shape, dtype=like.dtype, device=like.device)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store keys/values of new positions; return those of every position so far."""
        end = self.length + k.size(2)
        if end > self.k.size(2):
            raise ValueError(f"KV cache holds {self.k.size(2)} positions, {end} were asked for")
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep the batch rows `rows` (beam search follows the surviving beams)."""
        self.k, self.v = self.k.index_select(0, rows), self.v.index_select(0, rows)


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.dropout = d_model, n_heads, dropout
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias)  # [W_Q; W_K; W_V]
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W^O

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Self-attention over `query` [B, T, d], or cross-attention to `memory` [B, S, d].

        `attn_mask` broadcasts to [B, h, T, S]: True (or 0.0) where attending is allowed.
        `is_causal` hides later positions (position t sees 0..t only).
        `cache`, in self-attention, adds this call's keys and values to those of earlier calls,
        so that decoding one token attends to the whole prefix without recomputing it.
        """
        d = self.d_model
        if memory is None:
            q, k, v = self.in_proj(query).split(d, dim=-1)
        else:
            w, b = self.in_proj.weight, self.in_proj.bias
            q = F.linear(query, w[:d], None if b is None else b[:d])
            k, v = F.linear(memory, w[d:], None if b is None else b[d:]).split(d, dim=-1)
        q, k, v = (self._split_heads(t) for t in (q, k, v))
        if cache is not None:
            k, v = cache.append(k, v)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
        )
        return self.out_proj(self._merge_heads(y))

    def new_cache(self, batch: int, max_len: int, like: torch.Tensor) -> KVCache:
        return KVCache(batch, self.n_heads, max_len, self.d_model // self.n_heads, like)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, d] -> [B, h, T, d/h]
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, -1).transpose(1, 2)

    @staticmethod
    def _merge_heads(x: torch.Tensor) -> torch.Tensor:  # [B, h, T, d/h] -> [B, T, d]
        B, _, T, _ = x.shape
        return x.transpose(1, 2).reshape(B, T, -1)
