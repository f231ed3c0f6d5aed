"""Normalisation of the residual stream: LayerNorm (Ba et al. 2016), as in GPT, or RMSNorm
(Zhang & Sennrich 2019), as in LLaMA and Qwen2:

    LayerNorm(x) = (x - mean(x)) / sqrt(var(x) + eps) * g + b
    RMSNorm(x)   = x / sqrt(mean(x^2) + eps) * g          no centring, no bias
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

Norm = Literal["layernorm", "rmsnorm"]
NORMS: tuple[str, ...] = get_args(Norm)


class RMSNorm(nn.Module):
    def __init__(self, n_embd: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In float32 whatever the input's precision (bf16's 8 mantissa bits lose the mean),
        # back to it before the gain: the same rounding as transformers' LlamaRMSNorm.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def make_norm(kind: Norm, n_embd: int, bias: bool = True, eps: float = 1e-5) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(n_embd, eps=eps, bias=bias)
    if kind == "rmsnorm":
        return RMSNorm(n_embd, eps=eps)
    raise ValueError(f"norm={kind!r} is not known; choose one of {', '.join(NORMS)}")
