"""Held-out sentences that share no text with training: carving validation and test sets out
of a corpus whose items are whole sentences and pieces of them (SST-2's phrases), and the
check that an evaluation set does not leak into training.

Texts are compared as tuples of words. One text lies *inside* another when its words occur
in the other, in order and contiguous: ("a", "charming", "journey") lies inside ("it", "'s",
"a", "charming", "journey", "."), and every text lies inside itself. An evaluation text leaks
when it lies inside a training item or a training item lies inside it: the model has then
been trained on (part of) the very words it is scored on, with their labels.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence

from core.constants import Split

Words = tuple[str, ...]


def lies_inside(inner: Words, outer: Words) -> bool:
    """Whether `inner`'s words occur in `outer`, in order and contiguous."""
    return len(inner) <= len(outer) and _joined(inner) in _joined(outer)


def _joined(text: Words) -> str:
    # Words hold no spaces (they are split on them), so a padded join compares word by word.
    return f" {' '.join(text)} "


def spans(text: Words) -> Iterable[Words]:
    """Every contiguous run of `text`'s words, `text` itself included."""
    for start in range(len(text)):
        for end in range(start + 1, len(text) + 1):
            yield text[start:end]


class ContainerIndex:
    """Answers "which of these texts contain this one?" without comparing against all: a
    container holds every word of the text, so only the texts holding its rarest word are
    compared."""

    def __init__(self, texts: Sequence[Words]):
        self.texts = list(texts)
        self.joined = [_joined(text) for text in self.texts]
        self.holding: dict[str, list[int]] = defaultdict(list)
        for i, text in enumerate(self.texts):
            for word in set(text):
                self.holding[word].append(i)

    def containers(self, text: Words) -> Iterable[int]:
        """Indices of the texts that `text` lies inside (itself too, if it is one of them)."""
        if not text:
            return
        rarest = min(set(text), key=lambda w: len(self.holding.get(w, ())))
        joined = _joined(text)
        for i in self.holding.get(rarest, ()):
            if len(self.texts[i]) >= len(text) and joined in self.joined[i]:
                yield i


def whole_sentences(texts: Iterable[Words]) -> list[Words]:
    """The distinct texts that lie inside no other, in first-seen order: in a corpus of
    sentences and their phrases (SST-2), the sentences."""
    distinct = list(dict.fromkeys(t for t in texts if t))
    index = ContainerIndex(distinct)
    return [text for i, text in enumerate(distinct) if all(j == i for j in index.containers(text))]


def carve_by_sentence(
    texts: Sequence[Words], seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[Split, list[int]]:
    """Indices of `texts` by split. Validation and test are whole sentences (`fractions[1]`
    and `fractions[2]` of them, drawn with `seed`), each once; training is every other item
    that lies inside none of them, so a phrase of a held-out sentence is dropped even when
    another training sentence holds it too. No held-out text lies inside a training item
    (held-out texts are whole sentences) nor holds one: see `leaks`."""
    sentences = whole_sentences(texts)
    random.Random(seed).shuffle(sentences)
    # At least one sentence each, so that a tiny corpus still validates and tests.
    n_val, n_test = (max(1, int(f * len(sentences))) if f > 0 else 0 for f in fractions[1:])
    held = {"val": sentences[:n_val], "test": sentences[n_val : n_val + n_test]}
    inside_held = {span for split in held.values() for s in split for span in spans(s)}
    first = {}
    for i, text in enumerate(texts):
        first.setdefault(text, i)
    return {
        "train": [i for i, text in enumerate(texts) if text and text not in inside_held],
        "val": [first[s] for s in held["val"]],
        "test": [first[s] for s in held["test"]],
    }


def leaks(
    evaluation: Iterable[Words], training: Iterable[Words], limit: int = 5
) -> list[tuple[Words, Words]]:
    """Up to `limit` (evaluation text, training item) pairs where one lies inside the other;
    empty for a split that does not leak."""
    training = list(dict.fromkeys(training))
    index = ContainerIndex(training)
    trained = set(training)
    found: list[tuple[Words, Words]] = []
    for text in dict.fromkeys(evaluation):
        for i in index.containers(text):  # the evaluation text inside a training item
            found.append((text, training[i]))
            break
        else:
            for span in spans(text):  # a training item inside the evaluation text
                if span in trained:
                    found.append((text, span))
                    break
        if len(found) >= limit:
            break
    return found
