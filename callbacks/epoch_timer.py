"""Seconds per epoch, wall clock: `time/epoch_s`, the training epoch and the validation at its
end, the figure pytorch/examples prints at the end of each epoch; and the two apart,
`time/train_s` (the epoch without its validations) and `time/val_s` (the validations run
during it; the sanity check before the first epoch is not counted)."""

from __future__ import annotations

import time

import lightning as L


class EpochTimer(L.Callback):
    def __init__(self):
        self.start: float | None = None
        self.val_start: float | None = None
        self.val_seconds = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()
        self.val_seconds = 0.0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.val_start = None if trainer.sanity_checking else time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.val_start is not None and trainer.state.fn == "fit":
            self.val_seconds += time.perf_counter() - self.val_start
        self.val_start = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs the end-of-epoch validation before this hook, so it is counted.
        if self.start is not None:
            epoch = time.perf_counter() - self.start
            pl_module.log("time/epoch_s", epoch)
            pl_module.log("time/train_s", epoch - self.val_seconds)
            pl_module.log("time/val_s", self.val_seconds)
