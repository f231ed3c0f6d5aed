"""Training loaders whose place in the data is part of a checkpoint, so that a run resumed
from last.ckpt reads exactly the batches the uninterrupted run would have read.

Lightning saves `state_dict()` of every train dataloader that has one in the checkpoint
(`loops.fit_loop.state_dict.combined_loader`) and hands it to `load_state_dict` on resume,
before it creates the loader's iterator. A `ResumableLoader`'s state is where it stands: the
epoch it is reading and the batches it has handed out in it. On resume it skips those
batches of that epoch's order by their indices, without loading them, which needs an order
that depends on the epoch alone: `EpochRandomSampler` (seeded by a seed and the epoch), or
Lightning's DistributedSampler under DDP (the same, with the global seed).

The epoch is read when the first batch is asked for, not when the iterator is made: on
resume Lightning makes the iterator first and calls the sampler's `set_epoch` after. The
batches handed out are the batches trained on when a checkpoint is written: Lightning
fetches no batch ahead from a loader with a length, as all of the suite's are.

An IterableDataset (a dataset that makes its own batches) is resumable when it is a
`ResumableStream`: it says which pass it is on and can start a pass at a given batch.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)


def run_seed() -> int:
    """seed_everything's seed, which Lightning keeps in PL_GLOBAL_SEED: the same in every
    DDP process and in a resumed run (Lightning's DistributedSampler takes it too); 0 when
    none was set."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def shard_of(trainer) -> tuple[int, int]:
    """(rank, world size) of this process under `trainer`; (0, 1) without one."""
    if trainer is None:
        return 0, 1
    return trainer.global_rank, trainer.world_size


def eval_sampler(dataset: Sized, rank: int, world_size: int) -> Sampler[int]:
    """Evaluation's order: every example once, in order; under DDP each rank its share."""
    if world_size == 1:
        return SequentialSampler(dataset)
    return DistributedSampler(dataset, world_size, rank, shuffle=False)


class EpochRandomSampler(RandomSampler):
    """A fresh permutation every epoch, seeded by `seed` and the epoch Lightning passes to
    `set_epoch`. Over `num_replicas` processes it yields rank `rank`'s share of the
    permutation (every `num_replicas`-th index), padded by wrapping around so every rank gets
    as many; the shares are disjoint but for that padding, and together cover every index.
    Past HELD_ORDER_MAX indices (a corpus of gigabytes has a training window a token) the
    permutation is not held but computed a chunk at a time (`permute`).

    A RandomSampler, so that Lightning knows the loader is shuffled and, under DDP with
    `use_distributed_sampler=True`, swaps in its own (epoch-seeded) DistributedSampler."""

    def __init__(self, data_source: Sized, seed: int = 0, rank: int = 0, num_replicas: int = 1):
        super().__init__(data_source)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not one of {num_replicas} replicas")
        self.seed, self.rank, self.world_size = seed, rank, num_replicas
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.data_source) / self.world_size)

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        if n <= HELD_ORDER_MAX:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
            order = np.concatenate([order, order[: len(self) * self.world_size - n]])
            return iter(order[self.rank :: self.world_size].tolist())
        return self._computed_order(n)

    def _computed_order(self, n: int) -> Iterator[int]:
        # Every window of a corpus of gigabytes: a held permutation would take 8 bytes (and a
        # Python list 36) a window. A seeded bijection of range(n) gives the same kind of order
        # a chunk of positions at a time; position p of the padded order is p % n, as above.
        keys = np.random.default_rng([self.seed, self.epoch]).integers(
            0, 2**63, FEISTEL_ROUNDS, dtype=np.uint64
        )
        stop, step = len(self) * self.world_size, self.world_size
        for start in range(self.rank, stop, ORDER_CHUNK * step):
            positions = np.arange(start, min(start + ORDER_CHUNK * step, stop), step) % n
            yield from permute(positions.astype(np.uint64), n, keys).tolist()


HELD_ORDER_MAX = 1 << 22  # samplers this long or shorter hold their order (32 MB at most)
ORDER_CHUNK = 1 << 16  # positions of a longer order computed at a time
FEISTEL_ROUNDS = 6


