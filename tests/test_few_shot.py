"""Zero- and few-shot prompting: the prompt, the label words' scores, calibration, and the
`few_shot` command driven as a user drives it."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import torch
from torch import nn

from core.errors import DataError
from datamodules.sentiment import read_labelled_text, read_text_label_tsv
from lit_models import GPT, RNNLanguageModel
from lit_models.modules.decoding import evaluating
from lit_models.modules.prompting import (
    Template,
    calibrate,
    draw_demonstrations,
    fit_prompt,
    label_log_likelihoods,
    label_probabilities,
)
from tests.conftest import (
    SHARED_DATA,
    TINY_GPT,
    assert_one_clear_error,
    config,
    need_corpus,
    run_cli,
)

ALPHABET = " abcdefghijklmnopqrstuvwxyz:\n"


def encode(text: str) -> list[int]:
    return [ALPHABET.index(c) for c in text]


class BigramLM(nn.Module):
    """A causal model whose next token depends on the last one only: logits = table[last].
    Decodable, so the prompting module scores label words with it."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table)

    @property
    def device(self) -> torch.device:
        return self.table.device

    def decoding_mode(self) -> AbstractContextManager[None]:
        return evaluating(self)

    def start_decoding(self, input_ids, attention_mask):
        last = input_ids[:, -1]  # left-padded: the last column is every row's last token
        return self.table[last], last

    def continue_decoding(self, state, next_ids):
        return self.table[next_ids], next_ids

    def reorder_decoding_state(self, state, rows):
        return state.index_select(0, rows)


def rigged_to(word: str, bonus: float = 6.0) -> BigramLM:
    """After ' ' (where a label word starts) the first letter of `word` is likely, and each
    of its letters makes the next one likely: the model prefers to write `word`."""
    table = torch.zeros(len(ALPHABET), len(ALPHABET))
    spelled = " " + word
    for a, b in zip(spelled, spelled[1:], strict=False):
        table[ALPHABET.index(a), ALPHABET.index(b)] += bonus
    return BigramLM(table)


# --- the label words' likelihood --------------------------------------------------------


@pytest.mark.parametrize("word", ["bad", "good"])
def test_a_model_rigged_to_prefer_a_label_word_predicts_it(word):
    form = Template("text: {text}\nlabel: {label}")
    labels = [encode(form.label_continuation(w)) for w in ("bad", "good")]
    prompts = [encode(form.prompt([], text)) for text in ("a fine film", "awful", "meh")]
    scores = label_log_likelihoods(rigged_to(word), prompts, labels)
    assert scores.shape == (3, 2)
    assert (scores.argmax(dim=1) == ("bad", "good").index(word)).all()


def test_label_scores_are_the_summed_log_likelihood_of_their_tokens():
    torch.manual_seed(0)
    model = BigramLM(torch.randn(len(ALPHABET), len(ALPHABET)))
    labels = [encode(" no"), encode(" yes"), encode(" maybe")]  # 3, 4 and 6 tokens
    prompts = [encode("is it:"), encode("a:")]
    scores = label_log_likelihoods(model, prompts, labels)
    log_probs = model.table.detach().log_softmax(dim=-1)
    for row, prompt in enumerate(prompts):
        for col, label in enumerate(labels):
            path = [prompt[-1], *label]
            expected = sum(log_probs[a, b] for a, b in zip(path, path[1:], strict=False))
            assert scores[row, col].item() == pytest.approx(expected.item(), abs=1e-5)


def tiny_gpt() -> GPT:
    return GPT(vocab_size=len(ALPHABET), block_size=32, n_layer=2, n_head=2, n_embd=16, dropout=0)


def tiny_lstm() -> RNNLanguageModel:
    return RNNLanguageModel(len(ALPHABET), n_layer=1, n_embd=16, n_hidden=16, dropout=0)


@pytest.mark.parametrize("build", [tiny_gpt, tiny_lstm])
def test_label_scores_equal_a_full_forward_pass(build):
    """Prompts of several lengths in one left-padded batch (through GPT's KV cache, or the
    LSTM's state) score as the whole sequence read at once does."""
    torch.manual_seed(0)
    model = build()
    labels = [encode(" bad"), encode(" good")]
    prompts = [encode("text: awful\nlabel:"), encode("x:")]
    scores = label_log_likelihoods(model, prompts, labels)
    model.eval()
    for row, prompt in enumerate(prompts):
        for col, label in enumerate(labels):
            ids = torch.tensor([prompt + label])
            with torch.no_grad():
                logits = model(ids[:, :-1])
            logits = logits[0] if isinstance(logits, tuple) else logits  # the LSTM's state
            log_probs = logits.log_softmax(dim=-1)[0]
            targets = ids[0, len(prompt) :]
            expected = log_probs[len(prompt) - 1 :].gather(1, targets[:, None]).sum()
            assert scores[row, col].item() == pytest.approx(expected.item(), abs=1e-4)


