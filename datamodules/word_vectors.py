"""Word vectors in the word2vec text format, the format gensim, fastText and GloVe tools read,
and the files that evaluate them (word similarity, analogies).

The file is a header line ``<n_words> <dim>`` followed by one line per word:
``<word> <v_1> ... <v_dim>`` separated by single spaces. ``save_word2vec_format`` writes it
atomically (a temporary file in the same folder, then ``os.replace``), so a reader never sees
half a file; ``load_word2vec_format`` reads it back, and also reads files without the header
line (GloVe's ``.txt``), telling the two apart by the first line. ``save_vocabulary_vectors``
writes a model's vectors under a corpus's vocabulary, checking that the two fit.

Evaluation files:
- similarity (WordSim-353, SimLex-999, MEN): one pair a line, `word1 word2 score`, separated
  by tabs or commas (then fields may hold spaces) or else by spaces; a first line whose last
  field is not a number is a header; `#` starts a comment.
- analogy (word2vec's questions-words.txt): `: section` lines, then `a b c d` lines, read
  "a is to b as c is to d".
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from core.errors import DataError, UserError
from core.files import atomic_path

VECTORS_FILE = "vectors.txt"  # the default name of an exported vectors file


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


def save_vocabulary_vectors(path: str | os.PathLike, words: Sequence[str], vectors) -> Path:
    """Write a model's word vectors under the vocabulary of the data it was trained on; a
    vocabulary that does not fit the vectors (other data settings) is a UserError."""
    if len(words) != vectors.shape[0]:
        raise UserError(
            f"the model has {vectors.shape[0]} word vectors but the data's vocabulary has "
            f"{len(words)} words: use the data settings (corpus, min_count, ...) the model was trained with."
        )
    return save_word2vec_format(path, words, vectors)


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


def read_similarity_file(path: str | Path) -> list[tuple[str, str, float]]:
    """(word1, word2, score) triples of a WordSim-353-style file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"similarity file {path} not found")
    pairs = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        separator = r"[\t,]" if ("\t" in line or "," in line) else r"\s+"
        fields = [f.strip() for f in re.split(separator, line) if f.strip()]
        try:
            score = float(fields[-1])
        except ValueError:
            if not pairs and line_no == 1:
                continue  # a header such as "Word 1,Word 2,Human (mean)"
            raise DataError(f"{path}:{line_no}: the score {fields[-1]!r} is not a number") from None
        if len(fields) != 3:
            raise DataError(
                f"{path}:{line_no}: expected 'word1 word2 score', found {len(fields)} fields: {line[:80]!r}"
            )
        pairs.append((fields[0], fields[1], score))
    if not pairs:
        raise DataError(f"{path}: no word pairs in the similarity file")
    return pairs


def read_analogy_file(path: str | Path) -> list[tuple[str, str, str, str]]:
    """(a, b, c, d) questions of a questions-words.txt-style file (section lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"analogy file {path} not found")
    questions = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith(":"):
            continue
        words = line.split()
        if len(words) != 4:
            raise DataError(
                f"{path}:{line_no}: expected four words 'a b c d', found {len(words)}: {line[:80]!r}"
            )
        questions.append(tuple(words))
    if not questions:
        raise DataError(f"{path}: no analogy questions in the file")
    return questions
