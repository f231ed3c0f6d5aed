"""The classic synthetic tests of long-range memory, generated in memory from a seed.

Adding problem (Hochreiter & Schmidhuber 1997, experiment 4; the form of Le et al. 2015):
each of `seq_len` steps holds two numbers, a value drawn uniformly from [0, 1) and a marker.
Exactly two markers are 1, one in the first half of the sequence and one in the second; the
target is the sum of the two marked values. Predicting always 1 (the mean of the sum) gives
an MSE of Var(U + U') = 2/12 = 0.167, the baseline a model must beat by remembering the first
marked value across up to `seq_len` steps.

Copy memory (Hochreiter & Schmidhuber 1997, experiment 2; the form of Arjovsky et al. 2016):
`copy_length` symbols drawn from 1..`n_symbols`, then `seq_len` blanks (0) the last of which
is the delimiter, then `copy_length` blanks during which the model must repeat the symbols.
The input is one-hot over blank, the symbols and the delimiter; the target at every step is
blank except the last `copy_length` steps, which are the symbols. Predicting blanks and then
symbols at random gives a cross-entropy of copy_length * log(n_symbols) / total steps.

Batches are {"inputs": [B, T, input_size] float, "targets"}: [B] floats for the adding
problem (a regression of the last step), [B, T] class ids for copy memory (a class at every
step). Each split is drawn from its own generator (seed, seed + 1, seed + 2), so the same
seed always gives the same data and the splits never share a draw.
"""

from __future__ import annotations

import math
from typing import Literal

import lightning as L
import torch

from core.checks import require_non_negative, require_positive
from core.constants import SPLITS
from core.errors import UserError
from datamodules.adult import TensorRows
from datamodules.loaders import SplitLoaders, whole_batch

Task = Literal["adding", "copy"]
BLANK = 0


def adding_problem(n: int, seq_len: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """`n` sequences [n, seq_len, 2] of (value, marker) and their targets [n]."""
    values = torch.rand(n, seq_len, generator=generator)
    half = seq_len // 2
    first = torch.randint(0, half, (n,), generator=generator)
    second = torch.randint(half, seq_len, (n,), generator=generator)
    markers = torch.zeros(n, seq_len)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return {"inputs": torch.stack([values, markers], dim=-1), "targets": targets}


def copy_memory(
    n: int, seq_len: int, copy_length: int, n_symbols: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """`n` one-hot sequences [n, T, n_symbols + 2] (T = seq_len + 2 * copy_length) and their
    targets [n, T]: blank, then the first `copy_length` symbols again at the end."""
    delimiter = n_symbols + 1
    symbols = torch.randint(1, n_symbols + 1, (n, copy_length), generator=generator)
    blanks = torch.full((n, seq_len), BLANK)
    blanks[:, -1] = delimiter
    tokens = torch.cat([symbols, blanks, torch.full((n, copy_length), BLANK)], dim=1)
    targets = torch.cat([torch.full((n, seq_len + copy_length), BLANK), symbols], dim=1)
    inputs = torch.nn.functional.one_hot(tokens, n_symbols + 2).float()
    return {"inputs": inputs, "targets": targets}


class LongRangeDataModule(SplitLoaders, L.LightningDataModule):
    """The adding problem or copy memory (see the module docstring) as in-memory splits.

    The facts the model is built from cross to it through the CLI's links: `input_size`
    (features a step), `output_size` (1 value, or the classes of a step) and `task_kind`
    (`regression` of the last step or `classification` of every step)."""

    def __init__(
        self,
        task: Task = "adding",
        seq_len: int = 100,
        train_size: int = 10_000,
        val_size: int = 1_000,
        test_size: int = 1_000,
        copy_length: int = 10,
        n_symbols: int = 8,
        seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 1_000,
        num_workers: int = 0,
    ):
        """
        Args:
            task: adding | copy.
            seq_len: steps of an adding sequence; for copy, the delay between the symbols and
                the delimiter (the sequence is seq_len + 2 * copy_length steps).
            train_size, val_size, test_size: sequences of each split.
            copy_length, n_symbols: symbols to remember and the alphabet they come from (copy).
            seed: the data's own seed (not seed_everything's): the same seed, the same data.
        """
        super().__init__()
        if task not in ("adding", "copy"):
            raise UserError(f"data.init_args.task must be adding or copy, got {task!r}.")
        require_positive(
            "data",
            train_size=train_size,
            val_size=val_size,
            test_size=test_size,
            copy_length=copy_length,
            n_symbols=n_symbols,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
        )
        require_non_negative("data", num_workers=num_workers)
        if seq_len < (2 if task == "adding" else 1):
            raise UserError(
                f"data.init_args.seq_len must be at least {2 if task == 'adding' else 1} for the {task} "
                f"task (one marker in each half), got {seq_len}."
            )
        self.save_hyperparameters()
        self.task, self.seq_len, self.seed = task, seq_len, seed
        self.sizes = dict(zip(SPLITS, (train_size, val_size, test_size), strict=True))
        self.copy_length, self.n_symbols = copy_length, n_symbols
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers = num_workers

    # --- the facts the model is built from -------------------------------------------------
    @property
    def input_size(self) -> int:
        return 2 if self.task == "adding" else self.n_symbols + 2

    @property
    def output_size(self) -> int:
        return 1 if self.task == "adding" else self.n_symbols + 1  # blank and the symbols

    @property
    def task_kind(self) -> Literal["regression", "classification"]:
        return "regression" if self.task == "adding" else "classification"

    @property
    def baseline_loss(self) -> float:
        """The loss of the trivial model: always 1 (adding), or blank and then a random
        symbol (copy)."""
        if self.task == "adding":
            return 1 / 6
        total = self.seq_len + 2 * self.copy_length
        return self.copy_length * math.log(self.n_symbols) / total

    # --- the splits --------------------------------------------------------------------------
    def generate(self, n: int, seed: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        if self.task == "adding":
            return adding_problem(n, self.seq_len, generator)
        return copy_memory(n, self.seq_len, self.copy_length, self.n_symbols, generator)

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        self.train_set, self.val_set, self.test_set = (
            TensorRows(self.generate(self.sizes[split], self.seed + i))
            for i, split in enumerate(SPLITS)
        )

    drop_last_train = False

    def collate_fn(self):
        return whole_batch
