"""Preference losses (DPO and its variants) as pure functions of log-probabilities.

DPO (Rafailov et al. 2023) trains a policy pi on pairs (x, y_w preferred to y_l) against a
frozen reference pi_ref. With the log-ratios of chosen and rejected response,

    h = [log pi(y_w|x) - log pi_ref(y_w|x)] - [log pi(y_l|x) - log pi_ref(y_l|x)]

the losses are

    sigmoid (DPO):         -log sigma(beta h)
    conservative (cDPO):   -(1 - eps) log sigma(beta h) - eps log sigma(-beta h)
                           (the label is wrong with probability eps: label smoothing)
    ipo (Azar et al.):     (h - 1 / (2 beta))^2

and the implicit rewards are beta times each response's log-ratio: r_w = beta (log pi(y_w|x) -
log pi_ref(y_w|x)), r_l likewise; the reward accuracy is the share of pairs with r_w > r_l and
the margin r_w - r_l. A response's log-probability is the sum over its own tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from core.constants import IGNORE_INDEX

PreferenceLoss = Literal["sigmoid", "ipo"]  # sigmoid with label_smoothing > 0 is cDPO


@dataclass(frozen=True)
class PreferenceOutput:
    """Per pair: the loss and the implicit rewards of chosen and rejected."""

    losses: torch.Tensor  # [B]
    chosen_rewards: torch.Tensor  # [B] beta (log pi - log pi_ref) of the chosen response
    rejected_rewards: torch.Tensor  # [B] the same for the rejected one


def response_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(response | prompt) of each row: logits [B, T, V] and next-token targets [B, T]
    (IGNORE_INDEX at the prompt and the padding) -> [B], the sum over the scored targets."""
    mask = targets != IGNORE_INDEX
    safe = targets.masked_fill(~mask, 0)  # any id: its log-prob is masked out below
    token_logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1))
    return (token_logprobs.squeeze(-1) * mask).sum(dim=-1)


def preference_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float = 0.1,
    loss_type: PreferenceLoss = "sigmoid",
    label_smoothing: float = 0.0,
) -> PreferenceOutput:
    """The loss of each pair from the four log-probabilities [B] of its responses; see the
    module's docstring. `label_smoothing` (cDPO's eps) applies to `sigmoid` only."""
    chosen_ratio = policy_chosen - reference_chosen
    rejected_ratio = policy_rejected - reference_rejected
    h = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(
            -beta * h
        )
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown preference loss {loss_type!r}")
    # The rewards are reported, never trained on: no gradient through them.
    return PreferenceOutput(losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach())
