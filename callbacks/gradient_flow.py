"""Seeing gradients: how large the gradient of each layer is, and how much each step moves it.

Every `every_n_steps` optimizer steps, for each weight of the model (each parameter with a
gradient; biases too with `include_biases`):

    grad/<name>            ||g||, the 2-norm of its gradient (computed in float64: the
                           gradients of a deep sigmoid net underflow float32's squares to 0)
    update_ratio/<name>    ||W_after - W_before|| / ||W_before||, how far the step moved it
                           relative to its size (about 1e-3 is healthy; Karpathy's rule of thumb)

and, as one image, a layer-by-step heatmap of both (log10), saved as
`<run>/gradient_flow/heatmap.png` and logged to loggers that take images (W&B), redrawn at
the end of every training epoch and of the fit.

Every batch:

    grad/global_norm       the norm of all gradients together, taken before clipping
                           (`on_before_optimizer_step` runs before Lightning clips), so a
                           clipped step shows its norm above trainer.gradient_clip_val
    time/step_ms           the wall time of the batch (forward, backward, optimizer step)

Every training epoch: `train/loss_mean`, `train/loss_min`, `train/loss_max` over its batches
(EpochTimer adds the train and validation wall time: `time/train_s`, `time/val_s`).

The per-step scalars go straight to the loggers (`Logger.log_metrics`), so they are written
at their own steps whatever `trainer.log_every_n_steps` is; the values are also kept in
`history` for a script to read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch

from core.errors import UserError
from core.files import atomic_path
from core.runs import run_dir


@dataclass
class GradientHistory:
    """What the callback measured: one row per measured step, one column per layer."""

    layers: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    grad_norms: list[list[float]] = field(default_factory=list)
    update_ratios: list[list[float]] = field(default_factory=list)
    global_norms: list[tuple[int, float]] = field(default_factory=list)  # (step, norm), all steps


class GradientFlow(L.Callback):
    def __init__(self, every_n_steps: int = 50, include_biases: bool = False):
        """
        Args:
            every_n_steps: measure the layers at step 0 and every this many optimizer steps.
            include_biases: also the 1-dimensional parameters (biases, norm gains); by default
                only the weight matrices, one row per layer in the heatmap.
        """
        if every_n_steps < 1:
            raise UserError(f"GradientFlow: every_n_steps must be >= 1, got {every_n_steps}.")
        self.every_n_steps = every_n_steps
        self.include_biases = include_biases
        self.history = GradientHistory()
        self.heatmap_path: Path | None = None
        self._step = 0
        self._batch_start = 0.0
        self._before: dict[str, torch.Tensor] = {}  # weights before the step being measured
        self._drawn = 0  # measured steps already in the heatmap
        self._losses: list[float] = []

    # --- what is measured ------------------------------------------------------------------
    def _layers(self, pl_module: L.LightningModule) -> list[tuple[str, torch.nn.Parameter]]:
        return [
            (name, p)
            for name, p in pl_module.named_parameters()
            if p.requires_grad and (self.include_biases or p.ndim >= 2)
        ]

    def _measures_this_step(self) -> bool:
        return self._step % self.every_n_steps == 0

    # --- hooks ----------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._losses = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step = trainer.global_step
        self._batch_start = time.perf_counter()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        # Lightning calls this after backward and before it clips the gradients.
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        global_norm = float64_norm(grads)
        self.history.global_norms.append((self._step, global_norm))
        metrics = {"grad/global_norm": global_norm}
        if self._measures_this_step():
            layers = self._layers(pl_module)
            if not self.history.layers:
                self.history.layers = [name for name, _ in layers]
            norms = [float64_norm([p.grad]) if p.grad is not None else 0.0 for _, p in layers]
            self.history.steps.append(self._step)
            self.history.grad_norms.append(norms)
            metrics.update({f"grad/{name}": n for (name, _), n in zip(layers, norms, strict=True)})
            self._before = {name: p.detach().clone() for name, p in layers}
        log_metrics(trainer, metrics, self._step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = {"time/step_ms": 1000 * (time.perf_counter() - self._batch_start)}
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._losses.append(loss.detach().float().item())
        if self._before:
            ratios = []
            for name, p in self._layers(pl_module):
                before = self._before[name].double()
                moved = torch.linalg.vector_norm(p.detach().double() - before).item()
                ratios.append(moved / max(torch.linalg.vector_norm(before).item(), 1e-300))
            self.history.update_ratios.append(ratios)
            metrics.update(
                {
                    f"update_ratio/{name}": r
                    for name, r in zip(self.history.layers, ratios, strict=True)
                }
            )
            self._before = {}
        log_metrics(trainer, metrics, self._step)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._losses:
            losses = torch.tensor(self._losses, dtype=torch.float64)
            pl_module.log("train/loss_mean", losses.mean().item())
            pl_module.log("train/loss_min", losses.min().item())
            pl_module.log("train/loss_max", losses.max().item())
        self._draw(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._draw(trainer)

    # --- the heatmap ------------------------------------------------------------------------
    def _draw(self, trainer: L.Trainer) -> None:
        measured = len(self.history.update_ratios)
        if not trainer.is_global_zero or measured == 0 or measured == self._drawn:
            return
        self._drawn = measured
        path = run_dir(trainer) / "gradient_flow" / "heatmap.png"
        save_heatmap(self.history, path, title=f"step {trainer.global_step}")
        self.heatmap_path = path
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):  # W&B's (and any logger that takes images)
                logger.log_image(key="grad/heatmap", images=[str(path)], step=trainer.global_step)


def float64_norm(tensors: list[torch.Tensor]) -> float:
    """The 2-norm of `tensors` together, in float64: float32 squares underflow to 0 below
    about 1e-19, which is where a deep sigmoid net's first layers live."""
    if not tensors:
        return 0.0
    norms = torch.stack([torch.linalg.vector_norm(t.detach().double()) for t in tensors])
    return torch.linalg.vector_norm(norms).item()


