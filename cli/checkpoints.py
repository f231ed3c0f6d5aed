"""Reading checkpoints: every command that takes --ckpt_path (fit, validate, test, predict and
the suite's generate, translate, chat, export_vectors, merge_lora) reads the file here.

- Safely: `torch.load(weights_only=True)`, so a checkpoint is data and runs no code.
- Once: the CLI reads the file for its hyperparameters before anything is built; that copy
  is kept (`remember`) and handed to the first reader of the same path, so the file cannot be
  swapped between a check and its use.
- Checked: a missing, empty or unreadable file, one without weights, or one whose weights
  are NaN or inf (its run diverged) is a UserError naming the file.
"""

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

# The checkpoint the CLI read for --ckpt_path, by resolved path, until its first reader.
_remembered: dict[Path, dict] = {}


def remember(ckpt_path: str | Path, checkpoint: dict) -> None:
    _remembered.clear()
    _remembered[Path(ckpt_path).resolve()] = checkpoint


def forget() -> None:
    _remembered.clear()


def read_checkpoint(ckpt_path: str | Path) -> dict:
    """The checkpoint at `ckpt_path`: the copy the CLI read already, else read now (once,
    with `weights_only=True`); a missing, empty or unreadable file, or one without finite
    weights, is a UserError."""
    path = Path(ckpt_path)
    remembered = _remembered.pop(path.resolve(), None)
    if remembered is not None:
        return remembered
    if not path.is_file():
        raise UserError(f"--ckpt_path {path}: no such checkpoint")
    if path.stat().st_size == 0:
        raise UserError(
            f"--ckpt_path {path}: the file is empty (0 bytes), so its save was interrupted; "
            "use another checkpoint of the run."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as err:
        raise UserError(
            f"--ckpt_path {path}: not a readable checkpoint ({first_line(err)}). Only "
            "checkpoints of plain tensors and numbers load (weights_only=True): a file that "
            "needs code to load is refused."
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"--ckpt_path {path}: not a readable checkpoint (it holds no state_dict)")
    if bad := non_finite_weights(checkpoint["state_dict"]):
        raise UserError(
            f"--ckpt_path {path} holds NaN or inf weights ({bad}): the run that wrote it "
            "diverged; use an earlier checkpoint."
        )
    return checkpoint


def non_finite_weights(state_dict: dict) -> str:
    """The names of the NaN or inf weights of `state_dict` (the first three), or ''."""
    bad = [
        name
        for name, t in state_dict.items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not t.isfinite().all()
    ]
    return ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")


def load_weights(model: L.LightningModule, ckpt_path: str) -> dict:
    """Load the weights of the checkpoint at `ckpt_path` into `model` and return the
    checkpoint; an unreadable file, NaN or inf weights, or weights of another model are a
    UserError saying what to do."""
    checkpoint = read_checkpoint(ckpt_path)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise does_not_fit(ckpt_path, err) from None
    return checkpoint


def does_not_fit(ckpt_path: str | Path, err: BaseException) -> UserError:
    """The error for weights that do not fit the model built from the config (another
    vocabulary, other sizes), pointing at the config saved with the checkpoint's run."""
    path = Path(ckpt_path)
    return UserError(
        f"{path} does not fit this config's model: {mismatch(err)}. Use the config the "
        f"checkpoint was trained with{saved_config_hint(path)}, and the same data."
    )


def saved_config_hint(ckpt_path: str | Path, joint: str = " (") -> str:
    """` (<run>/config.yaml is the config of its run)` when the checkpoint sits in a run's
    checkpoints/ folder beside the config saved with it, else ''; `joint` instead of ` (`
    gives ` or <run>/config.yaml, the config of its run`."""
    saved = Path(ckpt_path).resolve().parent.parent / "config.yaml"  # <run>/checkpoints/x.ckpt
    if not saved.is_file():
        return ""
    if joint == " (":
        return f" ({saved} is the config of its run)"
    return f"{joint}{saved}, the config of its run"


def mismatch(err: BaseException) -> str:
    """The first specific line of load_state_dict's error (a size mismatch, a missing key)."""
    lines = [line.strip() for line in str(err).strip().splitlines()]
    specific = [line for line in lines[1:] if line]
    return specific[0].rstrip(".") if specific else first_line(err)


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
