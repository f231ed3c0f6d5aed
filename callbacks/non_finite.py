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

from core.errors import UserError

CAUSES = (
    "usually a learning rate too high for this model (model.init_args.learning_rate), "
    "no gradient clipping (trainer.gradient_clip_val), or 16-bit precision overflowing "
    "(trainer.precision: 32-true or bf16-mixed)"
)


class NonFiniteError(UserError):
    """The training loss or the gradients stopped being finite numbers."""


class StopOnNonFinite(L.Callback):
    def __init__(self, check_gradients: bool = True):
        """
        Args:
            check_gradients: also check the gradients before each optimizer step (a NaN there
                would otherwise reach the weights before the loss shows it). 16-mixed
                precision skips this check: its gradient scaler skips such steps by design.
        """
        self.check_gradients = check_gradients

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.check_gradients or str(trainer.precision).startswith("16"):
            return
        norm = total_norm(p.grad for p in pl_module.parameters() if p.grad is not None)
        if not math.isfinite(norm):
            raise NonFiniteError(
                f"the gradients are not finite at step {trainer.global_step + 1} (norm {norm}); "
                f"the run stops before they reach the weights: {CAUSES}."
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
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
