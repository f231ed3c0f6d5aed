"""The models of the suite, each a LightningModule; shared building blocks live in `modules/`."""

from lit_models.gpt import GPT
from lit_models.language_model import LanguageModel
from lit_models.mlp_lm import MLPLanguageModel, WaveNetLanguageModel
from lit_models.rnn_lm import RNNLanguageModel

__all__ = ["GPT", "LanguageModel", "MLPLanguageModel", "RNNLanguageModel", "WaveNetLanguageModel"]
