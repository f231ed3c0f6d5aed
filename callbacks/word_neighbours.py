"""Watch word vectors learn: after every validation, the nearest neighbours (cosine) of a few
probe words, printed and logged to W&B as a table; where a word-similarity file or an analogy
file is given, the Spearman correlation with human scores (`val/spearman`) and the analogy
accuracy (`val/analogy_acc`). At the end of `fit` the vectors are exported in the word2vec
text format (`vectors.txt` beside the checkpoints), which gensim's
`KeyedVectors.load_word2vec_format` reads. `python main.py export_vectors` (cli/word2vec_commands.py) does
the same from a checkpoint.

Files:
- similarity (WordSim-353, SimLex-999, MEN): one pair a line, `word1 word2 score`, separated
  by tabs or commas (then fields may hold spaces) or else by spaces; a first line whose last
  field is not a number is a header; `#` starts a comment.
- analogy (word2vec's questions-words.txt): `: section` lines, then `a b c d` lines, read
  "a is to b as c is to d"; the answer is the word nearest to b - a + c (cosine, a, b and c
  excluded), as in word2vec's compute-accuracy and gensim.
Pairs and questions with a word outside the vocabulary are skipped; `val/spearman_coverage`
and `val/analogy_coverage` say which fraction was used.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torchmetrics.functional import spearman_corrcoef

from core.errors import DataError, UserError
from datamodules.word_vectors import save_word2vec_format

log = logging.getLogger(__name__)
COLUMNS = ["step", "word", "neighbours"]
VECTORS_FILE = "vectors.txt"


def read_similarity_file(path: str | Path) -> list[tuple[str, str, float]]:
    """(word1, word2, score) triples of a WordSim-353-style file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"similarity file {path} not found")
    pairs = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        separator = r"[\t,]" if ("\t" in line or "," in line) else r"\s+"
        fields = [f.strip() for f in re.split(separator, line) if f.strip()]
        try:
            score = float(fields[-1])
        except ValueError:
            if not pairs and line_no == 1:
                continue  # a header such as "Word 1,Word 2,Human (mean)"
            raise DataError(f"{path}:{line_no}: the score {fields[-1]!r} is not a number") from None
        if len(fields) != 3:
            raise DataError(
                f"{path}:{line_no}: expected 'word1 word2 score', found {len(fields)} fields: {line[:80]!r}"
            )
        pairs.append((fields[0], fields[1], score))
    if not pairs:
        raise DataError(f"{path}: no word pairs in the similarity file")
    return pairs


def read_analogy_file(path: str | Path) -> list[tuple[str, str, str, str]]:
    """(a, b, c, d) questions of a questions-words.txt-style file (section lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"analogy file {path} not found")
    questions = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith(":"):
            continue
        words = line.split()
        if len(words) != 4:
            raise DataError(
                f"{path}:{line_no}: expected four words 'a b c d', found {len(words)}: {line[:80]!r}"
            )
        questions.append(tuple(words))
    if not questions:
        raise DataError(f"{path}: no analogy questions in the file")
    return questions


def similarity_spearman(vectors, word_to_id, pairs) -> tuple[float, float]:
    """Spearman correlation of cosine similarities with the file's scores, and the coverage."""
    known = [
        (word_to_id[a], word_to_id[b], s)
        for a, b, s in pairs
        if a in word_to_id and b in word_to_id
    ]
    if len(known) < 2:
        return float("nan"), len(known) / len(pairs)
    a, b, human = (torch.tensor(column) for column in zip(*known, strict=True))
    unit = F.normalize(vectors.float(), dim=-1)
    cosine = (unit[a] * unit[b]).sum(-1)
    return float(spearman_corrcoef(cosine, human.float())), len(known) / len(pairs)


def analogy_accuracy(vectors, word_to_id, questions, chunk: int = 1024) -> tuple[float, float]:
    """Fraction of answerable questions whose nearest word to b - a + c is d, and the coverage."""
    known = [[word_to_id[w] for w in q] for q in questions if all(w in word_to_id for w in q)]
    if not known:
        return float("nan"), 0.0
    ids = torch.tensor(known)
    unit = F.normalize(vectors.float(), dim=-1)
    correct = 0
    for part in ids.split(chunk):
        query = unit[part[:, 1]] - unit[part[:, 0]] + unit[part[:, 2]]
        sims = F.normalize(query, dim=-1) @ unit.T
        rows = torch.arange(len(part)).unsqueeze(1)
        sims[rows, part[:, :3]] = -float("inf")  # the question's own words are not answers
        correct += int((sims.argmax(-1) == part[:, 3]).sum())
    return correct / len(known), len(known) / len(questions)


