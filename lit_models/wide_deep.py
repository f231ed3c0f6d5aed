"""Wide & Deep Learning for Recommender Systems (Cheng et al. 2016), for binary classification
of tabular rows (configs/wide_deep_adult.yaml: UCI Adult census income).

    wide:  y_wide = w^T [x, phi(x)]         a linear model over sparse one-hot features x and
                                            cross-product transformations phi(x) (e.g.
                                            AND(education=Bachelors, occupation=Exec-managerial)),
                                            which memorise feature co-occurrences
    deep:  a_0 = [e_1; ...; e_k; numerics]  dense embeddings of the categoricals and the
           a_{l+1} = ReLU(W_l a_l + b_l)    numerics through an MLP, which generalises to
           y_deep = W_out a_L               combinations never seen together
    P(y = 1 | x) = sigmoid(y_wide + y_deep + b)

Joint training (section 3.3): one logistic loss, its gradient back-propagated into both parts
at once (not an ensemble of two models trained apart). The paper trains the wide part with
FTRL-Proximal and L1 (McMahan et al. 2013) and the deep part with AdaGrad; here
`optimizer: split` (the default) uses FTRL-Proximal for the wide weights and Adam for the deep
part, and `optimizer: adam` one Adam for everything. FTRL suits the wide part because its
features are sparse and most are rare (thousands of hashed crosses, each active in a few rows):
its per-coordinate learning rate gives a rare feature large steps, and L1 sets the weights of
useless crosses to exactly zero.

`parts: wide` and `parts: deep` build only that part: the baselines of the paper's comparison.

The wide weights live in an `nn.EmbeddingBag(wide_dim, 1, mode="sum")`: a row's active feature
ids in, the sum of their weights out, which is w^T x for a 0/1 vector x without building it.

Two optimizers need Lightning's manual optimization, so trainer.gradient_clip_val does not
apply (Lightning refuses it): set `model.init_args.gradient_clip_val`, applied with
`self.clip_gradients` before each step. One batch is one trainer step whatever the number of
optimizers (see `_step`), so max_steps and val_check_interval count batches.
"""

from __future__ import annotations

import math
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.core.optimizer import do_nothing_closure
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from core.checks import (
    SettingError,
    require_non_negative,
    require_positive,
    require_positive_number,
    require_probability,
)
from core.errors import UserError

Parts = Literal["wide_deep", "wide", "deep"]
Optimizer = Literal["split", "adam"]


class FTRLProximal(torch.optim.Optimizer):
    """FTRL-Proximal (McMahan et al. 2013, "Ad Click Prediction: a View from the Trenches",
    algorithm 1), per coordinate i, with gradient g:

        sigma = (sqrt(n_i + g^2) - sqrt(n_i)) / alpha
        z_i  += g - sigma * w_i
        n_i  += g^2
        w_i   = 0                                                   if |z_i| <= l1
              = -(z_i - sign(z_i) l1) / ((beta + sqrt(n_i)) / alpha + l2)   otherwise

    The weights are a function of (z, n) alone, so they start at 0 whatever their init."""

    def __init__(
        self, params, lr: float = 0.1, beta: float = 1.0, l1: float = 0.0, l2: float = 0.0
    ):
        if lr <= 0 or beta < 0 or l1 < 0 or l2 < 0:
            raise UserError(
                f"FTRL needs lr > 0 and beta, l1, l2 >= 0; got lr={lr}, beta={beta}, l1={l1}, l2={l2}."
            )
        super().__init__(params, {"lr": lr, "beta": beta, "l1": l1, "l2": l2})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            alpha, beta, l1, l2 = group["lr"], group["beta"], group["l1"], group["l2"]
            for w in group["params"]:
                if w.grad is None:
                    continue
                g = w.grad.to_dense() if w.grad.is_sparse else w.grad
                state = self.state[w]
                if not state:
                    state["z"] = torch.zeros_like(w)
                    state["n"] = torch.zeros_like(w)
                z, n = state["z"], state["n"]
                n_new = n + g * g
                sigma = (n_new.sqrt() - n.sqrt()) / alpha
                z.add_(g - sigma * w)
                n.copy_(n_new)
                shrunk = z - z.sign() * l1
                w.copy_(
                    torch.where(
                        z.abs() <= l1,
                        torch.zeros_like(w),
                        -shrunk / ((beta + n.sqrt()) / alpha + l2),
                    )
                )
        return loss


