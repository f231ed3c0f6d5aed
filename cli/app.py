"""The suite's command line: Lightning's CLI with any model and any datamodule from YAML.

    python main.py fit  --config configs/gpt_shakespeare_char.yaml
    python main.py test --config configs/gpt_shakespeare_char.yaml --ckpt_path path/to/last.ckpt

Facts of the data (vocabulary size, context length) flow to the model through argument links
when both are instantiated, so they are never typed twice.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from itertools import count
from pathlib import Path

import yaml
from jsonargparse import ArgumentError, Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, _InstantiatorFn

import callbacks  # noqa: F401 - registers the suite's callbacks for short class paths
import datamodules  # noqa: F401 - registers the datamodules for short class paths
import lit_models  # noqa: F401 - registers the models for short class paths
from callbacks.non_finite import StopOnNonFinite
from callbacks.run_end import CheckpointAtEnd, EarlyStopping
from cli.checkpoint_io import clean_once
from cli.checkpoints import forget, read_checkpoint, remember, saved_config_hint
from cli.config import (
    CHECKPOINT_CONFIG,
    SaveAndLogConfig,
    check_config_syntax,
    with_checkpoint_config,
)
from cli.requeue import keep_wandb_run_across_requeues
from cli.shipped_configs import resolve_config_args
from cli.trainer import Trainer
from cli.wandb_mode import choose_wandb_mode
from core.errors import UserError
from lit_models.compiling import compile_forward

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
            "batch_size_find": {"model", "datamodule"},
            "merge_lora": {"model", "datamodule"},
            "chat": {"model", "datamodule"},
            "export_vectors": {"model", "datamodule"},
            "export_hf": {"model", "datamodule"},
            "few_shot": {"model", "datamodule"},
        }

    def _parse_ckpt_path(self) -> None:
        # Lightning reads the model's hyperparameters from --ckpt_path before anything else
        # (so `test` rebuilds the model the checkpoint holds). Here the file is read once,
        # safely (cli.checkpoints), the copy kept for the command that loads its weights, and
        # the model class it names must be one of the suite's (or the one the config names).
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        self.checkpoint_hparams: dict = {}
        self.checkpoint: dict = {}
        if not ckpt_path or ckpt_path in ("last", "best", "hpc", "registry"):
            return
        path = Path(ckpt_path)
        clean_once(path.parent, set())  # temporaries of a save that was killed
        checkpoint = read_checkpoint(path)
        remember(path, checkpoint)
        self.checkpoint = checkpoint
        check_model_unchanged(path, checkpoint, self._parser(subcommand), self.config[subcommand])
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        self.checkpoint_hparams = dict(hparams)
        if not hparams:
            return
        if "_class_path" in hparams:
            class_path = hparams.pop("_class_path")
            configured = self.config[subcommand].get("model", Namespace()).get("class_path")
            check_model_class(path, class_path, configured)
            hparams = {"class_path": class_path, "dict_kwargs": hparams}
        self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def _add_instantiators(self) -> None:
        super()._add_instantiators()
        # Prepended, so it replaces Lightning's instantiator of the datamodule (and calls it).
        self.parser.add_instantiator(
            RestoringDataInstantiator(cli=self, key="data"),
            self._datamodule_class,
            subclasses=self.subclass_mode_data,
            prepend=True,
        )

    def add_default_arguments_to_parser(self, parser) -> None:
        super().add_default_arguments_to_parser(parser)
        # Every run keeps its best checkpoint and last.ckpt and stops early: settings under
        # `checkpoint:`, `last_checkpoint:` and `early_stopping:` (configs/defaults.yaml).
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        # A short or interrupted run still ends with a validated, saved last.ckpt.
        parser.add_lightning_class_args(CheckpointAtEnd, "checkpoint_at_end")
        # A NaN or inf loss or gradient ends the run with a message before it reaches a checkpoint.
        parser.add_lightning_class_args(StopOnNonFinite, "non_finite")
        # A resumed run draws the random numbers the uninterrupted one would have (dropout).
        parser.add_lightning_class_args(callbacks.RestoreRandomState, "random_state")
        # A line of progress every N steps where the progress bar cannot be seen (a pipe, a log).
        parser.add_lightning_class_args(callbacks.ProgressLog, "progress")
        # torch.compile for any model (lit_models/compiling.py): one key, not one per model.
        parser.add_argument(
            "--compile",
            type=bool,
            default=False,
            help="Run the model's forward through torch.compile for training and evaluation "
            "(decoding stays eager). Where the platform cannot compile: one warning, then eager.",
        )

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

        # Tabular MLP: the width of a row, the task, and a regression target's train statistics
        # (num_classes crosses through the text classifiers' link above).
        for fact in ("num_features", "task", "target_mean", "target_std"):
            parser.link_arguments(f"data.{fact}", f"model.init_args.{fact}", apply_on="instantiate")
        # The long-range memory tasks: the shape of a step, of the answer, and its kind.
        for fact in ("input_size", "output_size", "task_kind"):
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
        if self.config.get("subcommand") == "fit":
            check_trains_something(self.config.fit.trainer)
        subcommand = self.config.get("subcommand")
        name_run_after_config(self.config[subcommand] if subcommand else self.config)
        if subcommand and subcommand != "fit":
            log_into_checkpoint_run(self.config[subcommand], subcommand)
        if subcommand == "fit":
            keep_wandb_run_across_requeues(self.config[subcommand])
        check_logger_installed(self.config[subcommand] if subcommand else self.config)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        check_facts_match(self.checkpoint_hparams, self.model, config)
        if config.get("compile"):
            compile_forward(self.model)


class RestoringDataInstantiator(_InstantiatorFn):
    """Builds the datamodule as Lightning does, then hands it the state its class saved in
    the --ckpt_path checkpoint (datamodules/fitted_state.py: vocabularies, tokenizer,
    statistics fitted on train). Here, not when the Trainer restores it: the Trainer does so
    only after setup, but the facts linked into the model (vocab_size, ...) are read as soon
    as the datamodule exists, and must be the checkpoint's, not refitted on the data given."""

    def __call__(self, class_type, *args, applied_instantiation_links: dict, **kwargs):
        datamodule = super().__call__(
            class_type, *args, applied_instantiation_links=applied_instantiation_links, **kwargs
        )
        state = self.cli.checkpoint.get(class_type.__qualname__)
        if state:
            datamodule.load_state_dict(state)
        return datamodule


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


