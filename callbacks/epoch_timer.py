"""Seconds per epoch, logged as `time/epoch_s`: the training epoch and the validation at its
end, wall clock, the figure pytorch/examples prints at the end of each epoch."""

from __future__ import annotations

import time

import lightning as L


class EpochTimer(L.Callback):
    def __init__(self):
        self.start: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs the end-of-epoch validation before this hook, so it is counted.
        if self.start is not None:
            pl_module.log("time/epoch_s", time.perf_counter() - self.start)
