"""An optuna trial's view of a run: each validation reports the metric, and an unpromising
trial stops (optuna-integration's Lightning pruning callback)."""

from __future__ import annotations

from typing import Literal

from optuna_integration import PyTorchLightningPruningCallback


class TrialPruning(PyTorchLightningPruningCallback):
    """optuna-integration's callback, reporting at the global step rather than the epoch: the
    suite's step-based runs validate every N steps inside one epoch, where the epoch would
    report step 0 again and again and never prune. It also keeps the trial's best value
    (the trial's result, as the best checkpoint keeps the best weights)."""

    def __init__(
        self,
        trial,
        monitor: str,
        direction: Literal["minimize", "maximize"] = "minimize",
        prune: bool = True,
    ):
        super().__init__(trial, monitor)
        self.direction = direction
        self.prune = prune
        self.best: float | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        score = trainer.callback_metrics.get(self.monitor)
        if score is None:
            return
        value = float(score)
        better = min if self.direction == "minimize" else max
        self.best = value if self.best is None else better(self.best, value)
        if self.is_ddp_backend:  # the integration's own path: reports per epoch, all ranks
            if self.prune:
                super().on_validation_end(trainer, pl_module)
            return
        self._trial.report(value, step=trainer.global_step)
        if self.prune and self._trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"pruned at step {trainer.global_step}")
