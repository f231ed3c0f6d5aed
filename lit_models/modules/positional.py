"""Where a token stands in the sequence: learned embeddings (GPT) or fixed sinusoids
(Vaswani et al. 2017, section 3.5):

    PE(pos, 2i) = sin(pos / 10000^(2i/d)),   PE(pos, 2i+1) = cos(pos / 10000^(2i/d)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

POSITIONAL_KINDS = ("learned", "sinusoidal")


class LearnedPositionalEmbedding(nn.Module):
    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        """Encodings of positions offset .. offset+length-1, shape [length, d_model]."""
        if offset + length > self.max_len:
            raise ValueError(
                f"position {offset + length - 1} is past the {self.max_len} learned positions"
            )
        positions = torch.arange(offset, offset + length, device=self.embedding.weight.device)
        return self.at(positions)

    def at(self, positions: torch.Tensor) -> torch.Tensor:
        """Encodings of arbitrary positions (any shape) -> [..., d_model]."""
        return self.embedding(positions)


class SinusoidalPositionalEncoding(nn.Module):
    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.max_len = max_len
        position = torch.arange(max_len).unsqueeze(1)
        inv_freq = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * inv_freq)
        pe[:, 1::2] = torch.cos(position * inv_freq)[:, : d_model // 2]
        self.register_buffer("pe", pe, persistent=False)  # fixed: recomputed, not checkpointed

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        if offset + length > self.max_len:
            raise ValueError(
                f"position {offset + length - 1} is past the {self.max_len} precomputed positions"
            )
        return self.pe[offset : offset + length]

    def at(self, positions: torch.Tensor) -> torch.Tensor:
        """Encodings of arbitrary positions (any shape) -> [..., d_model]."""
        return self.pe[positions]


def make_positional(kind: str, max_len: int, d_model: int) -> nn.Module:
    if kind == "learned":
        return LearnedPositionalEmbedding(max_len, d_model)
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(max_len, d_model)
    raise ValueError(
        f"positional={kind!r} is not known; choose one of {', '.join(POSITIONAL_KINDS)}"
    )
