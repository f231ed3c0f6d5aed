"""The suite's tokenizers, shared by every corpus: word-level, byte-level BPE and characters.

All three are HF `tokenizers.Tokenizer` objects, trained on the train split only and saved as
JSON, so the same file serves training, evaluation and generation.

`encode_lines` also reports, for each token, how many words and characters of the original
text it closes. Summed over a split these give the number of words (whitespace-separated
words plus one end-of-line per line, the WikiText convention) and characters, which turn a
sub-word or character loss into word-level perplexity and bits per character.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from datamodules.paths import atomic_write_bytes

TOKENIZER_KINDS = ("word", "bpe", "char")
EOS = "<eos>"  # word level: the end of a line, as in WikiText's standard vocabulary
UNK = "<unk>"
END_OF_TEXT = "<|endoftext|>"  # BPE: a document separator for generation


@dataclass
class EncodedSplit:
    """Token ids of one split with, per token, the words and characters it completes."""

    ids: np.ndarray  # int64 token ids
    words: np.ndarray  # uint8 word count per token
    chars: np.ndarray  # uint16 character count per token

    def __len__(self) -> int:
        return len(self.ids)

    def save(self, path: Path) -> None:
        import io

        buf = io.BytesIO()
        np.savez(buf, ids=self.ids, words=self.words, chars=self.chars)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> EncodedSplit:
        with np.load(path) as f:
            return cls(f["ids"], f["words"], f["chars"])


def train_tokenizer(kind: str, lines: Sequence[str], bpe_vocab_size: int = 8192) -> Tokenizer:
    """Train a tokenizer of `kind` on `lines` (each ending with its newline)."""
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.WordLevelTrainer(
            vocab_size=10**9, min_frequency=1, special_tokens=[EOS, UNK]
        )
        tok.train_from_iterator(lines, trainer)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=bpe_vocab_size,
            special_tokens=[END_OF_TEXT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(lines, trainer)
    elif kind == "char":
        # One token per character, as in char-rnn and nanoGPT; unseen characters map to <unk>.
        chars = sorted(set("".join(lines)))
        vocab = {c: i for i, c in enumerate(chars)}
        vocab[UNK] = len(vocab)
        tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
    else:
        raise ValueError(f"unknown tokenizer {kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}")
    return tok


def save_tokenizer(tok: Tokenizer, path: Path) -> None:
    atomic_write_bytes(path, tok.to_str().encode())


def load_tokenizer(path: Path) -> Tokenizer:
    return Tokenizer.from_file(str(path))


def encode_text(tok: Tokenizer, kind: str, text: str) -> list[int]:
    """Token ids of `text` (a prompt). Where the vocabulary has no token for part of it, say
    which part, rather than silently feeding <unk> to the model."""
    if not text:
        raise ValueError("the prompt is empty: give at least one character")
    enc = tok.encode(text, add_special_tokens=False)
    unk_id = tok.token_to_id(UNK)
    unknown = [
        text[a:b]
        for i, (a, b) in zip(enc.ids, enc.offsets, strict=True)
        if i == unk_id and text[a:b] != UNK
    ]
    if unknown:
        what = "characters" if kind == "char" else "words"
        listed = ", ".join(repr(u) for u in dict.fromkeys(unknown))
        raise ValueError(f"the prompt has {what} outside the vocabulary: {listed}")
    return enc.ids


def decode_ids(tok: Tokenizer, kind: str, ids: Sequence[int]) -> str:
    """Text of token ids; at word level <eos> ends a line."""
    if kind != "word":
        return tok.decode(list(ids))
    words = [tok.id_to_token(i) for i in ids]
    return (
        " ".join(words)
        .replace(f" {EOS} ", "\n")
        .replace(f" {EOS}", "\n")
        .replace(f"{EOS} ", "\n")
        .replace(EOS, "\n")
    )


def encode_lines(tok: Tokenizer, kind: str, lines: Sequence[str]) -> EncodedSplit:
    """Encode `lines` (each ending with its newline) into one stream of token ids."""
    eos_id = tok.token_to_id(EOS) if kind == "word" else None
    ids, words, chars = [], [], []
    for line, enc in zip(
        lines, tok.encode_batch(list(lines), add_special_tokens=False), strict=True
    ):
        line_ids = enc.ids
        ends = [end for _, end in enc.offsets]
        if eos_id is not None:  # the word-level text has no newline token: <eos> stands for it
            line_ids = [*line_ids, eos_id]
            ends.append(len(line))
        ids.extend(line_ids)
        # Each token owns the characters since the previous token's end, so byte-level pieces of
        # one character never count it twice and the tokens partition the line exactly.
        ends_arr = np.asarray(ends, dtype=np.int64)
        word_start = _word_starts(line)
        cum = np.concatenate([[0], np.cumsum(word_start)])
        prev = np.concatenate([[0], ends_arr[:-1]])
        words.append(cum[ends_arr] - cum[prev])
        chars.append(ends_arr - prev)
    return EncodedSplit(
        ids=np.asarray(ids, dtype=np.int64),
        words=np.concatenate(words).astype(np.uint8) if words else np.zeros(0, np.uint8),
        chars=np.concatenate(chars).astype(np.uint16) if chars else np.zeros(0, np.uint16),
    )


def _word_starts(line: str) -> np.ndarray:
    """1 at each character that starts a word and at the newline (the end-of-line word)."""
    is_space = np.fromiter((c.isspace() for c in line), dtype=bool, count=len(line))
    starts = ~is_space
    starts[1:] &= is_space[:-1]
    if line.endswith("\n"):
        starts[-1] = True
    return starts.astype(np.int64)
