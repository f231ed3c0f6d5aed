"""Save the resolved config of every run next to its checkpoints and log it to W&B."""

from __future__ import annotations

import yaml
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from core.files import atomic_path
from core.runs import run_dir


class SaveAndLogConfig(SaveConfigCallback):
    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved:
            return
        folder = run_dir(trainer)
        if trainer.is_global_zero:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / self.config_filename
            with atomic_path(path) as tmp:  # an interrupted save never leaves half a config
                self.parser.save(self.config, tmp, skip_none=False, overwrite=True, multifile=False)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    # The file's contents: linked keys (vocab_size, ...) are filled in only
                    # at instantiation, so they are left out there rather than logged as null.
                    saved = yaml.safe_load(path.read_text())
                    logger.experiment.config.update(saved, allow_val_change=True)
        self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)
