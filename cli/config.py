"""Save the resolved config of every run next to its checkpoints and log it to W&B."""

from __future__ import annotations

from pathlib import Path

import yaml
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from core.errors import UserError
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


def check_config_syntax(args: list[str]) -> None:
    """Each `--config FILE` of the command line must be YAML: a syntax error names the file,
    its line and column (jsonargparse's own message names neither the file nor the key)."""
    files = [value for flag, value in zip(args, args[1:], strict=False) if flag == "--config"]
    files += [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]
    for file in files:
        path = Path(file)
        if not path.is_file():
            continue  # jsonargparse says it does not exist
        try:
            yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise UserError(
                f"--config {file}: not UTF-8 text ({err.reason} at byte {err.start})"
            ) from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err)
            raise UserError(f"--config {file}: not valid YAML{where}: {problem}.") from None
