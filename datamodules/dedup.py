"""Near-duplicate removal: MinHash LSH (Broder 1997; Leskovec, Rajaraman & Ullman, ch. 3)
over shingles, with `datasketch`.

Each document becomes the set of its shingles: `shingle_size` consecutive words (lower-cased,
split at whitespace) or characters (lower-cased, whitespace runs read as one space). Two
documents are near-duplicates when the Jaccard similarity of their shingle sets,
|A & B| / |A | B|, reaches `threshold`. A MinHash signature of `num_perm` hashes estimates that
similarity (the share of equal positions), and locality-sensitive hashing over bands of the
signature finds the candidate pairs without comparing every pair (banded for recall: at the
default settings a pair at Jaccard 0.8 is a candidate 95% of the time, at 0.85 99.4%).

Documents are read in order and the first occurrence is kept: a document is dropped when the
LSH index of the documents kept so far holds a candidate whose estimated Jaccard similarity
reaches the threshold; it is recorded against the most similar such candidate (the earliest on
a tie). The result depends only on the documents and the settings (same seed, same result).

Short and empty documents: a document with fewer words (characters) than `shingle_size` is
one shingle, itself, so it only matches an exact (normalized) copy of itself. A document with
no text at all (empty or whitespace) has no shingles: it is always kept and never matched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

Shingle = Literal["word", "char"]  # what a shingle is made of
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial rolling hash
_CHUNK = 4096  # shingles hashed at once: bounds memory at _CHUNK x num_perm x 8 bytes
_BATCH = 1 << 23  # characters of documents signed at once (a few hundred MB at most)
# LSH bands tuned for recall: datasketch's default weighs false positives and negatives alike
# and misses 7% of pairs at Jaccard 0.9 (threshold 0.8); a false positive only costs one
# signature comparison here, since every candidate is checked against the threshold.
LSH_WEIGHTS = (0.05, 0.95)  # (false positives, false negatives)


@dataclass
class DedupResult:
    """What `drop_near_duplicates` decided, as indices into the documents it was given."""

    kept: list[int]  # in their original order
    dropped: list[tuple[int, int]] = field(default_factory=list)  # (dropped, kept one it copies)

    @property
    def duplicate_of(self) -> dict[int, int]:
        return dict(self.dropped)


def drop_near_duplicates(
    documents: Sequence[str],
    threshold: float = 0.8,
    num_perm: int = 128,
    shingle_size: int = 5,
    seed: int = 1,
    shingle: Shingle = "word",
) -> DedupResult:
    """Keep the first of every group of near-duplicate documents (Jaccard >= `threshold` of
    their `shingle`-level `shingle_size`-gram sets, estimated with `num_perm` MinHash
    permutations drawn from `seed`)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if num_perm < 2:
        raise ValueError(f"num_perm must be at least 2, got {num_perm}")
    if shingle_size < 1:
        raise ValueError(f"shingle_size must be a positive integer, got {shingle_size}")
    if shingle not in get_args(Shingle):
        raise ValueError(f"shingle must be one of {get_args(Shingle)}, got {shingle!r}")

    signatures = (  # batch by batch, so memory stays bounded on a large corpus
        values
        for batch in _batches(documents)
        for values in _signatures(batch, shingle, shingle_size, num_perm, seed)
    )
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    kept_signatures: dict[int, LeanMinHash] = {}
    result = DedupResult(kept=[])
    for i, values in enumerate(signatures):
        if values is None:  # no text: nothing to compare
            result.kept.append(i)
            continue
        signature = LeanMinHash(seed=seed, hashvalues=values, scheme="affine64")
        best, best_similarity = None, -1.0
        for j in sorted(lsh.query(signature)):
            similarity = signature.jaccard(kept_signatures[j])
            if similarity >= threshold and similarity > best_similarity:
                best, best_similarity = j, similarity
        if best is None:
            lsh.insert(i, signature, check_duplication=False)
            kept_signatures[i] = signature
            result.kept.append(i)
        else:
            result.dropped.append((i, best))
    return result


