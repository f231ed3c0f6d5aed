"""Every run ends with a usable checkpoint, however it ends.

- A short run (`max_steps` or `max_epochs` reached between two evaluations, `limit_*`) is
  validated at its last step, so the checkpoints that follow a validation (`last.ckpt`, the
  best) are written, whatever `val_check_interval` says.
- Stopped by SIGTERM (a scheduler, `kill`) or Ctrl+C (SIGINT): the step under way finishes,
  `last.ckpt` is written (resume with `fit --ckpt_path`), and the run exits non-zero with a
  line saying where the checkpoint is. A second Ctrl+C interrupts at once.
- Early stopping never fails for its metric before any validation has computed it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.utilities.exceptions import SIGTERMException

# The exit status of a run stopped by a signal: the shell's 128 + the signal's number.
INTERRUPTED_STATUS = {signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGINT: 128 + signal.SIGINT}


class CheckpointAtEnd(L.Callback):
    def __init__(self, filename: str = "last"):
        """
        Args:
            filename: the checkpoint an interrupted run writes in its checkpoints folder
                (`last`, the one `fit --ckpt_path` resumes from).
        """
        self.filename = filename
        self.signum: int | None = None
        self._previous_sigint = None

    # --- a short run validates at its last step -------------------------------------------

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if is_last_step(trainer, batch_idx) and trainer.enable_validation:
            # Lightning validates at the step where `should_stop` is set (as for early
            # stopping), and the run was ending at this step anyway.
            trainer.should_stop = True

    # --- SIGINT and SIGTERM: finish the step, save, exit non-zero ---------------------------

    def on_train_start(self, trainer, pl_module) -> None:
        # Here, after Lightning has noted the handlers to put back at the end of the run.
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore_sigint()

    def _on_sigint(self, signum, frame) -> None:
        # The first Ctrl+C becomes a SIGTERM, which Lightning turns into a stop at the end of
        # the step (on every process); the second is Python's KeyboardInterrupt.
        self.signum = signal.SIGINT
        self._restore_sigint()
        os.kill(os.getpid(), signal.SIGTERM)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore_sigint()
        if not isinstance(exception, SIGTERMException):
            return  # a second Ctrl+C (KeyboardInterrupt) stops mid-step: nothing is saved
        signum = self.signum or signal.SIGTERM
        path = self.checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            name = signal.Signals(signum).name
            print(
                f"stopped by {name} at step {trainer.global_step}: checkpoint saved to {path} "
                f"(resume with `fit --ckpt_path {path}`).",
                file=sys.stderr,
            )
        exception.code = INTERRUPTED_STATUS[signum]  # Lightning re-raises it: exit non-zero

    def checkpoint_path(self, trainer) -> Path:
        folder = next(
            (c.dirpath for c in trainer.checkpoint_callbacks if getattr(c, "dirpath", None)),
            None,
        )
        folder = Path(folder) if folder else Path(trainer.default_root_dir) / "checkpoints"
        return folder / f"{self.filename}.ckpt"

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None


def is_last_step(trainer, batch_idx: int) -> bool:
    """Whether the optimizer step just taken is the run's last (max_steps, or the last batch
    of the last epoch)."""
    if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
        return True
    last_epoch = (
        trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
    )
    return last_epoch and batch_idx + 1 >= trainer.num_training_batches


class EarlyStopping(LightningEarlyStopping):
    """Lightning's EarlyStopping, except that a check before any validation has logged its
    metric (a run stopped by max_steps within its first epoch) is skipped instead of failing;
    a metric that validation never logs is still an error naming it."""

    validated = False

    def on_validation_end(self, trainer, pl_module) -> None:
        self.validated = self.validated or not trainer.sanity_checking
        super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.validated or self.monitor in trainer.callback_metrics:
            super().on_train_epoch_end(trainer, pl_module)
