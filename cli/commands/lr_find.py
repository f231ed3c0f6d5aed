"""`lr_find`: Lightning's learning-rate range test, saved as a loss-vs-lr plot.

python main.py lr_find --config configs/gpt_shakespeare_char.yaml --plot lr_find.png
"""

from __future__ import annotations

from pathlib import Path

import lightning as L

from core.files import atomic_path
from core.runs import run_dir


def lr_find(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    min_lr: float = 1e-3,
    max_lr: float = 1.0,
    num_training: int = 100,
    early_stop_threshold: float | None = 4.0,
    plot: str | None = None,
) -> float | None:
    """Sweep the learning rate log-uniformly from min_lr to max_lr over num_training steps
    (Lightning's Tuner), save the loss-vs-lr plot and print the suggested value.

    Args:
        early_stop_threshold: stop when the loss exceeds this many times the best (None: never).
        plot: where the PNG goes; by default lr_find.png in the run's folder.
    """
    from lightning.pytorch.tuner import Tuner

    finder = Tuner(trainer).lr_find(
        model,
        datamodule=datamodule,
        min_lr=min_lr,
        max_lr=max_lr,
        num_training=num_training,
        early_stop_threshold=early_stop_threshold,
        update_attr=False,
    )
    finder.results["loss"] = redebias(finder.results["loss"])
    suggestion = finder.suggestion()
    figure = finder.plot(suggest=suggestion is not None)
    figure.axes[0].set_title(
        f"{type(model).__name__}: suggested lr {suggestion:.3g}" if suggestion else "no suggestion"
    )
    path = Path(plot) if plot else run_dir(trainer) / "lr_find.png"
    with atomic_path(path) as tmp:  # an interrupted run never leaves half a picture
        figure.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    for logger in trainer.loggers:
        if suggestion is not None:
            logger.log_metrics({"lr_find/suggestion": suggestion})
    print(
        f"lr_find: suggested learning rate {suggestion:.4g}"
        if suggestion
        else "lr_find: no suggestion (too few steps?)"
    )
    print(f"lr_find: plot saved to {path}")
    return suggestion


def redebias(losses: list[float], beta: float = 0.98) -> list[float]:
    """Lightning's LR finder (2.x, `_LRCallback`, beta 0.98) debiases its running average of
    the loss with `global_step`, which already counts the step just taken: point i is divided
    by 1 - beta**(i+2) instead of 1 - beta**(i+1), so the first points read far too low (half
    the true loss at the first). Undo that exactly."""
    return [loss * (1 - beta ** (i + 2)) / (1 - beta ** (i + 1)) for i, loss in enumerate(losses)]
