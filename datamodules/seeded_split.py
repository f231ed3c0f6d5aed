"""Which split a piece of a corpus read in chunks goes to (a file, a block of lines, a block
of rows), decided by a seeded hash of its name alone: the same piece always lands in the same
split, whatever else the corpus holds, and nothing is in two splits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from core.constants import Split


def share(seed: int, *key: object) -> float:
    """A number in [0, 1) fixed by `seed` and `key`, uniform over keys."""
    digest = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_of(seed: int, val_fraction: float, test_fraction: float, *key: object) -> Split:
    """The split of one piece: val with probability `val_fraction`, test with `test_fraction`."""
    u = share(seed, *key)
    return "val" if u < val_fraction else "test" if u < val_fraction + test_fraction else "train"


def split_names(
    names: Sequence[str], seed: int, val_fraction: float, test_fraction: float
) -> dict[str, Split]:
    """Whole named pieces (files) to splits: ranked by their seeded hash, the first
    `val_fraction` of them (at least one) validate, the next `test_fraction` (at least one)
    test, the rest train."""
    ranked = sorted(names, key=lambda name: share(seed, name))
    n_val = max(1, round(val_fraction * len(names)))
    n_test = max(1, round(test_fraction * len(names)))
    return {
        name: "val" if i < n_val else "test" if i < n_val + n_test else "train"
        for i, name in enumerate(ranked)
    }