class WideDeep(L.LightningModule):
    """Wide & Deep (or its wide-only / deep-only baselines) over batches of
    {categorical [B, k] ids, numeric [B, m], wide [B, F] ids, label [B]}."""

    def __init__(
        self,
        categorical_cardinalities: list[int],
        num_numeric: int,
        wide_dim: int,
        parts: Parts = "wide_deep",
        n_embd: int = 8,
        n_hidden: list[int] | None = None,
        dropout: float = 0.0,
        optimizer: Optimizer = "split",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        wide_learning_rate: float = 0.1,
        wide_l1: float = 0.0,
        wide_l2: float = 0.0,
        ftrl_beta: float = 1.0,
        gradient_clip_val: float = 0.0,
    ):
        """
        Args:
            categorical_cardinalities, num_numeric, wide_dim: set by the datamodule (linked
                by the CLI): vocabulary sizes of the categoricals, numeric inputs, wide features.
            parts: `wide_deep` (joint), `wide` (the linear model alone) or `deep` (the MLP alone).
            n_embd: size of each categorical's embedding (the paper: 32; TensorFlow's
                census tutorial: 8).
            n_hidden: the widths of the MLP's ReLU layers, one per layer (default [100, 50],
                the census tutorial's).
            optimizer: `split` (FTRL-Proximal for the wide weights, Adam for the deep part) or
                `adam` (one Adam for both).
            learning_rate, weight_decay: Adam's (the deep part, or everything with `adam`).
            wide_learning_rate, wide_l1, wide_l2, ftrl_beta: FTRL's alpha, L1, L2 and beta.
            gradient_clip_val: clip each optimizer's gradients to this norm (0: no clipping).
        """
        super().__init__()
        n_hidden = [100, 50] if n_hidden is None else list(n_hidden)
        if not all(h >= 1 for h in n_hidden):
            raise SettingError(
                f"model.init_args.n_hidden must list positive layer widths, got {n_hidden}."
            )
        require_positive("model", n_embd=n_embd, wide_dim=wide_dim)
        if not all(n >= 1 for n in categorical_cardinalities):
            raise SettingError(
                f"model.init_args.categorical_cardinalities must be positive vocabulary sizes, got "
                f"{list(categorical_cardinalities)}."
            )
        require_non_negative("model", num_numeric=num_numeric)
        require_probability("model", dropout=dropout)
        require_non_negative(
            "model",
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            wide_l1=wide_l1,
            wide_l2=wide_l2,
            ftrl_beta=ftrl_beta,
            gradient_clip_val=gradient_clip_val,
        )
        # FTRL divides by its learning rate (alpha).
        require_positive_number("model", wide_learning_rate=wide_learning_rate)
        self.save_hyperparameters()
        self.automatic_optimization = False  # two optimizers, one backward (see `_step`)
        self.wide = nn.EmbeddingBag(wide_dim, 1, mode="sum") if parts != "deep" else None
        if self.wide is not None:
            nn.init.zeros_(self.wide.weight)  # a linear model starts at 0 (FTRL ignores it anyway)
        self.deep = (
            DeepTower(categorical_cardinalities, num_numeric, n_embd, n_hidden, dropout)
            if parts != "wide"
            else None
        )
        self.bias = nn.Parameter(torch.zeros(1))  # b of the joint sum
        self.metrics = nn.ModuleDict({stage: _metrics() for stage in ("val", "test")})

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The logit of P(label = 1) of each row: [B]."""
        logit = self.bias.expand(len(batch["categorical"]))
        if self.wide is not None:
            logit = logit + self.wide(batch["wide"]).squeeze(-1)
        if self.deep is not None:
            logit = logit + self.deep(batch["categorical"], batch["numeric"])
        return logit

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch)
        return F.binary_cross_entropy_with_logits(logits.float(), batch["label"].float()), logits

    # --- training: one backward, then every optimizer steps ---------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss, _ = self.loss(batch)
        self.manual_backward(loss)
        self._step(optimizers)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _step(self, optimizers) -> None:
        """Clip, then step each optimizer. Lightning counts every LightningOptimizer.step as a
        trainer step, so all but the last step through the strategy directly (same precision
        handling, uncounted): one batch is one global step."""
        clip = self.hparams.gradient_clip_val
        for optimizer in optimizers:
            if clip > 0:
                self.clip_gradients(
                    optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm"
                )
        for optimizer in optimizers[:-1]:
            self.trainer.strategy.optimizer_step(optimizer.optimizer, do_nothing_closure)
        optimizers[-1].step()

    def configure_optimizers(self):
        hp = self.hparams
        adam = dict(lr=hp.learning_rate, weight_decay=hp.weight_decay)
        if hp.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), **adam)
        ftrl = dict(lr=hp.wide_learning_rate, beta=hp.ftrl_beta)
        if self.deep is None:  # wide only: FTRL for all, the bias without L1 / L2
            return FTRLProximal(
                [
                    {"params": self.wide.parameters(), "l1": hp.wide_l1, "l2": hp.wide_l2},
                    {"params": [self.bias]},
                ],
                **ftrl,
            )
        deep = torch.optim.Adam([*self.deep.parameters(), self.bias], **adam)
        if self.wide is None:
            return deep
        wide = FTRLProximal(self.wide.parameters(), l1=hp.wide_l1, l2=hp.wide_l2, **ftrl)
        return [wide, deep]

    # --- evaluation -----------------------------------------------------------------------
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        logits = self(batch).float()
        losses = F.binary_cross_entropy_with_logits(
            logits, batch["label"].float(), reduction="none"
        )
        metrics = self.metrics[stage]
        metrics["loss"].update(losses)
        probs = torch.sigmoid(logits)
        target = batch["label"].long()
        metrics["acc"].update(probs, target)
        metrics["auroc"].update(probs, target)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def _log_metrics(self, stage: str) -> None:
        for name, value in self.metrics[stage].compute().items():
            self.log(f"{stage}/{name}", value, prog_bar=name in ("loss", "auroc"))
        self.metrics[stage].reset()

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """P(label = 1) of each row."""
        return torch.sigmoid(self(batch).float())


class DeepTower(nn.Module):
    """The deep part: each categorical embedded, concatenated with the numerics, through ReLU
    layers to one logit."""

    def __init__(
        self,
        cardinalities: list[int],
        num_numeric: int,
        n_embd: int,
        n_hidden: list[int],
        dropout: float,
    ):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n, n_embd) for n in cardinalities)
        layers, fan_in = [], len(cardinalities) * n_embd + num_numeric
        for size in n_hidden:
            layers += [nn.Linear(fan_in, size), nn.ReLU()]
            layers += [nn.Dropout(dropout)] if dropout > 0 else []
            fan_in = size
        self.mlp = nn.Sequential(*layers)
        self.output = nn.Linear(fan_in, 1)
        for embedding in self.embeddings:  # small random vectors, as the paper initialises them
            nn.init.normal_(embedding.weight, std=1.0 / math.sqrt(n_embd))

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        embedded = [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.output(self.mlp(torch.cat([*embedded, numeric], dim=1))).squeeze(-1)


def _metrics() -> MetricCollection:
    # The loss is the mean over every row of the split, however it was batched.
    return MetricCollection({"loss": MeanMetric(), "acc": BinaryAccuracy(), "auroc": BinaryAUROC()})
