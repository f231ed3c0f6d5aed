"""Runs of the CLI inside one Python process, for the commands that make many of them
(`search`, `repeat`): each is a normal `fit` (its own folder, saved config, logger run), built
from the same command-line arguments a user types, with callbacks added in Python that a
config cannot name (an optuna trial's pruning)."""

from __future__ import annotations

import argparse
import gc
from pathlib import Path

from jsonargparse import ArgumentError, Namespace

from cli.app import DEFAULTS, SuiteCLI, check_trains_something
from cli.config import check_config_syntax
from cli.shipped_configs import resolve_config_args
from core.errors import UserError

# Without subcommands (run=False) the CLI's own parser reads the shared defaults first.
PARSER_KWARGS = {"exit_on_error": False, "default_config_files": [DEFAULTS]}


class OptionParser(argparse.ArgumentParser):
    """The options of a command that runs many fits; a bad one is a UserError (one line, exit
    2), `--help` prints the usage as argparse does."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message} (`{self.prog} --help` lists the options)")


class ParsedOnly(SuiteCLI):
    """The config the arguments make, checked by the CLI's parser, with nothing built."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


def prepared(args: list[str]) -> list[str]:
    """`args` as `main()` prepares them: shipped config names resolved, YAML syntax checked."""
    args = resolve_config_args(list(args))
    check_config_syntax(args)
    return args


def parse_only(args: list[str], what: str = "the arguments") -> ParsedOnly:
    """The CLI with `args` parsed (an unknown key or a bad value is a UserError naming it)."""
    try:
        return ParsedOnly(args=args, run=False, parser_kwargs=PARSER_KWARGS)
    except ArgumentError as err:
        raise UserError(f"{what}: {err}") from None


def build_fit(args: list[str]) -> SuiteCLI:
    """Model, datamodule and Trainer of `fit ARGS`, built; the caller runs `cli.trainer.fit`."""
    try:
        cli = SuiteCLI(args=args, run=False, parser_kwargs=PARSER_KWARGS)
    except ArgumentError as err:
        raise UserError(str(err)) from None
    check_trains_something(cli.config.trainer)
    return cli


def logger_kind(config: Namespace) -> str | None:
    """The class name of the config's (first) logger: WandbLogger, CSVLogger, ...; None without."""
    logger = config.get("trainer", Namespace()).get("logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    if not isinstance(logger, Namespace):
        return None
    return str(logger.get("class_path")).rsplit(".", 1)[-1]


def run_placement(config: Namespace, folder: Path, group: str, name: str) -> list[str]:
    """Arguments that put one run of a series under `folder`, named `name`: a W&B run in the
    group `group` (its folder `<folder>/<project>/<run-id>/`), a CSV or TensorBoard run in
    `<folder>/<name>/`, and without a logger the Trainer's root folder `<folder>/<name>/`."""
    kind = logger_kind(config)
    prefix = "--trainer.logger.init_args"
    if kind == "WandbLogger":
        return [f"{prefix}.save_dir={folder}", f"{prefix}.name={name}", f"{prefix}.group={group}"]
    if kind in ("CSVLogger", "TensorBoardLogger"):
        return [f"{prefix}.save_dir={folder}", f"{prefix}.name={name}"]
    return [f"--trainer.default_root_dir={folder / name}"]


def overrides(values: dict) -> list[str]:
    """`--key=value` arguments, values written as YAML (lists, booleans, None) for the parser."""
    import yaml

    def text(value) -> str:
        if isinstance(value, str):
            return value
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()

    return [f"--{key}={text(value)}" for key, value in values.items()]


def finish() -> None:
    """End the run's W&B session, so that the next run of the process starts its own (W&B
    would otherwise reuse the open one; Lightning finalizes a logger but does not end it),
    and free its memory."""
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except ImportError:
        pass
    gc.collect()
