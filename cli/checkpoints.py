"""Checkpoints the suite's own subcommands read (generate, translate, chat, export_vectors)."""

from __future__ import annotations

import pickle
from pathlib import Path

import lightning as L
import torch

from core.errors import UserError


def load_weights(model: L.LightningModule, ckpt_path: str) -> None:
    """Load the weights of the checkpoint at `ckpt_path` (a subcommand's --ckpt_path) into
    `model`; a missing, unreadable or mismatched file is a UserError saying what to do."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"--ckpt_path {path}: no such checkpoint")
    try:
        # Read once, and only tensors and plain data: a checkpoint runs no code when loaded.
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    except (RuntimeError, KeyError, EOFError, OSError, pickle.UnpicklingError) as err:
        raise UserError(
            f"--ckpt_path {path}: not a readable checkpoint ({first_line(err)})"
        ) from None
    bad = [name for name, t in state.items() if t.is_floating_point() and not t.isfinite().all()]
    if bad:
        more = ", ..." if len(bad) > 3 else ""
        raise UserError(
            f"{path} holds NaN or inf weights ({', '.join(bad[:3])}{more}): the run that wrote "
            "it diverged; use an earlier checkpoint."
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(
            f"{path} does not fit this config's model ({first_line(err)}). Use the config the "
            "checkpoint was trained with."
        ) from None


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
