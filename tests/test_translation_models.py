"""The translators on toy token sequences: they learn a handful of pairs exactly, padding never
changes a real token's output, step-by-step decoding equals the full pass, beam search behaves,
attention is a distribution over the real source tokens, and the evaluation pass logs loss,
perplexity and BLEU. Plus the building blocks they add: additive attention, the decoder block,
attention weights and the Noam schedule."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import UserError
from lit_models import AttentionSeq2Seq, Seq2Seq, TransformerTranslator
from lit_models.modules import (
    AdditiveAttention,
    MultiHeadAttention,
    TransformerBlock,
    TransformerDecoderBlock,
)
from lit_models.modules.decoding import beam_search
from lit_models.optim import NoamSchedule, noam_learning_rate
from lit_models.translation import BoundSource
from tests.conftest import quiet_trainer

PAD, BOS, EOS = 0, 1, 2
VOCAB, BLOCK = 16, 12  # ids 4..15 are words

# The tiny sizes of each architecture; TINY varies the cell or the norm placement.
SEQ2SEQ = dict(n_embd=32, n_hidden=64, n_layer=2, dropout=0.0)
ATTENTION = dict(n_embd=32, encoder_n_hidden=32, decoder_n_hidden=64, dropout=0.0)
TRANSFORMER = dict(n_layer=2, n_head=4, n_embd=32, n_ff=64, dropout=0.0)
TINY = {
    "seq2seq_lstm": lambda: Seq2Seq(VOCAB, BLOCK, cell="lstm", **SEQ2SEQ),
    "seq2seq_gru": lambda: Seq2Seq(VOCAB, BLOCK, cell="gru", **SEQ2SEQ),
    "attention_gru": lambda: AttentionSeq2Seq(VOCAB, BLOCK, cell="gru", **ATTENTION),
    "attention_lstm": lambda: AttentionSeq2Seq(VOCAB, BLOCK, cell="lstm", **ATTENTION),
    "transformer_post": lambda: TransformerTranslator(
        VOCAB, BLOCK, norm_first=False, **TRANSFORMER
    ),
    "transformer_pre": lambda: TransformerTranslator(VOCAB, BLOCK, norm_first=True, **TRANSFORMER),
}
LEARNING_RATES = {"seq2seq": 1e-2, "attention": 1e-2, "transformer": 3e-3}


def make(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return TINY[name]().eval()


def toy_pairs() -> list[tuple[list[int], list[int]]]:
    """Six sources of 2 to 5 words; each target is its source reversed, every word shifted."""
    g = torch.Generator().manual_seed(0)
    pairs = []
    for _ in range(6):
        n = int(torch.randint(2, 6, (1,), generator=g))
        source = torch.randint(4, VOCAB, (n,), generator=g).tolist()
        pairs.append((source, [(w - 4 + 5) % 12 + 4 for w in reversed(source)]))
    return pairs


def right_pad(rows: list[list[int]], width: int | None = None) -> torch.Tensor:
    width = width or max(map(len, rows))
    out = torch.full((len(rows), width), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def batch_of(pairs) -> dict:
    return {
        "source": right_pad([s + [EOS] for s, _ in pairs]),
        "target": right_pad([[BOS, *t, EOS] for _, t in pairs]),
    }


_trained: dict = {}


def trained(name: str):
    """The model after fitting the toy pairs (trained once per test session)."""
    if name not in _trained:
        model = make(name)
        opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATES[name.split("_")[0]])
        batch = batch_of(toy_pairs())
        model.train()
        for step in range(150):
            loss = model.training_step(batch, step)
            opt.zero_grad()
            loss.backward()
            opt.step()
        _trained[name] = model.eval()
    return _trained[name]


def sequence_log_prob(model, source: list[int], tokens: list[int]) -> float:
    """log P(tokens + <eos> | source), teacher-forced through the model's forward pass."""
    with torch.no_grad():
        target = torch.tensor([[BOS, *tokens, EOS]])
        logits = model(torch.tensor([source]), target[:, :-1])
        return logits.log_softmax(-1).gather(-1, target[:, 1:, None]).sum().item()


# --- learning and decoding ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TINY))
def test_each_model_learns_toy_pairs_to_exact_translations(name):
    model = trained(name)
    pairs = toy_pairs()
    sources = [s + [EOS] for s, _ in pairs]
    assert model.translate_ids(sources) == [t for _, t in pairs]
    assert model.translate_ids(sources, num_beams=3) == [t for _, t in pairs]


