"""Files written whole or not at all: a run killed mid-write never leaves half a checkpoint,
picture, vocabulary, config or exported model folder behind. Each is written to a temporary file beside its target
(same folder, so same file system, whatever TMPDIR is), flushed to disk, then renamed onto
it, which POSIX makes atomic.

A process killed mid-write (kill -9, out of memory) leaves its temporary behind; the name
says which host and process wrote it (`.<name>.<host>-<pid>.<random>.tmp`), so the next run
can remove those whose writer is gone (`remove_stale_temporaries`) and never one being
written by a run still alive.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = socket.gethostname().replace(".", "_").replace("-", "_")
TEMPORARY = re.compile(r"^\..+\.(?P<host>[^.]+)-(?P<pid>\d+)\.[^.]+\.tmp$")


def temporary_affixes(path: Path) -> tuple[str, str]:
    """The prefix and suffix of a temporary beside `path`, as TEMPORARY reads them back:
    `.<name>.<host>-<pid>.` and `.tmp` (mkstemp / mkdtemp put the random part between)."""
    return f".{path.name}.{HOST}-{os.getpid()}.", ".tmp"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to; flushed to disk and renamed onto `path`
    when the block ends, removed if it raises. Writers that guess a format from the file name
    (matplotlib's savefig) need it given: the name ends in `.tmp`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = temporary_affixes(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the file is a normal output
        sync(tmp)  # on disk before the rename: a power cut never leaves an empty target
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside `path` to fill; its files flushed to disk and the folder
    renamed onto `path` when the block ends, removed if it raises. A folder already at `path`
    is replaced: moved aside first, removed after, so `path` is always the old folder whole or
    the new one whole (or, for the instant between the two renames, absent)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = temporary_affixes(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=suffix))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the folder is a normal output
        for file in tmp.rglob("*"):
            if file.is_file():
                sync(file)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=suffix))
            os.replace(path, old)  # onto the empty folder just made: POSIX allows it
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries in `folder` that `atomic_path` left when its process was killed
    (written on this host by a process that no longer runs); return their paths. Those of
    live processes, and of other hosts sharing the folder, are left alone."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.glob(".*.tmp"):
        match = TEMPORARY.match(path.name)
        if match and match["host"] == HOST and not process_alive(int(match["pid"])):
            if path.is_dir() and not path.is_symlink():  # an atomic_folder's
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
