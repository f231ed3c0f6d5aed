"""The translators' cased BLEU and chrF are sacrebleu's own corpus figures, however the
sentences arrive (one batch or several), with sacrebleu's signature."""

from __future__ import annotations

import pytest
import sacrebleu

from lit_models.modules.sacrebleu_metrics import SacreBLEU, SacreChrF

HYPOTHESES = [
    "A man is riding a bike down the street.",
    "two dogs play in the snow .",
    "The woman sings on a stage",
    "Children are sitting at a table eating.",
]
REFERENCES = [
    "A man rides a bicycle down the street.",
    "Two dogs are playing in the snow.",
    "A woman is singing on stage.",
    "Children sit at a table and eat.",
]


def fed(metric, batches):
    for start, stop in batches:
        metric.update(HYPOTHESES[start:stop], REFERENCES[start:stop])
    return float(metric.compute())


@pytest.mark.parametrize("batches", [[(0, 4)], [(0, 1), (1, 3), (3, 4)]])
def test_cased_bleu_and_chrf_equal_sacrebleus_corpus_scores(batches):
    bleu = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score
    chrf = sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES]).score
    assert 0.0 < bleu < 100.0 and 0.0 < chrf < 100.0  # the hand sentences test something
    assert fed(SacreBLEU(), batches) == pytest.approx(bleu, abs=1e-9)
    assert fed(SacreChrF(), batches) == pytest.approx(chrf, abs=1e-9)


def test_lower_cased_bleu_is_sacrebleus_lowercase_option():
    lowered = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES], lowercase=True).score
    assert fed(SacreBLEU(lowercase=True), [(0, 4)]) == pytest.approx(lowered, abs=1e-9)
    assert lowered > sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score  # "two" vs "Two"


def test_signatures_say_what_was_measured():
    assert "case:mixed" in SacreBLEU().signature and "tok:13a" in SacreBLEU().signature
    assert "case:lc" in SacreBLEU(lowercase=True).signature
    assert SacreChrF().signature.startswith("nrefs:1|case:mixed")
    assert "nc:6" in SacreChrF().signature


def test_reset_starts_a_new_corpus():
    metric = SacreBLEU()
    metric.update(["completely different words here"], ["A man rides a bicycle."])
    metric.reset()
    assert fed(metric, [(0, 4)]) == pytest.approx(
        sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score, abs=1e-9
    )