@pytest.mark.parametrize("name", list(TINY))
def test_beam_search_finds_log_prob_at_least_greedy(name):
    # Trained on the toy pairs, asked about other sentences: the model is unsure there.
    model = trained(name)
    g = torch.Generator().manual_seed(1)
    sources = [torch.randint(4, VOCAB, (n,), generator=g).tolist() + [EOS] for n in (2, 3, 4, 5)]
    greedy = model.translate_ids(sources, max_new_tokens=8)
    for source, greedy_tokens in zip(sources, greedy, strict=True):
        best = beam_search(
            BoundSource(model, torch.tensor([source])),
            [BOS],
            num_beams=4,
            max_new_tokens=8,
            length_penalty=0.0,
            eos_id=EOS,
        )[0]
        # The beam's own score is the probability the full forward pass gives its tokens.
        if len(best.tokens) < 8:
            assert best.log_prob == pytest.approx(
                sequence_log_prob(model, source, best.tokens), abs=1e-4
            )
        if len(greedy_tokens) < 8:  # greedy ended with <eos>: a complete translation
            assert best.log_prob >= sequence_log_prob(model, source, greedy_tokens) - 1e-4


@pytest.mark.parametrize("name", list(TINY))
def test_beam_of_one_equals_greedy_and_batch_equals_one_by_one(name):
    model = make(name)
    sources = [[5, 6, EOS], [7, 8, 9, 10, 11, EOS], [12, EOS]]
    greedy = model.translate_ids(sources, max_new_tokens=10)
    assert model.translate_ids(sources, num_beams=1, max_new_tokens=10) == greedy
    assert [model.translate_ids([s], max_new_tokens=10)[0] for s in sources] == greedy
    for source, tokens in zip(sources, greedy, strict=True):
        beam = beam_search(BoundSource(model, torch.tensor([source])), [BOS], 1, 10, 1.0, EOS)[0]
        assert beam.tokens == tokens


@pytest.mark.parametrize("name", list(TINY))
@torch.no_grad()
def test_padding_never_changes_a_real_tokens_output(name):
    model = make(name)
    pairs = [([5, 6, 7, 8, 9], [10, 11, 12]), ([4], [13, 14, 15, 4, 5]), ([6, 7], [8])]
    sources = [s + [EOS] for s, _ in pairs]
    targets_in = [[BOS, *t] for _, t in pairs]
    # Padded wider than needed, and mixed lengths in one batch ...
    batched = model(right_pad(sources, 9), right_pad(targets_in, 8))
    for i, (source, target_in) in enumerate(zip(sources, targets_in, strict=True)):
        alone = model(torch.tensor([source]), torch.tensor([target_in]))[0]
        # ... give each real target position what the pair alone gives.
        torch.testing.assert_close(batched[i, : len(target_in)], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(TINY))
@torch.no_grad()
def test_step_by_step_decoding_equals_the_full_pass(name):
    """Each decode_step (the KV cache for the Transformer) gives the logits of the full
    teacher-forced pass, on a padded batch."""
    model = make(name)
    source = right_pad([[5, 6, 7, EOS], [8, EOS]])
    target_in = right_pad([[BOS, 9, 10, 11, 12], [BOS, 13, 14, 15, 4]])
    full = model(source, target_in)
    memory = model.encode(source)
    state = model.init_decoder_state(memory)
    for t in range(target_in.size(1)):
        logits, state = model.decode_step(memory, state, target_in[:, t])
        torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_reordering_rows_follows_the_beams():
    """After keeping rows [1, 1, 0], each row continues as the row it was copied from."""
    for name in ("seq2seq_lstm", "attention_gru", "transformer_pre"):
        model = make(name)
        source = right_pad([[5, 6, 7, EOS], [8, EOS]])
        memory = model.encode(source)
        state = model.init_decoder_state(memory)
        _, state = model.decode_step(memory, state, torch.tensor([BOS, BOS]))
        _, state = model.decode_step(memory, state, torch.tensor([9, 10]))
        expected, _ = model.decode_step(memory, state, torch.tensor([11, 12]))
        # the states advanced in place (KV caches) are rebuilt for the reordered run
        memory = model.encode(source)
        state = model.init_decoder_state(memory)
        _, state = model.decode_step(memory, state, torch.tensor([BOS, BOS]))
        _, state = model.decode_step(memory, state, torch.tensor([9, 10]))
        rows = torch.tensor([1, 1, 0])
        memory, state = model.reorder_decoding(memory, state, rows)
        logits, _ = model.decode_step(memory, state, torch.tensor([12, 12, 11]))
        torch.testing.assert_close(logits, expected[rows], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["transformer_post", "transformer_pre"])
