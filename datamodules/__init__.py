"""Corpora as LightningDataModules: loading, tokenizing, batching."""

from datamodules.language_modeling import LanguageModelingDataModule
from datamodules.names import NamesDataModule
from datamodules.tinyshakespeare import TinyShakespeareDataModule
from datamodules.wikitext2 import WikiText2DataModule

__all__ = [
    "LanguageModelingDataModule",
    "NamesDataModule",
    "TinyShakespeareDataModule",
    "WikiText2DataModule",
]
