"""Conversations in a pretrained tokenizer's own chat template, the loss on the assistant's
turns only.

A conversation is rendered once with `apply_chat_template` and tokenized as a whole (the
template writes its own special tokens, so none are added). Which characters are the
assistant's is found by rendering incrementally: the conversation up to assistant turn i is
a prefix of the whole text, and the turn's content is what differs from the same rendering
with that content emptied (so a template that strips or decorates it is read right). A
token counts when it covers content of an assistant turn, and so does the first special
token after each such turn's content (`<|im_end|>`, `<|eot_id|>`, `</s>`): the end of the
turn, which the model must learn to say to stop. Every other token (system and user turns,
role headers, the rest of the markup) is context only. This needs nothing of the template
(no `{% generation %}` blocks), only that a turn added at the end never rewrites the ones
before it; a template that does is a DataError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

from core.errors import DataError

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


class Message(TypedDict):
    role: Role
    content: str


@dataclass
class Rendered:
    """A conversation as text, its token ids, and which tokens count."""

    text: str
    ids: list[int]
    counted: list[bool]


def render(tok, messages: list[Message], add_generation_prompt: bool = False) -> str:
    """The template's text of `messages`; a template that refuses them is a DataError."""
    try:
        return tok.hf.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception as err:  # jinja's TemplateError, raise_exception() of the template
        raise DataError(f"the chat template refuses a conversation ({err}).") from None


def assistant_spans(tok, messages: list[Message]) -> tuple[str, list[tuple[int, int, int]]]:
    """The rendered text and, per assistant turn, (content start, content end, turn end) as
    character positions in it."""
    text = render(tok, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(tok, messages[:i], add_generation_prompt=True) if i else ""
        turn = render(tok, messages[: i + 1])
        if not (text.startswith(prompt) and text.startswith(turn)):
            raise DataError(
                "the chat template writes earlier turns differently once a turn follows "
                "them: the assistant's tokens cannot be told from the rest."
            )
        # The content is what changes when it is emptied: the rest is the template's.
        blank = render(tok, [*messages[:i], {**message, "content": ""}])
        start = common_prefix(turn, blank)
        end = len(turn) - common_prefix(turn[start:][::-1], blank[start:][::-1])
        spans.append((start, end, len(turn)))
    return text, spans


def common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def render_counted(tok, messages: list[Message]) -> Rendered:
    """`messages` in the template, tokenized, with the assistant's tokens marked."""
    text, spans = assistant_spans(tok, messages)
    enc = tok.hf(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    counted = [False] * len(ids)
    for start, end, turn_end in spans:
        closed = False
        for j, (a, b) in enumerate(offsets):
            if a < end and b > start and b > a:  # covers content of the turn
                counted[j] = True
            elif not closed and a >= end and a < turn_end and ids[j] in tok.special_ids:
                counted[j] = closed = True  # the end of the turn
    return Rendered(text, ids, counted)


def end_of_turn_id(tok) -> int | None:
    """The special token that closes an assistant turn in the template (where generation of
    a reply stops), or None when the template closes it with none."""
    sample: list[Message] = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi"},
    ]
    rendered = render_counted(tok, sample)
    closing = [
        i for i, c in zip(rendered.ids, rendered.counted, strict=True) if c and i in tok.special_ids
    ]
    return closing[0] if closing else None


def generation_prompt(tok, user_text: str) -> str:
    """The template up to where the assistant's answer to `user_text` starts."""
    return render(tok, [{"role": "user", "content": user_text}], add_generation_prompt=True)
