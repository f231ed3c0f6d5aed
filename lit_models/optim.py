"""Optimisation recipes shared by the models: AdamW that decays matrices only, a linear
warmup followed by cosine decay (GPT-2/3, nanoGPT), and the Transformer's warmup then
inverse-square-root decay (Vaswani et al. 2017, section 5.3; "Noam" after Noam Shazeer);
and the run's planned number of optimizer steps, which schedules are fractions of."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from core.checks import (
    SettingError,
    require_betas,
    require_non_negative,
    require_positive_or_none,
)
from core.errors import UserError


def adamw_decaying_matrices(
    module: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]
) -> torch.optim.AdamW:
    """Weight decay on weight matrices and embeddings (dim >= 2); none on biases and norm gains."""
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def planned_steps(module: L.LightningModule, fix: str) -> int:
    """The run's optimizer steps: `trainer.max_steps`, else Lightning's estimate from
    `max_epochs`. Without either the run stops with the message `fix`."""
    trainer = module._trainer
    if trainer is not None and trainer.max_steps is not None and trainer.max_steps > 0:
        return trainer.max_steps
    estimated = trainer.estimated_stepping_batches if trainer is not None else math.inf
    if math.isinf(estimated):
        raise UserError(fix)
    return int(estimated)


def check_warmup_cosine(
    learning_rate: float,
    min_learning_rate: float,
    weight_decay: float,
    betas: tuple[float, float],
    warmup_steps: int,
    lr_decay_steps: int | None,
) -> None:
    """The settings `adamw_warmup_cosine` reads, checked in the model's constructor."""
    require_non_negative("model", learning_rate=learning_rate, weight_decay=weight_decay)
    if not 0 <= min_learning_rate <= learning_rate:
        raise SettingError(
            f"model.init_args.min_learning_rate={min_learning_rate} must be between 0 and "
            f"model.init_args.learning_rate={learning_rate}."
        )
    require_betas("model", betas)
    require_non_negative("model", warmup_steps=warmup_steps)
    require_positive_or_none("model", lr_decay_steps=lr_decay_steps)


def adamw_warmup_cosine(module: L.LightningModule) -> dict:
    """`configure_optimizers` of the GPT recipe, from the module's hyperparameters
    (learning_rate, min_learning_rate, weight_decay, betas, warmup_steps, lr_decay_steps):
    AdamW decaying matrices, warmup then cosine decay, stepped every optimizer step."""
    hp = module.hparams
    optimizer = adamw_decaying_matrices(module, hp.learning_rate, hp.weight_decay, tuple(hp.betas))
    decay_steps = hp.lr_decay_steps or planned_steps(
        module,
        "set trainer.max_steps or model.init_args.lr_decay_steps: the cosine schedule needs an end.",
    )
    floor = hp.min_learning_rate / hp.learning_rate if hp.learning_rate > 0 else 1.0
    schedule = WarmupCosineSchedule(optimizer, hp.warmup_steps, decay_steps, floor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def warmup_cosine_factor(step: int, warmup_steps: int, decay_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at `step` (0-based, as the scheduler counts)."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_ratio
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - min_ratio)


class WarmupCosineSchedule(torch.optim.lr_scheduler.LambdaLR):
    """Linear warmup to the peak over `warmup_steps`, cosine decay to `min_ratio * peak` at
    `decay_steps`, flat after. Stepped once per optimizer step."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int,
        decay_steps: int,
        min_ratio: float,
        last_epoch: int = -1,
    ):
        self.warmup_steps, self.decay_steps, self.min_ratio = warmup_steps, decay_steps, min_ratio
        super().__init__(optimizer, self.factor, last_epoch=last_epoch)

    def factor(self, step: int) -> float:
        return warmup_cosine_factor(step, self.warmup_steps, self.decay_steps, self.min_ratio)


def noam_learning_rate(step: int, n_embd: int, warmup_steps: int, factor: float = 1.0) -> float:
    """lr = factor * n_embd^-0.5 * min(step^-0.5, step * warmup_steps^-1.5), `step` from 1
    (n_embd: the model width, the paper's d_model): linear growth for `warmup_steps` steps,
    then decay as 1/sqrt(step); the peak is at step = warmup_steps,
    factor * (n_embd * warmup_steps)^-0.5."""
    step = max(step, 1)
    return factor * n_embd**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


class NoamSchedule(torch.optim.lr_scheduler.LambdaLR):
    """The Transformer's schedule, stepped once per optimizer step. It sets the learning rate
    itself: the optimizer's own `lr` is ignored (each group's rate is noam_learning_rate)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        n_embd: int,
        warmup_steps: int,
        factor: float = 1.0,
        last_epoch: int = -1,
    ):
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")
        self.n_embd, self.warmup_steps, self.noam_factor = n_embd, warmup_steps, factor
        if last_epoch == -1:
            for group in optimizer.param_groups:  # LambdaLR multiplies this base rate by factor()
                group["lr"] = 1.0
        super().__init__(optimizer, self.factor, last_epoch=last_epoch)

    def factor(self, step: int) -> float:
        # The scheduler counts from 0 (before the first optimizer step); the formula from 1.
        return noam_learning_rate(step + 1, self.n_embd, self.warmup_steps, self.noam_factor)