@torch.no_grad()
def test_transformer_decoder_is_causal(name):
    model = make(name)
    source = torch.tensor([[5, 6, 7, EOS]])
    target_in = torch.tensor([[BOS, 8, 9, 10, 11, 12]])
    before = model(source, target_in)
    for j in range(1, target_in.size(1)):
        changed = target_in.clone()
        changed[0, j] = 4 if changed[0, j] != 4 else 5
        after = model(source, changed)
        torch.testing.assert_close(after[:, :j], before[:, :j])
        assert not torch.allclose(after[:, j], before[:, j])


def test_teacher_forcing_ratio_zero_feeds_back_the_models_own_tokens():
    torch.manual_seed(0)
    model = Seq2Seq(VOCAB, BLOCK, n_embd=16, n_hidden=32, n_layer=1, dropout=0.0)
    source = torch.tensor([[5, 6, EOS]])
    target_in, other = torch.tensor([[BOS, 7, 8, 9]]), torch.tensor([[BOS, 10, 11, 12]])
    model.train()
    model.hparams.teacher_forcing_ratio = 0.0  # only <bos> is read from the target
    torch.testing.assert_close(model(source, target_in), model(source, other))
    model.hparams.teacher_forcing_ratio = 1.0  # every input is the true previous token
    assert not torch.allclose(model(source, target_in)[:, 1:], model(source, other)[:, 1:])


# --- attention ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["attention_gru", "attention_lstm"])
@torch.no_grad()
def test_bahdanau_weights_sum_to_one_over_real_tokens_and_are_zero_at_padding(name):
    model = make(name)
    source = right_pad([[5, 6, 7, 8, EOS], [9, EOS], [10, 11, EOS]], width=7)
    weights = model.attention_weights(source, right_pad([[BOS, 4, 5], [BOS, 6, 7], [BOS, 8, 9]]))
    assert weights.shape == (3, 3, 7)
    real = (source != PAD)[:, None, :].expand_as(weights)
    assert torch.all(weights[~real] == 0.0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 3))
    assert torch.all(weights[real] > 0)


@pytest.mark.parametrize("name", ["attention_gru", "transformer_post", "transformer_pre"])
def test_cross_attention_maps_each_target_token_onto_the_source(name):
    model = make(name)
    source, target = [5, 6, 7, EOS], [8, 9, 10, 11, 12]
    weights = model.cross_attention(source, target)
    assert weights.shape == (len(target), len(source))
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(target)))
    assert not model.training  # left as it was
    assert make("seq2seq_gru").cross_attention(source, target) is None


def test_additive_attention_against_a_hand_computation():
    torch.manual_seed(0)
    attention = AdditiveAttention(query_size=3, key_size=4, n_hidden=5)
    query, keys = torch.randn(2, 3), torch.randn(2, 6, 4)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    context, weights = attention(query, keys, mask)
    W, U, b = attention.query_proj.weight, attention.key_proj.weight, attention.key_proj.bias
    v = attention.score.weight[0]
    for i in range(2):
        real = int(mask[i].sum())
        energies = torch.stack(
            [v @ torch.tanh(W @ query[i] + U @ keys[i, j] + b) for j in range(real)]
        )
        a = torch.exp(energies) / torch.exp(energies).sum()
        torch.testing.assert_close(weights[i, :real], a)
        assert torch.all(weights[i, real:] == 0)
        torch.testing.assert_close(context[i], (a[:, None] * keys[i, :real]).sum(0))
    # The keys projected beforehand (once per source) give the same.
    again, _ = attention(query, keys, mask, projected_keys=attention.project_keys(keys))
    torch.testing.assert_close(again, context)


def test_attention_weights_match_torch_and_do_not_change_the_output():
    torch.manual_seed(0)
    ours = MultiHeadAttention(16, 4).eval()
    ref = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.in_proj.weight)
        ref.in_proj_bias.copy_(ours.in_proj.bias)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    query, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    padding = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
    allowed = ~padding[:, None, None, :]
    out, weights = ours(query, memory, attn_mask=allowed, need_weights=True)
    expected, expected_weights = ref(
        query, memory, memory, key_padding_mask=padding, average_attn_weights=False
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, expected_weights, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours(query, memory, attn_mask=allowed), out, atol=1e-5, rtol=1e-5)
    # the memory's keys and values projected once give the same
    kv = ours.project_memory(memory)
    torch.testing.assert_close(ours(query, attn_mask=allowed, memory_kv=kv), out)
    # causal self-attention weights: nothing after the query's own position
    _, causal = ours(query, is_causal=True, need_weights=True)
    assert torch.all(causal.triu(1) == 0)