def check_logger_installed(config: Namespace) -> None:
    """TensorBoardLogger needs tensorboard (or tensorboardX), which the suite does not install:
    one line saying so, not an import traceback from inside Lightning."""
    loggers = config.get("trainer", Namespace()).get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        class_path = str(logger.get("class_path")) if isinstance(logger, Namespace) else ""
        if class_path.endswith("TensorBoardLogger") and not (
            importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")
        ):
            raise UserError(
                "trainer.logger TensorBoardLogger needs tensorboard: `pip install tensorboard`, "
                "or keep W&B (the default) or CSVLogger."
            )


def log_into_checkpoint_run(config: Namespace, subcommand: str) -> None:
    """`test`, `validate`, `predict` (and the suite's commands) with a checkpoint of a run
    (`<save_dir>/<name>/<version>/checkpoints/`) log into that run instead of a new, empty
    one: its W&B run resumed, its TensorBoard folder appended to; CSV into `<run>/<subcommand>/`
    (Lightning's CSV writer would rewrite the training's metrics.csv without its columns)."""
    ckpt_path, logger = config.get("ckpt_path"), config.get("trainer", Namespace()).get("logger")
    if not ckpt_path or not isinstance(logger, Namespace):
        return
    checkpoints = Path(ckpt_path).resolve().parent
    init_args = logger.get("init_args")
    if checkpoints.name != "checkpoints" or not isinstance(init_args, Namespace):
        return
    run = checkpoints.parent
    save_dir, name, version = str(run.parent.parent), run.parent.name, run.name
    logger_class = str(logger.get("class_path")).rsplit(".", 1)[-1]
    if logger_class == "WandbLogger":
        init_args.save_dir, init_args.project, init_args.id = save_dir, name, version
    elif logger_class == "TensorBoardLogger":
        init_args.save_dir, init_args.name, init_args.version = save_dir, name, version
    elif logger_class == "CSVLogger":  # <run>/test, <run>/test_2, ...: never an older one
        taken = {p.name for p in run.iterdir()}
        versions = (subcommand + (f"_{n}" if n > 1 else "") for n in count(1))
        init_args.save_dir, init_args.name = str(run.parent), run.name
        init_args.version = next(v for v in versions if v not in taken)


def check_model_unchanged(path: Path, checkpoint: dict, parser, config: Namespace) -> None:
    """A config given beside a checkpoint may change what does not change the model (data
    paths, batch size, trainer settings): a model setting other than the one the checkpoint
    was trained with is an error naming the key and both values (Lightning would otherwise
    replace it silently with the checkpoint's)."""
    stored = checkpoint.get(CHECKPOINT_CONFIG)
    if not isinstance(stored, str):
        return  # an older checkpoint: its hyperparameters rebuild the model, as in Lightning
    trained = (yaml.safe_load(stored) or {}).get("model") or {}
    given = yaml.safe_load(parser.dump(config, skip_none=False, skip_validation=True))["model"]
    if trained.get("class_path") != given.get("class_path"):
        return  # check_model_class names it
    trained_args, given_args = trained.get("init_args") or {}, given.get("init_args") or {}
    changed = [k for k in given_args if k in trained_args and given_args[k] != trained_args[k]]
    if changed:
        differences = ", ".join(
            f"model.init_args.{k}: {trained_args[k]!r} in the checkpoint, {given_args[k]!r} "
            "in this config"
            for k in changed
        )
        raise UserError(
            f"--ckpt_path {path} was trained with another model than this config builds "
            f"({differences}). A config beside a checkpoint may change only what does not "
            "change the model (data paths, batch size, trainer settings): give --ckpt_path "
            f"alone (the checkpoint carries its config){saved_config_hint(path, ' or ')}."
        )


