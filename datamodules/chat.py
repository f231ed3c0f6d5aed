"""Chat: the conversations of the `chatterbot-corpus` PyPI package (or local files of the same
shape) as prompt/response pairs for fine-tuning a language model to answer.

A conversation is a list of turns; turn i and turn i + 1 make a pair, written in a small chat
template (the markers are single special tokens of the byte tokenizer):

    <|user|>\\n{turn i}\\n<|assistant|>\\n{turn i + 1}<|endoftext|>

With `format: chat` the targets of the template and the prompt are ignored (-100), so the
loss counts the response (and its closing <|endoftext|>) only. With `format: plain` each
conversation is plain text, its turns one a line, and every token counts: language-model
pretraining on the same corpus, without the template.

The tokenizer is `ByteTokenizer` (UTF-8 bytes + the three markers): it needs no training,
reads English and Chinese alike, and gives the same ids in every run, so a GPT pretrained
with one config can be adapted with another.

Files: `data_dir` (with `files`, names or globs inside it; default `*.yml *.yaml *.jsonl`),
else the package's `data/<language>/*.yml`. YAML files hold `conversations:`, a list of
lists of turns (chatterbot's layout); a JSONL line is one conversation (a list of turns) or
an object with `conversations` like the YAML. The split is by conversation, seeded; there
is no test split, so `test` evaluates the validation conversations again.
"""

from __future__ import annotations

import functools
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import torch
import yaml

from core.checks import (
    require_fraction,
    require_non_negative,
    require_positive,
    require_positive_or_none,
)
from core.constants import IGNORE_INDEX, Split
from core.errors import DataError, UserError
from datamodules.loaders import SplitLoaders
from datamodules.text_files import read_text
from datamodules.tokenizers import END_OF_TEXT, ByteTokenizer

log = logging.getLogger(__name__)
USER, ASSISTANT = "<|user|>", "<|assistant|>"
CHAT_SPECIALS = (END_OF_TEXT, USER, ASSISTANT)
# chat: the template, loss on the responses only; plain: every token of the text counts
ChatFormat = Literal["chat", "plain"]
DEFAULT_PATTERNS = ("*.yml", "*.yaml", "*.jsonl")


def chat_prompt(user_text: str) -> str:
    """The template up to where the assistant's answer starts."""
    return f"{USER}\n{user_text}\n{ASSISTANT}\n"


@dataclass
class Example:
    """One training sequence: input ids and next-token targets (-100 where not counted)."""

    input_ids: list[int]
    targets: list[int]


