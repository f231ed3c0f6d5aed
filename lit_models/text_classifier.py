"""A recurrent text classifier: embed the words, read them with a (bi)directional RNN, GRU or
LSTM, pool the states into one vector per sentence, and classify it.

    e_t = E[w_t]                                    word embeddings (optionally pretrained)
    h_1..h_n = RNN(e_1..e_n)                        forward states; with bidirectional, each
                                                    h_t = [forward h_t ; backward h_t]
    s = pool(h_1..h_n)                              last state | mean | max over t <= n
    logits = W dropout(s) + b

Sentences of a batch have different lengths n. They are packed
(`torch.nn.utils.rnn.pack_padded_sequence`), so the recurrence stops at each sentence's own
end and the backward direction starts from its last word, not from padding; mean and max
pool over the n real positions only. A sentence thus gets the same logits alone or padded in
a batch with longer ones (tested). "last" pools the final states of the top layer: the
forward state after word n and, bidirectional, the backward state after word 1.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torchmetrics.classification import BinaryF1Score, MulticlassAccuracy, MulticlassF1Score

from core.checked_files import DamagedFile, read_payload
from core.checks import (
    SettingError,
    require_in_range,
    require_non_negative,
    require_positive,
    require_probability,
)
from core.errors import UserError

Cell = Literal["rnn", "gru", "lstm"]
CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}  # torch's fused layer of each Cell
Pooling = Literal["last", "mean", "max"]


class TextClassifier(L.LightningModule):
    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        cell: Cell = "lstm",
        bidirectional: bool = True,
        n_embd: int = 300,
        n_hidden: int = 256,
        n_layer: int = 1,
        pooling: Pooling = "max",
        dropout: float = 0.5,
        embedding_dropout: float = 0.0,
        pad_id: int = 0,
        pretrained_embeddings: str | None = None,
        freeze_embeddings: bool = False,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
    ):
        """
        Args:
            vocab_size, num_classes, pad_id: from the datamodule (linked by the CLI).
            cell: rnn (tanh) | gru | lstm, torch's fused layers (they read packed sequences).
            bidirectional: a backward layer too; the pooled vector is twice n_hidden.
            n_embd: width of the word embeddings.
            n_hidden: width of each recurrent layer (each direction).
            n_layer: recurrent layers.
            pooling: last | mean | max over the states of the top layer.
            dropout: on the pooled vector and between recurrent layers.
            embedding_dropout: on the word embeddings.
            pretrained_embeddings: a file saved by the datamodule, {"vectors": [vocab_size,
                n_embd], "found": [vocab_size]}: rows found replace the random init
                (linked from data.init_args.pretrained_embeddings when data.init_args.word_vectors is set).
            freeze_embeddings: keep the embeddings fixed during training.
        """
        super().__init__()
        if not num_classes >= 2:
            raise SettingError(
                f"model.init_args.num_classes must be at least 2, got {num_classes}."
            )
        require_positive(
            "model", vocab_size=vocab_size, n_embd=n_embd, n_hidden=n_hidden, n_layer=n_layer
        )
        require_probability("model", dropout=dropout, embedding_dropout=embedding_dropout)
        require_in_range("model", 0, vocab_size, "[)", pad_id=pad_id)  # a token id
        require_non_negative("model", learning_rate=learning_rate, weight_decay=weight_decay)
        self.save_hyperparameters()
        self.embedding = nn.Embedding(vocab_size, n_embd, padding_idx=pad_id)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.rnn = CELLS[cell](
            n_embd,
            n_hidden,
            num_layers=n_layer,
            dropout=dropout if n_layer > 1 else 0.0,
            bidirectional=bidirectional,
            batch_first=True,
        )
        self.dropout = nn.Dropout(dropout)
        self.n_directions = 2 if bidirectional else 1
        self.head = nn.Linear(self.n_directions * n_hidden, num_classes)
        if pretrained_embeddings:
            self.load_pretrained(Path(pretrained_embeddings))
        self.embedding.weight.requires_grad_(not freeze_embeddings)

        self.metrics = nn.ModuleDict()
        for stage in ("val", "test"):
            self.metrics[f"{stage}_acc"] = MulticlassAccuracy(num_classes, average="micro")
            # Binary: F1 of the positive class (GLUE's convention); more classes: macro F1.
            self.metrics[f"{stage}_f1"] = (
                BinaryF1Score() if num_classes == 2 else MulticlassF1Score(num_classes)
            )

    def load_pretrained(self, path: Path) -> None:
        """Copy the found rows of the datamodule's aligned vectors into the embedding."""
        if not path.is_file():
            # The datamodule writes this file, so it is only missing when a checkpoint is loaded
            # on another machine, where the checkpoint's trained weights replace the init anyway.
            rank_zero_warn(f"pretrained embeddings {path} not found: the random init is kept")
            return
        try:  # the datamodule's cache file (checked) or a plain torch file
            payload = read_payload(path)
        except DamagedFile as err:
            rank_zero_warn(
                f"pretrained embeddings {path} are damaged ({err}): the random init is kept"
            )
            return
        saved = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        vectors, found = saved["vectors"], saved["found"]
        if vectors.shape != self.embedding.weight.shape:
            raise UserError(
                f"pretrained embeddings {path} are {tuple(vectors.shape)} but the model's are "
                f"{tuple(self.embedding.weight.shape)} (vocabulary x n_embd): set "
                f"model.init_args.n_embd={vectors.size(1)} to match the word vectors"
            )
        with torch.no_grad():
            self.embedding.weight[found] = vectors[found]
        rank_zero_info("pretrained embeddings: %d of %d rows", int(found.sum()), len(found))

    # --- the model --------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_classes] of sentences `input_ids` [B, T] of `lengths` [B] words."""
        embedded = self.embedding_dropout(self.embedding(input_ids))
        packed = pack_padded_sequence(
            embedded, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, final = self.rnn(packed)
        if self.hparams.pooling == "last":
            h_n = final[0] if isinstance(final, tuple) else final  # [layers * dirs, B, H]
            pooled = torch.cat(list(h_n[-self.n_directions :]), dim=-1)
        else:
            states, _ = pad_packed_sequence(
                outputs, batch_first=True, total_length=input_ids.size(1)
            )  # [B, T, dirs * H], zeros past each sentence's end
            real = (
                torch.arange(input_ids.size(1), device=input_ids.device)[None, :]
                < lengths.to(input_ids.device)[:, None]
            ).unsqueeze(-1)
            if self.hparams.pooling == "mean":
                pooled = (states * real).sum(1) / real.sum(1)
            else:
                pooled = states.masked_fill(~real, float("-inf")).max(1).values
        return self.head(self.dropout(pooled))

    # --- Lightning ----------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["lengths"])
        loss = F.cross_entropy(logits, batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        return self._evaluate(batch, "test")

    def _evaluate(self, batch: dict, stage: str) -> dict:
        """Loss, accuracy and F1 over the whole split; returns the predictions, which the
        ClassificationReport callback turns into a confusion matrix and a table of errors."""
        logits = self(batch["input_ids"], batch["lengths"])
        labels = batch["labels"]
        n = len(labels)
        self.log(f"{stage}/loss", F.cross_entropy(logits, labels), batch_size=n, sync_dist=True)
        probs = logits.softmax(-1)
        preds = probs.argmax(-1)
        accuracy, f1 = self.metrics[f"{stage}_acc"], self.metrics[f"{stage}_f1"]
        accuracy.update(preds, labels)
        f1.update(preds, labels)
        self.log(f"{stage}/acc", accuracy, prog_bar=True, batch_size=n)
        self.log(f"{stage}/f1", f1, batch_size=n)
        return {"preds": preds, "probs": probs, "labels": labels}

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        probs = self(batch["input_ids"], batch["lengths"]).softmax(-1)
        return {"preds": probs.argmax(-1), "probs": probs, "texts": batch.get("texts")}

    def configure_optimizers(self):
        # The fused kernel: one pass over the (large, mostly embedding) parameters per step,
        # several times faster than the per-tensor loop on a CPU.
        return torch.optim.Adam(
            [p for p in self.parameters() if p.requires_grad],
            lr=self.hparams.learning_rate,
            weight_decay=self.hparams.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),
        )
