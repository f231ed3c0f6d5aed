"""Movie-review text for language modelling: the rt-polarity sentences and SST-2's training
phrases, one a line.

The two sentiment corpora (datamodules/sentiment.py) read as plain text, without their
labels: the review language a small GPT learns before it is steered toward positive reviews
(bench/dpo_sentiment.py). The rt-polarity sentences are shuffled with `split_seed` and cut
into train/val/test (`val_fraction`, `test_fraction`); SST-2's training phrases (at least
`sst2_min_words` words: its shortest phrases are fragments such as "kids , spirit") join
the train split only.

SST-2 was built from the same Rotten Tomatoes snippets, so its phrases hold the held-out
sentences and pieces of them (and rt-polarity repeats a few short snippets). A training
line, phrase or sentence, whose words are a run of words of a val or test sentence (the
whole sentence included) is left out, compared on lower-cased letters and digits only
(the corpora tokenize "century's" and "-lrb-" differently): the held-out review openings
and the held-out text the bench measures are never trained on.

Files: `<data_dir>/sst2/train.tsv` and `<data_dir>/rt-polarity/rt-polarity.{pos,neg}`,
`data_dir` being the folder that holds both corpora ($DATA_DIR by default). Missing ones
are fetched as datamodules/sentiment.py fetches them.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from core.checks import require_held_out_fractions, require_positive
from core.constants import Split
from core.errors import UserError
from datamodules.dedup import Shingle
from datamodules.language_modeling import (
    Batching,
    LanguageModelingDataModule,
    LanguageModelTokenizer,
)
from datamodules.paths import resolve_data_dir
from datamodules.sentiment import (
    RT_FILES,
    RTPolarityDataModule,
    SST2DataModule,
    read_labelled_tsv,
    read_sentences,
)

SST2_TRAIN = "sst2/train.tsv"
RT_POS, RT_NEG = (f"rt-polarity/{RT_FILES[label]}" for label in (1, 0))
ALNUM = re.compile(r"[a-z0-9]+")
# Part of the cache key: bump it when what a split holds changes, so old token ids are not
# reused (2: rt-polarity training lines that repeat a held-out piece are left out too).
SPLIT_FORMAT = 2


def comparable_words(text: str) -> tuple[str, ...]:
    """Lower-cased runs of letters and digits: how the two corpora's tokenizations agree."""
    return tuple(ALNUM.findall(text.lower()))


def word_runs(sentences: list[str]) -> set[tuple[str, ...]]:
    """Every run of consecutive comparable words of every sentence."""
    runs = set()
    for sentence in sentences:
        words = comparable_words(sentence)
        for i in range(len(words)):
            for j in range(i + 1, len(words) + 1):
                runs.add(words[i:j])
    return runs


class ReviewsDataModule(LanguageModelingDataModule):
    """Movie-review sentences (rt-polarity, split by `split_seed`) and SST-2's training
    phrases (train only, never a piece of a held-out sentence), one a line."""

    corpus = "reviews"  # the cache folder's name; the files live in two corpora's folders
    source_url = "https://huggingface.co"

    def __init__(
        self,
        data_dir: str | None = None,
        tokenizer: LanguageModelTokenizer = "bpe",
        pretrained_tokenizer: str | None = None,
        bpe_vocab_size: int = 1024,
        block_size: int = 48,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 42,
        sst2_min_words: int = 5,
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
        """
        Args:
            data_dir: the folder holding `sst2/` and `rt-polarity/` (default $DATA_DIR,
                else ./data).
            val_fraction, test_fraction: shares of the rt-polarity sentences held out.
            split_seed: shuffles the rt-polarity sentences before the cut.
            sst2_min_words: SST-2 phrases of fewer words are left out.
        """
        require_held_out_fractions(val_fraction, test_fraction, "sentences")
        require_positive("data", sst2_min_words=sst2_min_words)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed, self.sst2_min_words = split_seed, sst2_min_words
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
        self.data_dir = resolve_data_dir(data_dir, "")  # the root of both corpora

    def local_files(self) -> dict[str, Path] | None:
        return self.files_present({"sst2": SST2_TRAIN, "pos": RT_POS, "neg": RT_NEG})

    def expected_files(self) -> list[str]:
        return [SST2_TRAIN, RT_POS, RT_NEG]

    def fetch(self) -> None:
        for corpus in (SST2DataModule, RTPolarityDataModule):
            corpus(data_dir=str(self.data_dir / corpus.corpus)).files  # noqa: B018 - fetches

    def describe_splits(self) -> str:
        return (
            f"rt-polarity seed {self.split_seed} val {self.val_fraction} test "
            f"{self.test_fraction}; sst2 train >= {self.sst2_min_words} words; v{SPLIT_FORMAT}"
        )

    def read_lines(self, files: dict[str, Path]) -> dict[str, list[str]]:
        sentences = [
            ex.text for key in ("pos", "neg") for ex in read_sentences(files[key], label=0)
        ]
        random.Random(self.split_seed).shuffle(sentences)
        n_val = round(self.val_fraction * len(sentences))
        n_test = round(self.test_fraction * len(sentences))
        split: dict[Split, list[str]] = {
            "val": sentences[:n_val],
            "test": sentences[n_val : n_val + n_test],
            "train": sentences[n_val + n_test :],
        }
        # rt-polarity repeats a few short snippets ("shallow .") and SST-2 holds every one:
        # a training line that is a held-out sentence or a piece of one is left out
        held_out = word_runs(split["val"] + split["test"])
        phrases = [ex.text for ex in read_labelled_tsv(files["sst2"])]
        phrases = [p for p in phrases if len(p.split()) >= self.sst2_min_words]
        split["train"] = [
            line for line in split["train"] + phrases if comparable_words(line) not in held_out
        ]
        return {name: [f"{line}\n" for line in lines] for name, lines in split.items()}

    def held_out_sentences(self, split: Split = "test") -> list[str]:
        """The rt-polarity sentences of a held-out split, without their newlines."""
        if split == "train":
            raise UserError("held_out_sentences reads val or test, not train.")
        return [line.rstrip("\n") for line in self.lines()[split]]
