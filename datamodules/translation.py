"""Translation data: sentence pairs as padded id tensors, batched by length.

One joint vocabulary serves both languages (trained on both sides of the train split), with
fixed special ids <pad>=0, <bos>=1, <eos>=2, <unk>=3. A batch is a dict:

    source       LongTensor [B, S]  source ids + <eos>, right-padded with 0
    target       LongTensor [B, T]  <bos> + target ids + <eos>, right-padded with 0
    source_text  list[str]          the source sentences as in the corpus
    target_text  list[str]          the reference sentences as in the corpus

Training drops pairs with more than `max_length` tokens on either side; validation and test
truncate such sentences to `max_length` tokens and keep them, so `block_size = max_length + 2`.

`test_files` (`{source: FILE, target: FILE}`, one sentence a line, line i of one translating
line i of the other) replaces the test split. It is read with the tokenizer trained on the
train split, which every checkpoint carries (datamodules/fitted_state.py): a checkpoint alone
tests it, and a word the vocabulary lacks reads as <unk>, counted in the log.

Batches hold sentences of similar length, so padding stays small (torchtext's BucketIterator):
each epoch the train pairs are shuffled (seeded by `seed` and the epoch), taken in pools of
`POOL_BATCHES` batches, each pool sorted by length and cut into batches, and the batches
shuffled. Validation and test go in length order; corpus BLEU and summed losses do not
depend on the order. The training loader is resumable: a checkpoint holds its place in the
epoch (datamodules/resumable.py).

Distributed training: the batch sampler groups whatever indices its inner `sampler` yields.
With Lightning's default `use_distributed_sampler=True`, Lightning swaps that inner sampler
for a DistributedSampler (shuffled for training, as the inner one is a RandomSampler) and
every rank buckets its own disjoint shard. With `use_distributed_sampler=False` the inner
sampler shards by itself (it reads the trainer's world size and rank), so both settings give
each rank a disjoint shard. As with any DistributedSampler, a split whose size does not divide
by the number of processes repeats up to `world_size - 1` pairs so that every rank runs as
many batches; validate and test on one device for exact figures.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from core.checks import require_non_negative, require_positive, require_positive_or_none
from core.constants import SPLITS, Split
from core.errors import DataError, UserError
from datamodules.bucketing import BucketBatchSampler
from datamodules.cache import DerivedFiles, cache_root
from datamodules.corpus import CorpusFolder
from datamodules.fitted_state import FittedState, evaluating_files, report_unseen
from datamodules.paths import resolve_data_dir, resolve_eval_file
from datamodules.resumable import EpochRandomSampler, ResumableLoader, eval_sampler, shard_of
from datamodules.text_files import read_lines
from datamodules.tokenizers import (
    TRANSLATION_SPECIALS,
    Tokenizer,
    TranslationTokenizerKind,
    decode_translation,
    train_translation_tokenizer,
    translation_tokens,
)

log = logging.getLogger(__name__)

PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)  # the order of TRANSLATION_SPECIALS


# --- reading corpus files -------------------------------------------------------------------
def read_sentences(path: Path) -> list[str]:
    """One sentence per line, stripped; an empty line is an error naming file and line."""
    sentences = [line.strip() for line in read_lines(path)]
    for number, sentence in enumerate(sentences, start=1):
        if not sentence:
            raise DataError(
                f"{path}: line {number} is empty. Every line must hold one sentence, paired with "
                f"the same line of the other language's file: fill it in or delete that line from "
                f"both files."
            )
    return sentences


@dataclass
class ParallelFiles:
    """A test set as two files of one sentence a line: line i of `target` translates line i
    of `source` (paths, or names in the corpus folder)."""

    source: str
    target: str


# --- datasets, collation, batching ----------------------------------------------------------
class TranslationPairs(Dataset):
    """Sentence pairs: token ids (no special tokens) and the raw texts of both sides."""

    def __init__(
        self,
        source_ids: Sequence[Sequence[int]],
        target_ids: Sequence[Sequence[int]],
        source_texts: Sequence[str],
        target_texts: Sequence[str],
    ):
        if not len(source_ids) == len(target_ids) == len(source_texts) == len(target_texts):
            raise ValueError("sources, targets and their texts must be equally many")
        self.source_ids, self.target_ids = source_ids, target_ids
        self.source_texts, self.target_texts = source_texts, target_texts

    def __len__(self) -> int:
        return len(self.source_ids)

    def __getitem__(self, i: int) -> tuple[Sequence[int], Sequence[int], str, str]:
        return self.source_ids[i], self.target_ids[i], self.source_texts[i], self.target_texts[i]

    def lengths(self) -> np.ndarray:
        """[N, 2]: source and target lengths in tokens, the keys for bucketing."""
        return np.array(
            [(len(s), len(t)) for s, t in zip(self.source_ids, self.target_ids, strict=True)],
            dtype=np.int64,
        ).reshape(-1, 2)


def collate_pairs(items: Sequence[tuple[Sequence[int], Sequence[int], str, str]]) -> dict:
    """The batch of the contract: source + <eos>, <bos> + target + <eos>, right-padded with 0."""
    sources = [[*s, EOS_ID] for s, _, _, _ in items]
    targets = [[BOS_ID, *t, EOS_ID] for _, t, _, _ in items]
    return {
        "source": _pad(sources),
        "target": _pad(targets),
        "source_text": [item[2] for item in items],
        "target_text": [item[3] for item in items],
    }


def _pad(rows: list[list[int]]) -> torch.Tensor:
    out = np.full((len(rows), max(map(len, rows))), PAD_ID, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return torch.from_numpy(out)


# --- the datamodule -------------------------------------------------------------------------
class TranslationDataModule(FittedState, CorpusFolder, L.LightningDataModule):
    """Base for parallel corpora. Subclasses say where the files are and how to read and fetch
    them; this class tokenizes, caches, filters, buckets and collates.

    The tokenizer is trained (or loaded) when `vocab_size` is first read, so the CLI can pass
    the vocabulary size to the model when both are instantiated.
    """

    corpus: str = ""  # folder name under $DATA_DIR
    languages: tuple[str, ...] = ()  # the language codes the corpus holds
    source_url: str = ""  # where `fetch` downloads from
    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID

    def __init__(
        self,
        data_dir: str | None = None,
        source_lang: str = "de",
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
        test_files: ParallelFiles | None = None,
    ):
        """
        Args:
            data_dir: the corpus folder; default $DATA_DIR/<corpus>, else ./data/<corpus>.
            source_lang, target_lang: the translation direction (language codes of the corpus).
            tokenizer: "word" (words and punctuation, CJK by character) or "bpe".
            bpe_vocab_size: the joint BPE vocabulary size (tokenizer "bpe").
            min_freq: words seen fewer times in training become <unk> (tokenizer "word").
            lowercase: lower-case all text before tokenizing (and score BLEU lower-cased).
            max_length: tokens per sentence: longer train pairs are dropped, longer val/test
                sentences truncated; the model's block_size is max_length + 2.
            batch_size, eval_batch_size: sentence pairs per batch (eval default: batch_size).
            download: fetch the corpus when it is missing (needs a network).
            cache_dir: where tokenizers and token ids are cached, under <cache_dir>/<corpus>/
                (default $XDG_CACHE_HOME/seqmodels, else ~/.cache/seqmodels).
            seed: the order of training batches (with the epoch).
            test_files: {source: FILE, target: FILE}, the pairs `test` scores instead of the
                test split, read with the tokenizer trained on train (a checkpoint's, with
                --ckpt_path).
        """
        super().__init__()
        known = ", ".join(self.languages)
        for name, lang in (("source_lang", source_lang), ("target_lang", target_lang)):
            if lang not in self.languages:
                raise UserError(f"data.init_args.{name}={lang!r}: {self.corpus} holds {known}.")
        if source_lang == target_lang:
            raise UserError(
                f"data.init_args.source_lang and data.init_args.target_lang are both {source_lang!r}; pick two of {known}."
            )
        require_positive(
            "data",
            bpe_vocab_size=bpe_vocab_size,
            min_freq=min_freq,
            max_length=max_length,
            batch_size=batch_size,
        )
        require_positive_or_none("data", eval_batch_size=eval_batch_size)
        require_non_negative("data", num_workers=num_workers)
        if tokenizer == "bpe" and bpe_vocab_size <= len(TRANSLATION_SPECIALS):
            raise UserError(
                f"data.init_args.bpe_vocab_size={bpe_vocab_size} leaves no room for text."
            )
        self.save_hyperparameters()
        self.data_dir = resolve_data_dir(data_dir, self.corpus)
        self.source_lang, self.target_lang = source_lang, target_lang
        self.tokenizer_kind = tokenizer
        self.bpe_vocab_size = bpe_vocab_size
        self.min_freq = min_freq
        self.lowercase = lowercase
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.download = download
        self.seed = seed
        self.cache_dir = cache_root(cache_dir)
        self.test_files = test_files
        self._tokenizer: Tokenizer | None = None
        self._datasets: dict[str, TranslationPairs] = {}
        self._sentences: dict[str, dict[str, list[str]]] = {}
        self._encoded: dict[str, dict[str, list[list[int]]]] = {}

    # --- what a corpus subclass provides (and CorpusFolder's local_files, expected_files, fetch)
    def read_splits(self, files: list[Path]) -> dict[str, dict[str, list[str]]]:
        """{split: {language: sentences}} for the splits train, val and test; line i of one
        language translates line i of the other."""
        raise NotImplementedError

    def describe_splits(self) -> str:
        """How the splits are made (part of the cache key)."""
        return "as shipped"

    # --- finding and reading the corpus ----------------------------------------------------
    def sentences(self) -> dict[str, dict[str, list[str]]]:
        """{split: {language: sentences}}, read and checked once."""
        if not self._sentences:
            splits = self.read_splits(self.files)
            for split in SPLITS:
                if not splits[split][self.languages[0]]:
                    raise DataError(
                        f"{self.corpus}: the {split} split is empty; check the files in "
                        f"{self.data_dir}."
                    )
            self._sentences = splits
        return self._sentences

    # --- tokenizer and token ids -----------------------------------------------------------
    @property
    def cache(self) -> DerivedFiles:
        """This corpus's cache folder for these files and settings."""
        return DerivedFiles(self.corpus, self.files, self._settings(), self.cache_dir)

    def _settings(self) -> str:
        # The direction is left out: both directions share one joint tokenizer and id cache.
        tokenizer = (
            f"bpe{self.bpe_vocab_size}"
            if self.tokenizer_kind == "bpe"
            else f"word-min{self.min_freq}"
        )
        return f"{type(self).__name__}:{self.describe_splits()}:{tokenizer}:lower={self.lowercase}"

    @property
    def tokenizer_path(self) -> Path:
        """The cached tokenizer: its JSON behind a checksum header (`core.checked_files`)."""
        return self.cache.path("tokenizer.json")

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            tok = self.cache.get(
                "tokenizer.json",
                build=self._train_tokenizer,
                dump=Tokenizer.to_bytes,
                load=lambda data: Tokenizer.from_bytes(data, self.tokenizer_kind),
            )
            ids = [tok.token_to_id(t) for t in TRANSLATION_SPECIALS]
            if ids != list(range(len(TRANSLATION_SPECIALS))):
                raise DataError(
                    f"{self.tokenizer_path}: the special tokens {', '.join(TRANSLATION_SPECIALS)} "
                    f"must have ids 0-3 but have {ids}; delete the file so that it is trained again."
                )
            self._tokenizer = tok
        return self._tokenizer

    def _train_tokenizer(self) -> Tokenizer:
        log.info("training a %s tokenizer on the %s train split", self.tokenizer_kind, self.corpus)
        train = self.sentences()["train"]
        return train_translation_tokenizer(
            self.tokenizer_kind,
            [s for lang in self.languages for s in train[lang]],
            vocab_size=self.bpe_vocab_size,
            min_freq=self.min_freq,
            lowercase=self.lowercase,
        )

    @property
    def vocab_size(self) -> int:
        """The joint vocabulary size (trains or loads the tokenizer)."""
        return self.tokenizer.vocab_size

    @property
    def block_size(self) -> int:
        """The longest sequence a model sees: max_length tokens plus <bos> and <eos>."""
        return self.max_length + 2

    def encoded(self, split: Split) -> dict[str, list[list[int]]]:
        """{language: token ids per sentence} of a split (no special tokens, not truncated),
        cached on disk so that the second run starts at once."""
        if split not in self._encoded and self.is_restored:
            # A checkpoint's tokenizer: the cached ids are those of the tokenizer trained here.
            texts = self.sentences()[split]
            self._encoded[split] = {
                lang: self.tokenizer.encode_batch(texts[lang]) for lang in self.languages
            }
        if split not in self._encoded:
            self._encoded[split] = self.cache.get(
                f"{split}.npz",
                build=lambda: {
                    lang: self.tokenizer.encode_batch(self.sentences()[split][lang])
                    for lang in self.languages
                },
                dump=_ids_to_npz,
                load=lambda data: _ids_from_npz(data, self.languages),
            )
        return self._encoded[split]

    def pairs(self, split: Split) -> TranslationPairs:
        """The split in this module's direction: train pairs longer than max_length tokens on
        either side dropped, val/test sentences truncated to max_length. The test split is
        `test_files` when they are given."""
        if split == "test" and self.test_files is not None:
            ids, texts = self._encode_test_files()
        else:
            ids, texts = self.encoded(split), self.sentences()[split]
        src, tgt = self.source_lang, self.target_lang
        rows = zip(ids[src], ids[tgt], texts[src], texts[tgt], strict=True)
        if split == "train":
            kept = [
                r
                for r in rows
                if 0 < len(r[0]) <= self.max_length and 0 < len(r[1]) <= self.max_length
            ]
            dropped = len(ids[src]) - len(kept)
            if not kept:
                raise UserError(
                    f"{self.corpus}: every train pair is longer than data.init_args.max_length="
                    f"{self.max_length} tokens on one side; raise data.init_args.max_length."
                )
            if dropped:
                log.info(
                    "%s: dropped %d train pairs longer than %d tokens (or with no tokens)",
                    self.corpus,
                    dropped,
                    self.max_length,
                )
        else:
            m = self.max_length
            kept = [(s[:m], t[:m], st, tt) for s, t, st, tt in rows]
        columns = list(zip(*kept, strict=True))
        return TranslationPairs(*columns)

    def _encode_test_files(self) -> tuple[dict[str, list[list[int]]], dict[str, list[str]]]:
        """({language: ids}, {language: sentences}) of `test_files`, read with the train
        tokenizer; words it lacks are <unk>, counted in the log."""
        paths = {
            self.source_lang: resolve_eval_file(
                self.test_files.source, self.data_dir, "test_files.source"
            ),
            self.target_lang: resolve_eval_file(
                self.test_files.target, self.data_dir, "test_files.target"
            ),
        }
        texts = {lang: read_sentences(path) for lang, path in paths.items()}
        (a, pa), (b, pb) = paths.items()
        if len(texts[a]) != len(texts[b]):
            raise DataError(
                f"data.init_args.test_files: {pa} has {len(texts[a])} lines but {pb} has "
                f"{len(texts[b])}; line i of one must translate line i of the other."
            )
        ids = {}
        for lang, path in paths.items():
            encodings = self.tokenizer.hf.encode_batch(texts[lang], add_special_tokens=False)
            ids[lang] = [e.ids for e in encodings]
            unknown = Counter(
                text[a:b]  # the word as written: the encoding's token is '<unk>' itself
                for text, e in zip(texts[lang], encodings, strict=True)
                for i, (a, b) in zip(e.ids, e.offsets, strict=True)
                if i == UNK_ID
            )
            total = sum(len(e.ids) for e in encodings)
            report_unseen(path, "words", unknown, total, "tokens")
        return ids, texts

    # --- FittedState: the tokenizer travels in checkpoints --------------------------------
    def fitted_state(self) -> dict:
        return {"tokenizer_kind": self.tokenizer_kind, "tokenizer": self.tokenizer.hf.to_str()}

    def restore_fitted(self, state: dict) -> None:
        self._tokenizer = Tokenizer.from_bytes(state["tokenizer"].encode(), state["tokenizer_kind"])

    def restored(self) -> None:
        self._datasets.clear()  # encoded with the tokenizer trained here: encode again
        self._encoded.clear()

    # --- the datasets, built when a loader first asks (after a checkpoint's restore) -------
    def split_dataset(self, split: Split) -> TranslationPairs:
        if split not in self._datasets:
            self._datasets[split] = self.pairs(split)
        return self._datasets[split]

    train_set = property(lambda self: self.split_dataset("train"))
    val_set = property(lambda self: self.split_dataset("val"))
    test_set = property(lambda self: self.split_dataset("test"))

    # --- Lightning hooks -------------------------------------------------------------------
    def prepare_data(self) -> None:
        # Runs on one process first: fetch, train the tokenizer and fill the caches once.
        # Testing given files with a checkpoint's tokenizer needs none of it.
        if evaluating_files(self, self.test_files):
            return
        for split in SPLITS:
            self.encoded(split)

    def setup(self, stage: str | None = None) -> None:
        # Nothing to build yet: Lightning restores a checkpoint's tokenizer after setup, so
        # the datasets are encoded when the loaders ask for them (`split_dataset`).
        pass

    def _shard(self) -> tuple[int, int]:
        """(rank, world size) of this process; (0, 1) without a trainer."""
        return shard_of(self.trainer)

    def train_dataloader(self) -> DataLoader:
        rank, world_size = self._shard()
        sampler = EpochRandomSampler(self.train_set, self.seed, rank, world_size)
        return self._loader(self.train_set, sampler, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def _eval_loader(self, dataset: TranslationPairs) -> DataLoader:
        sampler = eval_sampler(dataset, *self._shard())
        return self._loader(dataset, sampler, self.eval_batch_size, shuffle=False)

    def _loader(
        self, dataset: TranslationPairs, sampler: Sampler[int], batch_size: int, shuffle: bool
    ) -> DataLoader:
        batches = BucketBatchSampler(
            sampler, batch_size, lengths=dataset.lengths(), shuffle=shuffle, seed=self.seed
        )
        options = {
            "batch_sampler": batches,
            "collate_fn": collate_pairs,
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
            "pin_memory": torch.cuda.is_available(),
        }
        # Training: its place in the epoch goes into the checkpoint (exact resume).
        return (ResumableLoader if shuffle else DataLoader)(dataset, **options)

    # --- text in, text out (models and callbacks reach these through trainer.datamodule) ----
    def encode_source(self, text: str, truncate: bool = True) -> list[int]:
        """Ids of a source sentence + <eos>; cut to max_length words unless `truncate` is
        False (the caller then decides, and says so)."""
        ids = self.tokenizer.encode(text) if text.strip() else []
        if not ids:
            raise ValueError("the source sentence is empty: give at least one word")
        return [*(ids[: self.max_length] if truncate else ids), EOS_ID]

    def decode(self, ids: Sequence[int]) -> str:
        """Detokenized text of target ids: stops at <eos>, drops <pad> and <bos>."""
        return decode_translation(self.tokenizer, ids)

    def bleu_tokens(self, text: str) -> list[str]:
        """Lower-cased words and punctuation (CJK by character): the tokens of tokenized BLEU."""
        return translation_tokens(text, lowercase=True)


def _ids_to_npz(encoded: dict[str, list[list[int]]]) -> bytes:
    """Each language's ids as one flat array and the sentence lengths."""
    arrays = {}
    for lang, rows in encoded.items():
        arrays[f"{lang}_ids"] = np.fromiter((i for row in rows for i in row), dtype=np.int32)
        arrays[f"{lang}_lengths"] = np.array([len(r) for r in rows], dtype=np.int64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _ids_from_npz(data: bytes, languages: Sequence[str]) -> dict[str, list[list[int]]]:
    with np.load(io.BytesIO(data)) as f:
        return {lang: _unflatten(f[f"{lang}_ids"], f[f"{lang}_lengths"]) for lang in languages}


def _unflatten(ids: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    ends = np.cumsum(lengths)
    return [ids[end - n : end].tolist() for end, n in zip(ends, lengths, strict=True)]
