"""The one cache of derived files (tokenizers, token ids, aligned word vectors, dedup reports)
that every datamodule shares.

Derived files of a corpus go to `<cache_dir>/<corpus>/<key>/`, `cache_dir` being
`$XDG_CACHE_HOME/seqmodels` (`~/.cache/seqmodels` when XDG_CACHE_HOME is unset) unless the
datamodule's `cache_dir` argument moves it. Never into the data folder: a shared copy of the
corpus stays untouched, and whether a folder is writable changes nothing.

The key is a fingerprint of the inputs (each file's path, size and modification time), the
settings that shape the derived files, and `CACHE_FORMAT`: other inputs or settings are
another folder, never a stale reuse. Files are written whole or not at all (written beside
their target, then renamed onto it), so two processes that build the same file at once both
write a complete, identical file and a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from core.files import atomic_write_bytes

# Part of every key: bump it when training or encoding changes, so that old caches are not
# reused (2: word vocabularies counted by `word_vocabulary`, without id holes).
CACHE_FORMAT = 2

T = TypeVar("T")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir` if given, else `$XDG_CACHE_HOME/seqmodels`, else `~/.cache/seqmodels`."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "seqmodels"


def fingerprint(files: Iterable[Path], settings: str) -> str:
    """A short key that changes when any input file (path, size, mtime), a setting or the
    cache format changes."""
    h = hashlib.sha1(f"v{CACHE_FORMAT}:{settings}".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


class DerivedFiles:
    """The cache folder of one corpus for one set of inputs and settings."""

    def __init__(
        self,
        corpus: str,
        inputs: Iterable[Path],
        settings: str,
        cache_dir: str | os.PathLike | None = None,
    ):
        self.folder = cache_root(cache_dir) / corpus / fingerprint(inputs, settings)

    def path(self, name: str) -> Path:
        return self.folder / name

    def get(
        self,
        name: str,
        build: Callable[[], T],
        dump: Callable[[T], bytes],
        load: Callable[[Path], T],
    ) -> T:
        """The file `name` loaded, or built, written (atomically) and returned."""
        path = self.path(name)
        if path.exists():
            return load(path)
        value = build()
        atomic_write_bytes(path, dump(value))
        return value
