"""The suite's command line: Lightning's CLI with any model and any datamodule from YAML.

    python main.py fit  --config configs/gpt_shakespeare_char.yaml
    python main.py test --config configs/gpt_shakespeare_char.yaml --ckpt_path path/to/last.ckpt

Facts of the data (vocabulary size, context length) flow to the model through argument links
when both are instantiated, so they are never typed twice.
"""

from __future__ import annotations

import sys

from jsonargparse import ArgumentError
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningCLI

import callbacks  # noqa: F401 - registers the suite's callbacks for short class paths
import datamodules  # noqa: F401 - registers the datamodules for short class paths
import lit_models  # noqa: F401 - registers the models for short class paths
from suite.config import SaveAndLogConfig
from suite.errors import UserError
from suite.trainer import Trainer
from suite.wandb_mode import choose_wandb_mode


class SuiteCLI(LightningCLI):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("trainer_class", Trainer)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_callback", SaveAndLogConfig)
        kwargs.setdefault("seed_everything_default", 1337)
        kwargs.setdefault("auto_configure_optimizers", False)  # each model owns its recipe
        # Raise parse errors (unknown key, bad value) to main() instead of printing the usage.
        kwargs.setdefault("parser_kwargs", {"exit_on_error": False})
        super().__init__(None, None, *args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments(
            "data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate"
        )
        parser.link_arguments(
            "data.block_size", "model.init_args.block_size", apply_on="instantiate"
        )

    def before_instantiate_classes(self) -> None:
        choose_wandb_mode()


def main(args: list[str] | None = None) -> None:
    """Run the CLI; a user error ends with one message and exit status 2, not a traceback."""
    try:
        SuiteCLI(args=args)
    except ArgumentError as err:  # the command line or the config: unknown key, bad value
        fail(f"{err}\n(`python main.py SUBCOMMAND --help` lists every option)")
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            raise
        fail(str(user_error))


def find_user_error(err: BaseException | None) -> BaseException | None:
    """The user's error behind `err`: ours (UserError) or Lightning's (a trainer setting that
    does not fit, e.g. LearningRateMonitor with `logger: false`), also when jsonargparse
    wraps it because it was raised while a class was instantiated."""
    while err is not None and not isinstance(err, (UserError, MisconfigurationException)):
        err = err.__cause__ or err.__context__
    return err


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