def _batches(documents: Sequence[str]) -> Iterable[list[str]]:
    """Consecutive documents, about `_BATCH` characters a batch."""
    batch, size = [], 0
    for text in documents:
        batch.append(text)
        size += len(text)
        if size >= _BATCH:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _signatures(
    documents: Sequence[str], shingle: str, n: int, num_perm: int, seed: int
) -> list[np.ndarray | None]:
    """Every document's MinHash signature (None for a document without text), computed for
    all documents at once: the documents' units (word or character hashes) in one array,
    their shingles hashed in one pass, the permutations applied chunk by chunk."""
    units, lengths = _units(documents, shingle)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    # Shingle hashes: a polynomial over `n` consecutive units, grown one unit at a time;
    # a document shorter than `n` units is one shingle, taken when the window has its length.
    doc_ids, hashes = [], []
    window = units.copy()
    with np.errstate(over="ignore"):  # arithmetic mod 2^64 is meant
        for size in range(1, n + 1):
            if size > 1:
                window = window[:-1] * _MIX + units[size - 1 :]
            if size < n:
                short = np.flatnonzero(lengths == size)
                doc_ids.append(short)
                hashes.append(window[starts[short]])
        long = np.flatnonzero(lengths >= n)
        counts = lengths[long] - n + 1
        first = np.repeat(starts[long] - np.cumsum(counts) + counts, counts)
        doc_ids.append(np.repeat(long, counts))
        hashes.append(window[first + np.arange(counts.sum())])
    doc_ids, hashes = np.concatenate(doc_ids), np.concatenate(hashes)
    order = np.argsort(doc_ids, kind="stable")
    doc_ids, hashes = doc_ids[order], _fmix64(hashes[order])

    template = MinHash(num_perm=num_perm, seed=seed, scheme="affine64")
    a, b = (np.asarray(p, dtype=np.uint64) for p in template.permutations)
    values = np.full((len(documents), num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for lo in range(0, hashes.size, _CHUNK):
            ids = doc_ids[lo : lo + _CHUNK]
            permuted = hashes[lo : lo + _CHUNK, None] * a + b  # datasketch's affine64
            segments = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
            mins = np.minimum.reduceat(permuted, segments, axis=0)
            rows = ids[segments]  # distinct: a chunk holds each document's shingles in one run
            values[rows] = np.minimum(values[rows], mins)
    return [values[i] if lengths[i] else None for i in range(len(documents))]


def _units(documents: Sequence[str], shingle: str) -> tuple[np.ndarray, np.ndarray]:
    """All documents' units in one array of 64-bit hashes, and each document's count: words
    (lower-cased, split at whitespace), hashed with blake2b once per distinct word, or
    characters (lower-cased, whitespace runs read as one space)."""
    if shingle == "char":
        texts = [" ".join(text.lower().split()) for text in documents]
        codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
        lengths = np.array([len(t) for t in texts], dtype=np.int64)
        return _fmix64(codes.astype(np.uint64) + np.uint64(1)), lengths
    cache: dict[str, int] = {}
    flat: list[int] = []
    lengths = np.zeros(len(documents), dtype=np.int64)
    for i, text in enumerate(documents):
        words = text.lower().split()
        lengths[i] = len(words)
        for w in words:
            h = cache.get(w)
            if h is None:
                h = cache[w] = _word_hash(w)
            flat.append(h)
    return np.array(flat, dtype=np.uint64), lengths


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer: spreads every input bit over the whole hash."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xFF51AFD7ED558CCD)
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xC4CEB9FE1A85EC53)
        return h ^ (h >> np.uint64(33))


def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


# --- documents as blocks of lines (what a text corpus is cut into before deduplication) ----
def blank_line_blocks(lines: Iterable[str]) -> list[list[str]]:
    """Lines cut into documents at blank lines: each document is a run of non-blank lines with
    the blank lines that follow it (blank lines before the first one make their own), so the
    documents joined back give the lines unchanged."""
    documents: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        if line.strip() and current and not current[-1].strip():
            documents.append(current)
            current = []
        current.append(line)
    if current:
        documents.append(current)
    return documents


def excerpt(text: str, width: int = 60) -> str:
    """A document's start on one line, for logs."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."
