"""A recurrent network that reads a sequence of feature vectors and answers from its states:

    h_1..h_T = RNN(x_1..x_T)          the suite's recurrent stack (torch's or hand-written)
    regression:      y = W h_T + b    one value (or `output_size` values) from the last state
    classification:  y_t = W h_t + b  the logits of a class at every step

trained on the mean squared error or the cross-entropy (over every step). It is the model of
the long-range memory tasks (datamodules/long_range.py): the adding problem is a regression
of the last step, copy memory a classification of every step. `input_size`, `output_size`
and `task_kind` come from the datamodule through the CLI's links.

`recurrent_gain` starts each gate's recurrent matrix W_h* as `gain` times a random orthogonal
matrix: every singular value is `gain`, so a tanh RNN with a gain above 1 can multiply a
gradient by up to `gain` per step back in time (Pascanu et al. 2013), the exploding-gradient
experiment of the long-range bench.
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from core.checks import require_non_negative, require_positive, require_positive_or_none
from lit_models.modules.recurrent import GATES, Cell, Impl, make_recurrent

TaskKind = Literal["regression", "classification"]
Optimizer = Literal["adam", "sgd"]


class SequenceModel(L.LightningModule):
    def __init__(
        self,
        input_size: int,
        output_size: int = 1,
        task_kind: TaskKind = "regression",
        cell: Cell = "lstm",
        impl: Impl = "torch",
        n_hidden: int = 128,
        n_layer: int = 1,
        recurrent_gain: float | None = None,
        optimizer: Optimizer = "adam",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
    ):
        """
        Args:
            input_size, output_size, task_kind: from the datamodule (linked by the CLI):
                features a step; values of the answer (regression) or classes a step
                (classification); which of the two.
            cell: rnn_tanh | rnn_relu | gru | lstm.
            impl: torch (fused layers) | scratch (the hand-written cells, same weights).
            n_hidden, n_layer: width and depth of the recurrent stack.
            recurrent_gain: recurrent matrices start as gain x orthogonal; None: torch's init
                (uniform in +-1/sqrt(n_hidden)).
            optimizer: adam | sgd (plain: a gradient's size becomes the step's size, which
                shows exploding gradients; Adam's step is about learning_rate whatever it is).
            learning_rate, weight_decay: the optimizer's.
        """
        super().__init__()
        require_positive(
            "model",
            input_size=input_size,
            output_size=output_size,
            n_hidden=n_hidden,
            n_layer=n_layer,
        )
        require_positive_or_none("model", recurrent_gain=recurrent_gain)
        require_non_negative("model", learning_rate=learning_rate, weight_decay=weight_decay)
        self.save_hyperparameters()
        self.rnn = make_recurrent(cell, impl, input_size, n_hidden, n_layer, batch_first=True)
        self.head = nn.Linear(n_hidden, output_size)
        if recurrent_gain is not None:
            self.init_recurrent(recurrent_gain)

    def init_recurrent(self, gain: float) -> None:
        """Each gate's block of W_hh becomes `gain` x a random orthogonal matrix."""
        cell, n_hidden = self.hparams.cell, self.hparams.n_hidden
        with torch.no_grad():
            for k in range(self.hparams.n_layer):
                weight = getattr(self.rnn, f"weight_hh_l{k}")
                for block in weight.split(n_hidden):
                    nn.init.orthogonal_(block, gain=gain)
                assert weight.size(0) == GATES[cell] * n_hidden

    # --- the model --------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs [B, T, input_size] -> regression [B] (or [B, output_size] when it is above
        1), classification logits [B, T, output_size]."""
        states, _ = self.rnn(inputs)  # [B, T, n_hidden]
        if self.hparams.task_kind == "classification":
            return self.head(states)
        out = self.head(states[:, -1])
        return out.squeeze(-1) if self.hparams.output_size == 1 else out

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.hparams.task_kind == "classification":
            return F.cross_entropy(outputs.flatten(0, 1), targets.flatten())
        return F.mse_loss(outputs, targets)

    # --- Lightning ----------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch["inputs"]), batch["targets"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["targets"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: dict, stage: str) -> None:
        outputs, targets = self(batch["inputs"]), batch["targets"]
        n = len(targets)
        self.log(f"{stage}/loss", self.loss(outputs, targets), batch_size=n, sync_dist=True)
        if self.hparams.task_kind == "classification":
            accuracy = (outputs.argmax(-1) == targets).float().mean()
            self.log(f"{stage}/acc", accuracy, prog_bar=True, batch_size=n, sync_dist=True)

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        outputs = self(batch["inputs"])
        return outputs.argmax(-1) if self.hparams.task_kind == "classification" else outputs

    def configure_optimizers(self):
        if self.hparams.optimizer == "sgd":
            return torch.optim.SGD(
                self.parameters(),
                lr=self.hparams.learning_rate,
                weight_decay=self.hparams.weight_decay,
            )
        return torch.optim.Adam(
            self.parameters(),
            lr=self.hparams.learning_rate,
            weight_decay=self.hparams.weight_decay,
        )
