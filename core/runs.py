"""Where a run's outputs go: its own folder, shared by the checkpoints, the saved config
and what the callbacks write."""

from __future__ import annotations

from pathlib import Path


def run_dir(trainer) -> Path:
    """The folder Lightning's ModelCheckpoint uses as the parent of `checkpoints/`."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    save_dir = logger.save_dir or trainer.default_root_dir
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(save_dir) / str(logger.name) / version