# --- calibration --------------------------------------------------------------------------


def test_calibration_removes_a_constant_bias_exactly():
    torch.manual_seed(0)
    log_likelihoods = torch.randn(50, 3, dtype=torch.float64)
    bias = torch.tensor([2.5, -1.0, 0.3], dtype=torch.float64)  # log-space, for every input
    biased = label_probabilities(log_likelihoods + bias)
    content_free = label_probabilities(torch.zeros(3, 3, dtype=torch.float64) + bias)
    calibrated = calibrate(biased, content_free)
    torch.testing.assert_close(calibrated, label_probabilities(log_likelihoods), rtol=0, atol=1e-12)
    assert (biased.argmax(dim=1) == 0).float().mean() > 0.8  # the bias did change predictions


def test_calibration_with_a_rigged_model_undoes_its_preference():
    """The bigram model rigged to 'good' says 'good' whatever the text; calibrated with the
    same content-free inputs its bias is gone: the label words score alike."""
    form = Template("text: {text}\nlabel: {label}")
    labels = [encode(form.label_continuation(w)) for w in ("bad", "good")]
    model = rigged_to("good")
    probs = label_probabilities(
        label_log_likelihoods(model, [encode(form.prompt([], "x"))], labels)
    )
    free = [encode(form.prompt([], text)) for text in ("n", "", "mask")]
    free_probs = label_probabilities(label_log_likelihoods(model, free, labels))
    assert probs[0, 1] > 0.99
    torch.testing.assert_close(
        calibrate(probs, free_probs), torch.full((1, 2), 0.5, dtype=torch.float64)
    )


# --- the prompt -----------------------------------------------------------------------------


def test_the_same_seed_draws_the_same_demonstrations():
    pool = list(range(1000))
    assert draw_demonstrations(pool, 8, seed=3) == draw_demonstrations(pool, 8, seed=3)
    assert draw_demonstrations(pool, 8, seed=3) != draw_demonstrations(pool, 8, seed=4)
    assert len(set(draw_demonstrations(pool, 8, seed=3))) == 8
    with pytest.raises(ValueError, match="cannot draw 9"):
        draw_demonstrations(pool[:5] + pool[:3], 9, seed=0)


def test_the_prompt_reads_demonstrations_then_the_query():
    form = Template("Review: {text}\nSentiment: {label}", "\n\n")
    prompt = form.prompt([("great", "positive"), ("dull", "negative")], "fine")
    assert prompt == (
        "Review: great\nSentiment: positive\n\nReview: dull\nSentiment: negative\n\n"
        "Review: fine\nSentiment:"
    )
    assert form.label_continuation("positive") == " positive"  # the space goes with the word
    for bad in ("{text} only", "{label} before {text}", "{text} {text} {label}"):
        with pytest.raises(ValueError, match="template"):
            Template(bad)


def test_a_long_prompt_loses_its_oldest_demonstrations_first():
    form = Template("t: {text}\nl: {label}", "\n")
    demos = [("aaaa", "x"), ("bbbb", "y"), ("cccc", "z")]
    full = fit_prompt(form, demos, "q", encode, None)
    assert (full.kept, full.cut) == (3, 0)
    one_less = len(encode(form.prompt(demos[1:], "q")))
    fitted = fit_prompt(form, demos, "q", encode, one_less)
    assert (fitted.kept, fitted.cut) == (2, 1)
    assert fitted.ids == encode(form.prompt(demos[1:], "q"))  # the newest two stay, in order
    query_only = fit_prompt(form, demos, "a long query", encode, 10)
    query = encode(form.prompt([], "a long query"))
    assert (query_only.kept, query_only.cut, query_only.cut_tokens) == (0, 3, len(query) - 10)
    assert query_only.ids == query[-10:]  # the end of the query is kept


# --- labelled text --------------------------------------------------------------------------


