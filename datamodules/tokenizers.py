"""The suite's tokenizers, shared by every corpus: word-level, byte-level BPE and characters,
the joint word-level / BPE tokenizers of the translation corpora, and UTF-8 bytes.

`Tokenizer` wraps an HF `tokenizers.Tokenizer` with the kind it was trained as (which
decoding and the corpus statistics depend on); it is trained on the train split only and
saved as JSON, so the same file serves training, evaluation and generation.

`encode_lines` also reports, for each token, how many words and characters of the original
text it closes. Summed over a split these give the number of words (whitespace-separated
words plus one end-of-line per line, the WikiText convention) and characters, which turn a
sub-word or character loss into word-level perplexity and bits per character.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Literal

import numpy as np
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from core.files import atomic_write_bytes

# The language-modelling kinds; translation has its own (TranslationTokenizerKind, below).
TokenizerKind = Literal["word", "bpe", "char"]
EOS = "<eos>"  # word level: the end of a line, as in WikiText's standard vocabulary
UNK = "<unk>"
END_OF_TEXT = "<|endoftext|>"  # BPE: a document separator for generation


class Tokenizer:
    """An HF tokenizer and its kind (`word`, `bpe`, `char`): text to ids and back.

    At word level (language modelling) <eos> ends a line: `decode` writes it as a newline."""

    def __init__(self, hf: HFTokenizer, kind: str):
        self.hf, self.kind = hf, kind

    # --- saving and loading ---------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return self.hf.to_str().encode()

    def save(self, path: Path) -> None:
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, kind: str) -> Tokenizer:
        return cls(HFTokenizer.from_str(data.decode()), kind)

    @classmethod
    def load(cls, path: Path, kind: str) -> Tokenizer:
        return cls.from_bytes(path.read_bytes(), kind)

    # --- the vocabulary -------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def token_to_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self.hf.id_to_token(i)

    @property
    def unk_id(self) -> int | None:
        return self.token_to_id(UNK)

    @property
    def eos_id(self) -> int | None:
        """<eos>: the end of a line at word level, of a sentence in translation."""
        return self.token_to_id(EOS)

    @property
    def end_of_text_id(self) -> int | None:
        """BPE's <|endoftext|>, the end of a text; None for other kinds (a word-level text
        may hold the string as a word, which ends nothing)."""
        return self.token_to_id(END_OF_TEXT) if self.kind == "bpe" else None

    # --- text in, text out ----------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of `text` (a prompt). Where the vocabulary has no token for part of it,
        say which part, rather than silently feeding <unk> to the model."""
        if not text:
            raise ValueError("the prompt is empty: give at least one character")
        enc = self.hf.encode(text, add_special_tokens=False)
        unknown = [
            text[a:b]
            for i, (a, b) in zip(enc.ids, enc.offsets, strict=True)
            if i == self.unk_id and text[a:b] != UNK
        ]
        if unknown:
            what = "characters" if self.kind == "char" else "words"
            listed = ", ".join(repr(u) for u in dict.fromkeys(unknown))
            raise ValueError(f"the prompt has {what} outside the vocabulary: {listed}")
        return enc.ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids; at word level <eos> ends a line."""
        if self.kind != "word":
            return self.hf.decode(list(ids))
        words = [self.hf.id_to_token(i) for i in ids]
        return (
            " ".join(words)
            .replace(f" {EOS} ", "\n")
            .replace(f" {EOS}", "\n")
            .replace(f"{EOS} ", "\n")
            .replace(EOS, "\n")
        )

    def to_transformers(self):
        """transformers' tokenizer giving the same ids (what `export_hf` writes beside a
        model). Word level: `<eos>` is its eos token, but a newline does not become one."""
        specials = {"unk_token": UNK} if self.unk_id is not None else {}
        eos = {"bpe": END_OF_TEXT, "word": EOS}.get(self.kind)
        if eos is not None and self.token_to_id(eos) is not None:
            specials["eos_token"] = eos
        return as_transformers(self.hf, specials)


@dataclass
class EncodedSplit:
    """Token ids of one split with, per token, the words and characters it completes."""

    ids: np.ndarray  # int64 token ids
    words: np.ndarray  # uint8 word count per token
    chars: np.ndarray  # uint16 character count per token

    def __len__(self) -> int:
        return len(self.ids)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, ids=self.ids, words=self.words, chars=self.chars)
        return buf.getvalue()

    def save(self, path: Path) -> None:
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> EncodedSplit:
        with np.load(io.BytesIO(data)) as f:
            return cls(f["ids"], f["words"], f["chars"])

    @classmethod
    def load(cls, path: Path) -> EncodedSplit:
        return cls.from_bytes(path.read_bytes())


def word_vocabulary(
    words: Iterable[str], specials: Sequence[str], min_freq: int = 1
) -> dict[str, int]:
    """Token ids of a word-level vocabulary: `specials` first (ids 0, 1, ...), then every word
    seen at least `min_freq` times, most frequent first.

    Counted here rather than by `WordLevelTrainer`: in tokenizers 0.23 a special token that
    also occurs in the text (WikiText's own `<unk>`) gets a second id, leaving a hole, so the
    largest id reaches the vocabulary size and overflows the model's embedding table."""
    counts = Counter(words)
    vocab = {token: i for i, token in enumerate(specials)}
    for word, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if count >= min_freq and word not in vocab:
            vocab[word] = len(vocab)
    return vocab


def train_tokenizer(
    kind: TokenizerKind, lines: Iterable[str], bpe_vocab_size: int = 8192
) -> Tokenizer:
    """Train a tokenizer of `kind` on `lines` (each ending with its newline), read once, in
    order: a generator over a corpus larger than memory will do."""
    if kind == "word":
        words = (word for line in lines for word in line.split())
        tok = HFTokenizer(models.WordLevel(word_vocabulary(words, [EOS, UNK]), unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    elif kind == "bpe":
        tok = HFTokenizer(models.BPE())
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
        seen: set[str] = set()
        for line in lines:
            seen.update(line)
        chars = sorted(seen)
        vocab = {c: i for i, c in enumerate(chars)}
        vocab[UNK] = len(vocab)
        tok = HFTokenizer(models.WordLevel(vocab, unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    return Tokenizer(tok, kind)


def encode_lines(tok: Tokenizer, lines: Sequence[str]) -> EncodedSplit:
    """Encode `lines` (each ending with its newline) into one stream of token ids.

    Each token owns the characters since the previous token's end in its line, so byte-level
    pieces of one character never count it twice and the tokens partition the line exactly.
    Vectorized over the whole batch of lines (no Python loop per line or character): this is
    the inner loop of tokenizing a corpus larger than memory."""
    lines = list(lines)
    encodings = tok.hf.encode_batch(lines, add_special_tokens=False)
    per_line = np.fromiter((len(e.ids) for e in encodings), np.int64, len(lines))
    total = int(per_line.sum())
    ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), np.int64, total)
    ends = np.fromiter((end for e in encodings for _, end in e.offsets), np.int64, total)
    lengths = np.fromiter(map(len, lines), np.int64, len(lines))
    if tok.kind == "word":  # the word-level text has no newline token: <eos> stands for it
        after_line = np.cumsum(per_line)
        ids = np.insert(ids, after_line, tok.eos_id)
        ends = np.insert(ends, after_line, lengths)
        per_line = per_line + 1
    line_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lines) else lengths
    line_of = np.repeat(np.arange(len(lines)), per_line)
    prev = np.concatenate([[0], ends[:-1]])
    first = np.concatenate([[0], np.cumsum(per_line)[:-1]])[per_line > 0]
    prev[first] = 0  # a line's first token owns the characters from the line's start
    cum = np.concatenate([[0], np.cumsum(_word_starts("".join(lines), line_start, lengths))])
    offset = line_start[line_of] if len(lines) else line_of
    return EncodedSplit(
        ids=ids,
        words=(cum[offset + ends] - cum[offset + prev]).astype(np.uint8),
        chars=(ends - prev).astype(np.uint16),
    )


# Every character str.isspace() accepts lies below U+3001 (the last is U+3000).
_SPACE = np.array([chr(c).isspace() for c in range(0x3001)], dtype=bool)


def _word_starts(text: str, line_start: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """1 at each character of `text` (lines joined) that starts a word in its line, and at the
    newline that ends a line (the end-of-line word)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    is_space = _SPACE[np.minimum(codes, 0x3000)] & (codes <= 0x3000)
    starts = ~is_space
    starts[1:] &= is_space[:-1]
    firsts = line_start[lengths > 0]
    starts[firsts] = ~is_space[firsts]  # a line's first character follows nothing
    lasts = (line_start + lengths - 1)[lengths > 0]
    starts[lasts[codes[lasts] == ord("\n")]] = True
    return starts.astype(np.int64)


# --- translation: one joint vocabulary for source and target ---------------------------------
# Special ids are fixed by convention (models take pad_id=0, bos_id=1, eos_id=2 by default).
PAD, BOS = "<pad>", "<bos>"
TRANSLATION_SPECIALS = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3
TranslationTokenizerKind = Literal["word", "bpe"]
# Han, kana: one token per character (Chinese has no spaces between words).
_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}"
# A CJK character, a run of other word characters, or one punctuation mark.
WORD_PATTERN = rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]"
# BPE after Metaspace ("▁" marks a preceding space): CJK characters and punctuation stand
# alone, so merges never cross them and decoding still knows where the spaces were.
_BPE_ISOLATED = rf"[{_CJK}]|[^\w\s\u2581]"


def _translation_normalizer(lowercase: bool) -> normalizers.Normalizer:
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    return normalizers.Sequence(steps)


def _word_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(WORD_PATTERN), "isolated")]
    )


def train_translation_tokenizer(
    kind: TranslationTokenizerKind,
    lines: Iterable[str],
    vocab_size: int = 8000,
    min_freq: int = 2,
    lowercase: bool = True,
) -> Tokenizer:
    """A joint tokenizer for both languages of a translation corpus, trained on `lines`
    (the train split's sentences of both sides). `<pad> <bos> <eos> <unk>` get ids 0-3.

    word: NFKC (and lower-casing), each CJK character a token, otherwise words and punctuation
        marks; words seen fewer than `min_freq` times become <unk> (pytorch-seq2seq keeps 2).
    bpe: the same normalisation; BPE merges learned up to `vocab_size` tokens, never across a
        space, a punctuation mark or a CJK character.
    """
    specials = list(TRANSLATION_SPECIALS)
    if kind == "word":
        words = (w for line in lines for w in translation_tokens(line, lowercase))
        tok = HFTokenizer(
            models.WordLevel(word_vocabulary(words, specials, min_freq), unk_token=UNK)
        )
        tok.pre_tokenizer = _word_pre_tokenizer()
        tok.normalizer = _translation_normalizer(lowercase)
        return Tokenizer(tok, kind)
    if kind == "bpe":
        tok = HFTokenizer(models.BPE(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Metaspace(prepend_scheme="always"),
                pre_tokenizers.Split(Regex(_BPE_ISOLATED), "isolated"),
            ]
        )
        tok.decoder = decoders.Metaspace(prepend_scheme="always")
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=specials, show_progress=False
        )
    else:
        raise ValueError(f"unknown translation tokenizer kind {kind!r}")
    tok.normalizer = _translation_normalizer(lowercase)
    tok.train_from_iterator(lines, trainer)
    return Tokenizer(tok, kind)


def translation_tokens(text: str, lowercase: bool = True) -> list[str]:
    """The word tokens of `text` as the word-level tokenizer cuts it: NFKC, lower-cased when
    asked, CJK characters one by one, punctuation split (the tokens of "tokenized BLEU")."""
    normal = _translation_normalizer(lowercase).normalize_str(text)
    return [piece for piece, _ in _word_pre_tokenizer().pre_tokenize_str(normal)]


# Word-level detokenizing: which marks hug which neighbour.
_NO_SPACE_BEFORE = set(".,!?;:%)]}»'”") | set("。，、！？；：）」』》〉】")
_NO_SPACE_AFTER = set("([{«$¿¡„") | set("（「『《〈【")
_JOINERS = set("-/")  # t-shirt, and/or: written without spaces
_CONTRACTIONS = {"s", "t", "re", "ve", "ll", "d", "m", "clock"}  # it's, don't, o'clock


def _is_cjk(token: str) -> bool:
    return bool(token) and any(
        "\u2e80" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" or "\u3000" <= c <= "\u303f"
        for c in token
    )


def _is_letter(token: str) -> bool:
    return len(token) == 1 and token.isalpha()


def detokenize(tokens: Sequence[str]) -> str:
    """Text from word tokens: no space before closing punctuation or after opening marks,
    none around hyphens, in contractions, in abbreviations (p.m.), between digits and a decimal
    point or colon, or next to a CJK character. Straight double quotes open and close in turn; German „ opens
    and “ closes it (without an open „, “ opens)."""
    out: list[str] = []
    straight_open = german_open = False
    after_opening_quote = False
    for i, token in enumerate(tokens):
        prev, before = (tokens[i - 1] if i else ""), (tokens[i - 2] if i >= 2 else "")
        after = tokens[i + 1] if i + 1 < len(tokens) else ""
        space = i > 0 and not after_opening_quote
        after_opening_quote = False
        if token == '"':
            straight_open = not straight_open
            after_opening_quote, space = straight_open, space and straight_open
        elif token == "\u201e":
            german_open = True
        elif token == "\u201c":
            after_opening_quote, space = not german_open, space and not german_open
            german_open = False
        if space and (
            token in _NO_SPACE_BEFORE
            or prev in _NO_SPACE_AFTER
            or token in _JOINERS
            or prev in _JOINERS
            or (prev == "'" and token in _CONTRACTIONS)
            or (prev in ".,:" and before[-1:].isdigit() and token[:1].isdigit())
            or (prev == "." and _is_letter(before) and _is_letter(token) and after == ".")
            or _is_cjk(token)
            or _is_cjk(prev)
        ):
            space = False
        out.append(" " + token if space else token)
    return "".join(out)


def decode_translation(tok: Tokenizer, ids: Sequence[int]) -> str:
    """Text of target ids: stops at <eos>, drops <pad> and <bos>, detokenizes."""
    pad_id, bos_id, eos_id = (tok.token_to_id(t) for t in (PAD, BOS, EOS))
    kept = []
    for i in ids:
        i = int(i)
        if i == eos_id:
            break
        if i not in (pad_id, bos_id):
            kept.append(i)
    if tok.kind == "bpe":
        return tok.hf.decode(kept, skip_special_tokens=False).strip()
    return detokenize([tok.id_to_token(i) for i in kept])


# --- bytes: a tokenizer that needs no training ---------------------------------------------


class ByteTokenizer:
    """UTF-8 bytes (ids 0-255) plus a few special tokens (256, 257, ...), written in the text
    as their names (`<|endoftext|>`, ...). Any language in, nothing unknown, nothing to
    train or cache: two runs on different corpora share the same ids, which is what lets a
    GPT pretrained on one text be fine-tuned on another (the chat corpus)."""

    kind = "byte"

    def __init__(self, specials: Sequence[str] = (END_OF_TEXT,)):
        self.specials = list(specials)
        self.special_ids = {s: 256 + i for i, s in enumerate(self.specials)}
        # Longest first, so that no special is cut by a shorter one it starts with.
        self._special_pattern = "|".join(
            re.escape(s) for s in sorted(self.specials, key=len, reverse=True)
        )

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.specials)

    @property
    def name(self) -> str:
        """Says which ids mean what; equal names, interchangeable token ids."""
        return "bytes+" + ",".join(self.specials)

    def token_to_id(self, token: str) -> int | None:
        return self.special_ids.get(token)

    @property
    def end_of_text_id(self) -> int | None:
        return self.token_to_id(END_OF_TEXT)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in re.split(f"({self._special_pattern})", text) if self.specials else [text]:
            if piece in self.special_ids:
                ids.append(self.special_ids[piece])
            elif piece:
                ids.extend(piece.encode("utf-8"))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids; a byte run cut inside a character decodes to U+FFFD, not an error."""
        out, run = [], bytearray()
        for i in ids:
            i = int(i)
            if i < 256:
                run.append(i)
                continue
            out.append(run.decode("utf-8", errors="replace"))
            run = bytearray()
            out.append(self.specials[i - 256] if i - 256 < len(self.specials) else "")
        out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)

    def to_transformers(self, chat_template: str | None = None):
        """transformers' tokenizer giving the same ids: GPT-2's byte-level alphabet with no
        merges (byte b is id b), the specials added after it as 256, 257, ..."""
        vocab = {char: byte for byte, char in byte_alphabet().items()}
        tok = HFTokenizer(models.BPE(vocab=vocab, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens(self.specials)
        eos = {"eos_token": END_OF_TEXT} if END_OF_TEXT in self.specials else {}
        return as_transformers(tok, eos, chat_template)


def byte_alphabet() -> dict[int, str]:
    """GPT-2's printable character for each byte (what byte-level BPE tokenizers store)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    others = [b for b in range(256) if b not in printable]
    return {
        **{b: chr(b) for b in printable},
        **{b: chr(256 + n) for n, b in enumerate(others)},
    }


def as_transformers(hf: HFTokenizer, specials: dict[str, str], chat_template: str | None = None):
    """A transformers PreTrainedTokenizerFast over (a copy of) `hf`, with its special tokens."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=HFTokenizer.from_str(hf.to_str()), chat_template=chat_template, **specials
    )
