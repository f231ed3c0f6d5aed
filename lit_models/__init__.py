"""The models of the suite, each a LightningModule; shared building blocks live in `modules/`."""

from lit_models.gpt import GPT
from lit_models.language_model import LanguageModel
from lit_models.mlp_lm import MLPLanguageModel, WaveNetLanguageModel
from lit_models.rnn_lm import RNNLanguageModel
from lit_models.seq2seq import AttentionSeq2Seq, Seq2Seq
from lit_models.transformer_translator import TransformerTranslator
from lit_models.translation import Translator

__all__ = [
    "GPT",
    "AttentionSeq2Seq",
    "LanguageModel",
    "MLPLanguageModel",
    "RNNLanguageModel",
    "Seq2Seq",
    "TransformerTranslator",
    "Translator",
    "WaveNetLanguageModel",
]
