"""The `export_vectors` subcommand, mixed into the suite's Trainer: a trained word2vec model's
vectors in the word2vec text format, which gensim's `KeyedVectors.load_word2vec_format` reads.

    python main.py export_vectors --config configs/word2vec_skipgram_wikitext2.yaml --ckpt_path BEST.ckpt --output vectors.txt
"""

from __future__ import annotations

from pathlib import Path

import lightning as L

from callbacks.word_neighbours import VECTORS_FILE, export_vectors
from cli.checkpoints import load_weights
from core.errors import UserError


class Word2VecCommands:
    """The `export_vectors` subcommand, a mixin of the suite's Trainer."""

    def export_vectors(
        self,
        model: L.LightningModule,
        datamodule: L.LightningDataModule,
        ckpt_path: str | None = None,
        output: str = VECTORS_FILE,
    ) -> Path:
        """Write a trained word2vec model's vectors in the word2vec text format.

        Args:
            ckpt_path: the checkpoint (the vocabulary comes from the config's data settings).
            output: the file to write (replaced atomically).
        """
        if not ckpt_path:
            raise UserError(
                "export_vectors needs --ckpt_path: the checkpoint whose vectors to write"
            )
        if not hasattr(model, "vectors"):
            raise UserError(
                f"{type(model).__name__} has no word vectors to export (a word2vec model has)."
            )
        load_weights(model, ckpt_path)
        written = export_vectors(model, datamodule, output)
        print(
            f"{len(datamodule.words)} word vectors of {model.vectors.shape[1]} dimensions written to {written}"
        )
        return written
