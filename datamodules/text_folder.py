"""Any folder of text files as a language-modelling corpus, read a batch of lines at a time:
a corpus larger than memory is tokenized and trained on in constant memory (the token ids
go to memory-mapped shards, datamodules/token_store.py).

The split, seeded, never leaking text from one split into another:
- `split_by: file` (the default): whole files, ranked by a seeded hash of their path in the
  folder; the first `val_fraction` of them validate, the next `test_fraction` test. A file
  added later leaves the others where they were.
- `split_by: chunk`: every file cut into blocks of `chunk_lines` lines, each block to a split
  by a seeded hash of (path, block): for a folder of few, large files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from core.checks import require_held_out_fractions, require_positive
from core.constants import Split
from core.errors import DataError, UserError
from datamodules.language_modeling import BATCH_LINES, Batching, LanguageModelingDataModule
from datamodules.seeded_split import split_names, split_of
from datamodules.text_files import read_line_batches

SplitBy = Literal["file", "chunk"]
# The corpora read in chunks train their own tokenizer: `pretrained` reads a split as one
# document, which needs it in memory.
StreamingTokenizer = Literal["word", "bpe", "char"]


def refuse_in_memory_settings(source: str, dedup: bool) -> None:
    """Near-duplicate removal compares every document with every kept one: it needs the whole
    corpus in memory, which a corpus read in chunks never holds."""
    if dedup:
        raise UserError(
            f"data.init_args.dedup: {source} reads its text in chunks and never holds the corpus "
            f"in memory, which near-duplicate removal needs. Deduplicate the text beforehand "
            f"(datamodules.dedup.drop_near_duplicates) and set data.init_args.dedup: false."
        )


def batched(lines: Iterator[str], size: int = BATCH_LINES) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class TextFolderDataModule(LanguageModelingDataModule):
    """The text files under `data_dir` matching `glob` (UTF-8, `.gz` read as gzip), in the
    order of their paths, each line with its newline; split by file or by block of lines."""

    corpus = "text-folder"  # the cache folder's name (the key holds every file's path)

    def __init__(
        self,
        data_dir: str | None = None,
        glob: str = "**/*.txt",
        split_by: SplitBy = "file",
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 0,
        chunk_lines: int = 1000,
        tokenizer: StreamingTokenizer = "bpe",
        bpe_vocab_size: int = 8192,
        block_size: int = 256,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_proc: int = 1,
        cache_dir: str | None = None,
        batching: Batching = "random_windows",
        dedup: bool = False,
    ):
        """
        Args:
            glob: the files read, relative to data_dir (`**/*.txt.gz` for gzipped ones).
            split_by: `file` (whole files to a split) or `chunk` (blocks of `chunk_lines`).
            val_fraction, test_fraction: the share of files (or blocks) held out for each.
            split_seed: seeds the hash that picks them.
            num_proc: processes that tokenize (the ids are the same with any number).
            dedup: refused: near-duplicate removal needs the corpus in memory.
        """
        require_held_out_fractions(val_fraction, test_fraction, "text")
        require_positive("data", chunk_lines=chunk_lines, num_proc=num_proc)
        refuse_in_memory_settings(type(self).__name__, dedup)
        self.glob, self.split_by, self.split_seed = glob, split_by, split_seed
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.chunk_lines = chunk_lines
        super().__init__(
            data_dir,
            tokenizer,
            bpe_vocab_size,
            block_size,
            batch_size,
            eval_batch_size,
            num_workers,
            download=False,
            cache_dir=cache_dir,
            batching=batching,
        )
        self.num_proc = num_proc

    def local_files(self) -> dict[str, Path] | None:
        if not self.data_dir.is_dir():
            return None
        files = sorted(p for p in self.data_dir.glob(self.glob) if p.is_file())
        return {p.relative_to(self.data_dir).as_posix(): p for p in files} or None

    def expected_files(self) -> list[str]:
        return [self.glob]

    def _fetch_or_fail(self) -> None:
        raise DataError(
            self._missing_message("a text folder is never downloaded")
            + f"\n(data.init_args.glob={self.glob!r} picks the files, relative to the folder.)"
        )

    def describe_splits(self) -> str:
        block = f" of {self.chunk_lines} lines" if self.split_by == "chunk" else ""
        return (
            f"by {self.split_by}{block}: val {self.val_fraction}, test {self.test_fraction}, "
            f"seed {self.split_seed}"
        )

    def file_splits(self) -> dict[str, Split]:
        """Each file's split (split_by: file)."""
        names = list(self.files)
        if len(names) < 3:
            raise DataError(
                f"{self.corpus}: split_by: file needs at least 3 files (one for each split), "
                f"found {len(names)} in {self.data_dir}: set data.init_args.split_by: chunk."
            )
        return split_names(names, self.split_seed, self.val_fraction, self.test_fraction)

    def line_batches(self, split: Split) -> Iterator[list[str]]:
        if self.split_by == "file":
            splits = self.file_splits()
            for name, path in self.files.items():
                if splits[name] == split:
                    yield from read_line_batches(path)
            return
        yield from batched(self._chunk_lines(split))

    def _chunk_lines(self, split: Split) -> Iterator[str]:
        for name, path in self.files.items():
            at, keep = 0, False  # the file's line number; whether its block is this split's
            for batch in read_line_batches(path):
                for line in batch:
                    if at % self.chunk_lines == 0:
                        block = at // self.chunk_lines
                        keep = split_of(*self._held_out, name, block) == split
                    if keep:
                        yield line
                    at += 1

    @property
    def _held_out(self) -> tuple[int, float, float]:
        return self.split_seed, self.val_fraction, self.test_fraction
