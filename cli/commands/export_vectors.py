"""`export_vectors`: a trained word2vec model's vectors in the word2vec text format, which
gensim's `KeyedVectors.load_word2vec_format` reads.

    python main.py export_vectors --config configs/word2vec_skipgram_wikitext2.yaml --ckpt_path BEST.ckpt --output vectors.txt
"""

from __future__ import annotations

from pathlib import Path

import lightning as L

from cli.checkpoints import load_weights
from core.errors import UserError
from datamodules.word_vectors import VECTORS_FILE, save_vocabulary_vectors


def export_vectors(
    trainer: L.Trainer,
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
        raise UserError("export_vectors needs --ckpt_path: the checkpoint whose vectors to write")
    if not hasattr(model, "vectors"):
        raise UserError(
            f"{type(model).__name__} has no word vectors to export (a word2vec model has)."
        )
    load_weights(model, ckpt_path)
    written = save_vocabulary_vectors(output, datamodule.words, model.vectors)
    print(
        f"{len(datamodule.words)} word vectors of {model.vectors.shape[1]} dimensions written to {written}"
    )
    return written
