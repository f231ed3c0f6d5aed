"""Checkpoints the suite's own subcommands read (generate, translate, chat, export_vectors)."""

from __future__ import annotations

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
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, KeyError, EOFError, OSError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"{path} does not fit this config's model ({first_line}). Use the config the checkpoint was trained with."
        ) from None
