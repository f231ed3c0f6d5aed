"""Files written whole or not at all: a run killed mid-write never leaves half a checkpoint,
picture, vocabulary or config behind. Each is written to a temporary file beside its target
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
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = socket.gethostname().replace(".", "_").replace("-", "_")
TEMPORARY = re.compile(r"^\..+\.(?P<host>[^.]+)-(?P<pid>\d+)\.[^.]+\.tmp$")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to; flushed to disk and renamed onto `path`
    when the block ends, removed if it raises. Writers that guess a format from the file name
    (matplotlib's savefig) need it given: the name ends in `.tmp`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{HOST}-{os.getpid()}.", suffix=".tmp"
    )
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
