"""`batch_size_find`: the largest training batch that fits in memory (Lightning's Tuner).

python main.py batch_size_find --config configs/gpt_wikitext2.yaml --write_config big_batch.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning as L
import torch
import yaml
from lightning.pytorch.cli import SaveConfigCallback

from core.errors import UserError
from core.files import atomic_write_text

BATCH_SIZE = ("data", "init_args", "batch_size")  # the key the finder scales and writes


def batch_size_find(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    mode: Literal["power", "binsearch"] = "power",
    steps_per_trial: int = 3,
    init_val: int = 2,
    max_trials: int = 8,
    write_config: str | None = None,
) -> int:
    """Run a few training steps at growing batch sizes until one runs out of memory (Lightning's
    `Tuner.scale_batch_size`), print the largest that fit, and optionally write the config with it.

    The search stops after max_trials sizes: init_val * 2**(max_trials - 1) at most, 256 with
    the defaults. On a CPU nothing runs out of memory (the system swaps, or kills the process,
    before torch sees an error), so there the answer is that cap, not a limit found: the
    finder is for GPUs. Raise max_trials on a large GPU.

    Args:
        mode: `power` doubles the batch until it fails and keeps the last that fit; `binsearch`
            then searches between that one and the one that failed (less 5% for safety).
        steps_per_trial: training steps run at each size (the first steps may allocate less).
        init_val: the first size tried.
        max_trials: how many sizes to try at most (the cap above).
        write_config: a path: write there a copy of the last --config file given, with
            data.init_args.batch_size set to the size found.
    """
    from lightning.pytorch.tuner import Tuner

    check_has_batch_size(datamodule)
    source = last_config_file(trainer) if write_config else None
    for name, value in {"steps_per_trial": steps_per_trial, "init_val": init_val}.items():
        if not value >= 1:
            raise UserError(f"--{name} must be a positive integer, got {value}.")
    if not max_trials >= 1:
        raise UserError(f"--max_trials must be a positive integer, got {max_trials}.")

    found = Tuner(trainer).scale_batch_size(
        model,
        datamodule=datamodule,
        mode=mode,
        steps_per_trial=steps_per_trial,
        init_val=init_val,
        max_trials=max_trials,
    )
    if found is None:
        raise UserError(
            "batch_size_find: Lightning skips the search under trainer.fast_dev_run; leave it unset."
        )
    check_batches_follow(datamodule, found)
    cap = init_val * 2 ** (max_trials - 1)
    print(f"batch_size_find: largest batch size that fit: {found}")
    if found >= 0.95 * cap:  # binsearch takes 5% off what fit
        where = "on the CPU nothing runs out of memory" if not on_gpu(trainer) else "no size failed"
        print(
            f"batch_size_find: that is the cap of --max_trials {max_trials} from --init_val "
            f"{init_val} ({where}): the limit may be higher."
        )
    for logger in trainer.loggers:
        logger.log_metrics({"batch_size_find/batch_size": found})
    if write_config:
        atomic_write_text(write_config, with_batch_size(source.read_text(encoding="utf-8"), found))
        print(
            f"batch_size_find: {source} with data.init_args.batch_size: {found} -> {write_config}"
        )
    return found


def check_has_batch_size(datamodule: L.LightningDataModule) -> None:
    """The finder scales `datamodule.batch_size`: one clear message for a datamodule without it,
    before Lightning's own, which names neither the class nor the config key."""
    if not hasattr(datamodule, "batch_size"):
        raise UserError(
            f"batch_size_find: {type(datamodule).__name__} (data.class_path) has no batch_size "
            "argument, so there is no batch size to scale. It works with the datamodules that "
            "take data.init_args.batch_size."
        )


def last_config_file(trainer: L.Trainer) -> Path:
    """The last --config file given (the one --write_config copies): the CLI hands the parsed
    command line to its SaveConfigCallback, which the trainer holds."""
    given = []
    for callback in trainer.callbacks:
        if isinstance(callback, SaveConfigCallback):
            given = callback.config.get("config") or []
    files = [Path(str(p)) for p in given if p is not None and Path(str(p)).is_file()]
    if not files:
        raise UserError(
            "batch_size_find --write_config copies the --config file given, with the batch size "
            "found: give the config as a file (--config FILE)."
        )
    return files[-1]


def check_batches_follow(datamodule: L.LightningDataModule, size: int) -> None:
    """The Tuner sets `batch_size` and asks for new loaders; a datamodule that cut its batches
    at setup (the recurrent models' `batching: contiguous` streams) ignores it, and every trial
    ran the same batches: say so rather than print a size that was never measured."""
    batch = next(iter(datamodule.train_dataloader()), None)  # None: fewer examples than `size`
    built = None if batch is None else leading_size(batch)
    if built is not None and built != size:
        raise UserError(
            f"batch_size_find: {type(datamodule).__name__} builds its batches once, at setup "
            f"(each trial ran batches of {built}, not the size tried), so nothing was measured. "
            "With data.init_args.batching: contiguous, try sizes by hand: fit "
            "--trainer.max_steps=3 --data.init_args.batch_size=N."
        )


def leading_size(batch) -> int | None:
    """The first dimension of the first tensor in a batch (a tensor, dict, list or tuple)."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.dim() else None
    items = batch.values() if isinstance(batch, dict) else batch
    if isinstance(items, (list, tuple)) or isinstance(batch, dict):
        for item in items:
            size = leading_size(item)
            if size is not None:
                return size
    return None


def on_gpu(trainer: L.Trainer) -> bool:
    return trainer.strategy.root_device.type == "cuda"


def with_batch_size(text: str, batch_size: int) -> str:
    """The YAML `text` with data.init_args.batch_size set. An existing value is replaced in
    place, so every comment and line stays as written; a config without one is rewritten
    whole (its comments lost) with the key added."""
    node = yaml.compose(text)
    for key in BATCH_SIZE:
        node = mapping_value(node, key)
    if isinstance(node, yaml.ScalarNode):
        start, end = node.start_mark.index, node.end_mark.index
        edited = text[:start] + str(batch_size) + text[end:]
    else:
        config = yaml.safe_load(text) or {}
        section = config
        for key in BATCH_SIZE[:-1]:
            if not isinstance(section.get(key), dict):
                section[key] = {}
            section = section[key]
        section[BATCH_SIZE[-1]] = batch_size
        edited = yaml.safe_dump(config, sort_keys=False)
    assert value_at(yaml.safe_load(edited), BATCH_SIZE) == batch_size, edited
    return edited


def mapping_value(node, key: str):
    """The value node under `key` in a YAML mapping node; None when absent or not a mapping."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if key_node.value == key:
            return value_node
    return None


def value_at(config, keys: tuple[str, ...]):
    for key in keys:
        config = config.get(key) if isinstance(config, dict) else None
    return config
