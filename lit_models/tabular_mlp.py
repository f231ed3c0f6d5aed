"""A deep network on tabular data, for classification or regression: the course's first model,
with every knob its lessons turn.

    h_0 = x                                                   [B, num_features], standardised
    h_l = dropout(act(norm(W_l h_{l-1} + b_l)))               l = 1 .. n_layer, width n_hidden
    h_l = h_{l-1} + dropout(act(norm(W_l h_{l-1} + b_l)))     the same with residual (l >= 2)
    y   = W_out h_n + b_out                                   num_classes logits, or 1 value

- activation: sigmoid | tanh | relu | gelu; norm: none | batch | layer (before the activation,
  as Ioffe & Szegedy place batch norm); dropout after it.
- init of every weight matrix: the layer's own (`default`: U(+-1/sqrt(fan_in))), Xavier
  (Glorot & Bengio 2010, for sigmoid and tanh), Kaiming (He et al. 2015, for ReLU) or a
  deliberately bad `small_normal` N(0, init_std^2), which makes a deep sigmoid network's
  gradients vanish; biases start at 0 except with `default`.
- layers: PyTorch's nn.Linear / nn.BatchNorm1d or the hand-written ones (modules/layers.py).
- loss: cross entropy or focal (classification); MSE or Huber (regression).

Regression targets arrive in their own units, with the train split's mean and deviation
linked from the datamodule (target_mean, target_std): the network learns the standardised
target, so the loss is in standardised units, the metrics (RMSE, MAE, R^2) and predictions
in the target's own.
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError, MetricCollection, R2Score
from torchmetrics.classification import MulticlassAccuracy

from core.checks import (
    SettingError,
    require_non_negative,
    require_positive,
    require_positive_number,
    require_probability,
)
from lit_models.losses import Reduction, focal_loss, huber_loss
from lit_models.modules.layers import Layers, make_batchnorm, make_linear
from lit_models.optim import adamw_decaying_matrices

Task = Literal["classification", "regression"]
Activation = Literal["sigmoid", "tanh", "relu", "gelu"]
Norm = Literal["none", "batch", "layer"]
Init = Literal["default", "xavier", "kaiming", "small_normal"]
Loss = Literal["auto", "cross_entropy", "focal", "mse", "huber"]
Optimizer = Literal["adamw", "sgd"]

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}
LOSSES_OF = {"classification": ("cross_entropy", "focal"), "regression": ("mse", "huber")}


class Block(nn.Module):
    """One hidden layer: linear, norm, activation, dropout; with `residual`, added to its input."""

    def __init__(
        self,
        fan_in: int,
        width: int,
        activation: Activation,
        norm: Norm,
        dropout: float,
        residual: bool,
        layers: Layers,
    ):
        super().__init__()
        self.linear = make_linear(layers, fan_in, width)
        if norm == "batch":
            self.norm = make_batchnorm(layers, width)
        elif norm == "layer":
            self.norm = nn.LayerNorm(width)
        else:
            self.norm = nn.Identity()
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.activation(self.norm(self.linear(x))))
        return x + h if self.residual else h


class TabularMLP(L.LightningModule):
    def __init__(
        self,
        num_features: int,
        task: Task = "classification",
        num_classes: int | None = None,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        n_layer: int = 2,
        n_hidden: int = 128,
        activation: Activation = "relu",
        norm: Norm = "none",
        dropout: float = 0.0,
        init: Init = "default",
        init_std: float = 0.01,
        residual: bool = False,
        layers: Layers = "torch",
        loss: Loss = "auto",
        huber_delta: float = 1.0,
        focal_gamma: float = 2.0,
        focal_alpha: list[float] | None = None,
        optimizer: Optimizer = "adamw",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
    ):
        """
        Args:
            num_features, task, num_classes, target_mean, target_std: facts of the data, set
                by the datamodule (linked by the CLI). num_classes only for classification.
            n_layer: hidden layers (each linear, norm, activation, dropout), then the output.
            n_hidden: the width of every hidden layer.
            activation: sigmoid | tanh | relu | gelu.
            norm: none | batch | layer, after each hidden linear layer.
            dropout: after each hidden layer's activation.
            init: default | xavier | kaiming | small_normal (N(0, init_std^2)).
            residual: add each hidden layer's input to its output (all but the first, whose
                input is the features).
            layers: torch (nn.Linear, nn.BatchNorm1d) | hand_written (modules/layers.py).
            loss: auto (cross_entropy, or mse for regression) | cross_entropy | focal | mse |
                huber.
            huber_delta: where Huber's loss turns from squared to absolute (standardised units).
            focal_gamma, focal_alpha: the focal loss's focusing exponent and per-class weights.
            optimizer: adamw (weight decay on weight matrices only) | sgd (with momentum;
                weight_decay on every parameter).
        """
        super().__init__()
        require_positive("model", num_features=num_features, n_layer=n_layer, n_hidden=n_hidden)
        require_probability("model", dropout=dropout)
        require_positive_number("model", init_std=init_std, target_std=target_std)
        require_positive_number("model", huber_delta=huber_delta)
        require_non_negative(
            "model",
            focal_gamma=focal_gamma,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            momentum=momentum,
        )
        if task == "classification" and not (num_classes is not None and num_classes >= 2):
            raise SettingError(
                f"model.init_args.num_classes must be at least 2 for classification, got {num_classes}."
            )
        loss = loss if loss != "auto" else LOSSES_OF[task][0]
        if loss not in LOSSES_OF[task]:
            raise SettingError(
                f"model.init_args.loss={loss} is not a {task} loss; choose one of "
                f"{', '.join(('auto', *LOSSES_OF[task]))}."
            )
        if focal_alpha is not None and len(focal_alpha) != num_classes:
            raise SettingError(
                f"model.init_args.focal_alpha must give one weight per class ({num_classes}), "
                f"got {len(focal_alpha)}."
            )
        self.save_hyperparameters()
        self.loss_name = loss
        blocks, fan_in = [], num_features
        for index in range(n_layer):
            # The first layer changes the width, so it cannot add its input.
            keeps_width = index > 0 or fan_in == n_hidden
            blocks.append(
                Block(
                    fan_in,
                    n_hidden,
                    activation,
                    norm,
                    dropout,
                    residual and keeps_width,
                    layers,
                )
            )
            fan_in = n_hidden
        self.blocks = nn.ModuleList(blocks)
        self.output = make_linear(layers, n_hidden, num_classes if task == "classification" else 1)
        self._initialise(init, init_std, activation)
        self.metrics = nn.ModuleDict(
            {stage: self._make_metrics(task, num_classes) for stage in ("val", "test")}
        )

    def _initialise(self, init: Init, init_std: float, activation: Activation) -> None:
        if init == "default":
            return
        for linear in self.linear_layers():
            if init == "xavier":
                nn.init.xavier_uniform_(linear.weight)
            elif init == "kaiming":
                # Kaiming's gain is for ReLU; with other activations it still keeps the
                # variance of the pre-activations about constant through the layers.
                nonlinearity = "relu" if activation in ("relu", "gelu") else "linear"
                nn.init.kaiming_normal_(linear.weight, nonlinearity=nonlinearity)
            else:
                nn.init.normal_(linear.weight, std=init_std)
            nn.init.zeros_(linear.bias)

    def linear_layers(self) -> list[nn.Module]:
        """The weight layers from input to output: each hidden layer's linear, then the output."""
        return [block.linear for block in self.blocks] + [self.output]

    @staticmethod
    def _make_metrics(task: Task, num_classes: int | None) -> MetricCollection:
        if task == "classification":
            return MetricCollection(
                {"loss": MeanMetric(), "acc": MulticlassAccuracy(num_classes, average="micro")}
            )
        return MetricCollection(
            {
                "loss": MeanMetric(),
                "rmse": MeanSquaredError(squared=False),
                "mae": MeanAbsoluteError(),
                "r2": R2Score(),
            }
        )

    # --- the network and its loss -------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_classes], or [B] predictions in standardised target units."""
        for block in self.blocks:
            x = block(x)
        y = self.output(x)
        return y if self.hparams.task == "classification" else y.squeeze(-1)

    def loss(self, output: torch.Tensor, target: torch.Tensor, reduction: Reduction = "mean"):
        hp = self.hparams
        if self.loss_name == "cross_entropy":
            return F.cross_entropy(output.float(), target, reduction=reduction)
        if self.loss_name == "focal":
            return focal_loss(output, target, hp.focal_gamma, hp.focal_alpha, reduction)
        target = (target - hp.target_mean) / hp.target_std
        if self.loss_name == "huber":
            return huber_loss(output.float(), target, hp.huber_delta, reduction)
        return F.mse_loss(output.float(), target, reduction=reduction)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch["features"]), batch["label"])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "sgd":
            return torch.optim.SGD(
                self.parameters(),
                lr=hp.learning_rate,
                momentum=hp.momentum,
                weight_decay=hp.weight_decay,
            )
        return adamw_decaying_matrices(self, hp.learning_rate, hp.weight_decay, (0.9, 0.999))

    # --- evaluation -----------------------------------------------------------------------
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        output, target = self(batch["features"]), batch["label"]
        metrics = self.metrics[stage]
        # The loss is the mean over every example of the split, however it was batched.
        metrics["loss"].update(self.loss(output, target, reduction="none"))
        prediction = self._in_target_units(output)
        for name, metric in metrics.items():
            if name != "loss":
                metric.update(prediction, target)

    def _in_target_units(self, output: torch.Tensor) -> torch.Tensor:
        """Class probabilities, or predictions in the target's own units."""
        hp = self.hparams
        if hp.task == "classification":
            return output.float().softmax(-1)
        return output.float() * hp.target_std + hp.target_mean

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def _log_metrics(self, stage: str) -> None:
        for name, value in self.metrics[stage].compute().items():
            self.log(f"{stage}/{name}", value, prog_bar=name in ("loss", "acc", "r2"))
        self.metrics[stage].reset()

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Class probabilities [B, num_classes], or predictions [B] in the target's units."""
        return self._in_target_units(self(batch["features"]))
