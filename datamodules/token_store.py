"""Token ids on disk, read through memory maps: a split of any size costs the memory of the
windows read from it, not of the split.

A split is written while its text streams through the tokenizer, as shards of
`TOKENS_PER_SHARD` tokens (`<split>-00000.tokens`, ...) in the corpus's cache folder, then a
manifest (`<split>.json`) naming them; the writer holds one shard at a time. Each shard is a
checked file (`core.checked_files`: a size and SHA-256 header) whose payload is three arrays
back to back, the ids (uint16 when the vocabulary fits, else uint32), then per token the
words (uint8) and characters (uint16) it closes, each memory-mapped where it lies.

A shard that fails its check when the split is opened is reported, removed and the split is
written again (the same bytes: encoding is deterministic), as every cached file is. Where the
cache folder cannot be written the split is kept in memory instead (reported once).

Readers slice the split (`split.ids[a:b]`) and get a copy; the maps are dropped and made
again after every `REMAP_BYTES` read, so the pages a long pass touched leave the process's
resident memory (the ordered pass over a split larger than memory stays flat, as nanoGPT's
`get_batch` gets by opening a new np.memmap every batch).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from core.checked_files import header
from datamodules.cache import DerivedFiles
from datamodules.tokenizers import EncodedSplit

TOKENS_PER_SHARD = 1 << 23  # 8M tokens, 40 MB at most: what the writer holds at once
REMAP_BYTES = 1 << 26  # 64 MiB read (pages touched, at least 1 MiB a read) between remaps
# What one small read may leave mapped, counted generously: the kernel maps pages around a
# fault, and at 64 KiB a read random training windows still grew the process by about 0.4 GB
# on a 1 GB corpus. A remap every 64 random reads costs microseconds.
PAGES_PER_READ = 1 << 20
STORE_FORMAT = 1  # bump when the shard layout changes
FIELDS = ("ids", "words", "chars")
TOKENIZERS_PARALLELISM = "TOKENIZERS_PARALLELISM"


def ids_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type that holds every id: uint16 up to 65,536 tokens."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


class ShardedArray:
    """One field of a stored split (ids, words or chars) as one array over its shards:
    `len`, an index or a slice (a copy, as a numpy array), `tolist`, `np.asarray`."""

    def __init__(self, shards: list[tuple[str, int, int]], dtype: np.dtype):
        self.shards, self.dtype = shards, np.dtype(dtype)  # (path, payload offset, tokens)
        self.starts = np.cumsum([0, *(n for _, _, n in shards)])
        self._maps: dict[int, np.memmap] = {}
        self._read = 0

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _map(self, k: int) -> np.memmap:
        if k not in self._maps:
            path, offset, n = self.shards[k]
            self._maps[k] = np.memmap(path, self.dtype, mode="r", offset=offset, shape=(n,))
        return self._maps[k]

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise IndexError("a stored split is read in contiguous slices")
            return self.read(start, stop)
        i = int(index) + (len(self) if int(index) < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} tokens")
        return self.read(i, i + 1)[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens start..stop (a copy), across shard boundaries."""
        stop = max(start, stop)
        out = np.empty(stop - start, self.dtype)
        k = int(np.searchsorted(self.starts, start, side="right")) - 1
        at = start
        while at < stop:
            s, e = self.starts[k], self.starts[k + 1]
            n = min(stop, e) - at
            out[at - start : at - start + n] = self._map(k)[at - s : at - s + n]
            at, k = at + n, k + 1
        self._read += max(out.nbytes, PAGES_PER_READ)
        if self._read >= REMAP_BYTES:  # let go of the pages touched so far
            self._maps, self._read = {}, 0
        return out

    def __array__(self, dtype=None, copy=None):
        whole = self.read(0, len(self))
        return whole if dtype is None else whole.astype(dtype)

    def sum(self) -> int:
        """The total, shard by shard (word and character counts of a split of any size)."""
        return sum(int(self._map(k).sum(dtype=np.int64)) for k in range(len(self.shards)))

    def max(self) -> int:
        return max(int(self._map(k).max()) for k in range(len(self.shards)))

    def tolist(self) -> list:
        return np.asarray(self).tolist()

    def __getstate__(self) -> dict:  # a DataLoader worker reopens the maps, never copies them
        return {**self.__dict__, "_maps": {}, "_read": 0}


class StoredSplit:
    """A split in the cache: `ids`, `words`, `chars` as ShardedArrays (EncodedSplit's fields)."""

    def __init__(self, cache: DerivedFiles, manifest: dict, offsets: list[int]):
        n = [shard["tokens"] for shard in manifest["shards"]]
        paths = [str(cache.path(shard["name"])) for shard in manifest["shards"]]
        dtypes = [np.dtype(manifest["dtype"]), np.dtype(np.uint8), np.dtype(np.uint16)]
        field_offset = np.zeros(len(n), np.int64)
        for name, dtype in zip(FIELDS, dtypes, strict=True):
            shards = [
                (p, o + int(f), k)
                for p, o, f, k in zip(paths, offsets, field_offset, n, strict=True)
            ]
            setattr(self, name, ShardedArray(shards, dtype))
            field_offset = field_offset + np.asarray(n, np.int64) * dtype.itemsize

    def __len__(self) -> int:
        return len(self.ids)


def open_split(cache: DerivedFiles, split: str) -> StoredSplit | None:
    """The stored split, its shards checked; None when it is missing or a shard is damaged
    (reported and removed: the caller writes the split again)."""
    manifest = cache.read(f"{split}.json", json.loads)
    if manifest is None or manifest.get("format") != STORE_FORMAT:
        return None
    offsets = []
    for shard in manifest["shards"]:
        offset = cache.check(shard["name"])
        if offset is None:
            return None
        offsets.append(offset)
    return StoredSplit(cache, manifest, offsets)


