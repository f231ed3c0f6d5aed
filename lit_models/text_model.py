"""What every text model of the suite shares, the language models and the translators alike:
the training step's `train/loss`, the evaluation pass (loss, perplexity and, where the data
counts them, word-level perplexity and bits per character; see lit_models/metrics.py) and how
it is logged, and the mode in which a model decodes.

A subclass says what is particular to it through a few hooks:

    training_loss(batch) -> loss                  the loss the optimiser follows
    score_tokens(batch, stage) -> TokenScores     per-token NLL of the targets and their mask
    update_extra_metrics(batch, stage)            more metrics of a batch (a translator's BLEU);
                                                  returns what validation/test_step return
    log_extra_metrics(stage)                      logs and resets them at the epoch's end
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from core.constants import IGNORE_INDEX
from lit_models.metrics import LanguageModelMetrics
from lit_models.modules.decoding import evaluating

EvalStage = Literal["val", "test"]
EVAL_STAGES: tuple[EvalStage, ...] = ("val", "test")
PROGRESS_BAR_METRICS = ("loss", "ppl")  # of the evaluation metrics, those shown on the bar


def next_token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log p(target) at every position: logits [B, T, V], targets [B, T] -> [B, T] (0 at
    targets equal to IGNORE_INDEX)."""
    nll = F.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    )
    return nll.view_as(targets)


@dataclass(frozen=True)
class TokenScores:
    """What the evaluation pass reads of one batch."""

    nll: torch.Tensor  # [B, T] -log p(target); whatever it holds at padding is left out
    mask: torch.Tensor  # [B, T] True at the real targets
    words: torch.Tensor | None = None  # [B, T] words each target completes (word-level ppl)
    chars: torch.Tensor | None = None  # [B, T] characters of each target (bits per character)


class TextModel(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.eval_metrics = nn.ModuleDict({stage: LanguageModelMetrics() for stage in EVAL_STAGES})

    # --- what a subclass provides ------------------------------------------------------------

    def training_loss(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def score_tokens(self, batch: dict, stage: EvalStage) -> TokenScores:
        raise NotImplementedError

    def update_extra_metrics(self, batch: dict, stage: EvalStage) -> dict | None:
        """Metrics beyond the NLL's, updated with one batch; returns what validation_step and
        test_step return (callbacks see it as their `outputs`)."""
        return None

    def log_extra_metrics(self, stage: EvalStage) -> None:
        """Log (as `{stage}/{name}`) and reset the metrics of update_extra_metrics."""

    # --- training ----------------------------------------------------------------------------

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(batch)
        if self._writes_logs_this_step():
            self.log("train/loss", loss, prog_bar=True)
        return loss

    def _writes_logs_this_step(self) -> bool:
        """Lightning writes step metrics every `log_every_n_steps`; logging the others costs
        ~2 ms a step (a few % of a small model's step on a CPU) for values that are dropped."""
        trainer = self._trainer
        every = trainer.log_every_n_steps if trainer is not None else 0
        return every > 0 and (trainer.global_step == 0 or (trainer.global_step + 1) % every == 0)

    # --- evaluation --------------------------------------------------------------------------

    def validation_step(self, batch: dict, batch_idx: int) -> dict | None:
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict | None:
        return self._evaluate(batch, "test")

    def _evaluate(self, batch: dict, stage: EvalStage) -> dict | None:
        scores = self.score_tokens(batch, stage)
        self.eval_metrics[stage].update(scores.nll, scores.mask, scores.words, scores.chars)
        return self.update_extra_metrics(batch, stage)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def _log_eval(self, stage: EvalStage) -> None:
        metric = self.eval_metrics[stage]
        values = metric.compute()  # summed over DDP ranks by torchmetrics
        for name, value in values.items():
            self.log(f"{stage}/{name}", value, prog_bar=name in PROGRESS_BAR_METRICS)
        metric.reset()
        self.log_extra_metrics(stage)

    # --- decoding ----------------------------------------------------------------------------

    def decoding_mode(self) -> AbstractContextManager[None]:
        """Eval mode and inference mode while decoding; the mode is restored after (the
        `Decodable` protocol of lit_models/modules/decoding.py)."""
        return evaluating(self)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
