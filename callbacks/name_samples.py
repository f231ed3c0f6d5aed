"""See what a names model has learnt while it trains: at every validation, sample a few new
names (as makemore prints them), print them and log them to W&B as a table."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from lit_models.mlp_lm import sample_names

COLUMNS = ["step", "names"]


class NameSamples(L.Callback):
    def __init__(self, n: int = 10, temperature: float = 1.0, seed: int = 1337):
        """
        Args:
            n: names sampled at each validation.
            seed: the same names' random streams at every validation, so the rows show the
                model changing, not the dice.
        """
        self.n, self.temperature, self.seed = n, temperature, seed
        self.rows: list[list] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        names = sample_names(
            pl_module, trainer.datamodule, self.n, seed=self.seed, temperature=self.temperature
        )
        rank_zero_info(f"[step {trainer.global_step}] {' '.join(names)}")
        self.rows.append([trainer.global_step, " ".join(names)])
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_text(
                    key="names", columns=COLUMNS, data=self.rows, step=trainer.global_step
                )
