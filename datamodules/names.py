"""makemore's names: 32,033 US first names, one a line, for character-level models that read
a fixed window of the last `block_size` characters (Bengio et al.'s MLP, makemore's WaveNet).

'.' is both the start and the end of a name (id 0), as in makemore. A name of n letters gives
n + 1 examples, the end included; "emma" with block_size 3:

    ...  -> e
    ..e  -> m
    .em  -> m
    emm  -> a
    mma  -> .

The vocabulary is fixed, '.' then a-z (27 tokens), so a checkpoint samples names without
the data file. The split is 80/10/10 train/val/test over the distinct names, shuffled with
`split_seed`; a name listed twice in the file goes to one split with all its copies, so
validation never scores a name the model was trained on.

`test_file` and `predict_file` (one name a line, as names.txt) replace the test split for
`test` and `predict`. Nothing is fitted on train (the alphabet is fixed), so a checkpoint
alone reads them; the checkpoint still carries the alphabet (datamodules/fitted_state.py), and
one that differs is refused. There is no unknown character: a name outside a-z is an error
naming its line.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from core.checks import require_non_negative, require_positive
from core.constants import IGNORE_INDEX, SPLITS, Split
from core.errors import DataError
from core.files import atomic_write_bytes
from core.hub import hub_offline
from datamodules.fitted_state import FittedState, evaluating_files
from datamodules.loaders import SplitLoaders, whole_batch
from datamodules.paths import DATA_DIR_ENV, reachable, resolve_eval_file
from datamodules.text_files import read_lines

log = logging.getLogger(__name__)

SOURCE_URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
FILE_NAME = "names.txt"
ALPHABET = ".abcdefghijklmnopqrstuvwxyz"  # makemore's stoi: '.' = 0, a = 1, ..., z = 26
END = "."
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


# --- reading and splitting ------------------------------------------------------------------
def read_names(path: Path) -> list[str]:
    """The names of `path`, one a line, in file order. Blank lines are skipped; anything but
    lowercase a-z in a name is an error naming the line."""
    names = []
    for number, line in enumerate(read_lines(path), start=1):
        name = line.strip()
        if not name:
            continue
        bad = sorted({c for c in name if c == END or c not in ALPHABET})
        if bad:
            listed = ", ".join(repr(c) for c in bad)
            raise DataError(
                f"{path}: line {number} ({line[:40]!r}) has characters outside a-z: {listed}. "
                f"The file must hold one lowercase name per line, as makemore's names.txt does."
            )
        names.append(name)
    if not names:
        raise DataError(f"{path}: the file holds no names (it is empty or blank).")
    return names


def split_names(names: Sequence[str], seed: int = 42) -> dict[Split, list[str]]:
    """80/10/10 train/val/test. The distinct names are shuffled with `seed` and cut; every
    copy of a name follows it, so the splits share no name and together hold every line."""
    distinct = list(dict.fromkeys(names))  # first-seen order: the shuffle alone decides
    random.Random(seed).shuffle(distinct)
    n1 = int(SPLIT_FRACTIONS[0] * len(distinct))
    n2 = int((SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]) * len(distinct))
    split_of = {name: "train" for name in distinct[:n1]}
    split_of.update({name: "val" for name in distinct[n1:n2]})
    split_of.update({name: "test" for name in distinct[n2:]})
    return {split: [n for n in names if split_of[n] == split] for split in SPLITS}


def encode_name(text: str) -> list[int]:
    """Token ids of `text`; a character outside '.' and a-z is an error that names it."""
    unknown = [c for c in dict.fromkeys(text) if c not in ALPHABET]
    if unknown:
        listed = ", ".join(repr(c) for c in unknown)
        raise ValueError(
            f"the prompt has characters outside the vocabulary ('.' and a-z): {listed}"
        )
    return [ALPHABET.index(c) for c in text]


def context_windows(names: Sequence[str], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (context, next character) of `names`: contexts [N, block_size], targets [N].
    Each name starts from a context of all '.', and its last target is '.', the end."""
    if not names:
        return torch.zeros(0, block_size, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    # One stream, each name preceded by block_size '.' and followed by its end '.': the context
    # of the token at position p is stream[p - block_size : p].
    rows = [[0] * block_size + encode_name(name + END) for name in names]
    stream = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64)
    starts = np.cumsum([0] + [len(r) for r in rows])[:-1]
    is_target = np.ones(len(stream), dtype=bool)
    is_target[(starts[:, None] + np.arange(block_size)).ravel()] = False  # the leading '.'s
    positions = np.flatnonzero(is_target)
    windows = np.lib.stride_tricks.sliding_window_view(stream, block_size)
    return torch.from_numpy(windows[positions - block_size]), torch.from_numpy(stream[positions])


