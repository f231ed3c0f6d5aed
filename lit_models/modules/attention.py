"""Attention: multi-head scaled dot-product attention (Vaswani et al. 2017, section 3.2) and
additive attention (Bahdanau et al. 2015, appendix A.1.2).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V,   one such head per h,
    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O.

The kernel is `F.scaled_dot_product_attention`, which picks a fused implementation (flash or
memory-efficient) where the hardware has one. Q, K and V projections are one stacked matrix,
laid out like `nn.MultiheadAttention.in_proj_weight`, so self-attention is a single matmul
and the layer can be checked against torch's own.

Grouped-query attention (Ainslie et al. 2023, as in LLaMA 2/3 and Qwen2): `n_kv_head` < n_head
key/value heads, each shared by n_head / n_kv_head query heads. The stacked matrix then has
(n_head + 2 n_kv_head) d_head rows, [W_Q; W_K; W_V], and the KV cache holds n_kv_head heads.
With rotary embeddings the queries and keys are rotated after the projection, before the
keys enter the cache.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.checks import require_divisor, require_positive, require_probability
from lit_models.modules.positional import apply_rotary


class KVCache:
    """Keys and values of the positions seen so far, for one attention layer, preallocated to
    `max_len` so that each decoding step writes in place instead of concatenating."""

    def __init__(self, batch: int, n_head: int, max_len: int, head_dim: int, like: torch.Tensor):
        shape = (batch, n_head, max_len, head_dim)
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
    def __init__(
        self,
        n_embd: int,
        n_head: int,
        dropout: float = 0.0,
        bias: bool = True,
        n_kv_head: int | None = None,
        qkv_bias: bool | None = None,
    ):
        """`n_kv_head`: key/value heads (default n_head; fewer is grouped-query attention).
        `qkv_bias`: biases on the Q, K, V projections (default `bias`; Qwen2 has them there
        only)."""
        super().__init__()
        n_kv_head = n_kv_head or n_head
        require_positive("MultiHeadAttention", n_embd=n_embd)
        require_divisor("MultiHeadAttention", "n_head", n_head, "n_embd", n_embd)
        require_divisor("MultiHeadAttention", "n_kv_head", n_kv_head, "n_head", n_head)
        require_probability("MultiHeadAttention", dropout=dropout)
        self.n_embd, self.n_head, self.n_kv_head, self.dropout = n_embd, n_head, n_kv_head, dropout
        self.head_dim = n_embd // n_head
        kv_dim = n_kv_head * self.head_dim
        self.qkv_sizes = (n_embd, kv_dim, kv_dim)
        qkv_bias = bias if qkv_bias is None else qkv_bias
        self.in_proj = nn.Linear(n_embd, n_embd + 2 * kv_dim, bias=qkv_bias)  # [W_Q; W_K; W_V]
        self.out_proj = nn.Linear(n_embd, n_embd, bias=bias)  # W^O

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        need_weights: bool = False,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Self-attention over `query` [B, T, d], or cross-attention to `memory` [B, S, d].

        `attn_mask` broadcasts to [B, h, T, S]: True (or 0.0) where attending is allowed.
        `is_causal` hides later positions (position t sees 0..t only).
        `cache`, in self-attention, adds this call's keys and values to those of earlier calls,
        so that decoding one token attends to the whole prefix without recomputing it.
        `memory_kv`, in cross-attention, are the memory's keys and values from `project_memory`,
        computed once per source instead of at every decoding step.
        `need_weights` also returns the attention weights [B, h, T, S] (computed without the
        fused kernel, which does not expose them: for attention maps, not for training).
        `rotary`, in self-attention, is the (cos, sin) of RoPE at the query positions
        (positional.RotaryEmbedding), applied to the queries and the new keys.
        """
        d = self.n_embd
        if memory is None and memory_kv is None:
            q, k, v = self.in_proj(query).split(self.qkv_sizes, dim=-1)
            q, k, v = (self._split_heads(t) for t in (q, k, v))
            if rotary is not None:
                q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        else:
            w, b = self.in_proj.weight, self.in_proj.bias
            q = self._split_heads(F.linear(query, w[:d], None if b is None else b[:d]))
            k, v = memory_kv if memory_kv is not None else self.project_memory(memory)
        if cache is not None:
            k, v = cache.append(k, v)
        grouped = self.n_kv_head < self.n_head  # each key/value head serves n_head / n_kv_head
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            if grouped:
                group = self.n_head // self.n_kv_head
                k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
            y, weights = _attention_with_weights(q, k, v, attn_mask, is_causal, dropout_p)
            return self.out_proj(self._merge_heads(y)), weights
        # enable_gqa: the kernel shares each key/value head with its group, without copies
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=dropout_p,
            is_causal=is_causal,
            enable_gqa=grouped,
        )
        return self.out_proj(self._merge_heads(y))

    def project_memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of `memory` [B, S, d], split into heads: two [B, h_kv, S, d/h]."""
        d, w, b = self.n_embd, self.in_proj.weight, self.in_proj.bias
        kv = F.linear(memory, w[d:], None if b is None else b[d:])
        k, v = kv.split(self.qkv_sizes[1:], dim=-1)
        return self._split_heads(k), self._split_heads(v)

    def new_cache(self, batch: int, max_len: int, like: torch.Tensor) -> KVCache:
        return KVCache(batch, self.n_kv_head, max_len, self.head_dim, like)

    def _split_heads(
        self, x: torch.Tensor
    ) -> torch.Tensor:  # [B, T, h d_head] -> [B, h, T, d_head]
        B, T, _ = x.shape
        return x.view(B, T, -1, self.head_dim).transpose(1, 2)

    @staticmethod
    def _merge_heads(x: torch.Tensor) -> torch.Tensor:  # [B, h, T, d/h] -> [B, T, d]
        B, _, T, _ = x.shape
        return x.transpose(1, 2).reshape(B, T, -1)


def _attention_with_weights(q, k, v, attn_mask, is_causal, dropout_p):
    """What `F.scaled_dot_product_attention` computes, written out so the weights can be kept."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if is_causal:
        T, S = scores.shape[-2:]
        scores = scores.masked_fill(
            torch.ones(T, S, dtype=torch.bool, device=q.device).triu(1), float("-inf")
        )
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    weights = scores.softmax(dim=-1)
    return F.dropout(weights, dropout_p) @ v, weights


