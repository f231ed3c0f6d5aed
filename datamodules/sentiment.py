"""Sentence-level sentiment corpora for text classifiers: SST-2 and movie-review polarity.

Both give batches of whole sentences, padded to the longest of the batch, with their lengths
(the classifier packs them, so padding never reaches its recurrent layers):

    input_ids [B, T]  word ids, 0 (<pad>) after each sentence's end
    lengths   [B]     words per sentence (at least 1)
    labels    [B]     0 negative, 1 positive
    texts     list of the B sentences as read (for reports of misclassified examples)

The word vocabulary is built from the train split only (`<pad>` = 0, `<unk>` = 1, then words
by frequency, `min_freq` times at least), so validation and test words never seen in training
read as `<unk>`, as they would for a deployed model. Text is lower-cased by default
(`lowercase`), split on whitespace and punctuation (both corpora ship tokenized already:
"it 's a charming , often affecting journey .").

Pretrained word vectors (`word_vectors`, a word2vec text-format file such as the suite's
word2vec export) are aligned to this vocabulary here, on the data side: row i of the saved
tensor is the file's vector for word i. The tensor goes to the cache folder and its path is
`pretrained_embeddings`, which the CLI links to the model's argument of the same name; the
model never reads a vocabulary, and datamodules never import a model.
"""

from __future__ import annotations

import io
import random
import re
import tarfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
from datamodules.paths import resolve_data_dir
from datamodules.resumable import EpochRandomSampler, ResumableLoader, run_seed
from datamodules.text_files import read_lines
from datamodules.tokenizers import UNK, word_vocabulary

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
        num_workers: int = 0,
        download: bool = True,
        cache_dir: str | None = None,
    ):
        """
        Args:
            data_dir: the corpus folder; default $DATA_DIR/<corpus>, else ./data/<corpus>.
            lowercase: lower-case the text before splitting it into words.
            min_freq: a train word seen fewer times reads as <unk>.
            bucket_by_length: training batches of sentences of similar length (less padding,
                faster); off, batches are drawn uniformly at random.
            word_vectors: a word2vec text-format file (e.g. the suite's word2vec export) to
                initialise the classifier's embeddings; words it lacks keep a random init.
            download: fetch the corpus from its canonical source when it is missing.
            cache_dir: where the aligned vectors are cached, under <cache_dir>/<corpus>/
                (default $XDG_CACHE_HOME/seqmodels, else ~/.cache/seqmodels).
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
        self.num_workers, self.download = num_workers, download
        self.cache_dir = cache_root(cache_dir)
        self._splits: dict[Split, list[Example]] | None = None
        self._vocab: dict[str, int] | None = None
        self._pretrained: Path | None = None

    # --- what subclasses provide --------------------------------------------------------
    def read_splits(self, files) -> dict[Split, list[Example]]:
        raise NotImplementedError

    # --- the splits and the vocabulary ----------------------------------------------------
    @property
    def splits(self) -> dict[Split, list[Example]]:
        if self._splits is None:
            self._splits = self.read_splits(self.files)
        return self._splits

    @property
    def vocab(self) -> dict[str, int]:
        """Word -> id, from the train split only."""
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

    @property
    def pretrained_embeddings(self) -> str | None:
        """Path of the word vectors aligned to the vocabulary (see `align_word_vectors`), or
        None without `word_vectors`. Linked by the CLI to the model's argument."""
        if self.word_vectors is None:
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
        return ""

    # --- Lightning hooks --------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.files  # noqa: B018 - one process fetches the corpus first

    def setup(self, stage: str | None = None) -> None:
        self.datasets = {
            split: EncodedSentences(examples, [self.encode(ex.text) for ex in examples])
            for split, examples in self.splits.items()
        }

    def train_dataloader(self) -> DataLoader:
        # An order fixed by seed_everything's seed (every DDP rank's) and the epoch, read
        # through a loader whose place in the epoch goes into the checkpoint (exact resume).
        data, seed = self.datasets["train"], run_seed()
        trainer = self.trainer
        rank, world_size = (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)
        order = EpochRandomSampler(data, seed, rank, world_size)
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
        return self.test_dataloader()

    def _loader(self, data, kind: type[DataLoader] = DataLoader, **kwargs) -> DataLoader:
        return kind(
            data,
            collate_fn=pad_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )


SST2_FILES = {"train": "train.tsv", "val": "dev.tsv"}


class SST2DataModule(SentimentDataModule):
    """SST-2 (Socher et al. 2013; GLUE's binary Stanford Sentiment Treebank): movie-review
    phrases and sentences labelled negative (0) or positive (1).

    Files: `train.tsv` and `dev.tsv`, each a header row `sentence<TAB>label` and then one
    example a line. Downloaded from the HF hub (`stanfordnlp/sst2`) when missing.

    SST-2's test labels are hidden (GLUE scores them on its server), so **the dev split is
    both the validation and the test set**: test/* figures are dev figures, not a held-out
    test, and a checkpoint chosen on val/acc is optimistic on them.

    The hub's dev split is GLUE's 872 whole sentences. The offline copy in ../shared/data is
    different: its 60,614 + 6,735 rows are phrases adding up to GLUE's 67,349 training
    phrases, so its dev figures are not comparable with published SST-2 dev accuracy.
    """

    corpus = "sst2"
    source_url = "https://huggingface.co"

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

    def read_splits(self, files: dict[str, Path]) -> dict[Split, list[Example]]:
        train, dev = read_labelled_tsv(files["train"]), read_labelled_tsv(files["val"])
        return {"train": train, "val": dev, "test": dev}


RT_URL = "https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz"
RT_FILES = {1: "rt-polarity.pos", 0: "rt-polarity.neg"}


class RTPolarityDataModule(SentimentDataModule):
    """Movie review sentence polarity v1.0 (Pang & Lee 2005): 5,331 positive and 5,331
    negative Rotten Tomatoes snippets, `rt-polarity.pos` and `rt-polarity.neg`, one sentence a
    line, UTF-8. No official split: the sentences are shuffled with `split_seed` and cut
    80/10/10 into train/val/test. Downloaded from Cornell (rt-polaritydata.tar.gz, whose
    files are Latin-1: they are re-encoded as UTF-8) when missing."""

    corpus = "rt-polarity"
    source_url = RT_URL

    def __init__(self, *args, split_seed: int = 42, **kwargs):
        """
        Args:
            split_seed: shuffles the sentences before the 80/10/10 cut.
        """
        super().__init__(*args, **kwargs)
        self.split_seed = split_seed

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

    def _split_key(self) -> str:
        return str(self.split_seed)

    def read_splits(self, files: dict[int, Path]) -> dict[Split, list[Example]]:
        examples = [
            ex for label, path in sorted(files.items()) for ex in read_sentences(path, label)
        ]
        return split_examples(examples, self.split_seed)


# --- labelled text for prompting (the `few_shot` command) ---------------------------------


def read_labelled_text(
    source: str, data_dir: str | None = None, split_seed: int = 42
) -> dict[Split, list[Example]]:
    """Labelled sentences by split: SST-2 (its dev file is val and test), movie-review
    polarity (seeded 80/10/10, as RTPolarityDataModule cuts it), or a local TSV file of
    `text<TAB>label` rows, label an integer from 0 (a first row `text<TAB>label` or
    `sentence<TAB>label` is a header), cut like polarity."""
    if source == "sst2":
        return SST2DataModule(data_dir).splits
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
