"""Tiny Shakespeare (char-rnn's corpus, 1.1M characters) at the character level.

nanoGPT's split: the first 90% of the text trains, the last 10% validates. There is no test
split, so `test` evaluates the validation text again (reported as test/* all the same).

With `dedup: true` the whole text is deduplicated first, a document being a speech (a
blank-line separated paragraph), and the kept text is then cut at `train_fraction`.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

from core.checks import require_fraction
from core.files import atomic_write_bytes
from datamodules.dedup import Shingle
from datamodules.language_modeling import (
    Batching,
    LanguageModelingDataModule,
    LanguageModelTokenizer,
)
from datamodules.text_files import read_text

SOURCE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
FILE_NAME = "input.txt"


class TinyShakespeareDataModule(LanguageModelingDataModule):
    """Tiny Shakespeare; `train_fraction` of the text (from the start) trains, the rest validates."""

    corpus = "tinyshakespeare"
    source_url = SOURCE_URL

    def __init__(
        self,
        data_dir: str | None = None,
        tokenizer: LanguageModelTokenizer = "char",
        pretrained_tokenizer: str | None = None,
        bpe_vocab_size: int = 4096,
        block_size: int = 256,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        train_fraction: float = 0.9,
        num_workers: int = 0,
        download: bool = True,
        cache_dir: str | None = None,
        batching: Batching = "random_windows",
        dedup: bool = False,
        dedup_threshold: float = 0.8,
        dedup_num_perm: int = 128,
        dedup_shingle_size: int = 5,
        dedup_shingle: Shingle = "word",
    ):
        require_fraction("data", train_fraction=train_fraction)
        self.train_fraction = train_fraction
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

    def local_files(self) -> dict[str, Path] | None:
        return self.files_present({"text": FILE_NAME})

    def expected_files(self) -> list[str]:
        return [FILE_NAME]

    def fetch(self) -> None:
        with urllib.request.urlopen(SOURCE_URL, timeout=30) as response:
            atomic_write_bytes(self.data_dir / FILE_NAME, response.read())

    def describe_splits(self) -> str:
        return f"first {self.train_fraction:.0%} train, rest val (= test)"

    def read_lines(self, files: dict[str, Path]) -> dict[str, list[str]]:
        text = read_text(files["text"])
        if self.dedup:  # before the split: a speech repeated anywhere is kept once
            lines = self.remove_near_duplicates({"text": text.splitlines(keepends=True)})
            text = "".join(lines["text"])
        cut = int(len(text) * self.train_fraction)
        val = text[cut:].splitlines(keepends=True)
        return {"train": text[:cut].splitlines(keepends=True), "val": val, "test": val}
