"""A callback that kills its own process with SIGKILL at a given step: a run that dies with
no chance to save anything (out of memory, a pre-empted machine). In a module of its own,
free of conftest's imports, so that a CLI subprocess can load it by its class path."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
