"""Decide, before anything starts, whether W&B runs online or offline.

`WANDB_MODE` set by the user (online, offline, disabled) always wins. Otherwise the run is
online when W&B credentials exist (WANDB_API_KEY or a `wandb login` entry in ~/.netrc) and
offline when they don't; an offline run stays under ./wandb and `wandb sync` uploads it later.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = (
        urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
        or "api.wandb.ai"
    )
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        entry = netrc.netrc(path).authenticators(host) if path.is_file() else None
    except (netrc.NetrcParseError, OSError):
        return False
    return bool(entry and entry[2])  # the password is the API key; an empty one logs no one in


def choose_wandb_mode() -> str:
    mode = os.environ.get("WANDB_MODE")
    if not mode:
        mode = "online" if has_wandb_credentials() else "offline"
        os.environ["WANDB_MODE"] = mode
    return mode
