"""A progress line every N training steps, for output that is piped or written to a log.

Lightning's progress bar redraws one terminal line; sent to a pipe or a file (`nohup`, `| tee`,
a notebook's captured cell, a batch job's log) it shows little or nothing for minutes. This
callback prints, flushed at once, one line at the first step, every `every_n_steps` steps and
at the last:

    step 250/2000 (epoch 0) | train/loss 2.4561 | 16,525 tokens/s | elapsed 0:00:15 | ETA 0:01:45

Tokens per second count the elements of the batch's first tensor (its token ids, padding
included) for models that read tokens (those with a `vocab_size`); other models count samples
(the batch's first dimension). The rate and the ETA are measured from the first step of this
run (a resumed run's earlier steps are not counted), validation time included.
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
        self.items = 0  # tokens or samples seen since the start
        self.last_printed = -1
        self.total: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        piped = not sys.stdout.isatty()
        no_bar = trainer.progress_bar_callback is None
        wanted = self.show == "always" or (self.show == "auto" and (piped or no_bar))
        self.enabled = wanted and trainer.is_global_zero
        self.start_time = time.perf_counter()
        self.start_step = trainer.global_step
        self.items = 0
        self.last_printed = -1
        self.total = total_steps(trainer) if self.enabled else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.enabled:
            return
        self.items += count_items(batch, reads_tokens(pl_module))
        step = trainer.global_step
        due = step == self.start_step + 1 or step % self.every_n_steps == 0 or step == self.total
        if not due or step <= max(self.last_printed, self.start_step):  # accumulated batches
            return  # share a step; the first batches of an accumulation have none yet
        self.last_printed = step
        print(self.line(trainer, pl_module, outputs, step, self.total), flush=True)

    def line(self, trainer, pl_module, outputs, step: int, total: int | None) -> str:
        elapsed = time.perf_counter() - self.start_time
        unit = "tokens/s" if reads_tokens(pl_module) else "samples/s"
        parts = [f"step {step}/{total or '?'} (epoch {trainer.current_epoch})"]
        loss = train_loss(trainer, outputs)
        if loss is not None:
            parts.append(f"train/loss {loss:.4f}")
        parts.append(f"{self.items / max(elapsed, 1e-9):,.0f} {unit}")
        parts.append(f"elapsed {clock(elapsed)}")
        done = step - self.start_step
        if total and done > 0:
            parts.append(f"ETA {clock(elapsed / done * (total - step))}")
        return " | ".join(parts)


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
