"""Files that carry their own check: one header line, `seqmodels-checked 1 <size> <sha256>`,
then the payload. Header and payload go out in one atomic write, so a reader never pairs a
checksum with another writer's bytes; a file truncated, emptied or overwritten afterwards
fails `unwrap` with the reason. The derived-file cache writes every file this way."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from core.files import atomic_path, atomic_write_bytes

MAGIC = b"seqmodels-checked"
VERSION = b"1"
HEADER_MAX = 128  # magic, version, a size and 64 hex digits fit with room to spare


class DamagedFile(Exception):
    """The bytes are not a whole checked file; the message says why."""


def wrap(payload: bytes) -> bytes:
    """`payload` behind its header."""
    return header(len(payload), hashlib.sha256(payload).hexdigest()) + payload


def unwrap(data: bytes) -> bytes:
    """The payload of `data` once its size and SHA-256 match the header's."""
    if not data:
        raise DamagedFile("empty")
    end = data.find(b"\n", 0, HEADER_MAX)
    fields = data[:end].split(b" ") if end > 0 else []
    if len(fields) != 4 or fields[0] != MAGIC or not fields[2].isdigit():
        raise DamagedFile("no checksum header")
    if fields[1] != VERSION:
        raise DamagedFile(f"checked-file version {fields[1].decode(errors='replace')}, not 1")
    payload, size = data[end + 1 :], int(fields[2])
    if len(payload) != size:
        raise DamagedFile(f"{len(payload)} of {size} bytes")
    if hashlib.sha256(payload).hexdigest().encode() != fields[3]:
        raise DamagedFile("checksum mismatch")
    return payload


def write_checked(path: str | os.PathLike, payload: bytes) -> None:
    atomic_write_bytes(path, wrap(payload))


def read_payload(path: str | os.PathLike) -> bytes:
    """A checked file's verified payload, or the bytes of a plain file (one that does not
    start with the header: written by hand or by another program)."""
    data = Path(path).read_bytes()
    return unwrap(data) if data.startswith(MAGIC) else data


def header(size: int, digest: str) -> bytes:
    return b" ".join((MAGIC, VERSION, str(size).encode(), digest.encode())) + b"\n"


def write_checked_parts(path: str | os.PathLike, parts: list) -> None:
    """`write_checked` of the concatenated `parts` (bytes-like: numpy arrays too), written
    one after the other: a large payload is never copied into one bytes object."""
    views = [memoryview(part).cast("B") for part in parts]
    digest = hashlib.sha256()
    for view in views:
        digest.update(view)
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        f.write(header(sum(len(v) for v in views), digest.hexdigest()))
        for view in views:
            f.write(view)


def check_file(path: str | os.PathLike, chunk: int = 1 << 22) -> int:
    """Where the payload of the checked file at `path` starts, once its size and SHA-256
    match the header's; read in chunks, so a file far larger than memory is checked too
    (what a memory map of the payload needs). DamagedFile otherwise."""
    with open(path, "rb") as f:
        head = f.read(HEADER_MAX)
        if not head:
            raise DamagedFile("empty")
        end = head.find(b"\n")
        fields = head[:end].split(b" ") if end > 0 else []
        if len(fields) != 4 or fields[0] != MAGIC or not fields[2].isdigit():
            raise DamagedFile("no checksum header")
        if fields[1] != VERSION:
            raise DamagedFile(f"checked-file version {fields[1].decode(errors='replace')}, not 1")
        size, have = int(fields[2]), os.fstat(f.fileno()).st_size - end - 1
        if have != size:
            raise DamagedFile(f"{have} of {size} bytes")
        digest = hashlib.sha256(head[end + 1 :])
        while block := f.read(chunk):
            digest.update(block)
    if digest.hexdigest().encode() != fields[3]:
        raise DamagedFile("checksum mismatch")
    return end + 1