def test_a_bad_tsv_line_is_named(tmp_path):
    path = tmp_path / "mine.tsv"
    path.write_text("text\tlabel\ngood film\t1\nno label here\n")
    with pytest.raises(DataError, match=r"mine.tsv: line 3 is not text<TAB>label"):
        read_text_label_tsv(path)
    path.write_text("good film\t1\nbad film\t0\n\nok\t2\n")  # no header, a blank line
    assert [(ex.text, ex.label) for ex in read_text_label_tsv(path)] == [
        ("good film", 1),
        ("bad film", 0),
        ("ok", 2),
    ]


def test_labelled_text_of_the_offline_corpora():
    need_corpus("rt-polarity")
    splits = read_labelled_text("rt-polarity")
    assert len(splits["train"]) == 8529 and len(splits["test"]) == 1064
    assert {ex.label for ex in splits["test"]} == {0, 1}


# --- the command ----------------------------------------------------------------------------

CPU_CONFIG = config("gpt_shakespeare_char_cpu.yaml")
TSV = "".join(
    f"{text}\t{label}\n"
    for text, label in [
        ("a wonderful film", 1),
        ("dull and long", 0),
        ("i loved it", 1),
        ("a waste of time", 0),
        ("sharp and funny", 1),
        ("tedious", 0),
        ("a joy", 1),
        ("boring", 0),
        ("moving", 1),
        ("awful", 0),
    ]
    * 2
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny Shakespeare GPT trained for a few steps."""
    need_corpus("tinyshakespeare")
    folder = tmp_path_factory.mktemp("few_shot")
    # Set here: a module's fixture runs before the per-test environment is (DATA_DIR may be
    # relative to the checkout, as CI gives it).
    env = {"WANDB_MODE": "disabled", "XDG_CACHE_HOME": str(folder / "cache")}
    env["DATA_DIR"] = str(SHARED_DATA)
    quick = [
        "--trainer.max_steps=4",
        "--trainer.val_check_interval=4",
        "--trainer.limit_val_batches=1",
    ]
    run_cli("fit", "--config", CPU_CONFIG, *TINY_GPT, *quick, cwd=folder, env=env)
    (ckpt,) = folder.glob("**/checkpoints/last.ckpt")
    (folder / "reviews.tsv").write_text(TSV)
    return ckpt, folder, env


def few_shot(checkpoint, *args, env=None, check=True):
    ckpt, folder, base = checkpoint
    return run_cli(
        "few_shot",
        "--config",
        CPU_CONFIG,
        *TINY_GPT,
        "--ckpt_path",
        str(ckpt),
        "--source",
        str(folder / "reviews.tsv"),
        *args,
        cwd=folder,
        env={**base, **(env or {})},
        check=check,
    )


def test_few_shot_prints_a_table_and_writes_json_png_and_a_wandb_table(checkpoint):
    _, folder, _ = checkpoint
    proc = few_shot(
        checkpoint,
        "--shots=[0, 2, 16]",
        "--seeds=[1, 2]",
        "--calibrate=true",
        "--template=r: {text}\\nsentiment: {label}",
        env={"WANDB_MODE": "offline"},
    )
    assert "few_shot: GPT on" in proc.stdout and "calibrated" in proc.stdout
    # block_size 32: 16 demonstrations never fit, and the note says so
    assert "k=16: longer than the model's context (32 tokens), 4 of 4 prompts lost" in proc.stdout
    (report_path,) = folder.glob("seqmodels/*/few_shot.json")
    report = json.loads(report_path.read_text())
    assert [r["k"] for r in report["results"]] == [0, 2, 16]
    assert report["examples"] == 2  # 10% of the 20 rows is the test split
    zero, two, _ = report["results"]
    assert len(zero["accuracy"]["per_seed"]) == 1  # no demonstrations: one run, not one a seed
    assert len(two["accuracy"]["per_seed"]) == 2
    assert all(0 <= r["calibrated"]["mean"] <= 1 for r in report["results"])
    assert (report_path.parent / "few_shot.png").stat().st_size > 1000
    (table,) = Path(folder).glob("wandb/offline-run-*/files/media/table/few_shot/accuracy_*.json")
    assert json.loads(table.read_text())["columns"][:2] == ["k", "accuracy"]


def test_few_shot_bad_input_gets_one_clear_message(checkpoint, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("good\t1\nbad\tnegative\n")
    proc = few_shot(checkpoint, "--source", str(bad), check=False)
    assert_one_clear_error(proc, "bad.tsv: line 2")
    proc = few_shot(checkpoint, "--label_words=[good]", check=False)
    assert_one_clear_error(proc, "--label_words needs two or more")
    proc = few_shot(checkpoint, "--template=no label: {text}", check=False)
    assert_one_clear_error(proc, "{label} exactly once")
