"""Watch word vectors learn: after every validation, the nearest neighbours (cosine) of a few
probe words, printed and logged to W&B as a table; where a word-similarity file or an analogy
file is given, the Spearman correlation with human scores (`val/spearman`) and the analogy
accuracy (`val/analogy_acc`). At the end of `fit` the vectors are exported in the word2vec
text format (`vectors.txt` beside the checkpoints), which gensim's
`KeyedVectors.load_word2vec_format` reads. `python main.py export_vectors`
(cli/commands/export_vectors.py) does the same from a checkpoint.

The files are read by datamodules/word_vectors.py (their formats are described there), the
metrics computed by lit_models/word_vector_metrics.py. Pairs and questions with a word outside
the vocabulary are skipped; `val/spearman_coverage` and `val/analogy_coverage` say which
fraction was used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from datamodules.word_vectors import (
    VECTORS_FILE,
    read_analogy_file,
    read_similarity_file,
    save_vocabulary_vectors,
)
from lit_models.word_vector_metrics import analogy_accuracy, similarity_spearman

log = logging.getLogger(__name__)
COLUMNS = ["step", "word", "neighbours"]


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
        self.exported = save_vocabulary_vectors(
            folder / self.vectors_file, trainer.datamodule.words, pl_module.vectors
        )
        rank_zero_info(f"word vectors written to {self.exported}")
