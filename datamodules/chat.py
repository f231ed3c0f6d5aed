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
with one config can be adapted with another. With `tokenizer: pretrained` it is instead a
Hugging Face model's own (`pretrained_tokenizer`: its folder), and `format: chat` writes each
conversation in that tokenizer's chat template, the loss on every assistant turn
(datamodules/chat_template.py); `plain` is then its text as the tokenizer reads a document.

Files: `data_dir` (with `files`, names or globs inside it; default `*.yml *.yaml *.jsonl`),
else `dataset` (a Hugging Face dataset with a `messages` column, read from the hub: online
only), else the package's `data/<language>/*.yml`. YAML files hold `conversations:`, a list
of lists of turns (chatterbot's layout); a JSONL line is one conversation: a list of turns,
an object with `conversations` like the YAML, or an object with `messages`, a list of
`{"role": "system" | "user" | "assistant", "content": ...}` (the common chat format). Turns
without roles alternate user, assistant. The split is by conversation, seeded; there is no
test split, so `test` evaluates the validation conversations again.
"""

from __future__ import annotations

import functools
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import torch

from core.checks import (
    require_fraction,
    require_non_negative,
    require_positive,
    require_positive_or_none,
)
from core.constants import IGNORE_INDEX, Split
from core.errors import DataError, UserError
from datamodules.chat_template import (
    Message,
    end_of_turn_id,
    generation_prompt,
    render_counted,
)
from datamodules.conversations import (
    Conversation,
    as_messages,
    prompt_response_pairs,
    read_conversations,
    read_hub_dataset,
    turn_texts,
)
from datamodules.loaders import SplitLoaders
from datamodules.pretrained_tokenizer import (
    PretrainedTokenizer,
    check_pretrained_setting,
    load_pretrained_tokenizer,
)
from datamodules.tokenizers import END_OF_TEXT, ByteTokenizer

log = logging.getLogger(__name__)
USER, ASSISTANT = "<|user|>", "<|assistant|>"
CHAT_SPECIALS = (END_OF_TEXT, USER, ASSISTANT)
# chat: the template, loss on the responses only; plain: every token of the text counts
ChatFormat = Literal["chat", "plain"]
# byte: UTF-8 bytes and the suite's markers; pretrained: a Hugging Face model's tokenizer
ChatTokenizer = Literal["byte", "pretrained"]
DEFAULT_PATTERNS = ("*.yml", "*.yaml", "*.jsonl")


def chat_prompt(user_text: str) -> str:
    """The template up to where the assistant's answer starts."""
    return f"{USER}\n{user_text}\n{ASSISTANT}\n"


# The same template in Jinja, for transformers' apply_chat_template (an exported tokenizer):
# the user's turn, then the answer closed by <|endoftext|> (chat_example).
BYTE_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}" + USER + "\n{{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}" + ASSISTANT + "\n{{ m['content'] }}" + END_OF_TEXT + ""
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + "\n{% endif %}"
)


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


def plain_examples(
    tok: ByteTokenizer | PretrainedTokenizer, turns: list[str], block_size: int
) -> list[Example]:
    """A conversation as text, one turn a line, cut into blocks that predict every token once;
    it ends with the end of a text (<|endoftext|>, a pretrained tokenizer's eos)."""
    text = "\n".join(turns)
    if isinstance(tok, ByteTokenizer):
        ids = tok.encode(text + END_OF_TEXT)
    else:
        ids = tok.encode_prompt(text) if text else list(tok.prefix_ids)
        if tok.eos_id is not None and ids[-1:] != [tok.eos_id]:
            ids.append(tok.eos_id)
    return [
        Example(ids[s : s + block_size], ids[s + 1 : s + block_size + 1])
        for s in range(0, len(ids) - 1, block_size)
    ]


