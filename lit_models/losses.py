"""Losses the course writes by hand (each tested against PyTorch's own in tests/test_tabular.py):

Huber (Huber 1964), per element, with e = prediction - target:
    0.5 e^2                     where |e| <= delta     (squared error near the target)
    delta (|e| - 0.5 delta)     elsewhere              (absolute error far from it)
equal to nn.HuberLoss; an outlier pulls with a force of at most delta, not |e|.

Focal loss (Lin et al. 2017), per example, with p_t the probability of the true class:
    -alpha_t (1 - p_t)^gamma log p_t
gamma = 0 (and no alpha) is cross entropy; gamma > 0 shrinks the loss of examples already
classified well, so the rare, hard ones weigh more: a loss for imbalanced classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["mean", "none"]  # the mean over the batch, or one loss per example


def huber_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    delta: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    error = (prediction - target).abs()
    quadratic = 0.5 * error**2
    linear = delta * (error - 0.5 * delta)
    loss = torch.where(error <= delta, quadratic, linear)
    return loss.mean() if reduction == "mean" else loss


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    alpha: Sequence[float] | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """`logits` [B, C], `target` [B] class ids; `alpha` one weight per class (or None)."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    log_p_t = log_p.gather(1, target[:, None]).squeeze(1)
    p_t = log_p_t.exp()
    loss = -((1 - p_t) ** gamma) * log_p_t
    if alpha is not None:
        loss = loss * torch.as_tensor(alpha, dtype=loss.dtype, device=loss.device)[target]
    return loss.mean() if reduction == "mean" else loss
