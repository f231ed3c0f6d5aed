"""Corpora as LightningDataModules: loading, tokenizing, batching."""

from datamodules.language_modeling import LanguageModelingDataModule
from datamodules.multi30k import Multi30kDataModule
from datamodules.names import NamesDataModule
from datamodules.tatoeba import TatoebaZhEnDataModule
from datamodules.tinyshakespeare import TinyShakespeareDataModule
from datamodules.translation import TranslationDataModule
from datamodules.wikitext2 import WikiText2DataModule

__all__ = [
    "LanguageModelingDataModule",
    "Multi30kDataModule",
    "NamesDataModule",
    "TatoebaZhEnDataModule",
    "TinyShakespeareDataModule",
    "TranslationDataModule",
    "WikiText2DataModule",
]
