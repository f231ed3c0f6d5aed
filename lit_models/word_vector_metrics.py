"""How good word vectors are, against human judgements: the Spearman correlation of cosine
similarities with a similarity file's scores, and the accuracy on analogy questions (the
answer to "a is to b as c is to ?" is the word nearest to b - a + c, cosine, a, b and c
excluded, as in word2vec's compute-accuracy and gensim). Pairs and questions with a word
outside the vocabulary are skipped; each metric also returns the fraction that was used.
The files are read by datamodules/word_vectors.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional import spearman_corrcoef


def similarity_spearman(vectors, word_to_id, pairs) -> tuple[float, float]:
    """Spearman correlation of cosine similarities with the file's scores, and the coverage."""
    known = [
        (word_to_id[a], word_to_id[b], s)
        for a, b, s in pairs
        if a in word_to_id and b in word_to_id
    ]
    if len(known) < 2:
        return float("nan"), len(known) / len(pairs)
    a, b, human = (torch.tensor(column) for column in zip(*known, strict=True))
    unit = F.normalize(vectors.float(), dim=-1)
    cosine = (unit[a] * unit[b]).sum(-1)
    return float(spearman_corrcoef(cosine, human.float())), len(known) / len(pairs)


def analogy_accuracy(vectors, word_to_id, questions, chunk: int = 1024) -> tuple[float, float]:
    """Fraction of answerable questions whose nearest word to b - a + c is d, and the coverage."""
    known = [[word_to_id[w] for w in q] for q in questions if all(w in word_to_id for w in q)]
    if not known:
        return float("nan"), 0.0
    ids = torch.tensor(known)
    unit = F.normalize(vectors.float(), dim=-1)
    correct = 0
    for part in ids.split(chunk):
        query = unit[part[:, 1]] - unit[part[:, 0]] + unit[part[:, 2]]
        sims = F.normalize(query, dim=-1) @ unit.T
        rows = torch.arange(len(part)).unsqueeze(1)
        sims[rows, part[:, :3]] = -float("inf")  # the question's own words are not answers
        correct += int((sims.argmax(-1) == part[:, 3]).sum())
    return correct / len(known), len(known) / len(questions)
