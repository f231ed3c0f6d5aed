"""The suite's command line: Lightning's CLI with any model and any datamodule from YAML.

    python main.py fit  --config configs/gpt_shakespeare_char.yaml
    python main.py test --config configs/gpt_shakespeare_char.yaml --ckpt_path path/to/last.ckpt

Facts of the data (vocabulary size, context length) flow to the model through argument links
when both are instantiated, so they are never typed twice.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ArgumentError, Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

import callbacks  # noqa: F401 - registers the suite's callbacks for short class paths
import datamodules  # noqa: F401 - registers the datamodules for short class paths
import lit_models  # noqa: F401 - registers the models for short class paths
from callbacks.non_finite import StopOnNonFinite
from cli.checkpoints import UNREADABLE
from cli.config import SaveAndLogConfig
from cli.trainer import Trainer
from cli.wandb_mode import choose_wandb_mode
from core.errors import UserError

# The settings every run shares (trainer, logger, checkpoints, early stopping), read before
# the config a user names, so that each configs/*.yaml holds only what differs.
DEFAULTS = Path(__file__).resolve().parents[1] / "configs" / "defaults.yaml"


class SuiteCLI(LightningCLI):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("trainer_class", Trainer)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_callback", SaveAndLogConfig)
        kwargs.setdefault("seed_everything_default", 1337)
        kwargs.setdefault("auto_configure_optimizers", False)  # each model owns its recipe
        # Raise parse errors (unknown key, bad value) to main() instead of printing the usage.
        subcommand_kwargs = {"exit_on_error": False, "default_config_files": [DEFAULTS]}
        kwargs.setdefault(
            "parser_kwargs",
            {"exit_on_error": False, **{name: subcommand_kwargs for name in self.subcommands()}},
        )
        super().__init__(None, None, *args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # The Trainer's methods bound from cli/commands/ become subcommands like fit and test;
        # the CLI passes them the model and the datamodule it builds from the config.
        return {
            **LightningCLI.subcommands(),
            "generate": {"model", "datamodule"},
            "translate": {"model", "datamodule"},
            "lr_find": {"model", "datamodule"},
            "merge_lora": {"model", "datamodule"},
            "chat": {"model", "datamodule"},
            "export_vectors": {"model", "datamodule"},
        }

    def _parse_ckpt_path(self) -> None:
        # Lightning reads the model's hyperparameters from --ckpt_path before anything else
        # (so `test` rebuilds the model the checkpoint holds): a missing or damaged file must
        # end there with a message, not a traceback from deep inside torch.load.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if (
            ckpt_path
            and ckpt_path not in ("last", "best", "hpc", "registry")
            and not Path(ckpt_path).is_file()
        ):
            raise UserError(f"--ckpt_path {ckpt_path}: no such checkpoint")
        try:
            super()._parse_ckpt_path()
        except UNREADABLE as err:
            raise UserError(
                f"--ckpt_path {ckpt_path}: not a readable checkpoint ({type(err).__name__}: {err})."
            ) from None

    def add_default_arguments_to_parser(self, parser) -> None:
        super().add_default_arguments_to_parser(parser)
        # Every run keeps its best checkpoint and last.ckpt and stops early: settings under
        # `checkpoint:`, `last_checkpoint:` and `early_stopping:` (configs/defaults.yaml).
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        # A NaN or inf loss or gradient ends the run with a message before it reaches a checkpoint.
        parser.add_lightning_class_args(StopOnNonFinite, "non_finite")
        # A resumed run draws the random numbers the uninterrupted one would have (dropout).
        parser.add_lightning_class_args(callbacks.RestoreRandomState, "random_state")

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments(
            "data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate"
        )
        parser.link_arguments(
            "data.block_size", "model.init_args.block_size", apply_on="instantiate"
        )
        # Text classifiers: the classes, and word vectors the datamodule aligned to its vocabulary.
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )
        parser.link_arguments(
            "data.pretrained_embeddings",
            "model.init_args.pretrained_embeddings",
            apply_on="instantiate",
        )
        # Wide & Deep: the sizes of its inputs, fitted on the train split of the tabular data.
        for fact in ("categorical_cardinalities", "num_numeric", "wide_dim"):
            parser.link_arguments(f"data.{fact}", f"model.init_args.{fact}", apply_on="instantiate")

        # Word2vec: the counts for the Huffman tree, and the shape of the batches.
        for fact in ("word_counts", "architecture", "negative"):
            parser.link_arguments(f"data.{fact}", f"model.init_args.{fact}", apply_on="instantiate")

        # Translators (and text classifiers, for <pad>): the special ids of the corpus's
        # vocabulary. A link whose datamodule lacks the fact is skipped. Not eos_id: the language
        # model and chat corpora have one too, and with --ckpt_path the CLI hands it to models
        # without that argument (GPT) through dict_kwargs, which then fail to build.
        for fact in ("pad_id", "bos_id"):
            parser.link_arguments(f"data.{fact}", f"model.init_args.{fact}", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        choose_wandb_mode()
        subcommand = self.config.get("subcommand")
        name_run_after_config(self.config[subcommand] if subcommand else self.config)


def name_run_after_config(config: Namespace) -> None:
    """A logger left unnamed (W&B's None, CSV's and TensorBoard's `lightning_logs`) names the
    run after the last config file given: `configs/gpt_wikitext2.yaml` runs as gpt_wikitext2."""
    logger = config.get("trainer", Namespace()).get("logger")
    files = config.get("config") or []
    if not files or not isinstance(logger, Namespace):
        return
    init_args = logger.get("init_args")
    if isinstance(init_args, Namespace) and init_args.get("name", "") in (None, "lightning_logs"):
        init_args.name = Path(str(files[-1])).stem


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
