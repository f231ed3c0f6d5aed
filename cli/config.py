"""The resolved config of every run: saved next to its checkpoints (`<run>/config.yaml`),
logged to W&B, and carried inside every checkpoint, so that a checkpoint alone rebuilds its
model and data (`test --ckpt_path X`, `generate --ckpt_path X`, ...)."""

from __future__ import annotations

from pathlib import Path

import yaml
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from core.errors import UserError
from core.files import atomic_write_text
from core.runs import run_dir

# Where a checkpoint carries its run's config (YAML text).
CHECKPOINT_CONFIG = "seqmodels_config"
# Arguments of one `fit` call, not of the experiment: other subcommands do not take them, so
# the saved config leaves them out and serves every command as it is.
CALL_ONLY = ("ckpt_path", "weights_only")


class SaveAndLogConfig(SaveConfigCallback):
    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved or stage != "fit":
            return  # test, validate, predict log into the checkpoint's run, which has its config
        folder = run_dir(trainer)
        if trainer.is_global_zero:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / self.config_filename
            atomic_write_text(path, self.config_text())  # never half a config
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    # The file's contents: linked keys (vocab_size, ...) are filled in only
                    # at instantiation, so they are left out there rather than logged as null.
                    saved = yaml.safe_load(path.read_text())
                    logger.experiment.config.update(saved, allow_val_change=True)
        self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_CONFIG] = self.config_text()

    def config_text(self) -> str:
        config = self.config.clone()
        for key in CALL_ONLY:
            config.pop(key, None)
        return self.parser.dump(config, skip_none=False, skip_validation=True)


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


def with_checkpoint_config(args: list[str]) -> list[str]:
    """`args` with `--config <the checkpoint's own config>` after the subcommand when
    `--ckpt_path FILE` is given without any `--config`: the checkpoint alone rebuilds its
    model and data; options after it still apply."""
    from cli.checkpoints import read_checkpoint, remember

    if not args or args[0].startswith("-") or any(a.split("=")[0] == "--config" for a in args):
        return args
    ckpt_path = option_value(args, "--ckpt_path")
    if ckpt_path is None or ckpt_path in ("last", "best", "hpc", "registry"):
        return args
    checkpoint = read_checkpoint(ckpt_path)
    remember(ckpt_path, checkpoint)  # the CLI reads it next: the same copy, not the file again
    text = checkpoint.get(CHECKPOINT_CONFIG)
    if not isinstance(text, str):
        raise UserError(
            f"--ckpt_path {ckpt_path} carries no config (it was written by an older version or "
            "another program): give the config it was trained with, --config FILE."
        )
    return [args[0], "--config", text, *args[1:]]


def option_value(args: list[str], flag: str) -> str | None:
    """The value of `flag` in `args` (`--flag VALUE` or `--flag=VALUE`; the last one given)."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value
