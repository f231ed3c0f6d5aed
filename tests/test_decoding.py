"""Decoding strategies and the GPT KV cache."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from datamodules import TinyShakespeareDataModule
from lit_models import GPT
from lit_models.modules.decoding import (
    Decodable,
    apply_repetition_penalty,
    beam_search,
    evaluating,
    generate,
    generate_text,
    generate_text_beam_search,
    top_k_filter,
    top_p_filter,
)

EOS, A, B, C = 0, 1, 2, 3


class MarkovModel(nn.Module):
    """A toy model whose next-token distribution depends only on the last token: a table of
    hand-set probabilities. It takes part in decoding like any model of the suite."""

    def __init__(self, table: dict[int, list[float]], vocab: int = 4):
        super().__init__()
        probs = torch.full((vocab, vocab), 1.0 / vocab)
        for token, row in table.items():
            probs[token] = torch.tensor(row)
        self.register_buffer("log_probs", probs.log())

    @property
    def device(self) -> torch.device:
        return self.log_probs.device

    def decoding_mode(self):
        return evaluating(self)

    def start_decoding(self, input_ids, attention_mask):
        last = input_ids[:, -1]
        return self.log_probs[last], last

    def continue_decoding(self, state, next_ids):
        return self.log_probs[next_ids], next_ids

    def reorder_decoding_state(self, state, rows):
        return state.index_select(0, rows)


# After C: A is likelier than B, but A leads nowhere in particular while B almost surely ends.
TRAP = {C: [0.0, 0.6, 0.4, 0.0], A: [0.34, 0.33, 0.33, 0.0], B: [0.9, 0.05, 0.05, 0.0]}


def test_greedy_is_not_optimal_and_beam_search_finds_the_likelier_sequence():
    model = MarkovModel(TRAP)
    assert isinstance(model, Decodable)
    greedy = generate(model, [[C]], max_new_tokens=2, eos_id=EOS)[0]
    assert greedy == [A, EOS] or greedy[:1] == [A]  # greedy commits to A
    best = beam_search(model, [C], num_beams=2, max_new_tokens=5, length_penalty=0.0, eos_id=EOS)[0]
    assert best.tokens == [B]
    assert best.log_prob == pytest.approx(math.log(0.4 * 0.9), rel=1e-5)
    assert best.log_prob > math.log(0.6 * 0.34)  # greedy's best completion


def trap_hypotheses(num_beams: int, length_penalty: float, n_best: int):
    """Beam search over TRAP from C, up to 5 new tokens."""
    return beam_search(
        MarkovModel(TRAP),
        [C],
        num_beams=num_beams,
        max_new_tokens=5,
        length_penalty=length_penalty,
        eos_id=EOS,
        n_best=n_best,
    )


def test_beam_search_returns_n_best_sorted_with_scores():
    hyps = trap_hypotheses(num_beams=3, length_penalty=0.0, n_best=3)
    assert len(hyps) == 3
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    assert all(
        h.score == pytest.approx(h.log_prob) for h in hyps
    )  # length_penalty 0: raw log-probability


def test_length_penalty_normalises_by_length():
    hyps = trap_hypotheses(num_beams=2, length_penalty=1.0, n_best=2)
    for h in hyps:
        steps = len(h.tokens) + 1  # + the end token
        assert h.score == pytest.approx(h.log_prob / steps, rel=1e-5)


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return GPT(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0).eval()


PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [7]]


def test_beam_search_with_one_beam_equals_greedy(gpt):
    for prompt in PROMPTS:
        greedy = generate(gpt, [prompt], max_new_tokens=30)[0]
        assert beam_search(gpt, prompt, num_beams=1, max_new_tokens=30)[0].tokens == greedy


def test_top_k_of_one_equals_greedy(gpt):
    greedy = generate(gpt, PROMPTS, max_new_tokens=30)
    for seed in range(3):
        assert (
            generate(gpt, PROMPTS, max_new_tokens=30, strategy="sample", top_k=1, seed=seed)
            == greedy
        )


def test_temperature_towards_zero_approaches_greedy(gpt):
    greedy = generate(gpt, PROMPTS, max_new_tokens=30)
    assert (
        generate(gpt, PROMPTS, max_new_tokens=30, strategy="sample", temperature=1e-4, seed=1)
        == greedy
    )
    assert (
        generate(gpt, PROMPTS, max_new_tokens=30, strategy="sample", temperature=0.0, seed=1)
        == greedy
    )
    # and a warm temperature does not (the untrained model's distribution is nearly flat)
    assert (
        generate(gpt, PROMPTS, max_new_tokens=30, strategy="sample", temperature=1.0, seed=1)
        != greedy
    )


def test_top_p_keeps_exactly_the_smallest_set_reaching_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = lambda p: torch.isfinite(top_p_filter(logits, p))[0].tolist()  # noqa: E731
    assert kept(0.5) == [True, False, False, False]
    assert kept(0.79) == [True, True, False, False]
    assert kept(0.8) == [True, True, False, False]  # 0.5 + 0.3 reaches 0.8 exactly
    assert kept(0.81) == [True, True, True, False]
    assert kept(1.0) == [True, True, True, True]
    shuffled = logits[:, [2, 0, 3, 1]]  # order in the vocabulary does not matter
    assert torch.isfinite(top_p_filter(shuffled, 0.8))[0].tolist() == [False, True, False, True]


def test_top_k_keeps_k_tokens():
    logits = torch.tensor([[0.1, 2.0, -1.0, 3.0, 0.5]])
    assert torch.isfinite(top_k_filter(logits, 2))[0].tolist() == [False, True, False, True, False]
    assert torch.isfinite(top_k_filter(logits, 99)).all()


def test_repetition_penalty_lowers_seen_tokens_only():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1]]), 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0]]


def test_same_seed_same_text_and_batch_equals_one_by_one(gpt):
    options = dict(max_new_tokens=40, strategy="sample", top_p=0.9, temperature=0.9)
    batch = generate(gpt, PROMPTS, seed=7, **options)
    assert batch == generate(gpt, PROMPTS, seed=7, **options)
    assert batch != generate(gpt, PROMPTS, seed=8, **options)
    assert batch == [generate(gpt, [p], seed=7, **options)[0] for p in PROMPTS]
    # greedy too, also past the context length (block_size 16), where windows slide per row
    greedy = generate(gpt, PROMPTS, max_new_tokens=40)
    assert greedy == [generate(gpt, [p], max_new_tokens=40)[0] for p in PROMPTS]


def _walk(model, prompts, steps):
    """Logits at each decoding step, with the window the model saw at that step."""
    from lit_models.modules.decoding import left_pad

    ids, mask = left_pad(prompts)
    logits, state = model.start_decoding(ids, mask)
    out = [(logits, state.tokens.clone(), state.mask.clone())]
    for _ in range(steps):
        nxt = logits.argmax(dim=-1)
        logits, state = model.continue_decoding(state, nxt)
        out.append((logits, state.tokens.clone(), state.mask.clone()))
    return out


@torch.no_grad()
def test_kv_cache_logits_equal_a_full_recompute_past_the_context(gpt):
    """Each step's cached logits equal a full forward pass over the row's current window,
    for 40 steps with block_size 16, so the windows slide (to the newest 8 tokens) twice."""
    for logits, tokens, mask in _walk(gpt, PROMPTS, steps=40):
        for row in range(len(PROMPTS)):
            window = tokens[row][mask[row]][None]
            assert window.size(1) <= gpt.block_size
            full = gpt(window)[0, -1]
            torch.testing.assert_close(logits[row], full, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_with_and_without_the_cache_give_the_same_logits(gpt):
    gpt.hparams.kv_cache = False
    try:
        recomputed = _walk(gpt, PROMPTS, steps=40)
    finally:
        gpt.hparams.kv_cache = True
    cached = _walk(gpt, PROMPTS, steps=40)
    for (a, *_), (b, *_) in zip(cached, recomputed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# Every choice of the modern decoder, mixed: the cache, the sliding window past block_size and
# every strategy hold for each.
CHOICES = {
    "llama": dict(norm="rmsnorm", positional="rope", mlp="swiglu", n_ff=48, n_kv_head=1),
    "qwen2": dict(
        norm="rmsnorm",
        positional="rope",
        mlp="swiglu",
        n_ff=48,
        attention_bias=True,
        tie_weights=False,
    ),
    "rope_layernorm_gelu_gqa_bias": dict(
        positional="rope", mlp="gelu_tanh", n_kv_head=2, bias=True
    ),
    "rmsnorm_sinusoidal_swiglu": dict(norm="rmsnorm", positional="sinusoidal", mlp="swiglu"),
}


@pytest.fixture(scope="module", params=list(CHOICES))
def modern(request):
    torch.manual_seed(0)
    options = CHOICES[request.param]
    model = GPT(40, 16, n_layer=2, n_head=4, n_embd=32, dropout=0.0, **options).eval()
    with torch.no_grad():  # rope and GQA matter more with larger weights
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@torch.no_grad()
def test_every_choice_caches_and_slides_like_a_full_recompute(modern):
    for logits, tokens, mask in _walk(modern, PROMPTS, steps=40):
        for row in range(len(PROMPTS)):
            full = modern(tokens[row][mask[row]][None])[0, -1]
            torch.testing.assert_close(logits[row], full, rtol=1e-5, atol=1e-5)
    modern.hparams.kv_cache = False
    try:
        recomputed = _walk(modern, PROMPTS, steps=40)
    finally:
        modern.hparams.kv_cache = True
    for (a, *_), (b, *_) in zip(_walk(modern, PROMPTS, steps=40), recomputed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_every_choice_decodes_with_every_strategy(modern):
    greedy = generate(modern, PROMPTS, max_new_tokens=40)  # past block_size 16
    assert greedy == [generate(modern, [p], max_new_tokens=40)[0] for p in PROMPTS]
    for prompt, tokens in zip(PROMPTS, greedy, strict=True):
        assert beam_search(modern, prompt, num_beams=1, max_new_tokens=40)[0].tokens == tokens
    options = dict(strategy="sample", temperature=0.8, top_k=10, top_p=0.9, repetition_penalty=1.2)
    sampled = generate(modern, PROMPTS, max_new_tokens=40, seed=3, **options)
    assert sampled == [
        generate(modern, [p], max_new_tokens=40, seed=3, **options)[0] for p in PROMPTS
    ]
    beams = beam_search(modern, PROMPTS[1], num_beams=3, max_new_tokens=20, n_best=3)
    assert len(beams) == 3 and beams[0].score >= beams[-1].score


# --- text level and bad input -----------------------------------------------------------------


@pytest.fixture(scope="module")
def shakespeare():
    from tests.conftest import need_corpus

    return TinyShakespeareDataModule(data_dir=str(need_corpus("tinyshakespeare")))


def test_text_in_text_out(shakespeare):
    model = GPT(
        vocab_size=shakespeare.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32
    ).eval()
    texts = generate_text(model, ["ROMEO:", "JULIET:"], shakespeare, max_new_tokens=20)
    assert all(isinstance(t, str) and len(t) == 20 for t in texts)
    assert texts[0] == shakespeare.decode(generate(model, [shakespeare.encode("ROMEO:")], 20)[0])
    best = generate_text_beam_search(
        model, "my name", shakespeare, num_beams=3, max_new_tokens=10, n_best=2
    )
    assert len(best) == 2 and all(
        isinstance(text, str) and isinstance(score, float) for text, score in best
    )


def test_stop_strings_end_the_text(shakespeare):
    model = GPT(
        vocab_size=shakespeare.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32
    ).eval()
    full = generate_text(model, ["ROMEO:"], shakespeare, max_new_tokens=30)[0]
    stop = full[5:7]
    cut = generate_text(model, ["ROMEO:"], shakespeare, max_new_tokens=30, stop=[stop])[0]
    assert cut == full[: full.find(stop)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "nucleus"}, "unknown decoding strategy"),
        ({"strategy": "sample", "top_k": 0}, "top_k must be >= 1"),
        ({"strategy": "sample", "top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"strategy": "sample", "top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"strategy": "sample", "temperature": -1.0}, "temperature must be >= 0"),
        ({"num_beams": 0, "strategy": "beam"}, "num_beams must be >= 1"),
    ],
)
def test_bad_options_get_a_clear_error(shakespeare, kwargs, message):
    model = GPT(vocab_size=shakespeare.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    with pytest.raises(ValueError, match=message):
        generate_text(model, ["ROMEO:"], shakespeare, max_new_tokens=5, **kwargs)


def test_bad_prompts_get_a_clear_error(shakespeare):
    model = GPT(vocab_size=shakespeare.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    with pytest.raises(ValueError, match="empty"):
        generate_text(model, [""], shakespeare, max_new_tokens=5)
    with pytest.raises(ValueError, match="outside the vocabulary: 'é', '€'"):
        generate_text(model, ["héllo €"], shakespeare, max_new_tokens=5)
