"""Tatoeba Chinese-English: 23,610 sentence pairs from tatoeba.org as packaged by
manythings.org (`cmn.txt`: `english<TAB>chinese<TAB>attribution`, one pair a line). The
Chinese side mixes simplified and traditional characters; both are simply tokens, one per
character (see datamodules/tokenizers.py).

There is no official split. Pairs that share a sentence (stripped) on either side are one
group (connected: "Great!"/很棒！ and "Awesome!"/很棒！ go together), the groups shuffled with
`split_seed` and cut 90/5/5 into train/val/test (about 1,150 pairs each for val and test). So no
sentence of either language sits in two splits: a Chinese sentence tested is never one trained
on with another English translation (grouping by English alone left 278 such in val and test).
The same seed always gives the same split; the largest group holds 11 pairs.
"""

from __future__ import annotations

import io
import random
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from core.constants import SPLITS, Split
from core.errors import DataError
from core.files import atomic_write_bytes
from datamodules.text_files import read_lines
from datamodules.tokenizers import TranslationTokenizerKind
from datamodules.translation import ParallelFiles, TranslationDataModule

SOURCE_URL = "https://www.manythings.org/anki/cmn-eng.zip"
FILE_NAME = "cmn.txt"
SPLIT_FRACTIONS = (0.9, 0.05, 0.05)


def read_tatoeba(path: Path) -> list[tuple[str, str]]:
    """(english, chinese) of every line, stripped; a line without both fields is an error."""
    pairs = []
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(
                f"{path}: line {number} ({line[:60]!r}) does not hold an English and a Chinese "
                f"sentence separated by a tab; every line must read english<TAB>chinese"
                f"[<TAB>attribution], as manythings.org's {FILE_NAME} does."
            )
        english, chinese = fields[0].strip(), fields[1].strip()
        for side, text in (("English", english), ("Chinese", chinese)):
            if not text:
                raise DataError(
                    f"{path}: line {number} has an empty {side} sentence; fill it in or delete "
                    f"the line."
                )
        pairs.append((english, chinese))
    if not pairs:
        raise DataError(f"{path}: the file holds no sentence pairs (it is empty).")
    return pairs


def sentence_groups(pairs: Sequence[tuple[str, str]]) -> list[int]:
    """The group of each pair: pairs sharing an English or a Chinese sentence, directly or
    through other pairs, share a group (union-find). Groups are numbered in first-seen order."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def root(node):
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]  # path halving
            node = parent[node]
        return node

    for english, chinese in pairs:
        a, b = root(("en", english)), root(("zh", chinese))
        if a != b:
            parent[a] = b
    numbers: dict[tuple[str, str], int] = {}
    return [numbers.setdefault(root(("en", e)), len(numbers)) for e, _ in pairs]


def split_by_sentence(
    pairs: Sequence[tuple[str, str]], seed: int = 42, fractions=SPLIT_FRACTIONS
) -> dict[Split, dict[str, list[str]]]:
    """{split: {"en": [...], "zh": [...]}}: the groups of `sentence_groups` shuffled with
    `seed` and cut by `fractions`; every pair goes where its group went, in file order."""
    groups = sentence_groups(pairs)
    order = list(range(max(groups) + 1))  # first seen: the seed alone decides
    random.Random(seed).shuffle(order)
    n_train = int(fractions[0] * len(order))
    n_val = int((fractions[0] + fractions[1]) * len(order))
    split_of = dict.fromkeys(order[:n_train], "train")
    split_of.update(dict.fromkeys(order[n_train:n_val], "val"))
    split_of.update(dict.fromkeys(order[n_val:], "test"))
    splits = {split: {"en": [], "zh": []} for split in SPLITS}
    for (english, chinese), group in zip(pairs, groups, strict=True):
        splits[split_of[group]]["en"].append(english)
        splits[split_of[group]]["zh"].append(chinese)
    return splits


class TatoebaZhEnDataModule(TranslationDataModule):
    """Tatoeba Chinese->English by default (source_lang/target_lang: "zh", "en").

    `split_seed` fixes the 90/5/5 split (by groups of shared sentences); `seed` only orders
    batches.
    """

    corpus = "tatoeba-cmn-eng"
    languages = ("en", "zh")
    source_url = SOURCE_URL

    def __init__(
        self,
        data_dir: str | None = None,
        source_lang: str = "zh",
        target_lang: str = "en",
        tokenizer: TranslationTokenizerKind = "word",
        bpe_vocab_size: int = 8000,
        min_freq: int = 2,
        lowercase: bool = True,
        max_length: int = 100,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        download: bool = True,
        cache_dir: str | None = None,
        seed: int = 42,
        split_seed: int = 42,
        test_files: ParallelFiles | None = None,
    ):
        self.split_seed = split_seed
        super().__init__(
            data_dir=data_dir,
            source_lang=source_lang,
            target_lang=target_lang,
            tokenizer=tokenizer,
            bpe_vocab_size=bpe_vocab_size,
            min_freq=min_freq,
            lowercase=lowercase,
            max_length=max_length,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            download=download,
            cache_dir=cache_dir,
            seed=seed,
            test_files=test_files,
        )

    @property
    def path(self) -> Path:
        return self.data_dir / FILE_NAME

    def local_files(self) -> list[Path] | None:
        return [self.path] if self.path.is_file() else None

    def expected_files(self) -> list[str]:
        return [FILE_NAME]

    def describe_splits(self) -> str:
        return f"by-sentence {SPLIT_FRACTIONS} seed={self.split_seed}"

    def read_splits(self, files: list[Path]) -> dict[str, dict[str, list[str]]]:
        splits = split_by_sentence(read_tatoeba(files[0]), self.split_seed)
        empty = [split for split in SPLITS if not splits[split]["en"]]
        if empty:
            raise DataError(
                f"{files[0]}: too few distinct English sentences for a 90/5/5 split (the "
                f"{', '.join(empty)} split would be empty); give at least 20."
            )
        return splits

    def fetch(self) -> None:
        # manythings.org turns away clients without a browser-like User-Agent.
        request = urllib.request.Request(SOURCE_URL, headers={"User-Agent": "Mozilla/5.0"})
        with urllib.request.urlopen(request, timeout=60) as response:
            archive = zipfile.ZipFile(io.BytesIO(response.read()))
        atomic_write_bytes(self.path, archive.read(FILE_NAME))