def check_model_class(path: Path, class_path: str, configured: str | None) -> None:
    """The model class a checkpoint names is imported to rebuild it: only the suite's own
    (`lit_models.*`) or the one the config names explicitly, and the config's if it names one."""
    if configured and same_class(class_path, configured):
        return
    if class_path.split(".")[0] != "lit_models":
        raise UserError(
            f"--ckpt_path {path} names the model class {class_path}, which is not one of the "
            "suite's models (lit_models.*); it is not imported. To load it anyway, name that "
            "class in the config (model.class_path)."
        )
    if configured:
        raise UserError(
            f"--ckpt_path {path} holds a {class_path} but the config builds a {configured}: "
            f"use the config the checkpoint was trained with{saved_config_hint(path)}."
        )


def same_class(class_path: str, other: str) -> bool:
    """Whether two class paths name one class (`lit_models.GPT` is `lit_models.gpt.GPT`);
    only the suite's own modules are imported to tell."""
    if class_path == other:
        return True
    if not all(path.split(".")[0] == "lit_models" for path in (class_path, other)):
        return False
    try:
        return import_class(class_path) is import_class(other)
    except (ImportError, AttributeError, ValueError):
        return False


def import_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


# Facts of the data the CLI links into the model: a checkpoint trained on other data holds
# weights of other sizes.
LINKED_FACTS = (
    "vocab_size",
    "block_size",
    "num_classes",
    "categorical_cardinalities",
    "num_numeric",
    "wide_dim",
    "num_features",
    "task",
)


def check_facts_match(checkpoint_hparams: dict, model, config: Namespace) -> None:
    """A checkpoint whose vocabulary (or classes, ...) differs from the data's is an error
    naming both sizes, before Lightning fails to load it with a size mismatch."""
    hparams = getattr(model, "hparams", None)
    if not checkpoint_hparams or hparams is None:
        return
    for fact in LINKED_FACTS:
        if (
            fact in checkpoint_hparams
            and fact in hparams
            and checkpoint_hparams[fact] != hparams[fact]
        ):
            files = ", ".join(str(f) for f in (config.get("config") or [])) or "the command line"
            raise UserError(
                f"the checkpoint was trained with {fact}={checkpoint_hparams[fact]} but the "
                f"data of this config ({files}) has {fact}={hparams[fact]}: give --ckpt_path "
                "alone (the checkpoint carries its config), or the data and config it was "
                "trained with."
            )


def check_trains_something(trainer: Namespace) -> None:
    for key in ("max_steps", "max_epochs"):
        if trainer.get(key) == 0:
            raise UserError(f"trainer.{key}=0 trains nothing: give a positive number (or -1).")


def main(args: list[str] | None = None) -> None:
    """Run the CLI (`python main.py ...` and the `seqmodels` command); a user error ends with
    one message and exit status 2, not a traceback. `--config NAME` names a shipped config."""
    from_command_line = args is None
    args = list(sys.argv[1:] if args is None else args)
    forget()  # a checkpoint read by an earlier CLI in this process
    try:
        if args and args[0] in SERIES_COMMANDS:  # many fits in one process: not a Trainer method
            if from_command_line:
                sys.argv[1:] = []  # each fit gets its arguments from the command, not sys.argv
            run_series(args[0], args[1:])
            return
        args = resolve_config_args(args)
        check_config_syntax(args)
        args = with_checkpoint_config(repeated_as_lists(args))
        if from_command_line:
            sys.argv[1:] = args  # LightningCLI reads the command line, and warns if also given
        SuiteCLI(args=None if from_command_line else args)
    except ArgumentError as err:  # the command line or the config: unknown key, bad value
        fail(f"{err}\n(`python main.py SUBCOMMAND --help` lists every option)")
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            raise
        fail(str(user_error))


# Commands that run many fits (cli/search.py, cli/repeat.py), each built as `fit` builds it.
SERIES_COMMANDS = ("search", "repeat")


def run_series(command: str, args: list[str]) -> None:
    if command == "search":
        from cli.search import search

        search(args)
    else:
        from cli.repeat import repeat

        repeat(args)


# Options of the suite's commands that take several values: given more than once, each
# value counts (`--prompt A --prompt B`), where argparse would keep only the last.
LIST_OPTIONS = ("--prompt", "--text")


def repeated_as_lists(args: list[str]) -> list[str]:
    """`args` with each repeated LIST_OPTIONS flag turned into jsonargparse's appending form
    (`--prompt+ A --prompt+ B`)."""
    out = list(args)
    for flag in LIST_OPTIONS:
        places = [i for i, a in enumerate(out) if a == flag or a.startswith(flag + "=")]
        if len(places) > 1:
            for i in places:
                out[i] = flag + "+" + out[i][len(flag) :]
    return out


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
