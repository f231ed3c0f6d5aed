"""The models of the suite, each a LightningModule; shared building blocks live in `modules/`."""

from lit_models.dpo import DPO
from lit_models.gpt import GPT
from lit_models.language_model import LanguageModel
from lit_models.lora import LoRAGPT
from lit_models.mlp_lm import MLPLanguageModel, WaveNetLanguageModel
from lit_models.rnn_lm import RNNLanguageModel
from lit_models.seq2seq import AttentionSeq2Seq, Seq2Seq
from lit_models.sequence_model import SequenceModel
from lit_models.tabular_mlp import TabularMLP
from lit_models.text_classifier import TextClassifier
from lit_models.transformer_translator import TransformerTranslator
from lit_models.translation import Translator
from lit_models.wide_deep import WideDeep
from lit_models.word2vec import Word2Vec

__all__ = [
    "AttentionSeq2Seq",
    "DPO",
    "GPT",
    "LanguageModel",
    "LoRAGPT",
    "MLPLanguageModel",
    "RNNLanguageModel",
    "Seq2Seq",
    "SequenceModel",
    "TabularMLP",
    "TextClassifier",
    "TransformerTranslator",
    "Translator",
    "WaveNetLanguageModel",
    "WideDeep",
    "Word2Vec",
]
