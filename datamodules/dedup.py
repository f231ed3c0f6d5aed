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

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

SHINGLES = ("word", "char")
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial rolling hash
_CHUNK = 4096  # shingles hashed at once: bounds memory at _CHUNK x num_perm x 8 bytes
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
    shingle: str = "word",
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
    if shingle not in SHINGLES:
        raise ValueError(f"shingle must be one of {', '.join(SHINGLES)}, got {shingle!r}")

    signer = _Signer(num_perm, seed)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    signatures: dict[int, LeanMinHash] = {}  # of kept documents
    word_hashes: dict[str, int] = {}  # shared cache: each distinct word is hashed once
    result = DedupResult(kept=[])
    for i, text in enumerate(documents):
        if shingle == "word":
            hashes = _word_shingles(text, shingle_size, word_hashes)
        else:
            hashes = _char_shingles(text, shingle_size)
        if hashes.size == 0:  # no text: nothing to compare
            result.kept.append(i)
            continue
        signature = signer.sign(hashes)
        best, best_similarity = None, -1.0
        for j in sorted(lsh.query(signature)):
            similarity = signature.jaccard(signatures[j])
            if similarity >= threshold and similarity > best_similarity:
                best, best_similarity = j, similarity
        if best is None:
            lsh.insert(i, signature, check_duplication=False)
            signatures[i] = signature
            result.kept.append(i)
        else:
            result.dropped.append((i, best))
    return result


class _Signer:
    """MinHash signatures of 64-bit shingle hashes, with datasketch's affine64 permutations
    (h -> a * h + b mod 2^64, `a` odd) applied with numpy in chunks."""

    def __init__(self, num_perm: int, seed: int):
        self.seed = seed
        template = MinHash(num_perm=num_perm, seed=seed, scheme="affine64")
        self.a, self.b = (np.asarray(p, dtype=np.uint64) for p in template.permutations)
        self.empty = np.full(num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)

    def sign(self, hashes: np.ndarray) -> LeanMinHash:
        values = self.empty.copy()
        with np.errstate(over="ignore"):  # arithmetic mod 2^64 is meant
            for start in range(0, hashes.size, _CHUNK):
                chunk = _fmix64(hashes[start : start + _CHUNK])[:, None]
                np.minimum(values, (chunk * self.a + self.b).min(axis=0), out=values)
        return LeanMinHash(seed=self.seed, hashvalues=values, scheme="affine64")


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer: spreads every input bit over the whole hash."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xFF51AFD7ED558CCD)
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xC4CEB9FE1A85EC53)
        return h ^ (h >> np.uint64(33))


def _rolling(units: np.ndarray, n: int) -> np.ndarray:
    """One 64-bit hash per window of `n` consecutive units (a polynomial in the units); fewer
    than `n` units make one window of all of them."""
    n = min(n, units.size)
    h = np.zeros(units.size - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _MIX + units[k : units.size - n + 1 + k]
    return np.unique(h)  # a set: repeated shingles count once


def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def _word_shingles(text: str, n: int, cache: dict[str, int]) -> np.ndarray:
    words = text.lower().split()
    if not words:
        return np.zeros(0, dtype=np.uint64)
    ids = []
    for w in words:
        h = cache.get(w)
        if h is None:
            h = cache[w] = _word_hash(w)
        ids.append(h)
    return _rolling(np.array(ids, dtype=np.uint64), n)


def _char_shingles(text: str, n: int) -> np.ndarray:
    text = " ".join(text.lower().split())
    if not text:
        return np.zeros(0, dtype=np.uint64)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    return _rolling(_fmix64(codes + np.uint64(1)), n)


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
