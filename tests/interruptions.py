"""Callbacks that kill their own process with SIGKILL: a run that dies with no chance to save
anything (out of memory, a pre-empted machine, kill -9). In a module of its own, free of
conftest's imports, so that a CLI subprocess can load them by class path
(`--trainer.callbacks+=tests.interruptions.KillAtStep`)."""

from __future__ import annotations

import io
import os
import signal

import lightning as L
import torch


class KillDuringSave(L.Callback):
    """At the first checkpoint save from step `at_step` on, write half of the file, then
    die with SIGKILL, as a kill -9 (or an out-of-memory kill) in the middle of a save does."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.global_step < self.at_step:
            return
        save = torch.save

        def save_half_then_die(obj, f, *args, **kwargs):
            buffer = io.BytesIO()
            save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            if hasattr(f, "write"):
                f.write(data[: len(data) // 2])
                f.flush()
            else:
                with open(f, "wb") as out:
                    out.write(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)

        torch.save = save_half_then_die


class KillAtStep(L.Callback):
    """Before training step `step` (a step after the last checkpoint, so its work is lost)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAtStep(L.Callback):
    """Sends its own process `signum` (15 SIGTERM, as a scheduler does; 2 SIGINT, Ctrl+C)
    before training step `step`."""

    def __init__(self, step: int, signum: int = signal.SIGTERM):
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)