class AdditiveAttention(nn.Module):
    """Additive attention (Bahdanau et al. 2015): how well the decoder state s matches each
    annotation h_j of the source, as a distribution over the real (not padding) positions.

        e_j = v^T tanh(W s + U h_j)
        a   = softmax(e)          e_j = -inf at padding, so a_j = 0 there exactly
        c   = sum_j a_j h_j       the context vector

    U h_j does not depend on the decoder step: `project_keys` computes it once per source.
    """

    def __init__(self, query_size: int, key_size: int, n_hidden: int):
        super().__init__()
        require_positive(
            "AdditiveAttention", query_size=query_size, key_size=key_size, n_hidden=n_hidden
        )
        self.query_proj = nn.Linear(query_size, n_hidden, bias=False)  # W
        self.key_proj = nn.Linear(key_size, n_hidden)  # U, with the layer's one bias
        self.score = nn.Linear(n_hidden, 1, bias=False)  # v

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """U h_j for every source position: [B, S, key_size] -> [B, S, n_hidden]."""
        return self.key_proj(keys)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        mask: torch.Tensor | None = None,
        projected_keys: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query s [B, query_size], keys h [B, S, key_size], mask [B, S] True at real positions
        -> (context c [B, key_size], weights a [B, S])."""
        if projected_keys is None:
            projected_keys = self.project_keys(keys)
        energy = self.score(torch.tanh(self.query_proj(query)[:, None] + projected_keys))
        energy = energy.squeeze(-1)
        if mask is not None:
            energy = energy.masked_fill(~mask, float("-inf"))
        weights = energy.softmax(dim=-1)
        context = torch.bmm(weights[:, None], keys).squeeze(1)
        return context, weights
