"""Where a token stands in the sequence: learned embeddings (GPT) or fixed sinusoids
(Vaswani et al. 2017, section 3.5):

    PE(pos, 2i) = sin(pos / 10000^(2i/d)),   PE(pos, 2i+1) = cos(pos / 10000^(2i/d)).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import nn

from core.checks import require_positive

Positional = Literal["learned", "sinusoidal"]
POSITIONAL_KINDS: tuple[str, ...] = get_args(Positional)


class LearnedPositionalEmbedding(nn.Module):
    def __init__(self, max_len: int, n_embd: int):
        super().__init__()
        require_positive("LearnedPositionalEmbedding", max_len=max_len, n_embd=n_embd)
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, n_embd)

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        """Encodings of positions offset .. offset+length-1, shape [length, n_embd]."""
        if offset + length > self.max_len:
            raise ValueError(
                f"position {offset + length - 1} is past the {self.max_len} learned positions"
            )
        positions = torch.arange(offset, offset + length, device=self.embedding.weight.device)
        return self.at(positions)

    def at(self, positions: torch.Tensor) -> torch.Tensor:
        """Encodings of arbitrary positions (any shape) -> [..., n_embd]."""
        return self.embedding(positions)


class SinusoidalPositionalEncoding(nn.Module):
    def __init__(self, max_len: int, n_embd: int):
        super().__init__()
        require_positive("SinusoidalPositionalEncoding", max_len=max_len, n_embd=n_embd)
        self.max_len = max_len
        position = torch.arange(max_len).unsqueeze(1)
        inv_freq = torch.exp(torch.arange(0, n_embd, 2) * (-math.log(10000.0) / n_embd))
        pe = torch.zeros(max_len, n_embd)
        pe[:, 0::2] = torch.sin(position * inv_freq)
        pe[:, 1::2] = torch.cos(position * inv_freq)[:, : n_embd // 2]
        self.register_buffer("pe", pe, persistent=False)  # fixed: recomputed, not checkpointed

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        if offset + length > self.max_len:
            raise ValueError(
                f"position {offset + length - 1} is past the {self.max_len} precomputed positions"
            )
        return self.pe[offset : offset + length]

    def at(self, positions: torch.Tensor) -> torch.Tensor:
        """Encodings of arbitrary positions (any shape) -> [..., n_embd]."""
        return self.pe[positions]


def make_positional(kind: Positional, max_len: int, n_embd: int) -> nn.Module:
    if kind == "learned":
        return LearnedPositionalEmbedding(max_len, n_embd)
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(max_len, n_embd)
    raise ValueError(
        f"positional={kind!r} is not known; choose one of {', '.join(POSITIONAL_KINDS)}"
    )
