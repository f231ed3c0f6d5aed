"""Classifying text by prompting a causal language model (Brown et al. 2020): zero- and
few-shot, with optional contextual calibration (Zhao et al. 2021, "Calibrate Before Use").

A template with the label words turns each example into text:

    Review: a gorgeous , witty film .          <- a demonstration: text and its label word
    Sentiment: positive
                                               <- the separator between examples
    Review: dull and overlong .                <- the query: text, then the label words are
    Sentiment:                                    scored as its continuation

The prediction is the label word whose tokens the model finds most likely after the prompt
(their log-likelihoods summed, so a label word may take several tokens). The k
demonstrations are drawn with a seed from the train split, the same for every query. A prompt
longer than the model's context loses its oldest demonstrations first (then, with none left,
the oldest tokens of the query).

Contextual calibration: the model's bias toward a label word, measured on content-free
inputs ("N/A", "", "[MASK]") in the same prompt, is divided out of every prediction:
p_cal(y | x) is proportional to p(y | x) / mean_cf p(y | cf).

Any `Decodable` model scores the label words: the prompt is read once
(`start_decoding`), its state repeated for each label word, and the label words' tokens fed
one at a time (`continue_decoding`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lit_models.modules.decoding import Decodable, left_pad

CONTENT_FREE = ("N/A", "", "[MASK]")  # Zhao et al.'s content-free inputs

Encode = Callable[[str], list[int]]


@dataclass(frozen=True)
class Template:
    """How an example reads: `text` holds `{text}` then `{label}` once each, and `separator`
    goes between the examples of a prompt."""

    text: str = "Review: {text}\nSentiment: {label}"
    separator: str = "\n\n"

    def __post_init__(self) -> None:
        for field in ("{text}", "{label}"):
            if self.text.count(field) != 1:
                raise ValueError(
                    f"the template must hold {field} exactly once, got {self.text!r} "
                    "(e.g. 'Review: {text}\\nSentiment: {label}')"
                )
        if self.text.index("{text}") > self.text.index("{label}"):
            raise ValueError(f"the template must put {{text}} before {{label}}, got {self.text!r}")

    def query(self, text: str) -> str:
        """The example up to where its label word goes (a trailing space is left to the label
        words, which a BPE vocabulary spells with their leading space: ' positive')."""
        before_text, rest = self.text.split("{text}")
        between = rest.split("{label}")[0]
        return (before_text + text + between).removesuffix(" ")

    def label_continuation(self, word: str) -> str:
        """What follows `query`: the label word, with the space the query left off."""
        between = self.text.split("{text}")[1].split("{label}")[0]
        return (" " if between.endswith(" ") else "") + word

    def demonstration(self, text: str, word: str) -> str:
        after_label = self.text.split("{label}")[1]
        return self.query(text) + self.label_continuation(word) + after_label

    def prompt(self, demonstrations: Sequence[tuple[str, str]], text: str) -> str:
        """The demonstrations (text, label word), oldest first, then the query."""
        parts = [self.demonstration(t, w) for t, w in demonstrations] + [self.query(text)]
        return self.separator.join(parts)


def draw_demonstrations(pool: Sequence, k: int, seed: int) -> list:
    """k distinct items of `pool` drawn with `seed`: the same seed, the same draw and order."""
    if k > len(pool):
        raise ValueError(f"cannot draw {k} demonstrations from {len(pool)} training examples")
    return random.Random(seed).sample(list(pool), k)


@dataclass(frozen=True)
class FittedPrompt:
    """A prompt's token ids after cutting it to the context."""

    ids: list[int]
    kept: int  # demonstrations kept
    cut: int  # oldest demonstrations dropped
    cut_tokens: int = 0  # oldest tokens of the query dropped (no demonstration left to cut)


def fit_prompt(
    template: Template,
    demonstrations: Sequence[tuple[str, str]],
    text: str,
    encode: Encode,
    max_tokens: int | None,
) -> FittedPrompt:
    """The prompt's ids in at most `max_tokens` (None: no limit), dropping the oldest
    demonstration until it fits."""
    demonstrations = list(demonstrations)
    for cut in range(len(demonstrations) + 1):
        ids = encode(template.prompt(demonstrations[cut:], text))
        if max_tokens is None or len(ids) <= max_tokens:
            return FittedPrompt(ids, len(demonstrations) - cut, cut)
    return FittedPrompt(ids[-max_tokens:], 0, len(demonstrations), len(ids) - max_tokens)


def label_log_likelihoods(
    model: Decodable, prompts: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]
) -> torch.Tensor:
    """log p(label tokens | prompt), summed over each label's tokens: [len(prompts), len(labels)].

    The prompts are read once as a left-padded batch; each row's state is repeated for every
    label, and the labels' tokens go in one position at a time (a label shorter than the
    longest is padded with its last token, whose scores are not counted)."""
    if any(len(label) == 0 for label in labels):
        raise ValueError("every label word needs at least one token")
    device, n_labels = model.device, len(labels)
    length = max(len(label) for label in labels)
    label_ids = torch.tensor(
        [list(label) + [label[-1]] * (length - len(label)) for label in labels], device=device
    )
    counted = torch.tensor(
        [[j < len(label) for j in range(length)] for label in labels], device=device
    )
    ids, mask = left_pad([list(p) for p in prompts], device=device)
    rows = torch.arange(len(prompts), device=device).repeat_interleave(n_labels)
    label_ids, counted = label_ids.repeat(len(prompts), 1), counted.repeat(len(prompts), 1)
    with model.decoding_mode():
        logits, state = model.start_decoding(ids, mask)
        state = model.reorder_decoding_state(state, rows)
        logits = logits.index_select(0, rows)
        total = torch.zeros(len(rows), device=device)
        for j in range(length):
            if j > 0:
                logits, state = model.continue_decoding(state, label_ids[:, j - 1])
            log_probs = logits.float().log_softmax(dim=-1)
            token = log_probs.gather(1, label_ids[:, j : j + 1]).squeeze(1)
            total += torch.where(counted[:, j], token, torch.zeros_like(token))
    return total.view(len(prompts), n_labels).cpu()


def label_probabilities(log_likelihoods: torch.Tensor) -> torch.Tensor:
    """The label words' likelihoods normalised over the labels: [N, labels]."""
    return log_likelihoods.double().softmax(dim=-1)


def calibrate(probabilities: torch.Tensor, content_free: torch.Tensor) -> torch.Tensor:
    """Zhao et al.'s contextual calibration: divide each label's probability by its mean over
    the content-free inputs (`content_free` [M, labels], each row normalised), renormalise."""
    scaled = probabilities / content_free.mean(dim=0)
    return scaled / scaled.sum(dim=-1, keepdim=True)
