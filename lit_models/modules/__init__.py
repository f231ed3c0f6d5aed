"""Building blocks shared by several models: attention, positional encodings, norms,
feed-forward networks, Transformer blocks, recurrent cells."""

from lit_models.modules.attention import AdditiveAttention, KVCache, MultiHeadAttention
from lit_models.modules.norm import RMSNorm, make_norm
from lit_models.modules.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    apply_rotary,
    make_positional,
)
from lit_models.modules.recurrent import Recurrent, make_recurrent
from lit_models.modules.transformer import (
    FeedForward,
    SwiGLU,
    TransformerBlock,
    TransformerDecoderBlock,
    make_feed_forward,
)

__all__ = [
    "AdditiveAttention",
    "FeedForward",
    "KVCache",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "RMSNorm",
    "Recurrent",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "SwiGLU",
    "TransformerBlock",
    "TransformerDecoderBlock",
    "apply_rotary",
    "make_feed_forward",
    "make_norm",
    "make_positional",
    "make_recurrent",
]
