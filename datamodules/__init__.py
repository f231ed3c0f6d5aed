"""Corpora as LightningDataModules: loading, tokenizing, batching."""

from datamodules.adult import AdultDataModule
from datamodules.chat import ChatDataModule
from datamodules.hf_text import HFTextDataModule
from datamodules.language_modeling import LanguageModelingDataModule
from datamodules.long_range import LongRangeDataModule
from datamodules.multi30k import Multi30kDataModule
from datamodules.names import NamesDataModule
from datamodules.preference import PreferenceDataModule
from datamodules.reviews import ReviewsDataModule
from datamodules.sentiment import RTPolarityDataModule, SST2DataModule
from datamodules.tabular import TabularDataModule
from datamodules.tatoeba import TatoebaZhEnDataModule
from datamodules.text_folder import TextFolderDataModule
from datamodules.tinyshakespeare import TinyShakespeareDataModule
from datamodules.translation import TranslationDataModule
from datamodules.wikitext2 import WikiText2DataModule
from datamodules.word2vec import Word2VecDataModule

__all__ = [
    "AdultDataModule",
    "ChatDataModule",
    "HFTextDataModule",
    "LanguageModelingDataModule",
    "LongRangeDataModule",
    "Multi30kDataModule",
    "NamesDataModule",
    "PreferenceDataModule",
    "RTPolarityDataModule",
    "ReviewsDataModule",
    "SST2DataModule",
    "TabularDataModule",
    "TatoebaZhEnDataModule",
    "TextFolderDataModule",
    "TinyShakespeareDataModule",
    "TranslationDataModule",
    "WikiText2DataModule",
    "Word2VecDataModule",
]
