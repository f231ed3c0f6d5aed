"""The random generators' states go into every checkpoint, and a resumed run sets them back
before its first training batch: dropout (and any other draw) after a resume is the one the
uninterrupted run made.

Set back at the first training batch, not when the checkpoint is read: in between, Lightning
runs a sanity validation, and callbacks may sample text, all of which draw numbers. The
states are those at the moment the checkpoint was written, after the validation it follows;
the uninterrupted run draws nothing between that moment and its next training batch (the
training loaders have generators of their own: datamodules/resumable.py).

Saved: torch's CPU generator, the current CUDA device's (when there is one), numpy's and
Python's `random`; all as tensors and plain numbers, so that the checkpoint still loads with
`torch.load(weights_only=True)`. Under DDP the checkpoint holds rank 0's states, and every
rank starts from them (seed_everything gave all ranks the same states).
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch


class RestoreRandomState(L.Callback):
    def __init__(self):
        self._to_restore: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return random_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._to_restore is not None:
            set_random_states(self._to_restore)
            self._to_restore = None


def random_states() -> dict[str, Any]:
    """torch's (CPU, and the current CUDA device's), numpy's and Python's generator states."""
    version, py_state, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np_state = states["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
