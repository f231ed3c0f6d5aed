"""Save the resolved config of every run next to its checkpoints and log it to W&B."""

from __future__ import annotations

from pathlib import Path

import yaml
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from suite.files import atomic_path


def run_dir(trainer) -> Path:
    """The folder Lightning's ModelCheckpoint uses as the parent of `checkpoints/`."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    save_dir = logger.save_dir or trainer.default_root_dir
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(save_dir) / str(logger.name) / version


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
