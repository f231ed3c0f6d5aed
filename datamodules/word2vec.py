"""Word2vec training data from any text corpus of the suite (Mikolov et al. 2013a, 2013b).

The corpus is read by its own datamodule (WikiText-2, Tiny Shakespeare: how they find, fetch
and split their files), each line is a sentence of whitespace words, and the vocabulary
keeps the words of the train split seen at least `min_count` times, most frequent first.
Words outside it are dropped from the text, as word2vec.c does.

Every epoch draws a fresh set of training examples, all at once with numpy:

1. Subsampling of frequent words: a word of relative frequency f = count / total is kept
   with probability (sqrt(f / t) + 1) * t / f (capped at 1), the formula of word2vec.c and
   gensim (the paper's 1 - sqrt(t / f) is close to it); rare words (f <= t) are always kept.
   The dropped words are removed before windows are cut, which widens the windows.
2. Dynamic window: each centre word draws its window b uniformly from 1..`window`, so nearer
   words are context more often (word2vec.c's "shrunk" window). Windows stop at the
   sentence's end.
3. Skip-gram: one example per (centre, context) pair, shuffled. CBOW: one example per centre
   with its up to 2 * window context words (padded, with a mask).
4. Negative sampling: `negative` noise words per example, drawn from the unigram
   distribution raised to 3/4. With `negative: 0` no noise words are drawn and the model
   trains with hierarchical softmax instead.

The vocabulary size, the word counts (for the Huffman tree), the architecture and `negative`
reach the model through the CLI's argument links.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from core.checks import require_non_negative, require_positive, require_positive_or_none
from core.constants import Split
from core.errors import UserError
from datamodules.resumable import ResumableLoader, ResumableStream

log = logging.getLogger(__name__)

# skipgram: predict each context word from the centre; cbow: the centre from its context
Architecture = Literal["skipgram", "cbow"]
TextCorpus = Literal["wikitext-2", "tinyshakespeare"]  # the suite's text corpora
NOISE_POWER = 0.75  # Mikolov et al. 2013b: unigram^(3/4) beat unigram and uniform


def corpus_reader(corpus: TextCorpus, data_dir: str | None, download: bool):
    """The suite's datamodule of `corpus`, used only to find and read its split lines."""
    if corpus == "wikitext-2":
        from datamodules.wikitext2 import WikiText2DataModule

        return WikiText2DataModule(data_dir=data_dir, download=download, tokenizer="word")
    if corpus == "tinyshakespeare":
        from datamodules.tinyshakespeare import TinyShakespeareDataModule

        return TinyShakespeareDataModule(data_dir=data_dir, download=download, tokenizer="word")
    raise ValueError(f"{corpus!r} is not a text corpus of the suite")


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """Probability of keeping each word under subsampling with threshold `sample` (t):
    (sqrt(f / t) + 1) * t / f with f = count / total, capped at 1 (word2vec.c, gensim)."""
    if sample <= 0:
        return np.ones(len(counts))
    threshold = sample * counts.sum()  # t * total, in counts
    return np.minimum(1.0, (np.sqrt(counts / threshold) + 1) * threshold / counts)


def noise_distribution(counts: np.ndarray, power: float = NOISE_POWER) -> np.ndarray:
    """The negative-sampling noise: unigram frequencies raised to `power`, normalised."""
    weights = counts.astype(np.float64) ** power
    return weights / weights.sum()


class NoiseSampler:
    """Draws noise word ids from a distribution by inverse-CDF lookup (vectorised)."""

    def __init__(self, probs: np.ndarray):
        self.cdf = np.cumsum(probs)
        self.cdf[-1] = 1.0

    def __call__(self, rng: np.random.Generator, shape) -> np.ndarray:
        return np.searchsorted(self.cdf, rng.random(shape), side="right").astype(np.int64)


def skipgram_pairs(ids, sentence, window, rng) -> tuple[np.ndarray, np.ndarray]:
    """(centre, context) pairs within each centre's dynamic window, inside its sentence."""
    reach = rng.integers(1, window + 1, size=len(ids))  # each centre's window b
    centres, contexts = [], []
    for d in range(1, window + 1):
        same = sentence[:-d] == sentence[d:]
        right = same & (reach[:-d] >= d)  # centre i, context i + d
        left = same & (reach[d:] >= d)  # centre i + d, context i
        centres += [ids[:-d][right], ids[d:][left]]
        contexts += [ids[d:][right], ids[:-d][left]]
    return np.concatenate(centres), np.concatenate(contexts)


def cbow_examples(ids, sentence, window, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each centre with its context words (n, 2 * window) and their mask; centres with no
    context (one-word sentences) are left out."""
    n = len(ids)
    reach = rng.integers(1, window + 1, size=n)
    context = np.zeros((n, 2 * window), dtype=np.int64)
    mask = np.zeros((n, 2 * window), dtype=bool)
    for d in range(1, window + 1):
        same = sentence[:-d] == sentence[d:]
        right = same & (reach[:-d] >= d)  # centre i sees i + d
        context[:-d, 2 * d - 2] = np.where(right, ids[d:], 0)
        mask[:-d, 2 * d - 2] = right
        left = same & (reach[d:] >= d)  # centre i + d sees i
        context[d:, 2 * d - 1] = np.where(left, ids[:-d], 0)
        mask[d:, 2 * d - 1] = left
    has_context = mask.any(axis=1)
    return ids[has_context], context[has_context], mask[has_context]


class Word2VecExamples(ResumableStream):
    """One epoch of word2vec batches, drawn afresh at every pass (a new seed each time).

    Its length is the number of batches of the first epoch; later epochs (whose subsampling
    and windows differ slightly) yield at most that many, so the learning-rate schedule
    planned from it holds. Under DDP each rank takes every world_size-th batch.

    Resumable (`start_at`): a pass of a given epoch can start at a later batch; the skipped
    batches' noise is still drawn, so the following batches draw what they drew before."""

    def __init__(
        self,
        ids: np.ndarray,
        sentence: np.ndarray,
        keep_prob: np.ndarray,
        noise: NoiseSampler | None,
        architecture: Architecture,
        window: int,
        negative: int,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.ids, self.sentence, self.keep_prob = ids, sentence, keep_prob
        self.noise, self.architecture = noise, architecture
        self.window, self.negative, self.batch_size = window, negative, batch_size
        self.seed, self.shuffle = seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._start = 0  # the batch the next pass starts with
        self._first = self._draw(0)  # counted now, reused by the first training pass
        self.n_examples = len(self._first[0][0])
        if not shuffle:
            self._first = None  # evaluation redraws the same examples (same seed) each pass
        self.n_batches = max(1, math.ceil(self.n_examples / batch_size / world_size))

    def examples(self, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Subsample, cut dynamic windows and (if training) shuffle: one epoch's examples."""
        keep = rng.random(len(self.ids)) < self.keep_prob[self.ids]
        ids, sentence = self.ids[keep], self.sentence[keep]
        if self.architecture == "skipgram":
            arrays = skipgram_pairs(ids, sentence, self.window, rng)
        else:
            arrays = cbow_examples(ids, sentence, self.window, rng)
        if self.shuffle:
            order = rng.permutation(len(arrays[0]))
            arrays = tuple(a[order] for a in arrays)
        return arrays

    def _draw(self, epoch: int) -> tuple[tuple[np.ndarray, ...], np.random.Generator]:
        rng = np.random.default_rng([self.seed, epoch])
        return self.examples(rng), rng

    def __len__(self) -> int:
        return self.n_batches

    def start_at(self, epoch: int, batch: int) -> None:
        if epoch != 0:
            self._first = None  # the first pass's draw, kept from counting, is epoch 0's
        self.epoch, self._start = epoch, batch

    def __iter__(self):
        start, self._start = self._start, 0
        if self._first is not None:
            (arrays, rng), self._first = self._first, None
        else:
            arrays, rng = self._draw(self.epoch)
        if self.shuffle:  # a new draw every training epoch; evaluation sets stay the same
            self.epoch += 1
        tensors = [torch.from_numpy(a) for a in arrays]
        names = (
            ("center", "context")
            if self.architecture == "skipgram"
            else ("center", "context", "context_mask")
        )
        n = len(tensors[0])
        for i, b in enumerate(range(self.rank, self.n_batches * self.world_size, self.world_size)):
            first = b * self.batch_size
            if first >= n:
                break
            rows = slice(first, first + self.batch_size)
            noise = None
            if self.negative and self.noise is not None:
                noise = self.noise(rng, (min(self.batch_size, n - first), self.negative))
            if i < start:
                continue  # read before the resume; its noise drawn all the same
            batch = {name: t[rows] for name, t in zip(names, tensors, strict=True)}
            if noise is not None:
                batch["negatives"] = torch.from_numpy(noise)
            yield batch


class Word2VecDataModule(L.LightningDataModule):
    """(centre, context) examples of a suite corpus for skip-gram or CBOW word2vec."""

    def __init__(
        self,
        corpus: TextCorpus = "wikitext-2",
        data_dir: str | None = None,
        architecture: Architecture = "skipgram",
        window: int = 5,
        min_count: int = 5,
        sample: float = 1e-4,
        negative: int = 5,
        batch_size: int = 4096,
        eval_batch_size: int | None = None,
        lowercase: bool = False,
        max_vocab_size: int | None = None,
        download: bool = True,
        seed: int = 1337,
    ):
        """
        Args:
            corpus: a text corpus of the suite: wikitext-2 or tinyshakespeare.
            data_dir: its folder (default $DATA_DIR/<corpus>); for the stand-in,
                $DATA_DIR/wikitext-2-mini.
            architecture: skipgram (predict each context word from the centre) or cbow
                (predict the centre from the mean of its context).
            window: the largest window; each centre draws its own from 1..window.
            min_count: words seen fewer times in the train split are dropped.
            sample: the subsampling threshold t (0: off). 1e-4 suits small corpora such as
                WikiText-2; word2vec.c's default for large ones is 1e-3 to 1e-5.
            negative: noise words per example (k); 0 trains with hierarchical softmax.
            batch_size: examples per batch (pairs for skip-gram, centres for CBOW).
            lowercase: fold case before counting (useful for Tiny Shakespeare).
            max_vocab_size: keep only this many most frequent words (None: all).
            seed: the seed of subsampling, windows, shuffling and noise draws.
        """
        super().__init__()
        require_positive("data", window=window, min_count=min_count, batch_size=batch_size)
        require_positive_or_none(
            "data", eval_batch_size=eval_batch_size, max_vocab_size=max_vocab_size
        )
        # negative 0: hierarchical softmax; sample 0: no subsampling.
        require_non_negative("data", negative=negative, sample=sample)
        self.save_hyperparameters()
        self.reader = corpus_reader(corpus, data_dir, download)
        self.corpus = corpus
        self.architecture, self.window, self.min_count = architecture, window, min_count
        self.sample, self.negative = sample, negative
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.lowercase, self.max_vocab_size, self.seed = lowercase, max_vocab_size, seed
        self._words: list[str] | None = None
        self._counts: np.ndarray | None = None
        self._encoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # --- the vocabulary ------------------------------------------------------------------
    def sentences(self, split: Split) -> list[list[str]]:
        """The split's lines as lists of words (case folded if asked)."""
        lines = self.reader.lines()[split]
        if self.lowercase:
            return [line.lower().split() for line in lines]
        return [line.split() for line in lines]

    def _build_vocabulary(self) -> None:
        counts = Counter(word for sentence in self.sentences("train") for word in sentence)
        kept = sorted(
            ((w, c) for w, c in counts.items() if c >= self.min_count),
            key=lambda item: (-item[1], item[0]),
        )[: self.max_vocab_size]
        if not kept:
            top = max(counts.values(), default=0)
            raise UserError(
                f"data.init_args.min_count={self.min_count} leaves an empty vocabulary: no word of the "
                f"{self.corpus} train split ({self.reader.data_dir}) occurs that often (the most "
                f"frequent occurs {top} times). Lower data.init_args.min_count."
            )
        if self.negative == 0 and len(kept) < 2:
            raise UserError(
                "hierarchical softmax (data.init_args.negative=0) needs at least two words in the vocabulary."
            )
        self._words = [w for w, _ in kept]
        self._counts = np.array([c for _, c in kept], dtype=np.int64)
        self.word_to_id = {w: i for i, w in enumerate(self._words)}
        log.info("word2vec vocabulary: %d words of %d seen", len(kept), len(counts))

    @property
    def words(self) -> list[str]:
        """The vocabulary, most frequent first: word id i is words[i]."""
        if self._words is None:
            self._build_vocabulary()
        return self._words

    @property
    def counts(self) -> np.ndarray:
        """Each word's count in the train split."""
        self.words  # noqa: B018 - builds the vocabulary
        return self._counts

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    @property
    def word_counts(self) -> list[int]:
        """Linked to the model, which builds its Huffman tree from them."""
        return self.counts.tolist()

    def encode(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        """Word ids of a split (out-of-vocabulary words dropped) and each one's sentence number."""
        if split not in self._encoded:
            self.words  # noqa: B018 - builds the vocabulary
            lookup = self.word_to_id
            ids, sentence = [], []
            for number, words in enumerate(self.sentences(split)):
                known = [lookup[w] for w in words if w in lookup]
                ids += known
                sentence += [number] * len(known)
            self._encoded[split] = (
                np.array(ids, dtype=np.int64),
                np.array(sentence, dtype=np.int64),
            )
        return self._encoded[split]

    @property
    def train_words(self) -> int:
        """Words of the train split in the vocabulary (one epoch's worth, before subsampling)."""
        return len(self.encode("train")[0])

    # --- the examples ------------------------------------------------------------------
    def _examples(
        self, split: Split, batch_size: int, shuffle: bool, seed: int
    ) -> Word2VecExamples:
        ids, sentence = self.encode(split)
        if len(ids) < 2:
            raise UserError(
                f"the {self.corpus} {split} split has fewer than two vocabulary words: nothing to train on."
            )
        noise = NoiseSampler(noise_distribution(self.counts)) if self.negative else None
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        return Word2VecExamples(
            ids,
            sentence,
            keep_probabilities(self.counts.astype(np.float64), self.sample),
            noise,
            self.architecture,
            self.window,
            self.negative,
            batch_size,
            seed,
            shuffle,
            rank,
            world,
        )

    def prepare_data(self) -> None:
        self.reader.files  # noqa: B018 - finds or fetches the corpus once

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.train_set = self._examples("train", self.batch_size, True, self.seed)
        if stage in (None, "fit", "validate"):
            self.val_set = self._examples("val", self.eval_batch_size, False, self.seed + 1)
        if stage in (None, "test"):
            self.test_set = self._examples("test", self.eval_batch_size, False, self.seed + 2)

    def _loader(self, dataset: Word2VecExamples, kind: type[DataLoader] = DataLoader) -> DataLoader:
        # Batches are built whole by the dataset; Lightning adds no sampler to it.
        return kind(dataset, batch_size=None, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        # Its place in the epoch goes into the checkpoint (exact resume).
        return self._loader(self.train_set, ResumableLoader)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)
