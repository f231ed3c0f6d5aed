"""A progress line every N training steps, for output that is piped or written to a log.

Lightning's progress bar redraws one terminal line; sent to a pipe or a file (`nohup`, `| tee`,
a notebook's captured cell, a batch job's log) it shows little or nothing for minutes. This
callback prints, flushed at once, one line at the first step, every `every_n_steps` steps and
at the last (with the val/loss of the last evaluation, once there is one):

    step 300/2000 (epoch 0) | train/loss 2.4561 | val/loss 2.4732 | 16,525 tokens/s | elapsed 0:00:19 | ETA 0:01:48

Tokens per second count the elements of the batch's first tensor (its token ids, padding
included) for models that read tokens (those with a `vocab_size`); other models count samples
(the batch's first dimension). The rate and the ETA are measured from the end of the first
step of this run, validation time included: the first step (warm-up) and a resumed run's
earlier steps are not counted, and the first line has no ETA yet.
"""

from __future__ import annotations

import math
import sys
import time
from datetime import timedelta
from typing import Literal

import lightning as L
import torch

from core.errors import UserError

Show = Literal["auto", "always", "never"]


class ProgressLog(L.Callback):
    def __init__(self, every_n_steps: int = 50, show: Show = "auto"):
        """
        Args:
            every_n_steps: optimizer steps between two lines (the first and last step print too).
            show: `auto` prints when the output is not a terminal or the progress bar is off
                (`trainer.enable_progress_bar: false`); `always`; `never`.
        """
        if every_n_steps < 1:
            raise UserError(f"progress.every_n_steps must be >= 1, got {every_n_steps}.")
        self.every_n_steps = every_n_steps
        self.show = show
        self.enabled = False
        self.start_time = 0.0
        self.start_step = 0
        self.items = 0  # tokens or samples seen since the first step's end
        self.first_step_end = 0.0
        self.last_printed = -1
        self.total: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        piped = not sys.stdout.isatty()
        no_bar = trainer.progress_bar_callback is None
        wanted = self.show == "always" or (self.show == "auto" and (piped or no_bar))
        self.enabled = wanted and trainer.is_global_zero
        self.start_time = time.perf_counter()
        self.start_step = trainer.global_step
        self.last_printed = -1
        self.total = total_steps(trainer) if self.enabled else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.enabled:
            return
        step, now = trainer.global_step, time.perf_counter()
        first = step == self.start_step + 1 and self.last_printed < step
        if first:
            # The rate is counted from here: the first step's warm-up would skew the ETA.
            self.first_step_end, self.items = now, 0
            items_per_s = count_items(batch, reads_tokens(pl_module)) / (now - self.start_time)
        else:
            self.items += count_items(batch, reads_tokens(pl_module))
            items_per_s = self.items / max(now - self.first_step_end, 1e-9)
        due = first or step % self.every_n_steps == 0 or step == self.total
        if not due or step <= max(self.last_printed, self.start_step):  # accumulated batches
            return  # share a step; the first batches of an accumulation have none yet
        self.last_printed = step
        parts = [f"step {step}/{self.total or '?'} (epoch {trainer.current_epoch})"]
        loss = train_loss(trainer, outputs)
        if loss is not None:
            parts.append(f"train/loss {loss:.4f}")
        if "val/loss" in trainer.callback_metrics:  # of the last evaluation
            parts.append(f"val/loss {float(trainer.callback_metrics['val/loss']):.4f}")
        unit = "tokens/s" if reads_tokens(pl_module) else "samples/s"
        parts += [f"{items_per_s:,.0f} {unit}", f"elapsed {clock(now - self.start_time)}"]
        steps_timed = step - self.start_step - 1
        if self.total and steps_timed > 0:
            seconds_per_step = (now - self.first_step_end) / steps_timed
            parts.append(f"ETA {clock(seconds_per_step * (self.total - step))}")
        print(" | ".join(parts), flush=True)


def reads_tokens(pl_module: L.LightningModule) -> bool:
    return "vocab_size" in getattr(pl_module, "hparams", {})


def count_items(batch, tokens: bool) -> int:
    """Elements (tokens) or the first dimension (samples) of the batch's first tensor."""
    tensor = first_tensor(batch)
    if tensor is None or tensor.dim() == 0:
        return 0
    return tensor.numel() if tokens else tensor.shape[0]


def first_tensor(batch) -> torch.Tensor | None:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):  # (inputs, targets), a PackedSequence, ...
        for value in batch:
            found = first_tensor(value)
            if found is not None:
                return found
    return None


def total_steps(trainer: L.Trainer) -> int | None:
    """The step the run ends at: max_steps, or the steps max_epochs make (None: unknown)."""
    estimate = trainer.estimated_stepping_batches
    return int(estimate) if math.isfinite(estimate) else None


def train_loss(trainer: L.Trainer, outputs) -> float | None:
    """This step's loss, or the last `train/loss` logged (models that step themselves)."""
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if not isinstance(loss, torch.Tensor):
        loss = trainer.callback_metrics.get("train/loss")
    return float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else None


def clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))
