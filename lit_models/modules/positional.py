"""Where a token stands in the sequence: learned embeddings (GPT) or fixed sinusoids
(Vaswani et al. 2017, section 3.5), both added to the token embeddings,

    PE(pos, 2i) = sin(pos / 10000^(2i/d)),   PE(pos, 2i+1) = cos(pos / 10000^(2i/d)),

or rotary embeddings (RoPE, Su et al. 2021, as in LLaMA and Qwen2), which rotate each head's
queries and keys by angles proportional to their positions, so that q_m . k_n depends on
m - n only:

    theta_i = rope_theta^(-2i/d_head),  RoPE(x, m) = x cos(m theta) + rotate_half(x) sin(m theta)

in transformers' layout: dimension i is paired with i + d_head/2 (not with its neighbour,
as in Meta's original code), so LLaMA weights from Hugging Face load as they are.

A model trained on a short context and stretched to a longer one scales the frequencies
(`rope_scaling`, Hugging Face's keys): `linear` divides every frequency by `factor`
(position interpolation, Chen et al. 2023); `llama3` (Llama 3.1 and 3.2) divides only the
low frequencies, whose wavelength exceeds `original_max_position_embeddings / low_freq_factor`,
keeps the high ones (wavelength below `.../ high_freq_factor`) and blends between the two.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import torch
from torch import nn

from core.checks import require_positive
from core.errors import SettingError

Positional = Literal["learned", "sinusoidal"]  # added to the token embeddings
POSITIONAL_KINDS: tuple[str, ...] = get_args(Positional)
PositionalOrRotary = Literal["learned", "sinusoidal", "rope"]  # a decoder's choices


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


class RotaryEmbedding(nn.Module):
    """The angles of RoPE at given positions, as the (cos, sin) pair `apply_rotary` takes."""

    def __init__(self, head_dim: int, theta: float = 10000.0, scaling: dict | None = None):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head size, got {head_dim}")
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim)
        if scaling:
            inv_freq = scaled_frequencies(inv_freq, scaling)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # fixed: not checkpointed

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [..., T] -> cos, sin [..., T, head_dim], in float32 (long contexts)."""
        angles = positions[..., None].float() * self.inv_freq
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()


RopeScaling = Literal["linear", "llama3"]
# The keys each kind reads, as Hugging Face's config.json spells them.
ROPE_SCALING_KEYS: dict[str, tuple[str, ...]] = {
    "linear": ("factor",),
    "llama3": (
        "factor",
        "low_freq_factor",
        "high_freq_factor",
        "original_max_position_embeddings",
    ),
}


def check_rope_scaling(
    scaling: dict[str, Any] | None, key: str = "model.init_args.rope_scaling"
) -> None:
    """A SettingError naming what is missing or out of range in `scaling`."""
    if not scaling:
        return
    kind = scaling.get("rope_type")
    if kind not in ROPE_SCALING_KEYS:
        raise SettingError(
            f"{key}.rope_type={kind!r} is not known; choose one of "
            f"{', '.join(ROPE_SCALING_KEYS)} (or leave {key} unset)."
        )
    for name in ROPE_SCALING_KEYS[kind]:
        value = scaling.get(name)
        if not isinstance(value, (int, float)) or not value > 0:
            raise SettingError(f"{key}.{name} must be a positive number for {kind}, got {value!r}.")
    if kind == "llama3" and not scaling["high_freq_factor"] > scaling["low_freq_factor"]:
        raise SettingError(f"{key}.high_freq_factor must exceed low_freq_factor.")


def scaled_frequencies(inv_freq: torch.Tensor, scaling: dict[str, Any]) -> torch.Tensor:
    check_rope_scaling(scaling)
    factor = scaling["factor"]
    if scaling["rope_type"] == "linear":
        return inv_freq / factor
    context = scaling["original_max_position_embeddings"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    wavelength = 2 * math.pi / inv_freq
    # 0 at the longest wavelengths kept whole (divided by factor), 1 at the shortest kept as is
    blend = ((context / wavelength - low) / (high - low)).clamp(0.0, 1.0)
    return (1 - blend) * inv_freq / factor + blend * inv_freq


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, h, T, d_head] by the angles of its positions (cos, sin: [T, d_head] or,
    each row with its own positions, [B, T, d_head])."""
    cos, sin = cos.unsqueeze(-3).to(x.dtype), sin.unsqueeze(-3).to(x.dtype)
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin
