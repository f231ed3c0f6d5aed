"""Sentence-level sentiment corpora for text classifiers: SST-2 and movie-review polarity.

Both give batches of whole sentences, padded to the longest of the batch, with their lengths
(the classifier packs them, so padding never reaches its recurrent layers):

    input_ids [B, T]  word ids, 0 (<pad>) after each sentence's end
    lengths   [B]     words per sentence (at least 1)
    labels    [B]     0 negative, 1 positive
    texts     list of the B sentences as read (for reports of misclassified examples)

The word vocabulary is built from the train split only (`<pad>` = 0, `<unk>` = 1, then words
by frequency, `min_freq` times at least), so validation and test words never seen in training
read as `<unk>`, as they would for a deployed model (their count is logged). Text is
lower-cased by default (`lowercase`), split on whitespace and punctuation (both corpora ship
tokenized already: "it 's a charming , often affecting journey .").

Held-out sentences share no text with training: validation and test are whole sentences
carved by `datamodules.held_out` (or SST-2's own validation file where it is one), and every
training item inside one of them is left out of training.

The vocabulary and the tokenizer's setting (`lowercase`) are the datamodule's `state_dict`,
saved in every checkpoint; restored (`load_state_dict`, which the CLI calls as soon as the
datamodule is built from --ckpt_path), they are used as saved, never refitted, and
`test_file` / `predict_file` evaluate any file with a checkpoint alone, without the corpus.

Pretrained word vectors (`word_vectors`, a word2vec text-format file such as the suite's
word2vec export) are aligned to this vocabulary here, on the data side: row i of the saved
tensor is the file's vector for word i. The tensor goes to the cache folder and its path is
`pretrained_embeddings`, which the CLI links to the model's argument of the same name; the
model never reads a vocabulary, and datamodules never import a model.
"""

from __future__ import annotations

import io
import json
import random
import re
import tarfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from core.checks import require_non_negative, require_positive
from core.constants import Split
from core.errors import DataError, UserError
from core.files import atomic_write_bytes
from datamodules.bucketing import BucketBatchSampler
from datamodules.cache import DerivedFiles, cache_root
from datamodules.corpus import CorpusFolder
from datamodules.held_out import ContainerIndex, carve_by_sentence
from datamodules.paths import resolve_data_dir
from datamodules.resumable import EpochRandomSampler, ResumableLoader, run_seed, shard_of
from datamodules.text_files import read_lines
from datamodules.tokenizers import UNK, word_vocabulary

# Part of the cache key of a carved split: bump it when the carving changes.
SPLIT_FORMAT = 1
# The layout of `state_dict`: a checkpoint of another layout is refused with a message.
STATE_FORMAT = 1
PAD = "<pad>"
SPECIALS = (PAD, UNK)  # ids 0 and 1
PAD_ID, UNK_ID = 0, 1
LABEL_NAMES = ("negative", "positive")
# Words, numbers with inner apostrophes or hyphens ("it's", "21st", "jean-claud"), clitics
# ("'s", "n't") and single punctuation marks.
WORD_PATTERN = re.compile(r"n't|'\w+|\w+(?:[-']\w+)*|[^\w\s]")


@dataclass
class Example:
    text: str
    label: int


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Words of `text`: lower-cased (by default) and split on spaces and punctuation."""
    return WORD_PATTERN.findall(text.lower() if lowercase else text)


def read_labelled_tsv(path: Path) -> list[Example]:
    """SST-2's `sentence<TAB>label` rows after a header row; label 0 or 1."""
    lines = read_lines(path)
    if not lines or lines[0].split("\t") != ["sentence", "label"]:
        head = repr(lines[0][:60]) if lines else "nothing (the file is empty)"
        raise DataError(
            f"{path}: line 1 must be the header 'sentence<TAB>label', found {head}. "
            f"The file must be GLUE's SST-2 layout: a header, then sentence<TAB>label rows."
        )
    examples = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(
                f"{path}: line {number} has {len(fields)} tab-separated fields, expected 2 "
                f"(sentence<TAB>label): {line[:60]!r}"
            )
        sentence, label = fields
        if label.strip() not in ("0", "1"):
            raise DataError(
                f"{path}: line {number} has label {label!r}; labels must be 0 (negative) or "
                f"1 (positive)."
            )
        if not tokenize(sentence):
            raise DataError(f"{path}: line {number} has an empty sentence.")
        examples.append(Example(sentence.strip(), int(label)))
    if not examples:
        raise DataError(f"{path}: no rows after the header.")
    return examples


def read_unlabelled(path: Path) -> list[Example]:
    """A file to predict: one sentence a line (label -1: none), or a labelled SST-2 file
    (first line `sentence<TAB>label`), whose labels are kept."""
    lines = read_lines(path)
    if lines and lines[0].split("\t") == ["sentence", "label"]:
        return read_labelled_tsv(path)
    examples = [Example(line.strip(), -1) for line in lines if line.strip()]
    if not examples:
        raise DataError(f"{path}: the file holds no sentences (one a line).")
    return examples


def read_sentences(path: Path, label: int) -> list[Example]:
    """One sentence a line, every one with `label` (rt-polarity.pos / .neg)."""
    examples = []
    for number, line in enumerate(read_lines(path), start=1):
        if not tokenize(line):
            raise DataError(
                f"{path}: line {number} is empty; the file must hold one sentence per line."
            )
        examples.append(Example(line.strip(), label))
    if not examples:
        raise DataError(f"{path}: the file holds no sentences.")
    return examples


def split_examples(
    examples: Sequence[Example], seed: int, fractions=(0.8, 0.1, 0.1)
) -> dict[Split, list[Example]]:
    """A seeded shuffle cut into train/val/test by `fractions`: disjoint, and together
    every example once."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n1 = int(fractions[0] * len(order))
    n2 = int((fractions[0] + fractions[1]) * len(order))
    cuts = {"train": order[:n1], "val": order[n1:n2], "test": order[n2:]}
    return {split: [examples[i] for i in rows] for split, rows in cuts.items()}


# --- batches ----------------------------------------------------------------------------
class EncodedSentences(Dataset):
    """Examples with their word ids."""

    def __init__(self, examples: Sequence[Example], ids: Sequence[list[int]]):
        self.examples, self.ids = list(examples), list(ids)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> tuple[list[int], Example]:
        return self.ids[i], self.examples[i]

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.ids]


def pad_batch(items: Sequence[tuple[list[int], Example]]) -> dict:
    """Sentences padded with <pad> (0) to the longest of the batch, and their lengths."""
    lengths = torch.tensor([len(ids) for ids, _ in items], dtype=torch.long)
    input_ids = torch.full((len(items), int(lengths.max())), PAD_ID, dtype=torch.long)
    for row, (ids, _) in enumerate(items):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return {
        "input_ids": input_ids,
        "lengths": lengths,
        "labels": torch.tensor([ex.label for _, ex in items], dtype=torch.long),
        "texts": [ex.text for _, ex in items],
    }


# --- the datamodules ----------------------------------------------------------------------
Stage = Literal["fit", "validate", "test", "predict"]
# The splits each stage reads ("predict": `predict_file`, else the test split).
STAGE_SPLITS: dict[str, tuple[str, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
}


class SentimentDataModule(CorpusFolder, L.LightningDataModule):
    """Binary sentiment of sentences; subclasses say where the files are and how to split."""

    num_classes = len(LABEL_NAMES)
    label_names = LABEL_NAMES
    pad_id = PAD_ID

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        lowercase: bool = True,
        min_freq: int = 1,
        bucket_by_length: bool = True,
        word_vectors: str | None = None,
        split_seed: int = 42,
        test_file: str | None = None,
        predict_file: str | None = None,
        num_workers: int = 0,
        download: bool = True,
        cache_dir: str | None = None,
    ):
        """
        Args:
            data_dir: the corpus folder; default $DATA_DIR/<corpus>, else ./data/<corpus>.
            lowercase: lower-case the text before splitting it into words (a checkpoint's
                setting wins over this one: the model learned its words).
            min_freq: a train word seen fewer times reads as <unk>.
            bucket_by_length: training batches of sentences of similar length (less padding,
                faster); off, batches are drawn uniformly at random.
            word_vectors: a word2vec text-format file (e.g. the suite's word2vec export) to
                initialise the classifier's embeddings; words it lacks keep a random init.
            split_seed: draws the whole sentences carved out for validation and test.
            test_file: test on this file (`sentence<TAB>label` rows after that header, labels
                0/1) instead of the corpus's test split; read with the training vocabulary.
            predict_file: predict on this file (one sentence a line, or a labelled file as
                test_file) instead of the test split.
            download: fetch the corpus from its canonical source when it is missing.
            cache_dir: where the carved split and the aligned vectors are cached, under
                <cache_dir>/<corpus>/ (default $XDG_CACHE_HOME/seqmodels, else
                ~/.cache/seqmodels).
        """
        super().__init__()
        require_positive(
            "data", batch_size=batch_size, eval_batch_size=eval_batch_size, min_freq=min_freq
        )
        require_non_negative("data", num_workers=num_workers)
        self.save_hyperparameters()
        self.data_dir = resolve_data_dir(data_dir, self.corpus)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.lowercase, self.min_freq = lowercase, min_freq
        self.bucket_by_length = bucket_by_length
        self.word_vectors = Path(word_vectors).expanduser() if word_vectors else None
        self.split_seed = split_seed
        self.test_file = _existing_file("test_file", test_file)
        self.predict_file = _existing_file("predict_file", predict_file)
        self.num_workers, self.download = num_workers, download
        self.cache_dir = cache_root(cache_dir)
        self._splits: dict[Split, list[Example]] | None = None
        self._vocab: dict[str, int] | None = None
        self._restored = False  # the vocabulary came from a checkpoint
        self._pretrained: Path | None = None
        self.datasets: dict[str, EncodedSentences] = {}

    # --- what subclasses provide --------------------------------------------------------
    def read_splits(self, files) -> dict[Split, list[Example]]:
        raise NotImplementedError

    # --- the splits and the vocabulary ----------------------------------------------------
    @property
    def splits(self) -> dict[Split, list[Example]]:
        if self._splits is None:
            self._splits = self.read_splits(self.files)
        return self._splits

    def examples(self, split: str) -> list[Example]:
        """The examples of `split`: the corpus's, or `test_file`'s and `predict_file`'s."""
        if split == "test" and self.test_file is not None:
            return read_labelled_tsv(self.test_file)
        if split == "predict":
            if self.predict_file is not None:
                return read_unlabelled(self.predict_file)
            return self.examples("test")
        return self.splits[split]

    def carve(self, examples: Sequence[Example]) -> dict[Split, list[Example]]:
        """Whole sentences drawn with `split_seed` for validation and test (10% each), every
        other example inside none of them for training (`datamodules.held_out`). Cached by
        the corpus files and the seed."""
        cache = DerivedFiles(
            self.corpus,
            list(self.files.values()),
            f"{type(self).__name__}:carve:{self.split_seed}:v{SPLIT_FORMAT}",
            self.cache_dir,
        )
        rows = cache.get(
            "split.json",
            build=lambda: carve_by_sentence(
                [comparable(ex.text) for ex in examples], self.split_seed
            ),
            dump=lambda value: json.dumps(value).encode(),
            load=json.loads,
        )
        return {split: [examples[i] for i in rows[split]] for split in ("train", "val", "test")}

    @property
    def vocab(self) -> dict[str, int]:
        """Word -> id, from the train split only (or as a checkpoint saved it)."""
        if self._vocab is None:
            words = (w for ex in self.splits["train"] for w in tokenize(ex.text, self.lowercase))
            self._vocab = word_vocabulary(words, SPECIALS, self.min_freq)
        return self._vocab

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """Word ids of `text`; unknown words are <unk>; an empty text is one <unk>."""
        ids = [self.vocab.get(w, UNK_ID) for w in tokenize(text, self.lowercase)]
        return ids or [UNK_ID]

    # --- the state a checkpoint carries ---------------------------------------------------
    def state_dict(self) -> dict:
        """What the model's inputs depend on: the vocabulary (words in id order), the
        tokenizer's setting and the label names. Saved by Lightning in every checkpoint."""
        words = sorted(self.vocab, key=self.vocab.__getitem__)
        return {
            "format": STATE_FORMAT,
            "words": words,
            "lowercase": self.lowercase,
            "label_names": list(self.label_names),
        }

    def load_state_dict(self, state: dict) -> None:
        """Use a checkpoint's vocabulary and tokenizer setting as saved. Data already encoded
        with another vocabulary is encoded again (Lightning calls this after `setup`)."""
        if state.get("format") != STATE_FORMAT or list(state.get("label_names", ())) != list(
            self.label_names
        ):
            raise DataError(
                f"{self.corpus}: the checkpoint's data state is not one this version reads "
                f"(format {state.get('format')!r}, labels {state.get('label_names')!r}; expected "
                f"format {STATE_FORMAT}, labels {list(self.label_names)}): evaluate it with the "
                "version of the suite that trained it."
            )
        vocab = {word: i for i, word in enumerate(state["words"])}
        if state["lowercase"] != self.lowercase:
            rank_zero_info(
                "%s: lowercase=%s as the checkpoint was trained (not %s)",
                self.corpus,
                state["lowercase"],
                self.lowercase,
            )
        changed = vocab != self._vocab or state["lowercase"] != self.lowercase
        self._vocab, self.lowercase, self._restored = vocab, state["lowercase"], True
        if changed and self.datasets:
            self.datasets = {
                split: self._encoded(split, data.examples) for split, data in self.datasets.items()
            }

    # --- pretrained vectors ----------------------------------------------------------------
    @property
    def pretrained_embeddings(self) -> str | None:
        """Path of the word vectors aligned to the vocabulary (see `align_word_vectors`), or
        None without `word_vectors`, or when the vocabulary came from a checkpoint (whose
        trained weights replace any init). Linked by the CLI to the model's argument."""
        if self.word_vectors is None or self._restored:
            return None
        if self._pretrained is None:
            self._pretrained = self.align_word_vectors()
        return str(self._pretrained)

    def align_word_vectors(self) -> Path:
        """Save {"vectors": [vocab_size, dim], "found": [vocab_size] bool}: row i holds the
        file's vector for word i where the file has it (zeros elsewhere; the model keeps its
        random init there). Cached by the vector file and the vocabulary settings."""
        if not self.word_vectors.is_file():
            raise UserError(f"data.init_args.word_vectors: {self.word_vectors} is not a file.")
        cache = DerivedFiles(
            self.corpus,
            [self.word_vectors, *self.files.values()],
            f"{type(self).__name__}:{self.lowercase}:{self.min_freq}:{self._split_key()}",
            self.cache_dir,
        )
        path = cache.path("word-vectors.pt")
        aligned = cache.get(
            path.name,
            build=self._aligned_vectors,
            dump=_torch_bytes,
            load=lambda data: torch.load(io.BytesIO(data), weights_only=True),
        )
        if not path.is_file():  # the cache folder refused it: the model reads the file
            raise UserError(
                f"cannot write the aligned word vectors to {path}: set data.init_args.cache_dir "
                "to a writable folder."
            )
        found = aligned["found"]
        rank_zero_info(
            "word vectors from %s: %d of %d vocabulary words found, the rest keep a random init",
            self.word_vectors,
            int(found.sum()),
            len(found),
        )
        return path

    def _aligned_vectors(self) -> dict[str, torch.Tensor]:
        from datamodules.word_vectors import load_word2vec_format

        words, vectors = load_word2vec_format(self.word_vectors)
        row_of = {}
        for row, word in enumerate(words):
            row_of.setdefault(word.lower() if self.lowercase else word, row)
        aligned = torch.zeros(self.vocab_size, vectors.size(1))
        found = torch.zeros(self.vocab_size, dtype=torch.bool)
        for word, i in self.vocab.items():
            if word in row_of:
                aligned[i] = vectors[row_of[word]]
                found[i] = True
        return {"vectors": aligned, "found": found}

    def _split_key(self) -> str:
        return f"{self.split_seed}:v{SPLIT_FORMAT}"

    # --- Lightning hooks --------------------------------------------------------------------
    def prepare_data(self) -> None:
        if not (self._restored and (self.test_file or self.predict_file)):
            self.files  # noqa: B018 - one process fetches the corpus first

    def setup(self, stage: str | None = None) -> None:
        splits = STAGE_SPLITS.get(stage or "", ("train", "val", "test"))
        self.datasets = {split: self._encoded(split, self.examples(split)) for split in splits}

    def _encoded(self, split: str, examples: Sequence[Example]) -> EncodedSentences:
        """`examples` with their word ids; outside training, the words the vocabulary lacks
        are counted and logged (they read as <unk>)."""
        words = [tokenize(ex.text, self.lowercase) for ex in examples]
        ids = [[self.vocab.get(w, UNK_ID) for w in ws] or [UNK_ID] for ws in words]
        if split != "train":
            total = sum(len(ws) for ws in words)
            unknown = sum(w not in self.vocab for ws in words for w in ws)
            source = {"test": self.test_file, "predict": self.predict_file}.get(split)
            rank_zero_info(
                "%s %s%s: %d sentences; %d of %d words (%.2f%%) not in the training vocabulary "
                "read as <unk>",
                self.corpus,
                split,
                f" ({source})" if source else "",
                len(examples),
                unknown,
                total,
                100 * unknown / max(total, 1),
            )
        return EncodedSentences(examples, ids)

    def train_dataloader(self) -> DataLoader:
        # An order fixed by seed_everything's seed (every DDP rank's) and the epoch, read
        # through a loader whose place in the epoch goes into the checkpoint (exact resume).
        data, seed = self.datasets["train"], run_seed()
        order = EpochRandomSampler(data, seed, *shard_of(self.trainer))
        if self.bucket_by_length:
            batches = BucketBatchSampler(
                order, self.batch_size, lengths=data.lengths(), shuffle=True, seed=seed
            )
            options = {"batch_sampler": batches}
        else:
            options = {"sampler": order, "batch_size": self.batch_size}
        return self._loader(data, ResumableLoader, **options)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["val"], batch_size=self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["test"], batch_size=self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["predict"], batch_size=self.eval_batch_size)

    def _loader(self, data, kind: type[DataLoader] = DataLoader, **kwargs) -> DataLoader:
        return kind(
            data,
            collate_fn=pad_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )


SST2_FILES = {"train": "train.tsv", "val": "dev.tsv"}
HeldOut = Literal["auto", "dev", "carve"]


class SST2DataModule(SentimentDataModule):
    """SST-2 (Socher et al. 2013; GLUE's binary Stanford Sentiment Treebank): movie-review
    phrases and sentences labelled negative (0) or positive (1).

    Files: `train.tsv` and `dev.tsv`, each a header row `sentence<TAB>label` and then one
    example a line. Downloaded from the HF hub (`stanfordnlp/sst2`) when missing: its
    `dev.tsv` is GLUE's validation set, 872 whole sentences of reviews apart from training.

    Which sentences are held out (`held_out`):
    - `dev`: dev.tsv validates and tests. GLUE's test labels are hidden, so test/* figures
      are dev figures (a checkpoint chosen on val/acc is optimistic on them) unless
      `test_file` names another file.
    - `carve`: train.tsv and dev.tsv are pooled and whole sentences carved out of them for
      validation and test (10% each, `split_seed`); every phrase inside one of them leaves
      training (`datamodules.held_out.carve_by_sentence`).
    - `auto` (default): `carve` when most dev rows lie inside training rows, as in the
      offline copy in ../shared/data, whose 60,614 + 6,735 rows are both GLUE's training
      phrases, pieces of the same sentences (a dev split that leaks); else `dev`.
    """

    corpus = "sst2"
    source_url = "https://huggingface.co"

    def __init__(self, *args, held_out: HeldOut = "auto", **kwargs):
        """
        Args:
            held_out: auto | dev | carve: the sentences held out for validation and test.
        """
        super().__init__(*args, **kwargs)
        self.held_out = held_out

    def local_files(self) -> dict[str, Path] | None:
        return self.files_present(SST2_FILES)

    def expected_files(self) -> list[str]:
        return list(SST2_FILES.values())

    def fetch(self) -> None:
        from datasets import load_dataset

        hub = load_dataset("stanfordnlp/sst2")
        for split, hub_split in (("train", "train"), ("val", "validation")):
            rows = ["sentence\tlabel"] + [
                f"{' '.join(row['sentence'].split())}\t{row['label']}" for row in hub[hub_split]
            ]
            text = "\n".join(rows) + "\n"
            atomic_write_bytes(self.data_dir / SST2_FILES[split], text.encode())

    def _split_key(self) -> str:
        return f"{super()._split_key()}:{self.held_out}"

    def read_splits(self, files: dict[str, Path]) -> dict[Split, list[Example]]:
        train, dev = read_labelled_tsv(files["train"]), read_labelled_tsv(files["val"])
        held_out = self.held_out
        if held_out == "auto":
            cache = DerivedFiles(
                self.corpus, list(files.values()), "dev-inside-train", self.cache_dir
            )
            inside = cache.get(
                "dev-inside-train.json",
                build=lambda: share_inside(dev, train),
                dump=lambda value: json.dumps(value).encode(),
                load=json.loads,
            )
            held_out = "carve" if inside > 0.5 else "dev"
            rank_zero_info(
                "sst2: %.0f%% of dev.tsv's rows lie inside train.tsv's, so %s",
                100 * inside,
                "both are pooled and whole sentences carved out for validation and test"
                if held_out == "carve"
                else "dev.tsv is the held-out set (validation and test)",
            )
        if held_out == "carve":
            return self.carve(train + dev)
        return {"train": train, "val": dev, "test": dev}


def share_inside(evaluation: Sequence[Example], training: Sequence[Example]) -> float:
    """The share of `evaluation` texts that lie inside a training text (their words in order,
    contiguous): near 1 for pieces of the training sentences, near 0 for other sentences."""
    index = ContainerIndex([comparable(ex.text) for ex in training])
    inside = sum(any(True for _ in index.containers(comparable(ex.text))) for ex in evaluation)
    return inside / max(len(evaluation), 1)


def comparable(text: str) -> tuple[str, ...]:
    """The words two texts are compared by for leaks: lower-cased, whatever `lowercase` is."""
    return tuple(tokenize(text, lowercase=True))


RT_URL = "https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz"
RT_FILES = {1: "rt-polarity.pos", 0: "rt-polarity.neg"}


class RTPolarityDataModule(SentimentDataModule):
    """Movie review sentence polarity v1.0 (Pang & Lee 2005): 5,331 positive and 5,331
    negative Rotten Tomatoes snippets, `rt-polarity.pos` and `rt-polarity.neg`, one sentence a
    line, UTF-8. No official split: 10% of the whole sentences (`split_seed`) validate, 10%
    test, and the rest train, less the few that lie inside a held-out one ("obvious ."
    inside "the story . . . is moldy and obvious ."). Downloaded from Cornell
    (rt-polaritydata.tar.gz, whose files are Latin-1: they are re-encoded as UTF-8) when
    missing."""

    corpus = "rt-polarity"
    source_url = RT_URL

    def local_files(self) -> dict[int, Path] | None:
        return self.files_present(RT_FILES)

    def expected_files(self) -> list[str]:
        return list(RT_FILES.values())

    def fetch(self) -> None:
        with urllib.request.urlopen(RT_URL, timeout=60) as response:
            payload = io.BytesIO(response.read())
        with tarfile.open(fileobj=payload, mode="r:gz") as archive:
            for name in RT_FILES.values():
                member = archive.extractfile(f"rt-polaritydata/{name}")
                text = member.read().decode("latin-1")  # Cornell's files predate UTF-8
                atomic_write_bytes(self.data_dir / name, text.encode("utf-8"))

    def read_splits(self, files: dict[int, Path]) -> dict[Split, list[Example]]:
        examples = [
            ex for label, path in sorted(files.items()) for ex in read_sentences(path, label)
        ]
        return self.carve(examples)


