"""A datamodule's fitted state (vocabulary, label names, feature statistics: its
`state_dict()`) restored from --ckpt_path as soon as the CLI builds the datamodule.

Lightning saves `datamodule.state_dict()` in every checkpoint, under the datamodule's class
name, and hands it back to `datamodule.load_state_dict()`, but too late for a checkpoint to
evaluate alone: `Trainer._run` calls the datamodule's `setup` (which reads the data with
whatever it has fitted) before `_restore_modules_and_callbacks` (which restores the state),
and the CLI has built the model even earlier, from facts such as `vocab_size` that it reads
off the datamodule (`link_arguments(..., apply_on="instantiate")`). So the datamodule's
instantiator loads the checkpoint's state into it right after building it, before any link
reads it; Lightning's own call later loads the same state again (a datamodule's
`load_state_dict` must accept that).
"""

from __future__ import annotations

from typing import Any


class RestoringDataInstantiator:
    """Wraps the CLI's datamodule instantiator: build the datamodule, then load the state
    the checkpoint holds for its class, if any."""

    def __init__(self, build, checkpoint: dict[str, Any]):
        self.build, self.checkpoint = build, checkpoint

    def __call__(self, class_type: type, *args, applied_instantiation_links: dict, **kwargs):
        # jsonargparse passes the links applied only to an instantiator that names them.
        datamodule = self.build(
            class_type, *args, applied_instantiation_links=applied_instantiation_links, **kwargs
        )
        state = self.checkpoint.get(class_type.__qualname__)
        if isinstance(state, dict) and state:
            datamodule.load_state_dict(state)
        return datamodule