class ContextWindows(Dataset):
    """(context, next character) examples held in two tensors. A batch is one indexing
    (`__getitems__`), not a Python loop over examples; for evaluation each target also counts
    one character, and one word (a name) where it is the end token."""

    def __init__(self, contexts: torch.Tensor, targets: torch.Tensor, pad_to_multiple: int = 1):
        n = len(targets)
        padded = -(-n // pad_to_multiple) * pad_to_multiple
        # Padding rows (ignored targets) make DDP ranks share the examples without repeating any.
        self.contexts = torch.cat([contexts, contexts.new_zeros(padded - n, contexts.size(1))])
        self.targets = torch.cat([targets, targets.new_full((padded - n,), IGNORE_INDEX)])

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}

    def __getitems__(self, rows: list[int]) -> dict[str, torch.Tensor]:
        rows = torch.as_tensor(rows)
        targets = self.targets[rows, None]  # [B, 1]: one prediction per context
        real = targets != IGNORE_INDEX
        return {
            "input_ids": self.contexts[rows],
            "targets": targets,
            "target_words": (real & (targets == 0)).long(),
            "target_chars": real.long(),
        }


# --- the datamodule ---------------------------------------------------------------------
class NamesDataModule(FittedState, SplitLoaders, L.LightningDataModule):
    """makemore's names.txt as (context of `block_size` characters, next character) batches:
    `input_ids` [B, block_size] and `targets` [B, 1]."""

    def __init__(
        self,
        data_dir: str | None = None,
        file_name: str = FILE_NAME,
        block_size: int = 3,
        batch_size: int = 32,
        eval_batch_size: int = 4096,
        split_seed: int = 42,
        num_workers: int = 0,
        download: bool = True,
        test_file: str | None = None,
        predict_file: str | None = None,
    ):
        """
        Args:
            data_dir: the folder that holds `file_name`; default $DATA_DIR, else ./data.
            file_name: one lowercase name per line (makemore's names.txt; any such list works).
            block_size: characters of context (3 for makemore's MLP, 8 for its WaveNet).
            split_seed: shuffles the distinct names before the 80/10/10 cut.
            download: fetch makemore's names.txt when it is missing (needs a network).
            test_file, predict_file: names (one a line) that `test` and `predict` read instead
                of the test split; a path, or a name in data_dir.
        """
        super().__init__()
        require_positive(
            "data", block_size=block_size, batch_size=batch_size, eval_batch_size=eval_batch_size
        )
        require_non_negative("data", num_workers=num_workers)
        self.save_hyperparameters()
        root = data_dir or os.environ.get(DATA_DIR_ENV) or "data"
        self.path = Path(root).expanduser() / file_name
        self.block_size = block_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.split_seed = split_seed
        self.num_workers = num_workers
        self.download = download
        self.test_file, self.predict_file = test_file, predict_file
        self._names: list[str] | None = None
        self._datasets: dict[str, ContextWindows] = {}

    # --- the vocabulary (TextCodec for lit_models.modules.decoding) ------------------------
    vocab_size = len(ALPHABET)
    eos_id = 0  # '.' ends a name (and, as padding, starts one)

    def encode(self, text: str) -> list[int]:
        if not text:
            raise ValueError("the prompt is empty: give at least one character ('.' starts a name)")
        return encode_name(text)

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(ALPHABET[i] for i in ids)

    # --- the names and their splits --------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Every name of the file, in file order (fetched first when missing)."""
        if self._names is None:
            if not self.path.is_file():
                self._fetch_or_fail()
            self._names = read_names(self.path)
        return self._names

    def splits(self) -> dict[Split, list[str]]:
        splits = split_names(self.names, self.split_seed)
        empty = [split for split, names in splits.items() if not names]
        if empty:
            raise DataError(
                f"{self.path}: {len(set(self.names))} distinct names are too few for an 80/10/10 "
                f"split (the {', '.join(empty)} split would be empty); give at least 10."
            )
        return splits

    def _fetch_or_fail(self) -> None:
        if self.path.name != FILE_NAME:
            self._missing(f"only makemore's {FILE_NAME} can be downloaded")
        if not self.download:
            self._missing("downloading is off (data.init_args.download=false)")
        if hub_offline():
            self._missing("HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set")
        if not reachable(SOURCE_URL):
            self._missing(f"{SOURCE_URL} cannot be reached (offline?)")
        log.info("%s not found: downloading makemore's names", self.path)
        try:
            with urllib.request.urlopen(SOURCE_URL, timeout=30) as response:
                atomic_write_bytes(self.path, response.read())
        except Exception as err:
            self._missing(f"downloading failed ({type(err).__name__}: {err})")

    def _missing(self, why: str) -> None:
        raise DataError(
            f"names: {self.path} not found, and {why}.\n"
            f"Provide it by putting a names file there (one lowercase name per line, such as "
            f"makemore's {SOURCE_URL}), by pointing data.init_args.data_dir (or the {DATA_DIR_ENV} "
            f"environment variable) at the folder that holds it, or by running once with a "
            f"network so that it is downloaded."
        )

    # --- FittedState: nothing is fitted, but the alphabet must be the checkpoint's ---------
    def fitted_state(self) -> dict:
        return {"alphabet": ALPHABET}

    def restore_fitted(self, state: dict) -> None:
        if state.get("alphabet") != ALPHABET:
            raise DataError(
                f"names: the checkpoint's alphabet {state.get('alphabet')!r} is not this "
                f"version's {ALPHABET!r}; evaluate it with the version that trained it."
            )

    # --- the datasets, built when a loader first asks ------------------------------------
    def split_dataset(self, name: str) -> ContextWindows:
        """A split's windows, or `test_file`'s for "test", `predict_file`'s for "predict"."""
        if name not in self._datasets:
            world_size = self.trainer.world_size if self.trainer is not None else 1
            pad = 1 if name == "train" else world_size
            windows = context_windows(self._names_of(name), self.block_size)
            self._datasets[name] = ContextWindows(*windows, pad)
        return self._datasets[name]

    def _names_of(self, name: str) -> list[str]:
        key = {"test": "test_file", "predict": "predict_file"}.get(name)
        file = getattr(self, key) if key else None
        if name == "predict" and file is None:
            return self._names_of("test")
        if file is not None:
            return read_names(resolve_eval_file(file, self.path.parent, key))
        return self.splits()[name]

    train_set = property(lambda self: self.split_dataset("train"))
    val_set = property(lambda self: self.split_dataset("val"))
    test_set = property(lambda self: self.split_dataset("test"))

    def predict_dataloader(self):
        return self.loader(self.split_dataset("predict"), self.eval_batch_size)

    # --- Lightning hooks -------------------------------------------------------------------
    def prepare_data(self) -> None:
        if not evaluating_files(self, self.test_file, self.predict_file):
            self.names  # noqa: B018 - one process fetches (and checks) the file first

    def setup(self, stage: str | None = None) -> None:
        # The datasets are made when the loaders ask (`split_dataset`), after Lightning
        # restored a checkpoint's state; a names file too small to split stops here.
        if not evaluating_files(self, self.test_file, self.predict_file):
            self.splits()

    def collate_fn(self):
        return whole_batch