# --- the Transformer's layers ---------------------------------------------------------------


def _decoder_blocks() -> tuple[TransformerDecoderBlock, TransformerDecoderBlock]:
    torch.manual_seed(0)
    pre = TransformerDecoderBlock(16, 4, 32, norm_first=True).eval()
    post = TransformerDecoderBlock(16, 4, 32, norm_first=False).eval()
    post.load_state_dict(pre.state_dict())
    return pre, post


@torch.no_grad()
def test_decoder_block_layouts_compute_their_formulas():
    pre, post = _decoder_blocks()
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])[:, None, None, :]
    h = x + pre.self_attn(pre.ln_self(x), is_causal=True)
    h = h + pre.cross_attn(pre.ln_cross(h), memory, attn_mask=mask)
    torch.testing.assert_close(pre(x, memory, memory_mask=mask), h + pre.ff(pre.ln_ff(h)))
    h = post.ln_self(x + post.self_attn(x, is_causal=True))
    h = post.ln_cross(h + post.cross_attn(h, memory, attn_mask=mask))
    torch.testing.assert_close(post(x, memory, memory_mask=mask), post.ln_ff(h + post.ff(h)))
    assert not torch.allclose(pre(x, memory, memory_mask=mask), post(x, memory, memory_mask=mask))


@pytest.mark.parametrize("norm_first", [True, False])
@torch.no_grad()
def test_decoder_block_with_a_kv_cache_equals_the_full_pass(norm_first):
    pre, post = _decoder_blocks()
    block = pre if norm_first else post
    x, memory = torch.randn(2, 6, 16), torch.randn(2, 4, 16)
    full = block(x, memory)
    kv = block.cross_attn.project_memory(memory)
    cache = block.self_attn.new_cache(2, 6, x)
    # one position, then three at once after the cached ones, then the last two one by one
    parts = [
        block(x[:, :1], cache=cache, memory_kv=kv),
        block(x[:, 1:4], cache=cache, memory_kv=kv),
    ]
    parts += [block(x[:, t : t + 1], cache=cache, memory_kv=kv) for t in (4, 5)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [True, False])
@torch.no_grad()
def test_encoder_block_ignores_what_padding_holds(norm_first):
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, 32, norm_first=norm_first, activation="relu").eval()
    x = torch.randn(2, 6, 16)
    mask = torch.tensor([[True] * 6, [True] * 2 + [False] * 4])[:, None, None, :]
    scrambled = x.clone()
    scrambled[1, 2:] = torch.randn(4, 16) * 10
    torch.testing.assert_close(
        block(scrambled, attn_mask=mask)[1, :2], block(x, attn_mask=mask)[1, :2]
    )


# --- training recipe ------------------------------------------------------------------------


def test_noam_schedule_follows_its_formula_and_peaks_at_warmup_steps():
    d_model, warmup, factor = 64, 10, 2.0
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=123.0)  # ignored
    schedule = NoamSchedule(optimizer, d_model, warmup, factor)
    rates = []
    for step in range(1, 41):  # the rate each optimizer step uses
        rates.append(optimizer.param_groups[0]["lr"])
        assert rates[-1] == pytest.approx(noam_learning_rate(step, d_model, warmup, factor))
        optimizer.step()
        schedule.step()
    assert rates.index(max(rates)) + 1 == warmup
    assert max(rates) == pytest.approx(factor / math.sqrt(d_model * warmup))
    assert rates[0] == pytest.approx(factor * d_model**-0.5 * warmup**-1.5)
    assert rates[-1] == pytest.approx(factor * (d_model * 40) ** -0.5)


def test_transformer_optimisers():
    model = make("transformer_pre")
    config = model.configure_optimizers()
    assert isinstance(config["lr_scheduler"]["scheduler"], NoamSchedule)
    adam = config["optimizer"]
    assert adam.defaults["betas"] == (0.9, 0.98) and adam.defaults["eps"] == 1e-9
    model.hparams.schedule = "constant"
    assert model.configure_optimizers().param_groups[0]["lr"] == 5e-4


