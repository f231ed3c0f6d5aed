"""Where corpora live, and whether their source can be reached for a download."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "DATA_DIR"


def resolve_data_dir(data_dir: str | os.PathLike | None, corpus: str) -> Path:
    """`data_dir` if given, else `$DATA_DIR/<corpus>`, else `./data/<corpus>`."""
    if data_dir:
        return Path(data_dir).expanduser()
    root = os.environ.get(DATA_DIR_ENV)
    return (Path(root).expanduser() if root else Path("data")) / corpus


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


def resolve_eval_file(name: str | os.PathLike, data_dir: Path, key: str) -> Path:
    """A file to evaluate (`test_file`, ...): `name` as given (absolute, or from the working
    folder), else in the corpus folder `data_dir`; a DataError naming `key` when neither is
    a file."""
    from core.errors import DataError

    given = Path(name).expanduser()
    for path in (given, data_dir / given):
        if path.is_file():
            return path
    places = [given] if given.is_absolute() else [given.resolve(), data_dir / given]
    looked = " and ".join(str(p) for p in places)
    raise DataError(f"data.init_args.{key}: no file {name} (looked for {looked}).")
