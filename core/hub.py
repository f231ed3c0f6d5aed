"""The Hugging Face hub, as the datamodules (a tokenizer) and the models (weights) both read
it: is it offline, the local copy of a folder or hub id, and which tokenizer a folder holds."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from core.constants import TOKENIZER_FILES
from core.errors import UserError


def hub_offline() -> bool:
    """Has the user told the HF libraries to stay offline?"""
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def local_copy(
    name: str,
    key: str,
    files: str,
    allow_patterns: list[str] | None = None,
    error: type[UserError] = UserError,
) -> Path:
    """`name` as a local folder: itself, or the hub cache's copy of a hub id (downloaded first
    when online). Otherwise `error`, saying where to put the `files` and under which `key`."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError

    offline = hub_offline() or bool(constants.HF_HUB_OFFLINE)
    try:
        return Path(
            snapshot_download(name, local_files_only=offline, allow_patterns=allow_patterns)
        )
    except Exception as err:  # not a hub id, not cached, no network, no such repository
        if isinstance(err, HFValidationError):
            why = "not a hub id"
        elif offline:
            why = f"not in the local cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set"
        else:
            why = f"not in the local cache and not downloadable ({type(err).__name__}: {err})"
        raise error(
            f"{key} {name}: no such folder, and {why}. Put {files} in a folder, e.g. on a "
            f"machine with network `hf download {name} --local-dir DIR` and copy DIR here, "
            f"then give {key}: DIR."
        ) from None


def tokenizer_identity(folder: Path) -> str | None:
    """A hash of the tokenizer files in `folder` (names and contents): other files, other
    token ids. None when it holds none."""
    h, found = hashlib.sha256(), False
    for name in TOKENIZER_FILES:
        path = Path(folder) / name
        if path.is_file():
            found = True
            h.update(f"{name}:{path.stat().st_size}:".encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16] if found else None


def pretrained_tokenizer_name(identity: str) -> str:
    """How a datamodule names a Hugging Face tokenizer (its `tokenizer_name`): a model's
    folder and the data's tokenizer compare by it."""
    return f"pretrained:{identity}"


def tokenizer_name_in(folder: Path) -> str | None:
    """The `tokenizer_name` of the tokenizer in a model's folder; None when it holds none."""
    identity = tokenizer_identity(folder)
    return pretrained_tokenizer_name(identity) if identity else None