# --- labelled text for prompting (the `few_shot` command) ---------------------------------


def read_labelled_text(
    source: str, data_dir: str | None = None, split_seed: int = 42
) -> dict[Split, list[Example]]:
    """Labelled sentences by split: SST-2 and movie-review polarity as their datamodules
    split them (held-out whole sentences), or a local TSV file of `text<TAB>label` rows,
    label an integer from 0 (a first row `text<TAB>label` or `sentence<TAB>label` is a
    header), shuffled with `split_seed` and cut 80/10/10."""
    if source == "sst2":
        return SST2DataModule(data_dir, split_seed=split_seed).splits
    if source == "rt-polarity":
        return RTPolarityDataModule(data_dir, split_seed=split_seed).splits
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(
            f"labelled text {source!r}: not sst2, rt-polarity, nor a file; give one of those "
            "or the path of a TSV file of text<TAB>label rows."
        )
    return split_examples(read_text_label_tsv(path), split_seed)


def read_text_label_tsv(path: Path) -> list[Example]:
    """`text<TAB>label` rows (label 0, 1, 2, ...), after an optional header row."""
    lines = read_lines(path)
    start = 1 if lines and lines[0].split("\t") in (["text", "label"], ["sentence", "label"]) else 0
    examples = []
    for number, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        label = fields[-1].strip()
        if len(fields) != 2 or not label.isdigit() or not fields[0].strip():
            raise DataError(
                f"{path}: line {number} is not text<TAB>label with a label 0, 1, 2, ...: "
                f"{line[:60]!r}"
            )
        examples.append(Example(fields[0].strip(), int(label)))
    if not examples:
        raise DataError(f"{path}: no text<TAB>label rows.")
    return examples


def _torch_bytes(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _existing_file(key: str, path: str | None) -> Path | None:
    if path is None:
        return None
    found = Path(path).expanduser()
    if not found.is_file():
        raise UserError(f"data.init_args.{key}: {found} is not a file.")
    return found
