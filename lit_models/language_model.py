"""What every language model of the suite shares: next-token cross-entropy, the metrics of
the evaluation pass, and how they are logged. A subclass provides `forward(input_ids) ->
logits` and its optimiser."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from lit_models.metrics import LanguageModelMetrics

IGNORE_INDEX = -100


def next_token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log p(target) at every position: logits [B, T, V], targets [B, T] -> [B, T] (0 at padding)."""
    nll = F.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    )
    return nll.view_as(targets)


class LanguageModel(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.eval_metrics = torch.nn.ModuleDict(
            {"val": LanguageModelMetrics(), "test": LanguageModelMetrics()}
        )

    def token_nll(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-token negative log-likelihood of the targets, shape [B, T] (0 at padding)."""
        return next_token_nll(self(batch["input_ids"]), batch["targets"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["input_ids"])
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(), batch["targets"].flatten(), ignore_index=IGNORE_INDEX
        )
        if self._writes_logs_this_step():
            self.log("train/loss", loss, prog_bar=True)
        return loss

    def _writes_logs_this_step(self) -> bool:
        """Lightning writes step metrics every `log_every_n_steps`; logging the others costs
        ~2 ms a step (a few % of a small model's step on a CPU) for values that are dropped."""
        trainer = self._trainer
        every = trainer.log_every_n_steps if trainer is not None else 0
        return every > 0 and (trainer.global_step == 0 or (trainer.global_step + 1) % every == 0)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int
    ) -> dict[str, torch.Tensor]:
        """Scores each block: summed NLL and the number of real target tokens."""
        nll = self.token_nll(batch)
        return {"nll": nll.sum(dim=1), "tokens": (batch["targets"] != IGNORE_INDEX).sum(dim=1)}

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        nll = self.token_nll(batch)
        mask = batch["targets"] != IGNORE_INDEX
        self.eval_metrics[stage].update(
            nll, mask, batch.get("target_words"), batch.get("target_chars")
        )

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def _log_eval(self, stage: str) -> None:
        metric = self.eval_metrics[stage]
        values = metric.compute()  # summed over DDP ranks by torchmetrics
        for name, value in values.items():
            self.log(f"{stage}/{name}", value, prog_bar=name in ("loss", "ppl"))
        metric.reset()
