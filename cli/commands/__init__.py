"""The suite's own subcommands, one function a module. Each takes the Trainer, the model and
the datamodule the CLI built from the config, then the subcommand's options; cli/trainer.py
binds them as Trainer methods, from whose signatures and docstrings the CLI makes the options.
"""

from cli.commands import (
    batch_size_find,
    chat,
    export_hf,
    export_vectors,
    few_shot,
    generate,
    lr_find,
    merge_lora,
    translate,
)

__all__ = [
    "batch_size_find",
    "chat",
    "export_hf",
    "export_vectors",
    "few_shot",
    "generate",
    "lr_find",
    "merge_lora",
    "translate",
]