@pytest.mark.parametrize("name", ["seq2seq_gru", "attention_gru", "transformer_post"])
def test_label_smoothing_changes_the_loss_as_cross_entropy_says(name):
    model = make(name)
    model.hparams.teacher_forcing_ratio = 1.0
    batch = batch_of(toy_pairs())
    target = batch["target"]
    with torch.no_grad():
        logits = model(batch["source"], target[:, :-1]).flatten(0, 1)
    gold = target[:, 1:].flatten()
    for smoothing in (0.0, 0.1):
        model.hparams.label_smoothing = smoothing
        with torch.no_grad():
            loss = model.training_step(batch, 0)
        expected = F.cross_entropy(logits, gold, ignore_index=PAD, label_smoothing=smoothing)
        torch.testing.assert_close(loss, expected)
    assert F.cross_entropy(logits, gold, ignore_index=PAD, label_smoothing=0.1) != pytest.approx(
        F.cross_entropy(logits, gold, ignore_index=PAD).item()
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Seq2Seq(VOCAB, BLOCK, teacher_forcing_ratio=1.5), "teacher_forcing_ratio"),
        (lambda: AttentionSeq2Seq(VOCAB, BLOCK, eval_num_beams=0), "eval_num_beams"),
        (lambda: TransformerTranslator(VOCAB, BLOCK, n_embd=30, n_head=4), "divisor"),
        (lambda: TransformerTranslator(VOCAB, BLOCK, label_smoothing=1.0), "label_smoothing"),
    ],
)
def test_bad_settings_are_user_errors(build, message):
    with pytest.raises(UserError, match=message):
        build()


def test_empty_source_is_rejected():
    with pytest.raises(ValueError, match="at least one token"):
        make("seq2seq_gru").translate_ids([[5, EOS], []])


# --- the evaluation pass --------------------------------------------------------------------

WORDS = {i: f"w{i}" for i in range(4, VOCAB)}


class ToyTranslationData(L.LightningDataModule):
    """What a translation datamodule offers a model (the data contract), for the toy pairs.
    References are upper-cased and the tokenizer lower-cases, as a word-level one does."""

    lowercase = True
    source_lang, target_lang = "toy", "yot"

    def __init__(self, pairs):
        super().__init__()
        self.batch = batch_of(pairs)
        self.batch["source_text"] = [" ".join(WORDS[w] for w in s).upper() for s, _ in pairs]
        self.batch["target_text"] = [" ".join(WORDS[w] for w in t).upper() for _, t in pairs]

    def decode(self, ids: list[int]) -> str:
        return " ".join(WORDS[i] for i in ids if i in WORDS)

    def bleu_tokens(self, text: str) -> list[str]:
        return text.lower().split()

    def _loader(self):
        return torch.utils.data.DataLoader([self.batch], batch_size=None)

    val_dataloader = test_dataloader = _loader


def _trainer() -> L.Trainer:
    return quiet_trainer(accelerator="cpu")


def test_validation_and_test_log_loss_perplexity_and_bleu():
    model = trained("attention_gru")
    data = ToyTranslationData(toy_pairs())
    (val,) = _trainer().validate(model, datamodule=data, verbose=False)
    assert set(val) == {
        "val/loss", "val/ppl", "val/bleu", "val/bleu_tok", "val/sacrebleu_cased", "val/chrf"
    }  # fmt: skip
    assert val["val/bleu"] == pytest.approx(100.0) and val["val/bleu_tok"] == pytest.approx(100.0)
    # the references are upper-cased, the translations not: only the lower-cased figures match
    assert val["val/sacrebleu_cased"] < 5.0 and val["val/chrf"] < 50.0
    assert val["val/ppl"] == pytest.approx(math.exp(val["val/loss"]), rel=1e-5)
    assert val["val/loss"] < 0.05
    (test,) = _trainer().test(model, datamodule=data, verbose=False)  # beam search, 5 beams
    assert test["test/bleu"] == pytest.approx(100.0)


def test_bleu_scores_wrong_translations_low_and_is_skipped_without_a_codec():
    model = make("transformer_pre")  # untrained: its translations are wrong
    data = ToyTranslationData(toy_pairs())
    (val,) = _trainer().validate(model, datamodule=data, verbose=False)
    assert val["val/bleu"] < 5.0 and val["val/ppl"] > 5.0

    class NoCodec(ToyTranslationData):
        decode = None

    (val,) = _trainer().validate(
        make("transformer_pre"), datamodule=NoCodec(toy_pairs()), verbose=False
    )
    assert set(val) == {"val/loss", "val/ppl"}
