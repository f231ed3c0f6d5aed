"""Language-modelling data: a corpus becomes one token stream per split, cut into blocks.

Training draws random windows of `block_size + 1` tokens (inputs and the targets shifted by
one), as nanoGPT does. Validation and test make one ordered pass of non-overlapping blocks
that predicts every token of the split but the first exactly once; the last block is padded
with ignored targets (-100), so nothing is dropped and nothing is counted twice.

With `batching: contiguous` (recurrent models, truncated backprop through time) every split
is instead read as `batch_size` parallel streams, in order, `block_size` steps a batch
(pytorch/examples' batchify): see ContiguousColumns.

With `dedup: true` near-duplicate documents are removed before the text is split and
tokenized (MinHash LSH, datamodules/dedup.py): see `LanguageModelingDataModule.lines`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from core.checks import require_non_negative, require_positive, require_positive_or_none
from core.constants import IGNORE_INDEX, SPLITS, Split
from core.errors import DataError, UserError
from datamodules.cache import DerivedFiles, cache_root
from datamodules.corpus import CorpusFolder
from datamodules.dedup import Shingle, blank_line_blocks, drop_near_duplicates, excerpt
from datamodules.loaders import SplitLoaders
from datamodules.paths import resolve_data_dir
from datamodules.pretrained_tokenizer import (
    PretrainedTokenizer,
    check_pretrained_setting,
    load_pretrained_tokenizer,
)
from datamodules.resumable import ResumableLoader, ResumableStream
from datamodules.text_files import read_text
from datamodules.token_store import (
    ShardedArray,
    StoredSplit,
    encode_batches,
    open_split,
    write_split,
)
from datamodules.tokenizers import EncodedSplit, Tokenizer, encode_lines, train_tokenizer

log = logging.getLogger(__name__)
# random_windows: nanoGPT's random blocks; contiguous: parallel streams in order (RNNs, TBPTT)
Batching = Literal["random_windows", "contiguous"]
# The kinds trained on the corpus, or `pretrained`: a Hugging Face model's own tokenizer.
LanguageModelTokenizer = Literal["word", "bpe", "char", "pretrained"]
DEDUP_REPORT = "dedup.json"  # in the cache folder, beside the token ids it describes
DEDUP_FORMAT = 1  # bump when the deduplication rule changes: old caches are then not reused
DEDUP_EXAMPLES = 3  # dropped documents shown in the log and kept in the report


TokenSplit = (
    StoredSplit | EncodedSplit
)  # on disk (memory-mapped shards) or, failing that, in memory
TokenArray = ShardedArray | np.ndarray
BATCH_LINES = 8192  # lines encoded at once (one task of a parallel encoding)


def as_long(ids: np.ndarray) -> torch.Tensor:
    """Ids as stored (uint16, uint32, uint8 counts) as the int64 tensor the models read."""
    return torch.from_numpy(ids.astype(np.int64))


class RandomWindows(Dataset):
    """Every window of `block_size + 1` consecutive tokens; a shuffled sampler makes them random."""

    def __init__(self, ids: TokenArray, block_size: int):
        self.ids, self.block_size = ids, block_size

    def __len__(self) -> int:
        return len(self.ids) - self.block_size

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        chunk = as_long(self.ids[i : i + self.block_size + 1])
        return {"input_ids": chunk[:-1], "targets": chunk[1:]}


class OrderedBlocks(Dataset):
    """Non-overlapping blocks in order, the last one padded; whole padding blocks are added so
    that the count divides by `world_size` (no sample is repeated across DDP ranks)."""

    def __init__(self, split: TokenSplit, block_size: int, world_size: int = 1):
        self.split, self.block_size = split, block_size
        n_real = max(1, math.ceil((len(split) - 1) / block_size))
        self.n_blocks = math.ceil(n_real / world_size) * world_size

    def __len__(self) -> int:
        return self.n_blocks

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        T, start = self.block_size, i * self.block_size
        ids = self.split.ids[start : start + T + 1]
        n = max(0, len(ids) - 1)  # real targets in this block
        item = {
            "input_ids": torch.zeros(T, dtype=torch.long),
            "targets": torch.full((T,), IGNORE_INDEX, dtype=torch.long),
            "target_words": torch.zeros(T, dtype=torch.long),
            "target_chars": torch.zeros(T, dtype=torch.long),
        }
        if n:
            item["input_ids"][:n] = as_long(ids[:n])
            item["targets"][:n] = as_long(ids[1 : n + 1])
            item["target_words"][:n] = as_long(self.split.words[start + 1 : start + n + 1])
            item["target_chars"][:n] = as_long(self.split.chars[start + 1 : start + n + 1])
        return item


class ContiguousColumns(ResumableStream):
    """A split as parallel streams read in order, `bptt` steps a batch (pytorch/examples'
    batchify): row j of batch i continues row j of batch i - 1, so a recurrent model carries
    its state from one batch to the next. Each item is a whole batch [batch_size, <= bptt].
    Every epoch reads the same batches; a resumed pass starts at a later one (`start_at`).

    The targets (every token but the first) are cut into `batch_size * world_size` columns of
    nearly equal length, each read with the token before it as input: every token but the
    first is predicted exactly once, as with OrderedBlocks, and a column one token shorter
    ends with an ignored target. Under DDP, rank r reads its own `batch_size` columns, so W
    devices train as one device with W times the columns.
    """

    def __init__(
        self, split: TokenSplit, batch_size: int, bptt: int, rank: int = 0, world_size: int = 1
    ):
        n_targets, columns = len(split) - 1, batch_size * world_size
        if n_targets < columns:
            raise UserError(
                f"a split of {len(split)} tokens cannot fill {columns} parallel streams "
                f"(data.init_args.batch_size x devices): lower data.init_args.batch_size / data.init_args.eval_batch_size."
            )
        self.split, self.bptt = split, bptt
        self._start = 0  # the batch the next pass starts with
        short, extra = divmod(n_targets, columns)  # the first `extra` columns get one more
        lengths = [short + (j < extra) for j in range(columns)]
        starts = np.cumsum([0, *lengths[:-1]])  # each column's first input token
        self.width = short + (extra > 0)
        # This rank's columns (first input token, length), read from the split batch by batch.
        self.rows = [
            (int(starts[j]), lengths[j]) for j in range(rank * batch_size, (rank + 1) * batch_size)
        ]

    def __len__(self) -> int:
        return math.ceil(self.width / self.bptt)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a = i * self.bptt
        steps = min(self.bptt, self.width - a)
        rows = len(self.rows)
        batch = {
            "input_ids": torch.zeros(rows, steps, dtype=torch.long),
            "targets": torch.full((rows, steps), IGNORE_INDEX, dtype=torch.long),
            "target_words": torch.zeros(rows, steps, dtype=torch.long),
            "target_chars": torch.zeros(rows, steps, dtype=torch.long),
        }
        for row, (s, n) in enumerate(self.rows):
            m = max(0, min(n - a, steps))  # a column one token shorter ends a step early
            if m:
                ids = self.split.ids[s + a : s + a + m + 1]
                batch["input_ids"][row, :m] = as_long(ids[:m])
                batch["targets"][row, :m] = as_long(ids[1 : m + 1])
                batch["target_words"][row, :m] = as_long(
                    self.split.words[s + a + 1 : s + a + m + 1]
                )
                batch["target_chars"][row, :m] = as_long(
                    self.split.chars[s + a + 1 : s + a + m + 1]
                )
        return batch

    def start_at(self, epoch: int, batch: int) -> None:
        self._start = batch  # every epoch is the same: only the batch matters

    def __iter__(self):
        start, self._start = self._start, 0
        return (self[i] for i in range(start, len(self)))


class LanguageModelingDataModule(SplitLoaders, CorpusFolder, L.LightningDataModule):
    """Base for text corpora. Subclasses say where the files are and how to read and fetch them.

    The tokenizer is trained (or loaded) when `vocab_size` is first read, so the CLI can pass
    the vocabulary size to the model when both are instantiated.

    Near-duplicate removal (`dedup: true`): the corpus is cut into documents (`documents`;
    by default runs of non-blank lines) and every document whose shingle set has a Jaccard
    similarity of at least `dedup_threshold` with an earlier kept document is dropped, before
    the split. A corpus that makes its split from one text (Tiny Shakespeare) deduplicates
    that text in `read_lines`, before cutting it. Where the split is fixed by files
    (WikiText), the documents are read in `dedup_order`, evaluation splits first: test, then
    val, then train, and the first occurrence is kept. So a train document that repeats a
    val or test one is dropped from train (evaluation text never leaks into training), a
    val one that repeats a test one is dropped from val, and repeats inside a split are
    dropped from it. What was dropped is in `dedup_report` and the log.
    """

    corpus: str = ""  # folder name under $DATA_DIR
    vocab_splits: tuple[Split, ...] = ("train",)  # the splits the tokenizer is trained on
    source_url: str = ""  # where `fetch` downloads from
    dedup_order: tuple[Split, ...] = ("test", "val", "train")  # who keeps a repeated document

    def __init__(
        self,
        data_dir: str | None = None,
        tokenizer: LanguageModelTokenizer = "char",
        bpe_vocab_size: int = 8192,
        block_size: int = 256,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        download: bool = True,
        cache_dir: str | None = None,
        batching: Batching = "random_windows",
        dedup: bool = False,
        dedup_threshold: float = 0.8,
        dedup_num_perm: int = 128,
        dedup_shingle_size: int = 5,
        dedup_shingle: Shingle = "word",
        pretrained_tokenizer: str | None = None,
    ):
        """
        Args:
            tokenizer: `char`, `word` or `bpe` (trained on the corpus), or `pretrained`: the
                tokenizer of a Hugging Face model, named by `pretrained_tokenizer`.
            pretrained_tokenizer: with `tokenizer: pretrained`, the model's folder (usually
                the same as model.init_args.init_from) or a hub id in the local cache.
            cache_dir: where tokenizers and token ids are cached, under <cache_dir>/<corpus>/
                (default $XDG_CACHE_HOME/seqmodels, else ~/.cache/seqmodels).
            dedup: drop near-duplicate documents before the split (off by default).
            dedup_threshold: the Jaccard similarity of two documents' shingle sets from which
                the later one is dropped.
            dedup_num_perm: MinHash permutations (more: a finer similarity estimate, slower).
            dedup_shingle_size: words (or characters) per shingle.
            dedup_shingle: `word` or `char` shingles.
        """
        super().__init__()
        require_positive(
            "data", block_size=block_size, batch_size=batch_size, bpe_vocab_size=bpe_vocab_size
        )
        require_positive_or_none("data", eval_batch_size=eval_batch_size)
        require_non_negative("data", num_workers=num_workers)
        if not 0.0 < dedup_threshold <= 1.0:
            raise UserError(
                f"data.init_args.dedup_threshold must be a Jaccard similarity in (0, 1], got {dedup_threshold}."
            )
        if dedup_num_perm < 2 or dedup_shingle_size < 1:
            raise UserError(
                f"data.init_args.dedup_num_perm must be at least 2 and data.init_args.dedup_shingle_size at least 1, "
                f"got {dedup_num_perm} and {dedup_shingle_size}."
            )
        check_pretrained_setting(tokenizer, pretrained_tokenizer)
        self.save_hyperparameters()
        self.data_dir = resolve_data_dir(data_dir, self.corpus)
        self.tokenizer_kind = tokenizer
        self.pretrained_tokenizer = pretrained_tokenizer
        self.bpe_vocab_size = bpe_vocab_size
        self.block_size = block_size  # with contiguous batching: the BPTT length
        self.batch_size = batch_size
        self.batching = batching
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.download = download
        self.cache_dir = cache_root(cache_dir)
        self._tokenizer: Tokenizer | PretrainedTokenizer | None = None
        self._lines: dict[str, list[str]] = {}
        self.splits: dict[str, TokenSplit] = {}
        self.num_proc = 1  # processes that encode a split (a corpus read in chunks sets it)
        self.dedup = dedup
        self.dedup_threshold = dedup_threshold
        self.dedup_num_perm = dedup_num_perm
        self.dedup_shingle_size = dedup_shingle_size
        self.dedup_shingle = dedup_shingle
        self._dedup_report: dict | None = None
        self._deduplicated = False  # by read_lines, before a split it makes itself

    # --- what a corpus subclass provides (and local_files, expected_files, fetch) ---------
    def read_lines(self, files: dict[str, Path]) -> dict[str, list[str]]:
        """Lines of each split, each with its newline."""
        return {split: read_text(files[split]).splitlines(keepends=True) for split in SPLITS}

    def describe_splits(self) -> str:
        return "train/val/test as shipped"

    def documents(self, lines: list[str]) -> list[list[str]]:
        """The corpus's documents for near-duplicate removal, as runs of its lines that join
        back to `lines`. By default a document is a run of non-blank lines."""
        return blank_line_blocks(lines)

    # --- shared machinery ------------------------------------------------------------------
    @property
    def cache(self) -> DerivedFiles:
        """This corpus's cache folder for these files and settings."""
        return DerivedFiles(self.corpus, self.files.values(), self._settings(), self.cache_dir)

    def lines(self) -> dict[str, list[str]]:
        if not self._lines:
            self._deduplicated = False
            lines = self.read_lines(self.files)
            if self.dedup and not self._deduplicated:  # not done before the split: by file
                lines = self.remove_near_duplicates(lines, self.dedup_order)
            self._lines = lines
            for split, lines in self._lines.items():
                if not any(line.strip() for line in lines):
                    hint = " (after near-duplicate removal: try dedup: false)" if self.dedup else ""
                    raise DataError(
                        f"{self.corpus}: the {split} split is empty{hint}; check the files in {self.data_dir}."
                    )
        return self._lines

    # --- near-duplicate removal ------------------------------------------------------------
    def remove_near_duplicates(
        self, texts: dict[str, list[str]], order: tuple[str, ...] | None = None
    ) -> dict[str, list[str]]:
        """The lines of each text with its near-duplicate documents removed. The texts are
        read in `order` (default: as given) and the first occurrence of a document is kept;
        texts that are the same list (a test split that reuses val) are read once. Sets
        `dedup_report` and logs it."""
        order = [name for name in (order or texts) if name in texts]
        order += [name for name in texts if name not in order]
        unique = [
            n for i, n in enumerate(order) if all(texts[n] is not texts[m] for m in order[:i])
        ]
        docs = [(name, doc) for name in unique for doc in self.documents(texts[name])]
        result = drop_near_duplicates(
            ["".join(doc) for _, doc in docs],
            threshold=self.dedup_threshold,
            num_perm=self.dedup_num_perm,
            shingle_size=self.dedup_shingle_size,
            shingle=self.dedup_shingle,
        )
        kept = {name: [] for name in unique}
        for i in result.kept:
            name, doc = docs[i]
            kept[name].extend(doc)
        report = {
            "documents": len(docs),
            "dropped": len(result.dropped),
            "by_split": {
                name: {
                    "documents": sum(n == name for n, _ in docs),
                    "dropped": sum(docs[i][0] == name for i, _ in result.dropped),
                }
                for name in unique
            },
            "examples": [
                {
                    "dropped": excerpt("".join(docs[i][1])),
                    "from": docs[i][0],
                    "duplicate_of": excerpt("".join(docs[j][1])),
                    "in": docs[j][0],
                }
                for i, j in result.dropped[:DEDUP_EXAMPLES]
            ],
        }
        self._dedup_report, self._deduplicated = report, True
        self._log_dedup_report(report)
        self.cache.write(DEDUP_REPORT, json.dumps(report, indent=1).encode())
        out = {}
        for name in texts:  # aliases keep pointing at one list
            first = next(u for u in unique if texts[u] is texts[name])
            out[name] = kept[first]
        return out

    @property
    def dedup_report(self) -> dict | None:
        """What near-duplicate removal dropped: `documents`, `dropped`, `by_split` (documents
        and dropped per split; one `text` where the corpus deduplicates before making its
        split) and a few `examples`; None when `dedup` is off. Read back from the cache when
        the token ids are."""
        if self.dedup and self._dedup_report is None:
            report = self.cache.read(DEDUP_REPORT, json.loads)
            if report is None:  # missing or damaged: deduplicating again writes it
                self.lines()
            else:
                self._dedup_report = report
                self._log_dedup_report(report, cached=True)
        return self._dedup_report

    def _log_dedup_report(self, report: dict, cached: bool = False) -> None:
        per_split = ", ".join(
            f"{n}: {r['dropped']}/{r['documents']}" for n, r in report["by_split"].items()
        )
        rank_zero_info(
            f"near-duplicate removal{' (cached)' if cached else ''}: dropped {report['dropped']} of "
            f"{report['documents']} {self.corpus} documents (Jaccard >= {self.dedup_threshold}; "
            f"{per_split})"
        )
        for ex in report["examples"]:
            rank_zero_info(
                f"  dropped from {ex['from']}: {ex['dropped']!r} ~ {ex['in']}: {ex['duplicate_of']!r}"
            )

    def _settings(self) -> str:
        """What shapes the tokenizer and the token ids, besides the files (the cache key)."""
        vocab = self.bpe_vocab_size if self.tokenizer_kind == "bpe" else ""
        if self.tokenizer_kind == "pretrained":  # its files, not where they are
            vocab = f"/{self.tokenizer.identity}"
        dedup = (
            f":dedup{self.dedup_threshold}/{self.dedup_num_perm}/{self.dedup_shingle}{self.dedup_shingle_size}"
            f"/{'+'.join(self.dedup_order)}/v{DEDUP_FORMAT}"
            if self.dedup
            else ""
        )
        return (
            f"{type(self).__name__}:{self.describe_splits()}:{self.tokenizer_kind}{vocab}"
            f":{'+'.join(self.vocab_splits)}{dedup}"
        )

    @property
    def tokenizer(self) -> Tokenizer | PretrainedTokenizer:
        """Trained on `vocab_splits` (the train split by default) once, then loaded; or
        the pretrained one, read from its folder."""
        if self._tokenizer is None and self.tokenizer_kind == "pretrained":
            self._tokenizer = load_pretrained_tokenizer(self.pretrained_tokenizer)
        if self._tokenizer is None:
            self._tokenizer = self.cache.get(
                "tokenizer.json",
                build=self._train_tokenizer,
                dump=Tokenizer.to_bytes,
                load=lambda data: Tokenizer.from_bytes(data, self.tokenizer_kind),
            )
        return self._tokenizer

    def _train_tokenizer(self) -> Tokenizer:
        log.info(
            "training a %s tokenizer on the %s %s split(s)",
            self.tokenizer_kind,
            self.corpus,
            "+".join(self.vocab_splits),
        )
        lines = (
            line
            for split in self.vocab_splits
            for batch in self.line_batches(split)
            for line in batch
        )
        return train_tokenizer(self.tokenizer_kind, lines, self.bpe_vocab_size)

    @property
    def tokenizer_path(self) -> Path:
        """The cached tokenizer: its JSON behind a checksum header (`core.checked_files`);
        a pretrained tokenizer's folder."""
        tokenizer = self.tokenizer  # makes sure the file exists
        if isinstance(tokenizer, PretrainedTokenizer):
            return tokenizer.folder
        return self.cache.path("tokenizer.json")

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def tokenizer_name(self) -> str:
        """Which ids mean what: a Hugging Face tokenizer's name holds a hash of its files (a
        model from a folder checks it is its own), the corpus's own tokenizers their kind."""
        return getattr(self.tokenizer, "name", self.tokenizer_kind)

    def transformers_tokenizer(self):
        """The tokenizer as transformers' (written beside an exported model)."""
        return self.tokenizer.to_transformers()

    def encoded(self, split: Split) -> TokenSplit:
        """Token ids of a split, written to the cache as memory-mapped shards while the text
        streams through the tokenizer (datamodules/token_store.py), so that the second run
        starts in seconds and a split larger than memory is read where it lies."""
        if split not in self.splits:
            stored = open_split(self.cache, split)
            if stored is None:
                vocab_size = self.vocab_size  # the tokenizer, before any worker is forked
                chunks = encode_batches(self._encode, self.line_batches(split), self.num_proc)
                stored = write_split(self.cache, split, vocab_size, chunks)
            if len(stored) == 0:
                raise DataError(
                    f"{self.corpus}: the {split} split is empty; check the files in {self.data_dir}."
                )
            self.splits[split] = stored
        return self.splits[split]

    def line_batches(self, split: Split) -> Iterator[list[str]]:
        """The lines of a split (each with its newline), a batch at a time, in order: what the
        tokenizer is trained on and what is encoded. From `lines()` here (the whole corpus in
        memory, near-duplicates removed); a corpus read in chunks overrides it."""
        lines = self.lines()[split]
        if self.tokenizer_kind == "pretrained":  # one document (see `_encode`)
            yield lines
            return
        for start in range(0, len(lines), BATCH_LINES):
            yield lines[start : start + BATCH_LINES]

    def _encode(self, lines: list[str]) -> EncodedSplit:
        if isinstance(self.tokenizer, PretrainedTokenizer):
            # One document, as the model's tokenizer reads a text: merges across lines and
            # its <s> (if it adds one) as in its training, not once a line.
            return self.tokenizer.encode_document("".join(lines))
        return encode_lines(self.tokenizer, lines)

    def prepare_data(self) -> None:
        # Runs on one process first: fetch, train the tokenizer and fill the cache once.
        for split in SPLITS:
            self.encoded(split)

    def setup(self, stage: str | None = None) -> None:
        self.dedup_report  # noqa: B018 - every process knows (and rank 0 logs) what was dropped
        world_size = self.trainer.world_size if self.trainer is not None else 1
        train = self.encoded("train")
        if len(train) < self.block_size + 1:
            raise UserError(
                f"data.init_args.block_size={self.block_size} is longer than the {self.corpus} train split "
                f"({len(train)} tokens): lower data.init_args.block_size below {len(train)}."
            )
        if self.batching == "contiguous":  # recurrent models: parallel streams, in order
            rank = self.trainer.global_rank if self.trainer is not None else 0

            def streams(split: TokenSplit, batch_size: int) -> ContiguousColumns:
                return ContiguousColumns(split, batch_size, self.block_size, rank, world_size)

            self.train_set = streams(train, self.batch_size)
            self.val_set = streams(self.encoded("val"), self.eval_batch_size)
            self.test_set = streams(self.encoded("test"), self.eval_batch_size)
            return
        self.train_set = RandomWindows(train.ids, self.block_size)
        self.val_set = OrderedBlocks(self.encoded("val"), self.block_size, world_size)
        self.test_set = OrderedBlocks(self.encoded("test"), self.block_size, world_size)

    def loader(self, dataset: Dataset, batch_size: int, train: bool = False) -> DataLoader:
        if isinstance(dataset, ContiguousColumns):
            # Already batched and in order, never shuffled; read by this process alone (each
            # worker would repeat the whole stream), and Lightning adds no sampler to it.
            # Training: its place in the epoch goes into the checkpoint (exact resume).
            kind = ResumableLoader if train else DataLoader
            return kind(dataset, batch_size=None, pin_memory=torch.cuda.is_available())
        return super().loader(dataset, batch_size, train)

    # --- text in, text out (generation, sample logging) ------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of a prompt; text the vocabulary cannot express is an error, not <unk>."""
        return self.tokenizer.encode_prompt(text)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    @property
    def eos_id(self) -> int | None:
        """The token that ends a text (BPE's <|endoftext|>, a pretrained tokenizer's eos);
        None where no token does (a word-level <eos> ends a line, not the text)."""
        return self.tokenizer.end_of_text_id
