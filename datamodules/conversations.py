"""Conversation files for the chat datamodule: chatterbot's YAML (lists of turns), JSONL
(lists of turns, or `messages` with roles, the common chat format) and Hugging Face datasets
with a `messages` column (read from the hub: online only). A malformed file is a DataError
naming the file and the line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

from core.errors import DataError
from core.hub import hub_offline
from datamodules.chat_template import ROLES, Message
from datamodules.text_files import read_text

log = logging.getLogger(__name__)
# Turns of chatterbot's layout (each answers the one before), or messages with their roles.
Conversation = list[str] | list[Message]


def as_messages(conversation: Conversation) -> list[Message]:
    """Messages with roles; turns without roles alternate user, assistant."""
    if conversation and isinstance(conversation[0], str):
        roles = ("user", "assistant")
        return [{"role": roles[i % 2], "content": t} for i, t in enumerate(conversation)]
    return list(conversation)


def turn_texts(conversation: Conversation) -> list[str]:
    return [t if isinstance(t, str) else t["content"] for t in conversation]


def prompt_response_pairs(conversation: Conversation) -> list[tuple[str, str]]:
    """Chatterbot's turns: each turn answers the one before. Messages: each assistant
    message answers the user's message before it."""
    if conversation and isinstance(conversation[0], str):
        return list(zip(conversation, conversation[1:], strict=False))
    return [
        (before["content"], message["content"])
        for before, message in zip(conversation, conversation[1:], strict=False)
        if message["role"] == "assistant" and before["role"] == "user"
    ]


def read_conversations(path: Path, strict: bool = True) -> list[Conversation]:
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


def _read_jsonl(path: Path, text: str) -> list[Conversation]:
    conversations = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {n}: not valid JSON ({err.msg}).") from None
        if isinstance(record, dict) and "messages" in record:
            conversations.append(parse_messages(record["messages"], f"{path}: line {n}"))
            continue
        items = record.get("conversations") if isinstance(record, dict) else [record]
        if not isinstance(items, list) or not all(
            isinstance(c, list) and all(isinstance(t, str) for t in c) for c in items
        ):
            raise DataError(
                f"{path}: line {n}: expected a list of turns (strings), an object whose "
                "`conversations` is a list of such lists, or an object with `messages`."
            )
        conversations += items
    return conversations


def parse_messages(messages, where: str) -> list[Message]:
    """A `messages` list checked: objects with a role of ROLES and text content."""
    shape = f'a list of {{"role": {" | ".join(ROLES)}, "content": text}}'
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: `messages` must be {shape}, not empty.")
    for k, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise DataError(f"{where}: message {k} is not {shape[7:]}.")
        if message.get("role") not in ROLES:
            raise DataError(
                f"{where}: message {k} has the role {message.get('role')!r}; "
                f"roles are {', '.join(ROLES)}."
            )
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def read_hub_dataset(name: str) -> list[list[Message]]:
    """The `messages` of every row of a Hugging Face dataset's train split (downloaded)."""
    if hub_offline():
        raise DataError(
            f"chat: data.init_args.dataset {name} is read from the Hugging Face hub, and "
            "HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set. Offline, write its conversations "
            'as JSONL, one {"messages": [...]} a line, into a folder and give data.init_args.data_dir.'
        )
    import datasets

    try:
        rows = datasets.load_dataset(name, split="train")
    except Exception as err:  # no network, no such dataset, no train split
        raise DataError(
            f"chat: data.init_args.dataset {name} cannot be read ({type(err).__name__}: {err})."
        ) from None
    conversations = []
    for n, row in enumerate(rows, start=1):
        if "messages" not in row:
            raise DataError(
                f"chat: data.init_args.dataset {name} has no `messages` column (row {n} has "
                f"{', '.join(row) or 'none'}); the chat format needs one."
            )
        conversations.append(parse_messages(row["messages"], f"{name}: row {n}"))
    return conversations
