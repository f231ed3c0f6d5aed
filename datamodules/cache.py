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

Each file carries its size and SHA-256 in a header line (`core.checked_files`). A file that
fails the check or does not load (truncated, emptied, overwritten, a disk error) is reported
once on stderr by path, removed and built again: a damaged cache never stops a run. A cache
folder that cannot be written only costs the rebuild on the next run.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from core.checked_files import DamagedFile, check_file, unwrap, write_checked_parts

# Part of every key: bump it when training, encoding or the file layout changes, so that old
# caches are not reused (2: word vocabularies counted by `word_vocabulary`, without id holes;
# 3: files carry a checksum header, so the unchecked files of 2 stay in their old folders;
# 4: token ids as memory-mapped shards, datamodules/token_store.py).
CACHE_FORMAT = 4

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
        load: Callable[[bytes], T],
    ) -> T:
        """The file `name` loaded (`load` of its payload), or built, written and returned."""
        value = self.read(name, load)
        if value is None:
            value = build()
            self.write(name, dump(value))
        return value

    def read(self, name: str, load: Callable[[bytes], T]) -> T | None:
        """`load` of the payload of file `name`; None when it is missing, or damaged: then
        it is reported and removed, for the caller to build it again."""
        path = self.path(name)
        try:
            with path.open("rb") as f:
                data, identity = f.read(), _identity(os.fstat(f.fileno()))
        except (FileNotFoundError, NotADirectoryError):  # not built yet (or no folder for it)
            return None
        except OSError as err:
            _warn(f"cache file {path} is unreadable ({err.strerror or err}); rebuilding it")
            return None
        try:
            return load(unwrap(data))
        except DamagedFile as err:
            reason = str(err)
        except Exception as err:  # checked bytes that still do not load: also damaged
            reason = f"{type(err).__name__}: {err}"
        _warn(f"cache file {path} is damaged ({reason}); rebuilding it")
        _remove_if_unchanged(path, identity)
        return None

    def write(self, name: str, payload: bytes) -> bool:
        """Write file `name` (atomically, with its checksum); False when it could not be. A
        folder that cannot be written is reported, not fatal: the run goes on with what it
        built."""
        return self.write_parts(name, [payload])

    def write_parts(self, name: str, parts: list) -> bool:
        """`write` of the concatenated `parts` (bytes-like, numpy arrays too), never copied
        into one payload."""
        path = self.path(name)
        try:
            write_checked_parts(path, parts)
        except OSError as err:
            _warn(f"cannot write cache file {path} ({err.strerror or err}); going on without it")
            return False
        return True

    def check(self, name: str) -> int | None:
        """Where the payload of file `name` starts, for a memory map of it, once its size and
        checksum are checked (read in chunks: any size); None when it is missing, or damaged:
        then it is reported and removed, for the caller to build it again."""
        path = self.path(name)
        try:
            identity = _identity(path.stat())
            return check_file(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except DamagedFile as err:
            _warn(f"cache file {path} is damaged ({err}); rebuilding it")
        except OSError as err:
            _warn(f"cache file {path} is unreadable ({err.strerror or err}); rebuilding it")
            return None
        _remove_if_unchanged(path, identity)
        return None


def _warn(message: str) -> None:
    # Straight to stderr: the user sees it whatever logging is configured to show.
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _remove_if_unchanged(path: Path, identity: tuple[int, int, int]) -> None:
    """Remove the damaged file read, not a whole one another process renamed onto its path
    since (a rename makes a new inode)."""
    try:
        if _identity(path.stat()) == identity:
            path.unlink()
    except OSError:
        pass  # gone already, or a folder we cannot write: the rebuild replaces it or warns
