"""What a classifier gets wrong, at the end of every validation and test: a confusion matrix
(drawn with matplotlib, logged to W&B and saved as a PNG under <run>/classification_report/)
and a W&B table of misclassified examples (text, true label, predicted label, confidence),
the most confident mistakes first."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from core.errors import UserError
from core.files import atomic_path
from core.runs import run_dir

COLUMNS = ["text", "true", "predicted", "confidence"]


class ClassificationReport(L.Callback):
    def __init__(self, max_misclassified: int = 100):
        """
        Args:
            max_misclassified: rows of the table of mistakes (the most confident ones).
        """
        if max_misclassified < 0:
            raise UserError("ClassificationReport: max_misclassified must be >= 0")
        self.max_misclassified = max_misclassified
        self._reset()

    def _reset(self) -> None:
        self.preds, self.labels, self.confidence, self.texts = [], [], [], []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not hasattr(trainer.datamodule, "label_names"):
            raise UserError(
                f"callbacks.ClassificationReport needs a classification datamodule (with "
                f"label_names), not {type(trainer.datamodule).__name__}"
            )

    # --- collecting the predictions ---------------------------------------------------------
    def _collect(self, outputs, batch) -> None:
        if not isinstance(outputs, dict) or "preds" not in outputs:
            return
        probs = outputs["probs"].detach().float().cpu()
        self.preds.append(outputs["preds"].detach().cpu())
        self.labels.append(outputs["labels"].detach().cpu())
        self.confidence.append(probs.max(-1).values)
        self.texts += list(batch.get("texts") or [""] * len(probs))

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._reset()

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._reset()

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        self._collect(outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._collect(outputs, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._report(trainer, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer, "test")

    # --- the report -----------------------------------------------------------------------
    def _report(self, trainer: L.Trainer, stage: str) -> None:
        if not trainer.is_global_zero or not self.preds:
            return
        names = list(trainer.datamodule.label_names)
        preds, labels = torch.cat(self.preds), torch.cat(self.labels)
        confidence = torch.cat(self.confidence)
        matrix = confusion_matrix(preds, labels, len(names))
        step = trainer.global_step
        path = run_dir(trainer) / "classification_report" / f"{stage}-step{step:07d}.png"
        save_confusion_matrix(matrix, names, path, title=f"{stage}, step {step}")
        wrong = (preds != labels).nonzero().flatten()
        wrong = wrong[confidence[wrong].argsort(descending=True)][: self.max_misclassified]
        rows = [
            [self.texts[i], names[labels[i]], names[preds[i]], round(float(confidence[i]), 4)]
            for i in wrong.tolist()
        ]
        rank_zero_info(
            f"[{stage} step {step}] confusion matrix (rows true, columns predicted, "
            f"{', '.join(names)}):\n{matrix.tolist()}  -> {path}"
        )
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=f"{stage}/confusion_matrix", images=[str(path)], step=step)
                logger.log_table(
                    key=f"{stage}/misclassified", columns=COLUMNS, data=rows, step=step
                )
        self.last_rows, self.last_matrix, self.last_path = rows, matrix, path


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts [true, predicted]."""
    return torch.bincount(labels * num_classes + preds, minlength=num_classes**2).view(
        num_classes, num_classes
    )


def save_confusion_matrix(
    matrix: torch.Tensor, names: list[str], path: Path, title: str = ""
) -> None:
    """The matrix as an annotated heatmap, written atomically."""
    from matplotlib.figure import Figure  # the Figure API draws off-screen, no pyplot state

    counts = matrix.cpu().numpy()
    figure = Figure(figsize=(1.6 + 1.1 * len(names), 1.2 + 1.0 * len(names)))
    ax = figure.add_subplot()
    image = ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for (row, col), count in zip(
        ((r, c) for r in range(len(names)) for c in range(len(names))), counts.ravel(), strict=True
    ):
        dark = count > counts.max() / 2
        ax.text(col, row, str(count), ha="center", va="center", color="white" if dark else "black")
    figure.colorbar(image, ax=ax, fraction=0.046)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
