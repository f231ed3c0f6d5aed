"""The preference losses: a case worked by hand, the response log-probability's masking, and
trl's own DPO loss on the same log-probabilities where trl is installed."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from core.constants import IGNORE_INDEX
from lit_models.modules.preference import preference_loss, response_logprobs

# log pi(chosen), log pi(rejected), log pi_ref(chosen), log pi_ref(rejected) of one pair
TOY = [torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.0)]


def test_a_pair_worked_by_hand():
    # h = (-1 - -2) - (-3 - -2) = 2; beta h = 1
    out = preference_loss(*TOY, beta=0.5)
    assert out.losses.item() == pytest.approx(math.log(1 + math.exp(-1)))  # -log sigma(1)
    assert out.chosen_rewards.item() == pytest.approx(0.5)  # 0.5 * (-1 - -2)
    assert out.rejected_rewards.item() == pytest.approx(-0.5)
    # cDPO, eps = 0.1: 0.9 (-log sigma(1)) + 0.1 (-log sigma(-1))
    cdpo = preference_loss(*TOY, beta=0.5, label_smoothing=0.1)
    expected = 0.9 * math.log(1 + math.exp(-1)) + 0.1 * math.log(1 + math.exp(1))
    assert cdpo.losses.item() == pytest.approx(expected)
    # IPO: (h - 1 / (2 beta))^2 = (2 - 1)^2
    assert preference_loss(*TOY, beta=0.5, loss_type="ipo").losses.item() == pytest.approx(1.0)
    # No preference yet (policy = reference): log 2, whatever beta.
    same = preference_loss(TOY[2], TOY[3], TOY[2], TOY[3], beta=3.0)
    assert same.losses.item() == pytest.approx(math.log(2))


def test_the_gradient_pushes_chosen_up_and_rejected_down():
    chosen, rejected = (
        torch.tensor([-2.0], requires_grad=True),
        torch.tensor([-2.0], requires_grad=True),
    )
    preference_loss(chosen, rejected, TOY[2], TOY[3], beta=0.1).losses.sum().backward()
    assert chosen.grad.item() < 0 < rejected.grad.item()  # descent raises chosen, lowers rejected


def test_response_logprobs_sum_the_response_tokens_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5)
    # row 0: prompt target, then three response targets; row 1: two response, then padding
    targets = torch.tensor([[IGNORE_INDEX, 1, 2, 3], [4, 0, IGNORE_INDEX, IGNORE_INDEX]])
    logp = logits.log_softmax(-1)
    expected = torch.stack(
        [logp[0, 1, 1] + logp[0, 2, 2] + logp[0, 3, 3], logp[1, 0, 4] + logp[1, 1, 0]]
    )
    torch.testing.assert_close(response_logprobs(logits, targets), expected)
    # What the masked positions hold never matters.
    logits[0, 0] = 1e4
    logits[1, 2:] = -1e4
    torch.testing.assert_close(response_logprobs(logits, targets), expected)


def trl_loss(logps: list[torch.Tensor], beta: float, loss_type: str) -> torch.Tensor:
    """trl's DPOTrainer loss on these log-probabilities: its own `_compute_loss`, given a
    model whose per-token log-probabilities put each response's whole log-probability on a
    single completion token, and the reference's precomputed."""
    dpo_trainer = pytest.importorskip("trl.trainer.dpo_trainer")
    chosen, rejected, ref_chosen, ref_rejected = logps
    rows = 2 * len(chosen)
    outputs = SimpleNamespace(
        log_probs=torch.cat([chosen, rejected])[:, None],  # [2B, 1]: the shifted sequence
        entropy=torch.zeros(rows, 1),
        mean_logits=torch.zeros(rows, 1),
        is_top1=torch.zeros(rows, 1, dtype=torch.bool),
    )
    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=SimpleNamespace(
            device="cpu", gather=lambda x: x, gather_for_metrics=lambda x: x
        ),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=0.0,
        use_weighting=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {
        "input_ids": torch.zeros(rows, 2, dtype=torch.long),
        "attention_mask": torch.ones(rows, 2, dtype=torch.long),
        "completion_mask": torch.tensor([[0, 1]] * rows),  # one completion token a row
        "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }
    return dpo_trainer.DPOTrainer._compute_loss(trainer, lambda **_: outputs, inputs, False)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_equals_trl_dpo_loss(loss_type):
    torch.manual_seed(0)
    logps = [-torch.rand(8) * 20 for _ in range(4)]
    ours = preference_loss(*logps, beta=0.1, loss_type=loss_type).losses.mean()
    # trl's IPO divides each log-ratio by the response's length: one token here, so it is
    # the same formula on the same numbers.
    torch.testing.assert_close(ours, trl_loss(logps, beta=0.1, loss_type=loss_type))
