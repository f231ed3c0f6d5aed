"""Lightning's Trainer with the suite's defaults and more subcommands.

- `precision: auto`: bf16 mixed precision on GPUs that support it, fp16 mixed on older GPUs,
  full fp32 on the CPU (where bf16 matrix products run about 100x slower than fp32).
- Checkpoints written atomically beside their target whatever TMPDIR is, never with NaN
  weights, and read once with `weights_only=True` (cli.checkpoint_io.SafeCheckpointIO),
  unless `plugins` names another CheckpointIO.
- `strategy: fsdp`: FSDP with the Transformer block as the wrapping unit and full state-dict
  checkpoints (cli.fsdp.TransformerFSDP); it needs CUDA GPUs, and says so on a machine
  without them.
- `generate`, `translate`, `lr_find`, `batch_size_find`, `export_vectors`, `merge_lora`,
  `chat`, `few_shot`: the functions of cli/commands/, one module each.

The CLI turns each Trainer method into a subcommand, its arguments into options.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.strategies import FSDPStrategy

from cli import commands
from cli.checkpoint_io import SafeCheckpointIO
from cli.fsdp import TransformerFSDP
from core.errors import UserError

FSDP_NAMES = ("fsdp", "fsdp_cpu_offload")  # Lightning's own names for its FSDPStrategy


def resolve_strategy(strategy, accelerator="auto"):
    """`fsdp` is the suite's FSDP (cli.fsdp); any FSDP needs CUDA GPUs: one clear message
    where there are none, not Lightning's check (which misses FSDPStrategy's subclasses)."""
    if strategy == "fsdp":
        strategy = TransformerFSDP()
    sharded = isinstance(strategy, FSDPStrategy) or strategy in FSDP_NAMES
    on_gpus = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if sharded and not on_gpus:
        name = strategy if isinstance(strategy, str) else type(strategy).__name__
        raise UserError(
            f"trainer.strategy fsdp ({name}) shards the model over CUDA GPUs, and this run has none "
            f"(accelerator={accelerator}, CUDA available: {torch.cuda.is_available()}). "
            "On a CPU, leave the strategy out (or use ddp for several CPU processes)."
        )
    return strategy


def resolve_precision(precision, accelerator="auto"):
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if not on_gpu:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


class Trainer(L.Trainer):
    def __init__(
        self,
        *args,
        precision: str | int | None = "auto",
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        **kwargs,
    ):
        """
        Args:
            precision: `auto` (bf16-mixed on recent GPUs, 16-mixed on older ones, 32-true on
                CPU) or any value Lightning accepts: 32-true, 16-mixed, bf16-mixed, 64-true, ...
            limit_train_batches, limit_val_batches, limit_test_batches, limit_predict_batches:
                an int is a number of batches, a float a fraction (1 is one batch, 1.0 all).
                Declared here because the CLI reads Lightning's own declaration of them as
                floats, turning `--trainer.limit_val_batches=1` into 1.0, every batch.
        """
        kwargs["plugins"] = with_safe_checkpoints(kwargs.get("plugins"))
        super().__init__(
            *args,
            precision=resolve_precision(precision, kwargs.get("accelerator", "auto")),
            strategy=resolve_strategy(
                kwargs.pop("strategy", "auto"), kwargs.get("accelerator", "auto")
            ),
            limit_train_batches=limit_train_batches,
            limit_val_batches=limit_val_batches,
            limit_test_batches=limit_test_batches,
            limit_predict_batches=limit_predict_batches,
            **kwargs,
        )

    # The subcommands: plain functions whose first parameter is the trainer, bound here as
    # methods, so the CLI reads their options and help from one signature and docstring.
    generate = commands.generate.generate
    translate = commands.translate.translate
    lr_find = commands.lr_find.lr_find
    batch_size_find = commands.batch_size_find.batch_size_find
    export_vectors = commands.export_vectors.export_vectors
    merge_lora = commands.merge_lora.merge_lora
    export_hf = commands.export_hf.export_hf
    chat = commands.chat.chat
    few_shot = commands.few_shot.few_shot


def with_safe_checkpoints(plugins):
    """`plugins` (None, one, or a list) with SafeCheckpointIO added unless one is a CheckpointIO."""
    plugins = [] if plugins is None else list(plugins) if isinstance(plugins, list) else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(SafeCheckpointIO())
    return plugins
