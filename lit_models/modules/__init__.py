"""Building blocks shared by several models: attention, positional encodings, Transformer blocks,
recurrent cells."""

from lit_models.modules.attention import AdditiveAttention, KVCache, MultiHeadAttention
from lit_models.modules.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    make_positional,
)
from lit_models.modules.recurrent import Recurrent, make_recurrent
from lit_models.modules.transformer import (
    FeedForward,
    TransformerBlock,
    TransformerDecoderBlock,
)

__all__ = [
    "AdditiveAttention",
    "FeedForward",
    "KVCache",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "Recurrent",
    "SinusoidalPositionalEncoding",
    "TransformerBlock",
    "TransformerDecoderBlock",
    "make_positional",
    "make_recurrent",
]
