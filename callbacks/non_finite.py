"""Stop a run at the first step whose training loss or gradients are NaN or infinite, or at
the first validation whose loss is (finite gradients times a huge learning rate can overflow
the weights without a NaN gradient; the next loss, or the validation, shows it).

Without it a diverged run trains on NaN to its last step (or early stopping ends it quietly),
exits 0, and writes checkpoints of NaN weights. Here every training step is checked before
the validation and the checkpoints that may follow it, so the run ends with one message (the
step, the value, what usually causes it) and the checkpoints on disk keep the last finite
state."""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from core.errors import UserError

CAUSES = (
    "usually a learning rate too high for this model (model.init_args.learning_rate), "
    "no gradient clipping (trainer.gradient_clip_val), or 16-bit precision overflowing "
    "(trainer.precision: 32-true or bf16-mixed)"
)


class NonFiniteError(UserError):
    """The training loss or the gradients stopped being finite numbers."""


class StopOnNonFinite(L.Callback):
    def __init__(self, check_gradients: bool = True, max_skipped_steps: int = 0):
        """
        Args:
            check_gradients: also check the gradients before each optimizer step (a NaN there
                would otherwise reach the weights before the loss shows it). 16-mixed
                precision skips this check: its gradient scaler skips such steps by design.
            max_skipped_steps: how many steps with NaN or inf gradients (or loss) to skip,
                over the whole run, before stopping, as large-scale trainers do for a rare bad
                batch: a skipped step leaves the weights and the optimizer's moments as they
                were (the learning-rate schedule goes on). 0: stop at the first.
        """
        if max_skipped_steps < 0:
            raise UserError(f"non_finite.max_skipped_steps must be >= 0, got {max_skipped_steps}.")
        if max_skipped_steps and not check_gradients:
            raise UserError(
                "non_finite.max_skipped_steps needs non_finite.check_gradients: true (a step is "
                "skipped when its gradients are found NaN or inf, before the optimizer uses them)."
            )
        self.check_gradients = check_gradients
        self.max_skipped_steps = max_skipped_steps
        self.skipped_steps = 0
        self.skipping = False  # the step under way is skipped

    def state_dict(self) -> dict:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped_steps = state_dict.get("skipped_steps", 0)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.check_gradients or str(trainer.precision).startswith("16"):
            return
        params = [p for p in pl_module.parameters() if p.grad is not None]
        norm = total_norm(p.grad for p in params)
        if math.isfinite(norm):
            return
        step = trainer.global_step + 1
        if self.skipped_steps < self.max_skipped_steps:
            self.skipped_steps += 1
            self.skipping = True
            for p in params:
                p.grad = None  # the optimizer leaves a weight without a gradient untouched
            rank_zero_warn(
                f"step {step}: the gradients are not finite (norm {norm}); step skipped "
                f"({self.skipped_steps} of at most {self.max_skipped_steps})."
            )
            return
        skipped = f" after {self.skipped_steps} skipped steps" if self.skipped_steps else ""
        raise NonFiniteError(
            f"the gradients are not finite at step {step} (norm {norm}){skipped}; the run "
            f"stops before they reach the weights: {CAUSES}."
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        skipped, self.skipping = self.skipping, False
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if skipped or not isinstance(loss, torch.Tensor):
            return
        value = loss.detach().float().sum().item()
        if not math.isfinite(value):
            raise NonFiniteError(
                f"the training loss is {value} at step {trainer.global_step}; the run stops "
                f"here: {CAUSES}."
            )

    def on_validation_end(self, trainer, pl_module) -> None:
        # Runs before the checkpoints (Lightning calls ModelCheckpoint last): weights whose
        # validation loss is NaN never become best-...ckpt or last.ckpt.
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        for name, value in trainer.callback_metrics.items():
            # Losses only: a perplexity (exp of a large but finite loss) may overflow honestly.
            if (
                name.startswith("val/")
                and name.endswith("loss")
                and not math.isfinite(float(value))
            ):
                raise NonFiniteError(
                    f"{name} is {float(value)} after step {trainer.global_step}; the run stops "
                    f"before it is checkpointed: {CAUSES}."
                )


def total_norm(tensors) -> float:
    """The 2-norm of all `tensors` together (sparse ones by their values); 0 for none."""
    values = [t.coalesce().values() if t.is_sparse else t for t in tensors]
    if not values:
        return 0.0
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(values)).float()).item()
