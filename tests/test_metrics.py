"""LanguageModelMetrics: token, word and character views of one summed NLL."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.text import Perplexity

from lit_models.metrics import LanguageModelMetrics
from tests.conftest import quiet_trainer

IGNORE = -100


def _nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token NLL as LanguageModel.token_nll computes it (0 at ignored targets)."""
    return F.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="none"
    ).view_as(targets)


def test_ppl_is_exp_of_the_token_weighted_mean_loss():
    metric = LanguageModelMetrics()
    # Two updates of different sizes: the loss is over tokens, not a mean of batch means.
    a, b = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.5]])
    metric.update(a, torch.ones_like(a, dtype=torch.bool))
    metric.update(b, torch.ones_like(b, dtype=torch.bool))
    out = metric.compute()
    assert out["loss"].item() == pytest.approx(6.5 / 4)
    assert out["ppl"].item() == pytest.approx(math.exp(6.5 / 4), rel=1e-6)
    assert set(out) == {"loss", "ppl"}  # no words or characters given: no word_ppl or bpc


def test_reset_starts_over():
    metric = LanguageModelMetrics()
    metric.update(torch.tensor([5.0]), torch.tensor([True]))
    metric.reset()
    metric.update(torch.tensor([1.0]), torch.tensor([True]))
    assert metric.compute()["loss"].item() == pytest.approx(1.0)


def test_matches_torchmetrics_perplexity_with_padding():
    torch.manual_seed(0)
    ours, reference = LanguageModelMetrics(), Perplexity(ignore_index=IGNORE)
    for batch, length in ((3, 7), (2, 5)):
        logits = torch.randn(batch, length, 11) * 2
        targets = torch.randint(0, 11, (batch, length))
        targets[0, -3:] = IGNORE  # a padded tail
        targets[-1, 1] = IGNORE
        ours.update(_nll(logits, targets), targets != IGNORE)
        reference.update(logits, targets)
    assert ours.compute()["ppl"].item() == pytest.approx(reference.compute().item(), rel=1e-5)


def test_word_level_perplexity_by_hand():
    # "unbelievable things happen" as 5 sub-word tokens: un|believ|able things hap|pen
    # Each token counts the words it completes; the three words are counted once each.
    nll = torch.tensor([[2.0, 1.0, 0.5, 3.0, 1.5]])
    words = torch.tensor([[0, 0, 1, 1, 1]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    metric = LanguageModelMetrics()
    metric.update(nll, mask, words)
    out = metric.compute()
    assert out["word_ppl"].item() == pytest.approx(math.exp(8.0 / 3), rel=1e-6)
    assert out["ppl"].item() == pytest.approx(math.exp(8.0 / 5), rel=1e-6)


def test_bits_per_character():
    nll = torch.tensor([[0.7, 1.4], [2.1, 0.0]])
    chars = torch.tensor([[1, 3], [2, 0]])
    mask = torch.tensor([[True, True], [True, False]])
    metric = LanguageModelMetrics()
    metric.update(nll, mask, chars=chars)
    out = metric.compute()
    assert out["bpc"].item() == pytest.approx(4.2 / (6 * math.log(2)), rel=1e-6)
    assert "word_ppl" not in out


def test_ignored_positions_contribute_nothing():
    nll = torch.tensor([[1.0, 2.0, 50.0, 70.0]])  # the last two are padding with garbage NLL
    words = torch.tensor([[1, 1, 9, 9]])
    chars = torch.tensor([[4, 2, 99, 99]])
    mask = torch.tensor([[True, True, False, False]])
    padded = LanguageModelMetrics()
    padded.update(nll, mask, words, chars)
    clean = LanguageModelMetrics()
    clean.update(nll[:, :2], mask[:, :2], words[:, :2], chars[:, :2])
    got, expected = padded.compute(), clean.compute()
    assert set(got) == {"loss", "ppl", "word_ppl", "bpc"}
    for name in got:
        assert got[name].item() == pytest.approx(expected[name].item(), rel=1e-6), name
    assert got["loss"].item() == pytest.approx(1.5)
    assert got["bpc"].item() == pytest.approx(3.0 / (6 * math.log(2)), rel=1e-6)


def test_model_evaluation_feeds_the_metric():
    from lit_models import GPT

    torch.manual_seed(0)
    model = GPT(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0).eval()
    reference = Perplexity(ignore_index=IGNORE)
    for _ in range(2):
        batch = {"input_ids": torch.randint(0, 13, (3, 8)), "targets": torch.randint(0, 13, (3, 8))}
        batch["targets"][1, 4:] = IGNORE
        with torch.no_grad():
            model.validation_step(batch, 0)
            reference.update(model(batch["input_ids"]), batch["targets"])
    got = model.eval_metrics["val"].compute()
    assert got["ppl"].item() == pytest.approx(reference.compute().item(), rel=1e-5)
    assert model.eval_metrics["test"].tokens == 0  # the test metric is a separate one


def test_language_model_logs_each_metric_once_and_loss_and_ppl_on_the_progress_bar():
    from lit_models import GPT

    torch.manual_seed(0)
    batch = {
        "input_ids": torch.randint(0, 13, (3, 8)),
        "targets": torch.randint(0, 13, (3, 8)),
        "target_words": torch.randint(0, 2, (3, 8)),
        "target_chars": torch.randint(1, 4, (3, 8)),
    }
    batch["target_words"][0, 0] = 1  # at least one word
    loader = torch.utils.data.DataLoader([batch], batch_size=None)
    trainer = quiet_trainer(accelerator="cpu")
    model = GPT(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16)
    (val,) = trainer.validate(model, loader, verbose=False)
    assert set(val) == {"val/loss", "val/ppl", "val/word_ppl", "val/bpc"}
    assert set(trainer.progress_bar_metrics) == {"val/loss", "val/ppl"}
    (test,) = trainer.test(model, loader, verbose=False)
    assert test == {name.replace("val/", "test/"): value for name, value in val.items()}
