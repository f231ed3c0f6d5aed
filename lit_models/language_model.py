"""What every language model of the suite shares: next-token cross-entropy on a batch of
`input_ids` and `targets` (IGNORE_INDEX where nothing is scored), with the word and character
counts of the targets when the corpus gives them. A subclass provides `forward(input_ids) ->
logits`, the decoding methods and its optimiser; the evaluation loop is TextModel's."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.constants import IGNORE_INDEX
from core.errors import UserError
from lit_models.text_model import EvalStage, TextModel, TokenScores, next_token_nll

__all__ = ["LanguageModel", "check_data_tokenizer", "next_token_nll", "scores_of_targets"]


def scores_of_targets(nll: torch.Tensor, batch: dict[str, torch.Tensor]) -> TokenScores:
    """The NLL of a language-model batch's targets, with their mask and counts."""
    return TokenScores(
        nll, batch["targets"] != IGNORE_INDEX, batch.get("target_words"), batch.get("target_chars")
    )


class LanguageModel(TextModel):
    def token_nll(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-token negative log-likelihood of the targets, shape [B, T] (0 at padding)."""
        return next_token_nll(self(batch["input_ids"]), batch["targets"])

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self(batch["input_ids"])
        return F.cross_entropy(
            logits.flatten(0, 1).float(), batch["targets"].flatten(), ignore_index=IGNORE_INDEX
        )

    def score_tokens(self, batch: dict[str, torch.Tensor], stage: EvalStage) -> TokenScores:
        return scores_of_targets(self.token_nll(batch), batch)

    def predict_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int
    ) -> dict[str, torch.Tensor]:
        """Scores each block: summed NLL and the number of real target tokens."""
        nll = self.token_nll(batch)
        return {"nll": nll.sum(dim=1), "tokens": (batch["targets"] != IGNORE_INDEX).sum(dim=1)}


def check_data_tokenizer(model, expected: str | None, where: str, fix: str) -> None:
    """The data must speak the token ids the model learned: its datamodule's `tokenizer_name`
    against the one the weights came with (`expected`, None when not known). Equal vocabulary
    sizes are not enough: two tokenizers of one size give the same id to other tokens."""
    data = model.trainer.datamodule if model._trainer is not None else None
    used = getattr(data, "tokenizer_name", None)
    if expected and used and used != expected:
        raise UserError(
            f"{where} learned the token ids of the tokenizer {expected!r}, the data is tokenized "
            f"by {used!r}: the same id means another token. {fix}"
        )
