"""Batches of examples of similar length (torchtext's BucketIterator), so little of a batch is
padding; the one bucketing sampler of the suite (translation pairs, sentiment sentences).

Training: each epoch the indices are shuffled (datamodules.resumable.EpochRandomSampler,
seeded by `seed` and the epoch Lightning passes to `set_epoch`), taken in pools of
`pool_batches` batches, each pool sorted by length and cut into batches, and the batches
shuffled. Evaluation: all indices sorted by length, then cut. The order of an epoch depends
on the seed and the epoch alone, so a resumed run can skip to its place in it.

Distributed training: the batch sampler groups whatever indices its inner `sampler` yields.
With `EpochRandomSampler(num_replicas=W, rank=r)` each rank draws its own disjoint share of
the epoch's permutation (padded by wrapping around, so every rank gets as many indices and so
as many batches) and buckets it. With Lightning's default `use_distributed_sampler=True`,
Lightning swaps the inner sampler for its DistributedSampler (shuffled, since the inner one
is a RandomSampler), which shares the indices out the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from torch.utils.data import BatchSampler, Sampler

POOL_BATCHES = 50  # batches per length-sorted pool: enough to find similar lengths, still random


class BucketBatchSampler(BatchSampler):
    """Batches of examples of similar length, from the indices `sampler` yields.

    shuffle=True (training): the indices, in the sampler's random order, are taken in pools of
    `pool_batches` batches; each pool is sorted by (source, target) length and cut into
    batches, and the batches are shuffled, seeded by `seed` and the sampler's epoch.
    shuffle=False (evaluation): all indices sorted by length, then cut. Lengths are those of
    the (source, target) pair: sorted by the longer side, then by the sum (one length per
    example, [N], is simply sorted by it).

    `sampler` is an argument so that Lightning can swap in its DistributedSampler under DDP.
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool = False,
        lengths: np.ndarray | None = None,
        shuffle: bool = False,
        seed: int = 0,
        pool_batches: int = POOL_BATCHES,
    ):
        super().__init__(sampler, batch_size, drop_last)
        if lengths is None:
            raise ValueError("BucketBatchSampler needs the lengths of the examples")
        self.lengths = np.asarray(lengths)
        self.shuffle, self.seed, self.pool_batches = shuffle, seed, pool_batches

    def _by_length(self, indices: list[int]) -> list[int]:
        # By the longer side, then the total: on Multi30k this pads less than torchtext's
        # (source, target) order (8% against 12% of a training epoch's tokens; random: 52%).
        if not indices:
            return []
        lengths = self.lengths[indices].reshape(len(indices), -1)
        # lexsort: the last key is the primary one; ties keep the incoming (random) order
        order = np.lexsort((lengths.sum(1), lengths.max(1)))
        return [indices[i] for i in order]

    def _cut(self, indices: list[int]) -> list[list[int]]:
        return [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]

    def batches(self) -> list[list[int]]:
        indices = list(self.sampler)
        if not self.shuffle:
            batches = self._cut(self._by_length(indices))
        else:
            pool = self.batch_size * self.pool_batches
            batches = [
                batch
                for start in range(0, len(indices), pool)
                for batch in self._cut(self._by_length(indices[start : start + pool]))
            ]
            epoch = getattr(self.sampler, "epoch", 0)
            rng = np.random.default_rng([self.seed, epoch, 1])
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
