"""Word vectors in the word2vec text format, the format gensim, fastText and GloVe tools read.

The file is a header line ``<n_words> <dim>`` followed by one line per word:
``<word> <v_1> ... <v_dim>`` separated by single spaces. ``save_word2vec_format`` writes it
atomically (a temporary file in the same folder, then ``os.replace``), so a reader never sees
half a file; ``load_word2vec_format`` reads it back, and also reads files without the header
line (GloVe's ``.txt``), telling the two apart by the first line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from core.errors import DataError
from core.files import atomic_path


def save_word2vec_format(path: str | os.PathLike, words: Sequence[str], vectors) -> Path:
    """Write ``vectors`` (one row per word, a tensor or array) under ``words`` to ``path``."""
    path = Path(path)
    vectors = torch.as_tensor(vectors).detach().float().cpu()
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ValueError(
            f"need one vector row per word: {len(words)} words, vectors of shape {tuple(vectors.shape)}"
        )
    for word in words:
        if not word or any(c.isspace() for c in word):
            raise ValueError(
                f"word {word!r} cannot be written in the word2vec text format (empty or has whitespace)"
            )
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        f.write(f"{vectors.shape[0]} {vectors.shape[1]}\n")
        for word, row in zip(words, vectors.tolist(), strict=True):
            f.write(word + " " + " ".join(f"{x:.6g}" for x in row) + "\n")
    return path


def load_word2vec_format(path: str | os.PathLike) -> tuple[list[str], torch.Tensor]:
    """Read a word2vec (or header-less GloVe) text file: ``(words, vectors)``, vectors ``(n, dim)`` float32."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"word vectors file {path} not found: give the path of a word2vec text-format file"
        )
    words: list[str] = []
    rows: list[list[float]] = []
    expected: tuple[int, int] | None = None
    dim = None
    with path.open(encoding="utf-8", errors="strict") as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if line_no == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                expected = (int(parts[0]), int(parts[1]))
                dim = expected[1]
                continue
            if not line.strip():
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) != dim + 1:
                raise DataError(
                    f"{path}:{line_no}: expected a word and {dim} numbers, found {len(parts) - 1} fields after the word; "
                    "each line must be '<word> <v1> ... <vdim>' separated by single spaces"
                )
            try:
                rows.append([float(x) for x in parts[1:]])
            except ValueError:
                raise DataError(
                    f"{path}:{line_no}: a vector component is not a number: {line[:80]!r}"
                ) from None
            words.append(parts[0])
    if expected is not None and len(words) != expected[0]:
        raise DataError(
            f"{path}: the header says {expected[0]} words, the file has {len(words)}: the file is truncated"
        )
    if not words:
        raise DataError(f"{path}: no word vectors in the file")
    return words, torch.tensor(rows, dtype=torch.float32)
