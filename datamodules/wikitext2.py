"""WikiText-2 (Merity et al. 2016): Wikipedia articles, 2M training words, the standard
word-level language-modelling benchmark.

Local layouts read from `data_dir`: `train.txt/valid.txt/test.txt` (pytorch/examples) or
`wiki.{train,valid,test}.tokens` (`.raw` with `raw: true`). Missing files are fetched from the
HF hub (`Salesforce/wikitext`, config `wikitext-2-v1` or `wikitext-2-raw-v1`) with `datasets`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from core.constants import SPLITS
from core.files import atomic_write_bytes
from datamodules.dedup import Shingle
from datamodules.language_modeling import (
    Batching,
    LanguageModelingDataModule,
    LanguageModelTokenizer,
)

HUB_DATASET = "Salesforce/wikitext"
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}
# WikiText's files call the validation split `valid`.
FILE_SPLITS = {"train": "train", "val": "valid", "test": "test"}
VocabFrom = Literal["train", "all"]  # the splits the tokenizer is trained on
ARTICLE_HEADING = re.compile(r"^= (?!=).*(?<!=) =$")  # ` = Title = `, not ` = = Section = = `


class WikiText2DataModule(LanguageModelingDataModule):
    """WikiText-2; `raw: true` takes the untokenized variant (for BPE or characters)."""

    corpus = "wikitext-2"
    source_url = f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}/datasets/{HUB_DATASET}"

    def __init__(
        self,
        data_dir: str | None = None,
        raw: bool = False,
        tokenizer: LanguageModelTokenizer = "word",
        pretrained_tokenizer: str | None = None,
        bpe_vocab_size: int = 8192,
        block_size: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        download: bool = True,
        cache_dir: str | None = None,
        batching: Batching = "random_windows",
        vocab_from: VocabFrom = "train",
        dedup: bool = False,
        dedup_threshold: float = 0.8,
        dedup_num_perm: int = 128,
        dedup_shingle_size: int = 5,
        dedup_shingle: Shingle = "word",
    ):
        """
        Args:
            vocab_from: `train` (the tokenizer sees the train split only) or `all`: every
                split's words, as pytorch/examples' word_language_model builds its dictionary.
                On the real WikiText-2 both give the same 33,278 words (its valid and test
                words all occur in train); on a corpus where they do not (wikitext-2-mini),
                `train` reads unseen words as <unk>, which lowers perplexity, and `all` keeps
                them, so perplexities compare with pytorch/examples'.
        """
        self.raw = raw
        self.vocab_splits = SPLITS if vocab_from == "all" else ("train",)
        super().__init__(
            data_dir,
            tokenizer,
            bpe_vocab_size,
            block_size,
            batch_size,
            eval_batch_size,
            num_workers,
            download,
            cache_dir,
            batching=batching,
            dedup=dedup,
            dedup_threshold=dedup_threshold,
            dedup_num_perm=dedup_num_perm,
            dedup_shingle_size=dedup_shingle_size,
            dedup_shingle=dedup_shingle,
            pretrained_tokenizer=pretrained_tokenizer,
        )

    def documents(self, lines: list[str]) -> list[list[str]]:
        """Articles: a document starts at each ` = Title = ` heading, with the blank lines
        just before it (lines before the first heading join the first article). Splits are
        fixed by files, so near-duplicates are dropped from the later split in `dedup_order`
        (train last)."""
        documents: list[list[str]] = [[]]
        for line in lines:
            if ARTICLE_HEADING.match(line.strip()) and any(x.strip() for x in documents[-1]):
                previous, blanks = documents[-1], []
                while not previous[-1].strip():
                    blanks.insert(0, previous.pop())
                documents.append(blanks)
            documents[-1].append(line)
        return [doc for doc in documents if doc]

    def _layouts(self) -> list[dict[str, str]]:
        ext = "raw" if self.raw else "tokens"
        return [
            {s: f"wiki.{FILE_SPLITS[s]}.{ext}" for s in SPLITS},
            {s: f"{FILE_SPLITS[s]}.txt" for s in SPLITS},
        ]

    def local_files(self) -> dict[str, Path] | None:
        for layout in self._layouts():
            files = self.files_present(layout)
            if files is not None:
                return files
        return None

    def expected_files(self) -> list[str]:
        return [" + ".join(layout.values()) for layout in self._layouts()]

    def _missing_message(self, why: str) -> str:
        msg = super()._missing_message(why)
        mini = self.data_dir.parent / "wikitext-2-mini"
        if mini.is_dir() and mini != self.data_dir:
            msg += f"\nA stand-in with the same format is at {mini}: add --data.init_args.data_dir={mini}"
        return msg

    def fetch(self) -> None:
        import datasets

        config = "wikitext-2-raw-v1" if self.raw else "wikitext-2-v1"
        ds = datasets.load_dataset(HUB_DATASET, config)
        ext = "raw" if self.raw else "tokens"
        for split, hub_split in HUB_SPLITS.items():
            text = "".join(ds[hub_split]["text"])  # each row is one line with its newline
            path = self.data_dir / f"wiki.{FILE_SPLITS[split]}.{ext}"
            atomic_write_bytes(path, text.encode("utf-8"))