def log_metrics(trainer: L.Trainer, metrics: dict[str, float], step: int) -> None:
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=step)


def log10(values: list[list[float]]) -> torch.Tensor:
    """log10 of a [steps, layers] table, a 0 shown as the smallest finite value."""
    table = torch.tensor(values, dtype=torch.float64)
    positive = table[table > 0]
    floor = positive.min().item() if positive.numel() else 1.0
    return table.clamp(min=floor).log10()


def step_ticks(n: int, most: int = 7) -> list[int]:
    """About `most` evenly spaced column indices of `n`, the last one included."""
    stride = max(1, -(-n // most))
    ticks = list(range(0, n, stride))
    if n - 1 - ticks[-1] >= stride / 2:
        ticks.append(n - 1)
    return ticks


def save_heatmap(history: GradientHistory, path: Path, title: str = "") -> None:
    """Two panels, layers down and measured steps across: log10 of the gradient norms and of
    the update-to-weight ratios; written atomically."""
    from matplotlib.figure import Figure  # the Figure API draws off-screen, no pyplot state

    n = len(history.update_ratios)  # steps measured to the end (the last may lack its ratio)
    steps, layers = history.steps[:n], history.layers
    panels = (
        ("log10 gradient norm", log10(history.grad_norms[:n])),
        ("log10 update / weight", log10(history.update_ratios)),
    )
    height = 1.6 + 0.22 * len(layers)
    figure = Figure(figsize=(10, min(height, 12)), layout="constrained")  # room for names
    for column, (label, table) in enumerate(panels):
        ax = figure.add_subplot(1, 2, column + 1)
        image = ax.imshow(
            table.T.numpy(),
            aspect="auto",
            interpolation="nearest",
            cmap="viridis",
            extent=(-0.5, len(steps) - 0.5, len(layers) - 0.5, -0.5),
        )
        ticks = step_ticks(len(steps))
        ax.set_xticks(ticks, [str(steps[i]) for i in ticks])
        ax.set_yticks(range(len(layers)), layers if column == 0 else [""] * len(layers), fontsize=7)
        ax.set_xlabel("step")
        ax.set_title(f"{label}{', ' + title if title else ''}", fontsize=9)
        figure.colorbar(image, ax=ax, fraction=0.046)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=80, format="png")
