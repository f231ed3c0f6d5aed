"""Callbacks that interrupt a run the hard way, for the tests that a CLI subprocess loads by
class path (`--trainer.callbacks+=tests.interruptions.KillDuringSave`)."""

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