def export_vectors(
    model: L.LightningModule, datamodule: L.LightningDataModule, path: str | Path
) -> Path:
    """Write the model's word vectors under the datamodule's vocabulary (word2vec text format)."""
    words = datamodule.words
    if len(words) != model.vectors.shape[0]:
        raise UserError(
            f"the model has {model.vectors.shape[0]} word vectors but the data's vocabulary has "
            f"{len(words)} words: use the data settings (corpus, min_count, ...) the model was trained with."
        )
    return save_word2vec_format(path, words, model.vectors)


class WordNeighbours(L.Callback):
    def __init__(
        self,
        probe_words: list[str] | None = None,
        k: int = 8,
        similarity_file: str | None = None,
        analogy_file: str | None = None,
        export: bool = True,
        vectors_file: str = VECTORS_FILE,
    ):
        """
        Args:
            probe_words: words whose neighbours are shown (default: a few frequent words);
                words outside the vocabulary are reported once and skipped.
            k: neighbours per probe word.
            similarity_file: word pairs with human scores: logs val/spearman.
            analogy_file: questions-words.txt-style analogies: logs val/analogy_acc.
            export: write the vectors at the end of fit, to `vectors_file` in the checkpoint
                folder (or the run folder when there is no checkpointing).
        """
        self.probe_words = probe_words
        self.k = k
        self.similarity = read_similarity_file(similarity_file) if similarity_file else None
        self.analogies = read_analogy_file(analogy_file) if analogy_file else None
        self.export, self.vectors_file = export, vectors_file
        self.probe_ids: list[int] = []
        self.rows: list[list] = []
        self.exported: Path | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        words = data.words
        if self.probe_words is None:  # a few frequent words past the function words
            self.probe_ids = list(range(min(50, len(words) - 1), min(55, len(words))))
        else:
            missing = [w for w in self.probe_words if w not in data.word_to_id]
            if missing:
                rank_zero_warn(
                    f"WordNeighbours: probe words outside the vocabulary are skipped: {', '.join(missing)}"
                )
            self.probe_ids = [data.word_to_id[w] for w in self.probe_words if w in data.word_to_id]

    def neighbours(self, pl_module, words: list[str]) -> list[tuple[str, list[tuple[str, float]]]]:
        """Each probe word with its k nearest words and their cosine similarities."""
        if not self.probe_ids or len(words) < 2:
            return []
        sims, ids = pl_module.nearest(torch.tensor(self.probe_ids, device=pl_module.device), self.k)
        return [
            (
                words[p],
                [(words[j], float(s)) for s, j in zip(srow.tolist(), jrow.tolist(), strict=True)],
            )
            for p, srow, jrow in zip(self.probe_ids, sims, ids, strict=True)
        ]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        data = trainer.datamodule
        vectors = pl_module.vectors
        if self.similarity is not None:
            rho, coverage = similarity_spearman(vectors.cpu(), data.word_to_id, self.similarity)
            pl_module.log("val/spearman", rho, rank_zero_only=True)
            pl_module.log("val/spearman_coverage", coverage, rank_zero_only=True)
        if self.analogies is not None:
            accuracy, coverage = analogy_accuracy(vectors, data.word_to_id, self.analogies)
            pl_module.log("val/analogy_acc", accuracy, rank_zero_only=True)
            pl_module.log("val/analogy_coverage", coverage, rank_zero_only=True)
        if not trainer.is_global_zero:
            return
        new_rows = []
        for word, near in self.neighbours(pl_module, data.words):
            listed = ", ".join(f"{w} ({s:.2f})" for w, s in near)
            rank_zero_info(f"[step {trainer.global_step}] {word}: {listed}")
            new_rows.append([trainer.global_step, word, listed])
        self.rows += new_rows
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and self.rows:
                logger.log_table(
                    key="neighbours", columns=COLUMNS, data=self.rows, step=trainer.global_step
                )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.export or not trainer.is_global_zero:
            return
        checkpoint = trainer.checkpoint_callback
        folder = (
            Path(checkpoint.dirpath)
            if checkpoint and checkpoint.dirpath
            else Path(trainer.default_root_dir)
        )
        self.exported = export_vectors(pl_module, trainer.datamodule, folder / self.vectors_file)
        rank_zero_info(f"word vectors written to {self.exported}")
