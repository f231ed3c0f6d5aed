"""Reading a corpus file as text, the one way every datamodule does it: UTF-8 (gzipped when
the name ends in `.gz`), and a file that is not is a DataError naming the file and the line.
A file larger than memory is read a batch of lines at a time (`read_line_batches`)."""

from __future__ import annotations

import codecs
import gzip
from collections.abc import Iterator
from pathlib import Path

from core.errors import DataError


def read_text(path: Path) -> str:
    """The whole file as text, exactly as stored (no newline translation)."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise DataError(
                f"{path}: not a readable gzip file ({err}); replace it with a clean copy."
            ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        around = data[max(0, err.start - 10) : err.start + 10]
        raise DataError(
            f"{path}: line {line} is not valid UTF-8 ({err.reason} at byte {err.start}: "
            f"{around!r}); the file is corrupt or in another encoding. Re-encode it as UTF-8 "
            f"(e.g. `iconv -f latin1 -t utf-8`) or replace it with a clean copy of the corpus."
        ) from None


def read_lines(path: Path) -> list[str]:
    """The file's lines without their line ends. Split on newlines only (not on the Unicode
    line separators `str.splitlines` also cuts at), so line i is the file's i-th line."""
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline ends the last line, it starts no new one
    return [line.removesuffix("\r") for line in lines]


def read_line_batches(path: Path, batch_bytes: int = 1 << 20) -> Iterator[list[str]]:
    """The lines of `path` (each with its line end, exactly as `read_text(path)
    .splitlines(keepends=True)` cuts them) about `batch_bytes` at a time: a file larger than
    memory is read in constant memory. Errors as `read_text`'s."""
    opener = gzip.open if path.suffix == ".gz" else open
    decoder = codecs.getincrementaldecoder("utf-8")()
    carry, lines_before, bytes_before = "", 0, 0
    with opener(path, "rb") as f:
        while True:
            try:
                block = f.read(batch_bytes)
            except (OSError, EOFError) as err:
                raise DataError(
                    f"{path}: not a readable gzip file ({err}); replace it with a clean copy."
                ) from None
            pending = decoder.getstate()[0]
            try:
                text = carry + decoder.decode(block, final=not block)
            except UnicodeDecodeError as err:
                line = (
                    lines_before + carry.count("\n") + (pending + block)[: err.start].count(b"\n")
                )
                raise DataError(
                    f"{path}: line {line + 1} is not valid UTF-8 ({err.reason} at byte "
                    f"{bytes_before - len(pending) + err.start}); the file is corrupt or in "
                    f"another encoding. Re-encode it as UTF-8 or replace it with a clean copy."
                ) from None
            bytes_before += len(block)
            lines = text.splitlines(keepends=True)
            # The last line waits for the next block: it may go on there (even after a "\r",
            # which a "\n" in the next block joins).
            carry = lines.pop() if block and lines else ""
            if lines:
                lines_before += len(lines)
                yield lines
            if not block:
                return
