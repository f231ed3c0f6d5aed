"""Corpus BLEU and chrF computed by the `sacrebleu` package itself, as torchmetrics metrics.

    SacreBLEU(lowercase=False)   sacrebleu's BLEU, 13a tokenization, cased by default
    SacreChrF()                  sacrebleu's chrF2 (characters up to 6-grams, beta 2)

Each keeps sacrebleu's per-sentence statistics summed in a tensor state (reduced by sum), so
several processes (DDP) add up to the corpus figure that `sacrebleu.corpus_bleu` /
`corpus_chrf` give on all the sentences at once. `signature` is sacrebleu's own string
(`nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`): a figure is only comparable
with another of the same signature.
"""

from __future__ import annotations

import torch
from sacrebleu.metrics import BLEU, CHRF
from torchmetrics import Metric


class SacrebleuMetric(Metric):
    """A sacrebleu metric whose sufficient statistics are summed over updates and processes."""

    full_state_update = False

    def __init__(self, scorer: BLEU | CHRF, n_stats: int):
        super().__init__()
        self.scorer = scorer
        scorer.num_refs = 1  # always one reference a hypothesis; sacrebleu learns it only on use
        self.add_state(
            "stats", default=torch.zeros(n_stats, dtype=torch.float64), dist_reduce_fx="sum"
        )

    @property
    def signature(self) -> str:
        return str(self.scorer.get_signature())

    def update(self, hypotheses: list[str], references: list[str]) -> None:
        """One reference per hypothesis, both detokenized text."""
        if not hypotheses:
            return
        # sacrebleu reads references as streams: [[the reference of each hypothesis]]
        per_sentence = self.scorer._extract_corpus_statistics(hypotheses, [list(references)])
        self.stats += torch.tensor(per_sentence, dtype=torch.float64).sum(0)

    def compute(self) -> torch.Tensor:
        """The corpus score, 0..100 as sacrebleu prints it."""
        counts = [int(round(x)) for x in self.stats.tolist()]  # sacrebleu's stats are counts
        return torch.tensor(
            self.scorer._compute_score_from_stats(counts).score, dtype=torch.float64
        )


class SacreBLEU(SacrebleuMetric):
    def __init__(self, lowercase: bool = False):
        scorer = BLEU(tokenize="13a", lowercase=lowercase)
        super().__init__(scorer, n_stats=2 + 2 * scorer.max_ngram_order)


class SacreChrF(SacrebleuMetric):
    def __init__(self):
        scorer = CHRF()
        super().__init__(scorer, n_stats=3 * scorer.char_order + 3 * scorer.word_order)
