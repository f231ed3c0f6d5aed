"""The dataloader hooks that most datamodules share.

A datamodule that mixes in `SplitLoaders` leaves one dataset a split in `self.train_set`,
`self.val_set` and `self.test_set` (in `setup`), and has `batch_size`, `eval_batch_size` and
`num_workers`. Training reads its split shuffled, in an order fixed by seed_everything's seed
and the epoch, through a ResumableLoader (a checkpoint holds its place in the epoch);
evaluation reads every example once, in order; `predict` reads the test split.
`collate_fn()` says how examples become a batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.resumable import (
    EpochRandomSampler,
    ResumableLoader,
    eval_sampler,
    run_seed,
    shard_of,
)


def whole_batch(batch):
    """The collate function of a dataset whose `__getitems__` already returns the batch."""
    return batch


class SplitLoaders:
    drop_last_train = True  # a ragged last batch would be a noisier step (and break BatchNorm)

    def collate_fn(self) -> Callable | None:
        """How a list of examples becomes a batch; None is torch's default_collate."""
        return None

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_set, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.val_set, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.test_set, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        """`predict` reads the test split (the model's predict_step says what it returns)."""
        return self.test_dataloader()

    def loader(self, dataset: Dataset, batch_size: int, train: bool = False) -> DataLoader:
        """Training: shuffled (and resumable); evaluation: every example once, in order."""
        options = {
            "collate_fn": self.collate_fn(),
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
            "pin_memory": torch.cuda.is_available(),
        }
        # Each DDP rank reads its own share. With Lightning's use_distributed_sampler (the
        # default) Lightning swaps its DistributedSampler into training, which holds a list of
        # every example: set it false for a corpus of gigabytes (our sampler holds nothing).
        rank, world_size = shard_of(getattr(self, "trainer", None))
        if not train:
            sampler = eval_sampler(dataset, rank, world_size)
            return DataLoader(dataset, batch_size=batch_size, sampler=sampler, **options)
        return ResumableLoader(
            dataset,
            batch_size=batch_size,
            sampler=EpochRandomSampler(dataset, run_seed(), rank, world_size),
            drop_last=self.drop_last_train,
            **options,
        )
