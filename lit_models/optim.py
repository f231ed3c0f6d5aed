"""Optimisation recipes shared by the models: AdamW that decays matrices only, and a linear
warmup followed by cosine decay (GPT-2/3, nanoGPT)."""

from __future__ import annotations

import math

import torch
from torch import nn


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