def template_example(
    tok: PretrainedTokenizer, messages: list[Message], block_size: int
) -> Example | None:
    """A conversation in the tokenizer's chat template, targets on the assistant's turns
    (their content and the token that ends each). Longer than block_size + 1 tokens: the
    start is kept; None when no counted token is left."""
    rendered = render_counted(tok, messages)
    ids = rendered.ids[: block_size + 1]
    targets = [t if rendered.counted[j + 1] else IGNORE_INDEX for j, t in enumerate(ids[1:])]
    if all(t == IGNORE_INDEX for t in targets):
        return None
    return Example(ids[:-1], targets)


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
        dataset: str | None = None,
        format: ChatFormat = "chat",
        tokenizer: ChatTokenizer = "byte",
        pretrained_tokenizer: str | None = None,
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
            dataset: a Hugging Face dataset id with a `messages` column (its train split),
                instead of files; read from the hub, so online only.
            format: `chat` (template, loss on responses only) or `plain` (pretraining text).
            tokenizer: `byte` (UTF-8 bytes and the suite's template) or `pretrained`: the
                tokenizer of `pretrained_tokenizer`, with its own chat template.
            pretrained_tokenizer: with `tokenizer: pretrained`, the model's folder (usually
                the same as model.init_args.init_from) or a hub id in the local cache.
            block_size: the longest sequence in tokens (bytes with `byte`); linked to the
                model.
            val_fraction: share of the conversations held out for validation (and test).
            split_seed: seeds the conversation shuffle that makes the split.
        """
        super().__init__()
        require_fraction("data", val_fraction=val_fraction)
        require_positive("data", block_size=block_size, batch_size=batch_size)
        require_positive_or_none("data", eval_batch_size=eval_batch_size)
        require_non_negative("data", num_workers=num_workers)
        check_pretrained_setting(tokenizer, pretrained_tokenizer)
        if dataset and data_dir:
            raise UserError(
                "data.init_args.dataset and data.init_args.data_dir both name conversations: give one."
            )
        self.save_hyperparameters()
        self.language, self.format = language, format
        self.data_dir = Path(data_dir).expanduser() if data_dir else None
        self.dataset = dataset
        self.file_patterns = list(files or DEFAULT_PATTERNS)
        self.block_size, self.batch_size = block_size, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.num_workers = num_workers
        self._conversations: dict[Split, list[Conversation]] | None = None
        if tokenizer == "byte":
            self.tokenizer: ByteTokenizer | PretrainedTokenizer = ByteTokenizer(CHAT_SPECIALS)
            self.uses_template, self._eos_id = False, self.tokenizer.token_to_id(END_OF_TEXT)
            return
        self.tokenizer = load_pretrained_tokenizer(pretrained_tokenizer)
        self.uses_template = self.tokenizer.chat_template is not None
        if format == "chat" and not self.uses_template:
            raise UserError(
                f"data.init_args.pretrained_tokenizer {pretrained_tokenizer} has no chat template (a base "
                "model's tokenizer): use data.init_args.format=plain, or the tokenizer of a chat model."
            )
        # A reply ends where the template ends an assistant turn (<|im_end|>, <|eot_id|>).
        turn_end = end_of_turn_id(self.tokenizer) if format == "chat" else None
        self._eos_id = turn_end if turn_end is not None else self.tokenizer.eos_id

    # --- what the model and the decoding module read ----------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name

    @property
    def eos_id(self) -> int | None:
        """Where a text (byte, plain) or an assistant's reply (a chat template) ends."""
        return self._eos_id

    def encode(self, text: str) -> list[int]:
        """Ids of a prompt. A chat template's text holds its own special tokens; other text
        gets those the pretrained tokenizer puts before a text (<s>)."""
        if isinstance(self.tokenizer, PretrainedTokenizer) and not self.uses_template:
            return self.tokenizer.encode_prompt(text)
        return self.tokenizer.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def transformers_tokenizer(self):
        """The tokenizer as transformers' (written beside an exported model), with the chat
        template the data used."""
        if isinstance(self.tokenizer, PretrainedTokenizer):
            return self.tokenizer.to_transformers()  # its own chat template
        return self.tokenizer.to_transformers(BYTE_CHAT_TEMPLATE if self.format == "chat" else None)

    def format_prompt(self, user_text: str) -> str:
        """What the model reads before answering `user_text`: the tokenizer's chat template
        with its generation prompt, or the suite's byte template."""
        if self.uses_template:
            return generation_prompt(self.tokenizer, user_text)
        return chat_prompt(user_text)

    @property
    def stop_strings(self) -> list[str]:
        """Text that ends a reply besides eos_id: the byte template's next user turn."""
        return [] if self.uses_template else [USER]

    def state_dict(self) -> dict:
        # Saved in every checkpoint of a run on this data: which token ids the model learned.
        return {"tokenizer": self.tokenizer_name}

    # --- files -----------------------------------------------------------------------------
    def source_files(self) -> list[Path]:
        if self.data_dir is not None:
            if not self.data_dir.is_dir():
                raise DataError(
                    f"chat: data.init_args.data_dir {self.data_dir} is not a folder; point it at a folder of "
                    f"conversation files (YAML with `conversations:`, or JSONL), or leave it unset "
                    f"to read the chatterbot-corpus package."
                )
            found = sorted({p for pat in self.file_patterns for p in self.data_dir.glob(pat)})
            if not found:
                raise DataError(
                    f"chat: no conversation files in {self.data_dir} (looked for "
                    f"{' '.join(self.file_patterns)}); put .yml/.yaml/.jsonl files there or set data.init_args.files."
                )
            return found
        try:
            import chatterbot_corpus
        except ImportError:
            raise DataError(
                "chat: the chatterbot-corpus package is not installed; `pip install chatterbot-corpus` "
                "(it is a dependency of this project: `pip install -e .`), or set data.init_args.data_dir to "
                "a folder of conversation files."
            ) from None
        root = Path(chatterbot_corpus.__file__).parent / "data"
        folder = root / self.language
        if not folder.is_dir():
            known = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise UserError(
                f"data.init_args.language={self.language!r} is not in chatterbot-corpus; choose one of {', '.join(known)}."
            )
        return sorted(folder.glob("*.yml"))

    def read_all(self) -> list[Conversation]:
        if self.dataset:
            return read_hub_dataset(self.dataset)
        strict = self.data_dir is not None  # the user's own files: every error is theirs
        return [c for f in self.source_files() for c in read_conversations(f, strict)]

    def conversations(self) -> dict[Split, list[Conversation]]:
        """Conversations of each split (val = test), split by conversation with the seed."""
        if self._conversations is None:
            everything = [
                c for c in self.read_all() if self.format == "plain" or prompt_response_pairs(c)
            ]
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
        if self.dataset:
            return f"the dataset {self.dataset}"
        return str(self.data_dir) if self.data_dir else f"chatterbot-corpus/{self.language}"

    def examples(self, split: Split) -> list[Example]:
        out: list[Example | None] = []
        for conversation in self.conversations()[split]:
            if self.format == "plain":
                out += plain_examples(self.tokenizer, turn_texts(conversation), self.block_size)
            elif self.uses_template:  # one example a conversation: every assistant turn counts
                out.append(
                    template_example(self.tokenizer, as_messages(conversation), self.block_size)
                )
            else:
                out += [
                    chat_example(self.tokenizer, prompt, response, self.block_size)
                    for prompt, response in prompt_response_pairs(conversation)
                ]
        return [e for e in out if e is not None]

    # --- Lightning -------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self.train_set = self.examples("train")
        self.val_set = self.examples("val")
        self.test_set = self.val_set
        if len(self.train_set) < self.batch_size:
            raise UserError(
                f"chat: {len(self.train_set)} training sequences, fewer than data.init_args.batch_size="
                f"{self.batch_size}; lower data.init_args.batch_size."
            )

    def collate_fn(self):
        # Padding is never a target: any id will do where there is no eos.
        return functools.partial(collate, pad_id=self.eos_id or 0)
