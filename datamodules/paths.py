"""Where corpora live and where their derived files (tokenizers, token-id caches) go."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

DATA_DIR_ENV = "DATA_DIR"


def resolve_data_dir(data_dir: str | os.PathLike | None, corpus: str) -> Path:
    """`data_dir` if given, else `$DATA_DIR/<corpus>`, else `./data/<corpus>`."""
    if data_dir:
        return Path(data_dir).expanduser()
    root = os.environ.get(DATA_DIR_ENV)
    return (Path(root).expanduser() if root else Path("data")) / corpus


def is_writable(folder: Path) -> bool:
    """Writable by us and not marked read-only: mode bits are checked too, because root's
    `os.access` says yes even to a shared folder whose owner made it read-only."""
    folder = folder if folder.exists() else folder.parent
    return (
        folder.exists()
        and os.access(folder, os.W_OK)
        and bool(folder.stat().st_mode & stat.S_IWUSR)
    )


def cache_dir_for(data_dir: Path, corpus: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Derived files go next to the data when that folder is writable (as with a download),
    otherwise (a read-only shared copy) under `~/.cache/seqmodels`, keyed by the data folder."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if is_writable(data_dir):
        return data_dir / ".cache"
    key = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:10]
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "seqmodels" / f"{corpus}-{key}"


def fingerprint(*files: Path, extra: str = "") -> str:
    """A short key that changes when any source file (size, mtime) or a setting changes."""
    h = hashlib.sha1(extra.encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def reachable(url: str, timeout: float = 5.0) -> bool:
    """Can we open a connection to the host of `url` (or the proxy in between)? Checked before
    a download so that an offline machine fails at once instead of after minutes of retries."""
    import socket
    from urllib.parse import urlparse

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    parsed = urlparse(proxy or url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False
