"""Language-model metrics from one pass of summed negative log-likelihoods.

    loss     = NLL / tokens              (nats per token)
    ppl      = exp(loss)
    word_ppl = exp(NLL / words)          comparable with word-level WikiText results
    bpc      = NLL / (chars * ln 2)      bits per character

Sums, not means, are kept so that DDP ranks and uneven batches add up exactly.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric


class LanguageModelMetrics(Metric):
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("nll", "tokens", "words", "chars"):
            self.add_state(
                name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
            )

    def update(
        self,
        nll: torch.Tensor,
        mask: torch.Tensor,
        words: torch.Tensor | None = None,
        chars: torch.Tensor | None = None,
    ) -> None:
        """`nll` per target token, `mask` True at real targets, `words`/`chars` per target token."""
        zero = torch.zeros((), dtype=nll.dtype, device=nll.device)
        self.nll += (
            torch.where(mask, nll, zero).sum().double()
        )  # where, not *: NaN at padding stays out
        self.tokens += mask.sum().double()
        if words is not None:
            self.words += words[mask].sum().double()
        if chars is not None:
            self.chars += chars[mask].sum().double()

    def compute(self) -> dict[str, torch.Tensor]:
        loss = self.nll / self.tokens
        out = {"loss": loss, "ppl": torch.exp(loss)}
        if self.words > 0:
            out["word_ppl"] = torch.exp(self.nll / self.words)
        if self.chars > 0:
            out["bpc"] = self.nll / (self.chars * math.log(2))
        return {k: v.float() for k, v in out.items()}