def chat_example(tok: ByteTokenizer, prompt: str, response: str, block_size: int) -> Example | None:
    """A prompt/response pair, targets on the response only. A pair longer than block_size + 1
    tokens keeps the end of its prompt (at most half the block) and the start of its answer;
    None when no response token would be left."""
    prompt_ids = tok.encode(chat_prompt(prompt))
    response_ids = tok.encode(response + END_OF_TEXT)
    if len(prompt_ids) + len(response_ids) > block_size + 1:
        prompt_ids = prompt_ids[-max(1, (block_size + 1) // 2) :]
    ids = (prompt_ids + response_ids)[: block_size + 1]
    if len(ids) <= len(prompt_ids):
        return None
    # Target j predicts ids[j + 1]: counted when that token belongs to the response.
    targets = [t if j + 1 >= len(prompt_ids) else IGNORE_INDEX for j, t in enumerate(ids[1:])]
    return Example(ids[:-1], targets)


def plain_examples(tok: ByteTokenizer, turns: list[str], block_size: int) -> list[Example]:
    """A conversation as text, one turn a line, cut into blocks that predict every token once."""
    ids = tok.encode("\n".join(turns) + END_OF_TEXT)
    return [
        Example(ids[s : s + block_size], ids[s + 1 : s + block_size + 1])
        for s in range(0, len(ids) - 1, block_size)
    ]


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example of the batch; padding targets are ignored."""
    T = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(examples):
        input_ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
        targets[row, : len(e.targets)] = torch.tensor(e.targets)
    return {"input_ids": input_ids, "targets": targets}


class ChatDataModule(SplitLoaders, L.LightningDataModule):
    corpus = "chatterbot-corpus"

    def __init__(
        self,
        language: str = "english",
        data_dir: str | None = None,
        files: list[str] | None = None,
        format: ChatFormat = "chat",
        block_size: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 1,
        num_workers: int = 0,
    ):
        """
        Args:
            language: a folder of the chatterbot-corpus package (english, chinese, ...);
                ignored when `data_dir` is set.
            data_dir: a folder of local YAML / JSONL conversation files instead of the package.
            files: names or glob patterns inside `data_dir` (default: every .yml .yaml .jsonl).
            format: `chat` (template, loss on responses only) or `plain` (pretraining text).
            block_size: the longest sequence in tokens (bytes); linked to the model.
            val_fraction: share of the conversations held out for validation (and test).
            split_seed: seeds the conversation shuffle that makes the split.
        """
        super().__init__()
        require_fraction("data", val_fraction=val_fraction)
        require_positive("data", block_size=block_size, batch_size=batch_size)
        require_positive_or_none("data", eval_batch_size=eval_batch_size)
        require_non_negative("data", num_workers=num_workers)
        self.save_hyperparameters()
        self.language, self.format = language, format
        self.data_dir = Path(data_dir).expanduser() if data_dir else None
        self.file_patterns = list(files or DEFAULT_PATTERNS)
        self.block_size, self.batch_size = block_size, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.num_workers = num_workers
        self.tokenizer = ByteTokenizer(CHAT_SPECIALS)
        self._conversations: dict[Split, list[list[str]]] | None = None

    # --- what the model and the decoding module read ----------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name

    @property
    def eos_id(self) -> int:
        return self.tokenizer.token_to_id(END_OF_TEXT)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def format_prompt(self, user_text: str) -> str:
        return chat_prompt(user_text)

    def state_dict(self) -> dict:
        # Saved in every checkpoint of a run on this data: which token ids the model learned.
        return {"tokenizer": self.tokenizer_name}

    # --- files -----------------------------------------------------------------------------
    def source_files(self) -> list[Path]:
        if self.data_dir is not None:
            if not self.data_dir.is_dir():
                raise DataError(
                    f"chat: data.data_dir {self.data_dir} is not a folder; point it at a folder of "
                    f"conversation files (YAML with `conversations:`, or JSONL), or leave it unset "
                    f"to read the chatterbot-corpus package."
                )
            found = sorted({p for pat in self.file_patterns for p in self.data_dir.glob(pat)})
            if not found:
                raise DataError(
                    f"chat: no conversation files in {self.data_dir} (looked for "
                    f"{' '.join(self.file_patterns)}); put .yml/.yaml/.jsonl files there or set data.files."
                )
            return found
        try:
            import chatterbot_corpus
        except ImportError:
            raise DataError(
                "chat: the chatterbot-corpus package is not installed; `pip install chatterbot-corpus` "
                "(it is a dependency of this project: `pip install -e .`), or set data.data_dir to "
                "a folder of conversation files."
            ) from None
        root = Path(chatterbot_corpus.__file__).parent / "data"
        folder = root / self.language
        if not folder.is_dir():
            known = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise UserError(
                f"data.language={self.language!r} is not in chatterbot-corpus; choose one of {', '.join(known)}."
            )
        return sorted(folder.glob("*.yml"))

    def conversations(self) -> dict[Split, list[list[str]]]:
        """Conversations of each split (val = test), split by conversation with the seed."""
        if self._conversations is None:
            strict = self.data_dir is not None  # the user's own files: every error is theirs
            everything = [c for f in self.source_files() for c in read_conversations(f, strict)]
            everything = [c for c in everything if len(c) >= 2 or self.format == "plain"]
            if len(everything) < 2:
                raise DataError(
                    f"chat: {len(everything)} usable conversation(s) in {self._where()}; "
                    f"at least 2 (train and validation) with 2 or more turns are needed."
                )
            order = list(range(len(everything)))
            random.Random(self.split_seed).shuffle(order)
            n_val = min(len(order) - 1, max(1, round(self.val_fraction * len(order))))
            val = [everything[i] for i in sorted(order[:n_val])]
            train = [everything[i] for i in sorted(order[n_val:])]
            self._conversations = {"train": train, "val": val, "test": val}
            log.info(
                "chat: %d conversations from %s: %d train, %d val (= test)",
                len(everything),
                self._where(),
                len(train),
                len(val),
            )
        return self._conversations

    def _where(self) -> str:
        return str(self.data_dir) if self.data_dir else f"chatterbot-corpus/{self.language}"

    def examples(self, split: Split) -> list[Example]:
        out: list[Example] = []
        for turns in self.conversations()[split]:
            if self.format == "plain":
                out += plain_examples(self.tokenizer, turns, self.block_size)
                continue
            for prompt, response in zip(turns, turns[1:], strict=False):
                example = chat_example(self.tokenizer, prompt, response, self.block_size)
                if example is not None:
                    out.append(example)
        return out

    # --- Lightning -------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self.train_set = self.examples("train")
        self.val_set = self.examples("val")
        self.test_set = self.val_set
        if len(self.train_set) < self.batch_size:
            raise UserError(
                f"chat: {len(self.train_set)} training sequences, fewer than data.batch_size="
                f"{self.batch_size}; lower data.batch_size."
            )

    def collate_fn(self):
        return functools.partial(collate, pad_id=self.eos_id)


# --- reading conversation files ------------------------------------------------------------


def read_conversations(path: Path, strict: bool = True) -> list[list[str]]:
    """Conversations of a YAML or JSONL file; a malformed one is a DataError naming the file
    and the line. Not `strict` (the package's own files, which the user cannot fix): an
    entry that is not a list of turns is skipped with a warning instead (english/trivia.yml
    has one)."""
    text = read_text(path)
    if path.suffix == ".jsonl":
        return _read_jsonl(path, text)
    return _read_yaml(path, text, strict)


def _read_yaml(path: Path, text: str, strict: bool = True) -> list[list[str]]:
    # Composed, not loaded, so that every node keeps its line for the error messages.
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "somewhere"
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise DataError(f"{path}: {where}: not valid YAML ({problem}).") from None
    if not isinstance(root, yaml.MappingNode):
        raise DataError(f"{path}: line 1: expected a mapping with a `conversations:` list.")
    node = next((v for k, v in root.value if k.value == "conversations"), None)
    if node is None:
        raise DataError(f"{path}: no `conversations:` key (chatterbot-corpus layout expected).")
    if not isinstance(node, yaml.SequenceNode):
        raise DataError(f"{path}: line {node.start_mark.line + 1}: `conversations` must be a list.")
    conversations = []
    for conv in node.value:
        line = conv.start_mark.line + 1
        if not isinstance(conv, yaml.SequenceNode):
            message = f"{path}: line {line}: a conversation must be a list of turns."
            if strict:
                raise DataError(message)
            log.warning("%s (skipped)", message)
            continue
        turns = []
        for turn in conv.value:
            if not isinstance(turn, yaml.ScalarNode):
                raise DataError(
                    f"{path}: line {turn.start_mark.line + 1}: a turn must be text, not a list or mapping."
                )
            turns.append(turn.value)
        conversations.append(turns)
    return conversations


def _read_jsonl(path: Path, text: str) -> list[list[str]]:
    conversations = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {n}: not valid JSON ({err.msg}).") from None
        items = record.get("conversations") if isinstance(record, dict) else [record]
        if not isinstance(items, list) or not all(
            isinstance(c, list) and all(isinstance(t, str) for t in c) for c in items
        ):
            raise DataError(
                f"{path}: line {n}: expected a list of turns (strings) or an object whose "
                f"`conversations` is a list of such lists."
            )
        conversations += items
    return conversations
