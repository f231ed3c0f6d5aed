"""Corpora as LightningDataModules: loading, tokenizing, batching."""

from datamodules.adult import AdultDataModule
from datamodules.chat import ChatDataModule
from datamodules.language_modeling import LanguageModelingDataModule
from datamodules.multi30k import Multi30kDataModule
from datamodules.names import NamesDataModule
from datamodules.reviews import ReviewsDataModule
from datamodules.sentiment import RTPolarityDataModule, SST2DataModule
from datamodules.tatoeba import TatoebaZhEnDataModule
from datamodules.tinyshakespeare import TinyShakespeareDataModule
from datamodules.translation import TranslationDataModule
from datamodules.wikitext2 import WikiText2DataModule
from datamodules.word2vec import Word2VecDataModule

__all__ = [
    "AdultDataModule",
    "ChatDataModule",
    "LanguageModelingDataModule",
    "Multi30kDataModule",
    "NamesDataModule",
    "RTPolarityDataModule",
    "ReviewsDataModule",
    "SST2DataModule",
    "TatoebaZhEnDataModule",
    "TinyShakespeareDataModule",
    "TranslationDataModule",
    "WikiText2DataModule",
    "Word2VecDataModule",
]
