"""DPO: direct preference optimization of a causal language model (Rafailov et al. 2023).

The policy is a suite GPT built from `base` (a GPT checkpoint of `fit` or a Hugging Face
model, read as LoRAGPT reads its base), trained whole or, with `lora: true`, through LoRA
adapters (HF peft) only. The reference pi_ref is the policy as it starts, frozen:

- without LoRA, a frozen copy of the base (twice the weights in memory; the copy is not
  saved in checkpoints, it is rebuilt from the base);
- with LoRA, the same model with its adapters switched off (peft's `disable_adapter()`):
  B starts at zero, so base alone is exactly the starting policy, and no copy is held.

Each batch runs chosen and rejected as one concatenated batch through the policy (and once
more, without gradient, through the reference); a response's log-probability is the sum over
its own tokens (prompt and padding masked). The loss is DPO's sigmoid, cDPO (with
`label_smoothing`) or IPO (lit_models/modules/preference.py).

Logged, as train/* and val/* (val/loss is the checkpoints' monitor): loss, reward_acc (share
of pairs whose chosen reward beats the rejected), reward_margin, chosen_reward and
rejected_reward (beta times the policy/reference log-ratio of each response).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import lightning as L
import torch
from torch import nn

from core.checks import require_positive, require_positive_number, require_probability
from core.errors import UserError
from lit_models.gpt import GPT, DecodingWindow
from lit_models.language_model import check_data_tokenizer
from lit_models.lora import ADAPTER_MARK, read_base
from lit_models.lora_targets import Target, check_targets, peft_targets, split_stacked
from lit_models.modules.decoding import evaluating
from lit_models.modules.preference import (
    PreferenceLoss,
    PreferenceOutput,
    preference_loss,
    response_logprobs,
)
from lit_models.optim import adamw_warmup_cosine, check_warmup_cosine

REFERENCE = "reference."  # the frozen copy's keys in the state dict (never saved)


class DPO(L.LightningModule):
    def __init__(
        self,
        base: str | None = None,
        beta: float = 0.1,
        loss_type: PreferenceLoss = "sigmoid",
        label_smoothing: float = 0.0,
        lora: bool = False,
        rank: int = 8,
        alpha: float = 16.0,
        lora_dropout: float = 0.0,
        target_modules: list[Target] | None = None,
        learning_rate: float = 1e-4,
        min_learning_rate: float = 1e-5,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup_steps: int = 10,
        lr_decay_steps: int | None = None,
        vocab_size: int | None = None,
        block_size: int | None = None,
        base_sha256: str | None = None,
    ):
        """
        Args:
            base: the model to tune: a GPT checkpoint of `python main.py fit` (.ckpt) or a
                Hugging Face model (folder or cached hub id), as LoRAGPT's `base`.
            beta: the strength of the pull toward the reference (DPO's beta; IPO's tau).
            loss_type: `sigmoid` (DPO; cDPO with label_smoothing > 0) or `ipo`.
            label_smoothing: cDPO's eps, the assumed chance that a pair's label is wrong.
            lora: train LoRA adapters (rank, alpha, lora_dropout, target_modules as in
                LoRAGPT) instead of every weight; the reference is then the adapters off.
            vocab_size, block_size: set by the datamodule (linked by the CLI), checked
                against the base.
            base_sha256: set automatically; a checkpoint then loads only with that base.
        """
        super().__init__()
        require_positive_number("model", beta=beta)
        if not 0.0 <= label_smoothing < 0.5:
            raise UserError(
                f"model.init_args.label_smoothing must be in [0, 0.5), got {label_smoothing}."
            )
        if loss_type == "ipo" and label_smoothing:
            raise UserError(
                "model.init_args.label_smoothing applies to loss_type sigmoid (cDPO) only."
            )
        require_positive("model", rank=rank)
        require_positive_number("model", alpha=alpha)
        require_probability("model", lora_dropout=lora_dropout)
        check_warmup_cosine(
            learning_rate, min_learning_rate, weight_decay, betas, warmup_steps, lr_decay_steps
        )
        adapted = read_base(base, vocab_size, block_size)
        if base_sha256 and base_sha256 != adapted.sha256:
            raise UserError(
                f"model.init_args.base {base} has changed since this DPO run started (sha256 "
                f"{adapted.sha256[:12]}, expected {base_sha256[:12]}). Use the base it was "
                "trained from."
            )
        targets = list(dict.fromkeys(target_modules or ["in_proj", "out_proj"]))
        self.save_hyperparameters()
        self.hparams.target_modules = targets
        self.hparams.base_sha256 = adapted.sha256
        self.base_tokenizer = adapted.tokenizer
        gpt = adapted.gpt
        for module in gpt.modules():  # policy and reference must score alike: no dropout
            if isinstance(module, nn.Dropout):
                module.p = 0.0
        self.block_size = gpt.block_size
        if lora:
            from peft import LoraConfig, get_peft_model

            check_targets(targets, gpt)
            split_stacked(gpt, targets)
            config = LoraConfig(
                r=rank,
                lora_alpha=alpha,
                lora_dropout=lora_dropout,
                target_modules=peft_targets(targets, gpt),
                bias="none",
            )
            self.policy = get_peft_model(gpt, config)  # freezes the base, adds A and B
            self.reference = None
        else:
            self.policy = gpt
            # Frozen by requires_grad; its mode follows the policy's (no dropout left in either)
            self.reference = copy.deepcopy(gpt).requires_grad_(False)

    # --- the two models ----------------------------------------------------------------------
    @property
    def gpt(self) -> GPT:
        """The policy's GPT (with the adapters inside its projections, under LoRA)."""
        return self.policy.base_model.model if self.hparams.lora else self.policy

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.policy(input_ids)

    @contextmanager
    def reference_model(self) -> Iterator[nn.Module]:
        """The reference, to call without gradient: the frozen copy, or the policy with its
        adapters switched off for the duration."""
        if self.reference is not None:
            yield self.reference
        else:
            with self.policy.disable_adapter():
                yield self.policy

    def sequence_logprobs(
        self, input_ids: torch.Tensor, targets: torch.Tensor, reference: bool = False
    ) -> torch.Tensor:
        """Summed log-probability of each row's scored targets under the policy (or the
        reference, without gradient)."""
        if not reference:
            return response_logprobs(self.policy(input_ids), targets)
        with torch.no_grad(), self.reference_model() as model:
            return response_logprobs(model(input_ids), targets)

    # --- the loss ----------------------------------------------------------------------------
    def preference_step(self, batch: dict[str, torch.Tensor]) -> PreferenceOutput:
        """Chosen and rejected as one batch through policy and reference; the loss per pair."""
        input_ids = torch.cat([batch["chosen_input_ids"], batch["rejected_input_ids"]])
        targets = torch.cat([batch["chosen_targets"], batch["rejected_targets"]])
        n = batch["chosen_input_ids"].size(0)
        policy = self.sequence_logprobs(input_ids, targets)
        reference = self.sequence_logprobs(input_ids, targets, reference=True)
        hp = self.hparams
        return preference_loss(
            policy[:n],
            policy[n:],
            reference[:n],
            reference[n:],
            beta=hp.beta,
            loss_type=hp.loss_type,
            label_smoothing=hp.label_smoothing,
        )

    def _log_step(self, stage: str, out: PreferenceOutput) -> torch.Tensor:
        loss = out.losses.mean()
        margin = out.chosen_rewards - out.rejected_rewards
        values = {
            "loss": loss,
            "reward_acc": (margin > 0).float().mean(),
            "reward_margin": margin.mean(),
            "chosen_reward": out.chosen_rewards.mean(),
            "rejected_reward": out.rejected_rewards.mean(),
        }
        on_epoch = stage != "train"  # evaluation: the mean over the whole split
        for name, value in values.items():
            self.log(
                f"{stage}/{name}",
                value,
                batch_size=len(margin),
                on_step=not on_epoch,
                on_epoch=on_epoch,
                prog_bar=name in ("loss", "reward_acc"),
                sync_dist=on_epoch,
            )
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._log_step("train", self.preference_step(batch))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._log_step("val", self.preference_step(batch))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._log_step("test", self.preference_step(batch))

    def configure_optimizers(self):
        return adamw_warmup_cosine(self)

    def setup(self, stage: str) -> None:
        fix = (
            "Tokenize the pairs with the base's tokenizer (data.init_args.tokenizer: pretrained, "
            "data.init_args.pretrained_tokenizer: the base's folder)."
            if self.base_tokenizer and self.base_tokenizer.startswith("pretrained:")
            else "Tokenize the pairs with the tokenizer the base was trained with."
        )
        check_data_tokenizer(
            self, self.base_tokenizer, f"model.init_args.base {self.hparams.base}", fix
        )

    # --- decoding: the policy's (lit_models/modules/decoding.py) ------------------------------
    def decoding_mode(self) -> AbstractContextManager[None]:
        return evaluating(self)

    def start_decoding(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, DecodingWindow]:
        return self.gpt.start_decoding(input_ids, attention_mask)

    def continue_decoding(
        self, state: DecodingWindow, next_ids: torch.Tensor
    ) -> tuple[torch.Tensor, DecodingWindow]:
        return self.gpt.continue_decoding(state, next_ids)

    def reorder_decoding_state(self, state: DecodingWindow, rows: torch.Tensor) -> DecodingWindow:
        return self.gpt.reorder_decoding_state(state, rows)

    # --- checkpoints: the policy, never the reference -----------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        keep = (
            (lambda k: ADAPTER_MARK in k)
            if self.hparams.lora
            else (lambda k: not k.startswith(REFERENCE))
        )
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if keep(k)}
        checkpoint["dpo_base"] = {"base": self.hparams.base, "sha256": self.hparams.base_sha256}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """A checkpoint without the reference (or, under LoRA, the adapters only) completes
        itself with the weights rebuilt from the base, so strict loading works unchanged."""
        return super().load_state_dict({**self.state_dict(), **state_dict}, strict, assign)
