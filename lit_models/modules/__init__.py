"""Building blocks shared by several models: attention, positional encodings, Transformer blocks."""

from lit_models.modules.attention import KVCache, MultiHeadAttention
from lit_models.modules.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    make_positional,
)
from lit_models.modules.transformer import FeedForward, TransformerBlock

__all__ = [
    "FeedForward",
    "KVCache",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "SinusoidalPositionalEncoding",
    "TransformerBlock",
    "make_positional",
]
