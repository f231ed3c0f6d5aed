"""Checkpoints the suite's own subcommands read (generate, translate, chat, export_vectors)."""

from __future__ import annotations

import pickle
from pathlib import Path

import lightning as L
import torch

from core.errors import UserError

# What torch.load raises on a file that is not a whole checkpoint (truncated, another format,
# a pickle that needs code to load).
UNREADABLE = (
    RuntimeError,
    EOFError,
    OSError,
    IndexError,
    KeyError,
    ValueError,
    pickle.UnpicklingError,
)


def read_checkpoint(ckpt_path: str) -> dict:
    """The checkpoint at `ckpt_path` (a subcommand's --ckpt_path), read once and with
    `weights_only=True` (a checkpoint runs no code when loaded); a missing or unreadable file,
    or one without weights, is a UserError."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"--ckpt_path {path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as err:
        raise UserError(
            f"--ckpt_path {path}: not a readable checkpoint ({first_line(err)})"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"--ckpt_path {path}: not a readable checkpoint (it holds no state_dict)")
    return checkpoint


def load_weights(model: L.LightningModule, ckpt_path: str) -> None:
    """Load the weights of the checkpoint at `ckpt_path` into `model`; an unreadable file, NaN
    or inf weights, or weights of another model are a UserError saying what to do."""
    path = Path(ckpt_path)
    state = read_checkpoint(ckpt_path)["state_dict"]
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