def write_split(
    cache: DerivedFiles, split: str, vocab_size: int, chunks: Iterable[EncodedSplit]
) -> StoredSplit | EncodedSplit:
    """Write the encoded `chunks` of a split as shards and its manifest, holding one shard at
    a time, and return the stored split. Where a file cannot be written (reported once), the
    split is kept in memory instead and returned as an EncodedSplit."""
    writer = _ShardWriter(cache, split, ids_dtype(vocab_size))
    for chunk in chunks:
        writer.add(chunk)
    return writer.finish()


class _ShardWriter:
    def __init__(self, cache: DerivedFiles, split: str, dtype: np.dtype):
        self.cache, self.split, self.dtype = cache, split, dtype
        self.shards: list[dict] = []
        self.offsets: list[int] = []  # where each shard's payload starts
        self.pending: list[EncodedSplit] = []  # encoded, not in a shard (all, once one failed)
        self.failed = False

    def add(self, chunk: EncodedSplit) -> None:
        self.pending.append(self._narrowed(chunk))  # int64 ids would hold twice the shard
        while not self.failed and sum(map(len, self.pending)) >= TOKENS_PER_SHARD:
            whole = concatenate(self.pending)
            self.pending = [cut(whole, TOKENS_PER_SHARD)]
            if not self._write(cut(whole, 0, TOKENS_PER_SHARD)):
                self.pending, self.failed = [self._written(), whole], True

    def finish(self) -> StoredSplit | EncodedSplit:
        if not self.failed:
            last = concatenate(self.pending)
            wrote_last = not len(last) or self._write(last)
            if wrote_last and self.cache.write(
                f"{self.split}.json", json.dumps(self._manifest(), indent=1).encode()
            ):
                return StoredSplit(self.cache, self._manifest(), self.offsets)
            self.pending = [self._written()] + ([] if wrote_last else [last])
        whole = concatenate(self.pending)
        return EncodedSplit(whole.ids.astype(np.int64), whole.words, whole.chars)

    def _manifest(self) -> dict:
        return {"format": STORE_FORMAT, "dtype": self.dtype.name, "shards": self.shards}

    def _narrowed(self, part: EncodedSplit) -> EncodedSplit:
        """The part in the shard's types, as `_write` stores them."""
        if len(part) and int(part.ids.max()) > np.iinfo(self.dtype).max:
            raise ValueError(f"token id {int(part.ids.max())} does not fit in {self.dtype.name}")
        return EncodedSplit(
            part.ids.astype(self.dtype, copy=False),
            part.words.astype(np.uint8, copy=False),
            part.chars.astype(np.uint16, copy=False),
        )

    def _write(self, part: EncodedSplit) -> bool:
        """Write a shard of pending (already narrowed) tokens."""
        name = f"{self.split}-{len(self.shards):05d}.tokens"
        arrays = [part.ids, part.words, part.chars]
        if not self.cache.write_parts(name, arrays):
            return False
        self.shards.append({"name": name, "tokens": len(part)})
        self.offsets.append(len(header(sum(a.nbytes for a in arrays), "0" * 64)))
        return True

    def _written(self) -> EncodedSplit:
        """The shards written so far, read back into memory."""
        stored = StoredSplit(self.cache, self._manifest(), self.offsets)
        return EncodedSplit(*(np.asarray(getattr(stored, field)) for field in FIELDS))


def concatenate(parts: Sequence[EncodedSplit]) -> EncodedSplit:
    if not parts:
        return EncodedSplit(np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.uint16))
    if len(parts) == 1:
        return parts[0]
    return EncodedSplit(*(np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS))


def cut(part: EncodedSplit, start: int, stop: int | None = None) -> EncodedSplit:
    return EncodedSplit(*(getattr(part, f)[start:stop] for f in FIELDS))


# --- encoding in parallel, in order ----------------------------------------------------------
_ENCODE: Callable | None = None  # the worker's encoder, set once when the worker starts


def _start_worker(encode: Callable) -> None:
    global _ENCODE
    _ENCODE = encode


def _encode_in_worker(batch: list[str]) -> EncodedSplit:
    return _ENCODE(batch)


def encode_batches(
    encode: Callable[[list[str]], EncodedSplit], batches: Iterable[list[str]], num_proc: int = 1
) -> Iterator[EncodedSplit]:
    """`encode` of each batch of lines, in order; over `num_proc` processes when more than
    one (forked, so they share the tokenizer), with a few batches in flight at most: memory
    stays flat whatever the corpus's size."""
    if num_proc <= 1:
        yield from map(encode, batches)
        return
    # One thread a process: the processes are the parallelism (and HF tokenizers would warn
    # that a fork follows its thread pool's use).
    before = os.environ.get(TOKENIZERS_PARALLELISM)
    os.environ[TOKENIZERS_PARALLELISM] = "false"
    try:
        pool = multiprocessing.get_context("fork").Pool(
            num_proc, initializer=_start_worker, initargs=(encode,)
        )
    finally:
        if before is None:
            os.environ.pop(TOKENIZERS_PARALLELISM)
        else:
            os.environ[TOKENIZERS_PARALLELISM] = before
    with pool:
        in_flight: deque = deque()
        for batch in batches:
            in_flight.append(pool.apply_async(_encode_in_worker, (batch,)))
            if len(in_flight) > 2 * num_proc:
                yield in_flight.popleft().get()
        while in_flight:
            yield in_flight.popleft().get()