def permute(x: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    """A keyed bijection of range(n), applied to `x` (uint64, each below n): a Feistel network
    on the smallest even number of bits that covers n, applied again to any value that lands
    at n or above until it is below (cycle walking keeps it a bijection of range(n))."""
    half = np.uint64(max(1, ((n - 1).bit_length() + 1) // 2))
    mask = np.uint64((1 << int(half)) - 1)
    out, todo = x.copy(), np.arange(len(x))
    while len(todo):
        y = out[todo]
        left, right = y >> half, y & mask
        for key in keys:
            left, right = right, left ^ (_mix(right ^ key) & mask)
        y = (left << half) | right
        out[todo] = y
        todo = todo[y >= n]
    return out


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit reaches every output bit (uint64, wrapping)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class ResumableStream(IterableDataset):
    """A dataset that makes its own batches, resumable through a ResumableLoader: `epoch` is
    the pass it reads next (until that pass starts), and `start_at(epoch, batch)` makes its
    next pass that epoch's, starting at that batch."""

    epoch: int = 0

    def start_at(self, epoch: int, batch: int) -> None:
        raise NotImplementedError


class ResumableLoader(DataLoader):
    """A DataLoader with `state_dict` and `load_state_dict`: Lightning then saves its place in
    the epoch with every checkpoint, and a resumed run goes on from there.

    It takes DataLoader's arguments and adds none, so Lightning can build it again with a
    DistributedSampler under DDP. Its `generator` defaults to one of its own, seeded by
    seed_everything's seed: a DataLoader without one draws its workers' seed from torch's
    global generator whenever it makes an iterator, and the training draws after it (dropout)
    would depend on how often it had. Its dataset is map-style or a ResumableStream."""

    def __init__(self, *args, generator: torch.Generator | None = None, **kwargs):
        if generator is None:
            generator = torch.Generator().manual_seed(run_seed())
        super().__init__(*args, generator=generator, **kwargs)
        if isinstance(self.dataset, IterableDataset) and not isinstance(
            self.dataset, ResumableStream
        ):
            raise TypeError(
                f"a ResumableLoader cannot skip into {type(self.dataset).__name__}: an "
                f"IterableDataset must be a ResumableStream"
            )
        self._epoch = 0  # the epoch being read
        self._batches = 0  # batches handed out in it
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches) not yet gone on from
        self._unread = 0  # iterators made since the resume point was loaded, none yet read
        self._skip = _Skip()  # batches the iterator being made leaves out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches": self._batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_at = (int(state["epoch"]), int(state["batches"]))
        self._unread = 0

    def __iter__(self) -> Iterator:
        if self._resume_at is not None:
            # Lightning makes one iterator on resume and reads on from it; if it makes a
            # second without reading the first, the saved epoch was complete: the next starts.
            self._unread += 1
            if self._unread > 1:
                self._resume_at = (self._resume_at[0] + 1, 0)
        return self._read()

    def _read(self) -> Iterator:
        # A generator: nothing below runs before the first batch is asked for, after set_epoch.
        resume_at, self._resume_at = self._resume_at, None
        stream = self.dataset if isinstance(self.dataset, ResumableStream) else None
        if stream is not None:
            if resume_at is not None:
                stream.start_at(*resume_at)
            epoch, skip = stream.epoch, resume_at[1] if resume_at is not None else 0
        else:
            epoch = self._sampler_epoch()
            skip = resume_at[1] if resume_at is not None and resume_at[0] == epoch else 0
            self._skip.batches = skip  # read by _index_sampler while the iterator is made
        try:
            batches = super().__iter__()
        finally:
            self._skip.batches = 0
        self._epoch, self._batches = epoch, skip
        for batch in batches:
            self._batches += 1
            yield batch

    @property
    def _index_sampler(self):
        # What DataLoader's iterators draw indices (or index batches) from. Their workers take
        # indices as soon as the iterator is made, so skipping happens here, at the source.
        # The iterator keeps this object and iterates it again at every epoch (persistent
        # workers), hence a view that reads the skip then, not a copy with the skip built in.
        if isinstance(self.dataset, IterableDataset):
            return super()._index_sampler  # the dataset skips (ResumableStream)
        return _SkipFirst(super()._index_sampler, self._skip)

    def _sampler_epoch(self) -> int:
        # Where Lightning's set_epoch reaches: the sampler, or the batch sampler's sampler.
        for sampler in (getattr(self.batch_sampler, "sampler", None), self.sampler):
            if hasattr(sampler, "epoch"):
                return int(sampler.epoch)
        return 0


class _Skip:
    batches = 0


class _SkipFirst(Sampler):
    """`indices` without the first `skip.batches` items (index batches, for a batching loader)
    at the moment it is iterated; its length stays that of a whole epoch. (It holds the count,
    not the loader: a loader that its iterator's sampler pointed back to would be freed only by
    the cycle collector, which shuts worker processes down slowly.)"""

    def __init__(self, indices, skip: _Skip):
        self.indices, self.skip = indices, skip

    def __iter__(self):
        return itertools.islice(iter(self.indices), self.skip.batches, None)

    def __len__(self) -> int:
        return len(self.indices)
