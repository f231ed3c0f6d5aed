"""Read what a translator writes while it trains: at every validation, translate a few fixed
validation sentences, print source / reference / hypothesis, log them to W&B as a table and,
for models with attention, draw where each target token looked in the source (a heatmap per
sentence, logged to W&B and saved as PNG beside the run's checkpoints)."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from core.errors import UserError
from core.files import atomic_path
from core.runs import run_dir

COLUMNS = ["step", "source", "reference", "hypothesis"]
SPECIAL_TOKENS = {0: "<pad>", 1: "<bos>", 2: "<eos>", 3: "<unk>"}  # fixed by the data contract
# Matplotlib falls back along this list glyph by glyph, so Chinese tokens draw where a CJK font
# is installed (fonts-noto-cjk, fonts-wqy-microhei) and as boxes elsewhere.
FONTS = ["DejaVu Sans", "Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Micro Hei", "SimHei"]


class TranslationSamples(L.Callback):
    def __init__(self, n_samples: int = 4, num_beams: int = 1, every_n_evals: int = 1):
        """
        Args:
            n_samples: sentences translated at each validation: the first of the first
                validation batch, the same ones every time so the rows show the model learning.
            num_beams: 1 is greedy decoding, more is beam search.
            every_n_evals: translate at every n-th validation only.
        """
        if n_samples < 1 or num_beams < 1 or every_n_evals < 1:
            raise UserError(
                "TranslationSamples: n_samples, num_beams and every_n_evals must be >= 1"
            )
        self.n_samples, self.num_beams, self.every_n_evals = n_samples, num_beams, every_n_evals
        self.samples: list[tuple[list[int], str, str]] = []  # (source ids, source, reference)
        self.evals = 0
        self.rows: list[list] = []  # every row so far: W&B shows the table as it grows

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # The wrong pairing should stop the run now, not at the first validation.
        if not hasattr(pl_module, "translate_ids") or not hasattr(trainer.datamodule, "decode"):
            raise UserError(
                f"callbacks.TranslationSamples needs a translator and a translation corpus, not "
                f"{type(pl_module).__name__} on {type(trainer.datamodule).__name__}"
            )

    def on_validation_batch_start(
        self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        # The validation loader is not shuffled: its first batch is the same at every pass.
        if self.samples or batch_idx != 0 or dataloader_idx != 0:
            return
        pad_id = pl_module.hparams.get("pad_id", 0)
        for i in range(min(self.n_samples, len(batch["source_text"]))):
            row = batch["source"][i]
            ids = row[row != pad_id].tolist()  # what validation reads: ids + <eos>
            self.samples.append((ids, batch["source_text"][i], batch["target_text"][i]))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not self.samples:
            return
        self.evals += 1
        if self.evals % self.every_n_evals:
            return
        codec, step = trainer.datamodule, trainer.global_step
        sources = [ids for ids, _, _ in self.samples]
        hypotheses = pl_module.translate_ids(sources, num_beams=self.num_beams)
        new_rows = []
        for (_, source, reference), hypothesis in zip(self.samples, hypotheses, strict=True):
            new_rows.append([step, source, reference, codec.decode(list(hypothesis))])
        lines = [f"[step {step}] translations ({self._decoding()}):"]
        for _, source, reference, hypothesis in new_rows:
            lines += [f"  source:     {source}", f"  reference:  {reference}"]
            lines += [f"  hypothesis: {hypothesis}", ""]
        rank_zero_info("\n".join(lines).rstrip())
        self.rows += new_rows
        heatmaps = self._draw_heatmaps(trainer, pl_module, sources, hypotheses)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_text(key="translations", columns=COLUMNS, data=self.rows, step=step)
                # One key per sentence: W&B shows each as a panel with a slider over steps.
                for i, path in heatmaps:
                    logger.log_image(
                        key=f"cross_attention/sentence{i}",
                        images=[str(path)],
                        step=step,
                        caption=[new_rows[i][1]],
                    )

    def _decoding(self) -> str:
        return "greedy" if self.num_beams == 1 else f"beam search, {self.num_beams} beams"

    def _draw_heatmaps(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        sources: list[list[int]],
        hypotheses: list[list[int]],
    ) -> list[tuple[int, Path]]:
        """(sentence index, PNG) per sentence, under <run>/translation_samples/ (none for
        models without attention: their cross_attention is None)."""
        folder = run_dir(trainer) / "translation_samples"
        paths = []
        for i, (source, hypothesis) in enumerate(zip(sources, hypotheses, strict=True)):
            # With the closing <eos>: where the model looked when it chose to stop (and a row
            # to draw even when it stopped at once).
            target = [*hypothesis, pl_module.hparams.get("eos_id", 2)]
            target = target[: pl_module.hparams.get("block_size") or len(target)]
            weights = pl_module.cross_attention(source, target)
            if weights is None:
                return []
            path = folder / f"step{trainer.global_step:07d}-sentence{i}.png"
            save_heatmap(
                weights,
                [token_label(trainer.datamodule, t) for t in source],
                [token_label(trainer.datamodule, t) for t in target],
                path,
                title=f"step {trainer.global_step}, sentence {i}",
            )
            paths.append((i, path))
        return paths


def token_label(codec, token_id: int) -> str:
    """What a token reads as on a heatmap's axis."""
    return SPECIAL_TOKENS.get(token_id) or codec.decode([token_id]) or f"#{token_id}"


def save_heatmap(
    weights: torch.Tensor, source: list[str], target: list[str], path: Path, title: str = ""
) -> None:
    """Cross-attention weights [target, source] as a heatmap: source tokens along x, target
    tokens down y. Written atomically, so a killed run never leaves half a picture."""
    # The Figure API needs no pyplot and no global backend: it draws with Agg, off-screen.
    import matplotlib
    import matplotlib.font_manager

    installed = {font.name for font in matplotlib.font_manager.fontManager.ttflist}
    fonts = [name for name in FONTS if name in installed] or ["sans-serif"]
    with warnings.catch_warnings(), matplotlib.rc_context({"font.family": fonts}):
        # Without a CJK font, Chinese tokens draw as boxes; the table still has the text.
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        _save_heatmap(weights, source, target, path, title)


def _save_heatmap(weights, source, target, path, title) -> None:
    from matplotlib.figure import Figure

    weights = weights.detach().float().cpu().numpy()
    if weights.shape != (len(target), len(source)):
        raise ValueError(
            f"attention of shape {weights.shape} for {len(target)} x {len(source)} tokens"
        )
    figure = Figure(figsize=(1.5 + 0.4 * len(source), 1.0 + 0.4 * len(target)))
    ax = figure.add_subplot()
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source)), source, rotation=90 if max(map(len, source)) > 2 else 0)
    ax.set_yticks(range(len(target)), target)
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    ax.set_title(title, fontsize=9)
    figure.colorbar(image, ax=ax, fraction=0.04)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
