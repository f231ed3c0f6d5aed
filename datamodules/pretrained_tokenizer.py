"""A Hugging Face model's own tokenizer (`tokenizer: pretrained`), so that the data speaks the
vocabulary of a model loaded with `model.init_args.init_from`.

`data.init_args.pretrained_tokenizer` names a folder (the model's, or one with only its
tokenizer files) or a hub id; transformers' `AutoTokenizer` reads it. Offline, a hub id must
already be in the local cache: otherwise the run stops at once and says where to put the
files. The tokenizer is never trained or copied into the suite's cache: its files are its
identity (`identity`, a hash of them), part of the cache key of the token ids made with it.

Text is tokenized as the model's tokenizer does by default (`tokenizer(text)`): the special
tokens it adds itself (LLaMA's <s>, none for GPT-2 or Qwen2) and no others.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.constants import TOKENIZER_FILES
from core.errors import DataError, UserError
from core.hub import local_copy, pretrained_tokenizer_name, tokenizer_identity
from datamodules.tokenizers import EncodedSplit

SETTING = "data.init_args.pretrained_tokenizer"


class PretrainedTokenizer:
    """transformers' tokenizer of a model, with the interface of the suite's tokenizers."""

    kind = "pretrained"

    def __init__(self, hf, folder: Path, identity: str, vocab_size: int):
        self.hf, self.folder, self.identity = hf, folder, identity
        self._vocab_size = vocab_size
        # What tokenizer(text) puts around a text: <s> before it (LLaMA), maybe </s> after.
        bare = hf("a", add_special_tokens=False)["input_ids"]
        framed = hf("a")["input_ids"]
        start = next(
            (i for i in range(len(framed)) if framed[i : i + len(bare)] == bare), len(framed)
        )
        self.prefix_ids: list[int] = framed[:start]
        self.special_ids = set(hf.all_special_ids) | {
            i for i, token in hf.added_tokens_decoder.items() if token.special
        }

    @property
    def vocab_size(self) -> int:
        """The ids the model must have rows for: the tokenizer's length (added tokens
        included), or the embedding rows of the model in the same folder where it has more
        (Qwen2 pads 151,665 tokens to 151,936 rows): see `vocab_size_of`."""
        return self._vocab_size

    def to_transformers(self):
        """transformers' tokenizer (what `export_hf` writes beside a model): this one."""
        return self.hf

    @property
    def name(self) -> str:
        """Says which ids mean what; equal names, interchangeable token ids."""
        return pretrained_tokenizer_name(self.identity)

    @property
    def eos_id(self) -> int | None:
        return self.hf.eos_token_id

    end_of_text_id = eos_id

    @property
    def chat_template(self) -> str | None:
        return self.hf.chat_template

    # --- text in, text out ------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Ids of `text` alone, no special tokens added (a rendered chat template holds its
        own)."""
        return self.hf(text, add_special_tokens=False, verbose=False)["input_ids"]

    def encode_prompt(self, text: str) -> list[int]:
        """A prompt as the start of a text: the tokens the tokenizer puts before a text (<s>),
        then the text's; never the end-of-text it may append."""
        if not text:
            raise ValueError("the prompt is empty: give at least one character")
        return self.prefix_ids + self.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=False)

    def encode_document(self, text: str) -> EncodedSplit:
        """`text` as one document, tokenized as `tokenizer(text)` does, with the words and
        characters each token closes (for word perplexity and bits per character)."""
        enc = self.hf(text, return_offsets_mapping=True, verbose=False)
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        # A token owns the characters since the previous token's end (special tokens end
        # where they stand); the last one also owns any trailing text no token covers.
        ends = np.array([end for _, end in enc["offset_mapping"]], dtype=np.int64)
        ends = np.maximum.accumulate(np.minimum(ends, len(text))) if len(ends) else ends
        if len(ends):
            ends[-1] = len(text)
        prev = np.concatenate([[0], ends[:-1]])
        cum = np.concatenate([[0], np.cumsum(word_starts(text))])
        return EncodedSplit(
            ids=ids,
            words=(cum[ends] - cum[prev]).astype(np.uint8),
            chars=(ends - prev).astype(np.uint16),
        )


def word_starts(text: str) -> np.ndarray:
    """1 at each character that starts a word and at each newline (the end-of-line word of
    the WikiText convention, as `tokenizers.encode_lines` counts them)."""
    is_space = np.fromiter((c.isspace() for c in text), dtype=bool, count=len(text))
    starts = ~is_space
    starts[1:] &= is_space[:-1]
    starts |= np.fromiter((c == "\n" for c in text), dtype=bool, count=len(text))
    return starts.astype(np.int64)


def load_pretrained_tokenizer(name: str, setting: str = SETTING) -> PretrainedTokenizer:
    """The tokenizer of the folder or hub id `name`; DataError when it cannot be had."""
    folder = tokenizer_folder(name, setting)
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as err:  # no tokenizer files, unreadable ones, a class not installed
        raise DataError(
            f"{setting} {name}: transformers cannot read a tokenizer in {folder} "
            f"({type(err).__name__}: {err})."
        ) from None
    if not hf.is_fast:  # offsets (word and character counts) come from the fast tokenizers
        raise DataError(
            f"{setting} {name}: {type(hf).__name__} is not a fast tokenizer; give a folder "
            "with the model's tokenizer.json."
        )
    return PretrainedTokenizer(hf, folder, tokenizer_identity(folder), vocab_size_of(hf, folder))


def tokenizer_folder(name: str, setting: str = SETTING) -> Path:
    """A local folder, or the local copy of a hub id (downloaded first when online)."""
    return local_copy(
        name,
        setting,
        "the tokenizer's files (tokenizer.json, tokenizer_config.json, ...), the same folder "
        "as model.init_args.init_from,",
        allow_patterns=[*TOKENIZER_FILES, "config.json"],
        error=DataError,
    )


def vocab_size_of(hf, folder: Path) -> int:
    """len(tokenizer), or the `vocab_size` of the model's config.json beside it when larger:
    the model's embedding has a row for every id the data can hold, and the data's linked
    vocab_size then equals the model's, also when a checkpoint of the run is loaded again."""
    size = len(hf)
    config = folder / "config.json"
    if config.is_file():
        try:
            settings = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return size  # not a model's config: the tokenizer alone decides
        model_rows = settings.get("vocab_size") or (settings.get("text_config") or {}).get(
            "vocab_size"
        )
        if isinstance(model_rows, int) and model_rows > size:
            return model_rows
    return size


def check_pretrained_setting(tokenizer: str, pretrained_tokenizer: str | None) -> None:
    """`tokenizer: pretrained` and `pretrained_tokenizer` go together."""
    if tokenizer == "pretrained" and not pretrained_tokenizer:
        raise UserError(
            "data.init_args.tokenizer=pretrained needs data.init_args.pretrained_tokenizer: the Hugging Face "
            "model's folder (or a hub id in the local cache) whose tokenizer reads the text."
        )
    if pretrained_tokenizer and tokenizer != "pretrained":
        raise UserError(
            f"data.init_args.pretrained_tokenizer is set but data.init_args.tokenizer={tokenizer}: set "
            "data.init_args.tokenizer=pretrained to use it, or remove data.init_args.pretrained_tokenizer."
        )
