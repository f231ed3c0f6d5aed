"""Any Hugging Face dataset with a text column as a language-modelling corpus: a hub id (with
`streaming: true`, read as it downloads, never stored whole), a folder written by
`save_to_disk`, or a folder of data files `load_dataset` reads (text, json, parquet, csv).
Rows are read in batches; the token ids go to memory-mapped shards
(datamodules/token_store.py), so a dataset larger than memory trains in constant memory.

Each row is a document: its lines, and a newline after it when it has none (rows of WikiText
on the hub are lines with their newline already). The splits are the dataset's own
(`train_split`, `val_split`, `test_split`); one it lacks (or set to null) is held out from
the train split by blocks of `chunk_rows` rows, each block to a split by a seeded hash of its
index, so no row is in two splits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from core.checks import require_held_out_fractions, require_positive
from core.constants import Split
from core.errors import DataError
from core.hub import hub_offline
from datamodules.language_modeling import Batching, LanguageModelingDataModule
from datamodules.paths import reachable
from datamodules.seeded_split import split_of
from datamodules.text_folder import StreamingTokenizer, batched, refuse_in_memory_settings

HUB = os.environ.get("HF_ENDPOINT", "https://huggingface.co")


class HFTextDataModule(LanguageModelingDataModule):
    """The `text_column` of a Hugging Face dataset (`dataset`: hub id or local folder)."""

    corpus = "hf-text"  # the cache folder's name (the key holds the dataset and its files)

    def __init__(
        self,
        dataset: str,
        config: str | None = None,
        text_column: str = "text",
        streaming: bool = False,
        train_split: str = "train",
        val_split: str | None = "validation",
        test_split: str | None = "test",
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 0,
        chunk_rows: int = 1000,
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
            dataset: a hub id (`Salesforce/wikitext`), a `save_to_disk` folder or a folder of
                data files.
            config: the dataset's configuration (`wikitext-103-raw-v1`), if it has several.
            streaming: read a hub dataset as it downloads (for one too big to download first).
            train_split, val_split, test_split: the dataset's split names; a split the dataset
                lacks, or null, is held out from train (`val_fraction`, `test_fraction` of its
                blocks of `chunk_rows` rows, picked by `split_seed`).
            num_proc: processes that tokenize (the ids are the same with any number).
            dedup: refused: near-duplicate removal needs the corpus in memory.
        """
        require_held_out_fractions(val_fraction, test_fraction, "text")
        require_positive("data", chunk_rows=chunk_rows, num_proc=num_proc)
        refuse_in_memory_settings(type(self).__name__, dedup)
        self.dataset, self.config, self.text_column = dataset, config, text_column
        self.streaming = streaming
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed, self.chunk_rows = split_seed, chunk_rows
        self._available: list[str] | None = None
        super().__init__(
            None,
            tokenizer,
            bpe_vocab_size,
            block_size,
            batch_size,
            eval_batch_size,
            num_workers,
            download=True,
            cache_dir=cache_dir,
            batching=batching,
        )
        self.data_dir = Path(dataset).expanduser()
        self.num_proc = num_proc

    # --- where the rows come from -------------------------------------------------------------
    @property
    def local(self) -> bool:
        return self.data_dir.is_dir()

    def local_files(self) -> dict[str, Path]:
        """A local dataset's files (its content, for the cache key); none for a hub id, whose
        name, configuration and split names make the key."""
        if not self.local:
            return {}
        files = sorted(p for p in self.data_dir.rglob("*") if p.is_file())
        return {p.relative_to(self.data_dir).as_posix(): p for p in files}

    def describe_splits(self) -> str:
        held = f"held out {self.val_fraction}/{self.test_fraction} of {self.chunk_rows}-row blocks, seed {self.split_seed}"
        return f"{self.dataset}:{self.config}:{self.text_column}:{self.split_names}:{held}"

    def _load(self, split: str | None = None):
        """The dataset (a DatasetDict, or one split), or a DataError that says how to get it."""
        import datasets

        if self.local and (
            (self.data_dir / "dataset_dict.json").exists()
            or (self.data_dir / "state.json").exists()
        ):
            loaded = datasets.load_from_disk(str(self.data_dir))
            if split is not None and isinstance(loaded, datasets.DatasetDict):
                loaded = loaded[split]
            return loaded.to_iterable_dataset() if self.streaming and split is not None else loaded
        if not self.local and not hub_offline() and not reachable(HUB):
            raise DataError(self._unavailable(f"{HUB} cannot be reached (offline?)"))
        try:
            return datasets.load_dataset(
                str(self.data_dir) if self.local else self.dataset,
                self.config,
                split=split,
                streaming=self.streaming,
            )
        except Exception as err:  # not on the hub, not cached, no network, no such split
            raise DataError(
                self._unavailable(f"loading it failed ({type(err).__name__}: {err})")
            ) from None

    def _unavailable(self, why: str) -> str:
        return (
            f"hf-text: dataset {self.dataset!r} is not a local folder and {why}.\n"
            f"Provide it by saving it on a machine with a network "
            f"(`datasets.load_dataset({self.dataset!r}).save_to_disk(DIR)`), copying DIR here and "
            f"giving data.init_args.dataset: DIR; a dataset already in the HF datasets cache loads "
            f"offline with HF_DATASETS_OFFLINE=1."
        )

    def available_splits(self) -> list[str]:
        if self._available is None:
            loaded = self._load()
            self._available = list(loaded.keys()) if hasattr(loaded, "keys") else ["train"]
        return self._available

    # --- the lines of a split -----------------------------------------------------------------
    def line_batches(self, split: Split) -> Iterator[list[str]]:
        # Splits the dataset lacks are held out of train, which then loses those blocks.
        held = {
            s
            for s, name in self.split_names.items()
            if s != "train" and (name is None or name not in self.available_splits())
        }
        if split not in held and not (split == "train" and held):
            yield from batched(self._row_lines(self.split_names[split]))
            return
        train = self.split_names["train"]
        if train not in self.available_splits():
            raise DataError(
                f"hf-text: dataset {self.dataset!r} has no split {train!r} (it has "
                f"{', '.join(self.available_splits())}): set data.init_args.train_split."
            )
        yield from batched(self._row_lines(train, keep=split, held=held))

    def _row_lines(
        self, name: str, keep: Split | None = None, held: set[Split] = frozenset()
    ) -> Iterator[str]:
        rows = self._load(name)
        columns = list(rows.column_names or []) if rows.column_names is not None else None
        if columns is not None and self.text_column not in columns:
            raise DataError(
                f"hf-text: dataset {self.dataset!r} has no column {self.text_column!r} "
                f"(it has {', '.join(columns)}): set data.init_args.text_column."
            )
        at = 0
        for batch in rows.select_columns([self.text_column]).iter(batch_size=self.chunk_rows):
            block_split: Split = "train"
            if held:
                block_split = split_of(
                    self.split_seed, self.val_fraction, self.test_fraction, at // self.chunk_rows
                )
                if block_split not in held:
                    block_split = "train"
            at += len(batch[self.text_column])
            if keep is not None and block_split != keep:
                continue
            for text in batch[self.text_column]:
                lines = (text or "").splitlines(keepends=True)
                if lines and lines[-1].splitlines()[0] == lines[-1]:  # no line end: a newline
                    lines[-1] += "\n"
                yield from lines
