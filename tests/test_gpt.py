"""GPT at tiny sizes: it learns, it cannot see the future, and its optimiser recipe holds."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

from core.errors import UserError
from lit_models import GPT
from lit_models.gpt import swiglu_hidden_size
from lit_models.optim import WarmupCosineSchedule, adamw_decaying_matrices, warmup_cosine_factor
from tests.conftest import overfit

VOCAB, BLOCK = 16, 16
LLAMA_STYLE = dict(norm="rmsnorm", positional="rope", mlp="swiglu", n_ff=48, n_kv_head=1)


def tiny_gpt(**kwargs) -> GPT:
    torch.manual_seed(0)
    args = dict(vocab_size=VOCAB, block_size=BLOCK, n_layer=1, n_head=2, n_embd=32, dropout=0.0)
    return GPT(**{**args, **kwargs})


@pytest.mark.parametrize("options", [{}, LLAMA_STYLE], ids=["gpt", "llama_style"])
def test_overfits_a_single_batch(options):
    model = tiny_gpt(
        **options,
        learning_rate=1e-2,
        min_learning_rate=1e-3,
        weight_decay=0.0,
        warmup_steps=10,
        lr_decay_steps=100,
    )
    generator = torch.Generator().manual_seed(1)
    seqs = torch.randint(0, VOCAB, (4, BLOCK + 1), generator=generator)
    seqs[:, 0] = torch.arange(4)  # distinct first tokens: every target is determined by its prefix
    batch = {"input_ids": seqs[:, :-1], "targets": seqs[:, 1:]}
    # The model's own optimiser and schedule, stepped as Lightning steps them.
    config = model.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    model.train()
    first = overfit(model, batch, optimizer, steps=100, schedule=schedule)
    assert first > 2.0  # about ln(16) at the start
    assert model.token_nll(batch).mean().item() < 0.1


@pytest.mark.parametrize(
    "options",
    [{"positional": "learned"}, {"positional": "sinusoidal"}, LLAMA_STYLE],
    ids=["learned", "sinusoidal", "llama_style"],
)
def test_future_tokens_never_change_earlier_logits(options):
    model = tiny_gpt(n_layer=2, **options).eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, VOCAB, (2, BLOCK), generator=generator)
    with torch.no_grad():
        logits = model(x)
        for t in (0, 5, BLOCK - 2):
            changed = x.clone()
            changed[:, t + 1 :] = (
                x[:, t + 1 :]
                + 1
                + torch.randint(0, VOCAB - 1, (2, BLOCK - t - 1), generator=generator)
            ) % VOCAB
            assert (changed[:, t + 1 :] != x[:, t + 1 :]).all()
            new = model(changed)
            torch.testing.assert_close(new[:, : t + 1], logits[:, : t + 1], atol=1e-5, rtol=1e-5)
            # The changed positions themselves do see their new tokens.
            assert not torch.allclose(new[:, t + 1], logits[:, t + 1], atol=1e-5)


def test_shorter_inputs_give_the_same_logits():
    model = tiny_gpt().eval()
    x = torch.randint(0, VOCAB, (2, BLOCK))
    with torch.no_grad():
        torch.testing.assert_close(model(x[:, :7]), model(x)[:, :7], atol=1e-5, rtol=1e-5)


def test_input_longer_than_block_size_raises():
    model = tiny_gpt()
    model(torch.zeros(1, BLOCK, dtype=torch.long))  # exactly block_size is fine
    with pytest.raises(ValueError, match=f"block_size={BLOCK}"):
        model(torch.zeros(1, BLOCK + 1, dtype=torch.long))


def test_weight_tying_shares_the_tensor():
    tied = tiny_gpt()
    assert tied.lm_head.weight is tied.token_embedding.weight
    # Counted once, and a change through one is seen by the other.
    untied = tiny_gpt(tie_weights=False)
    assert untied.lm_head.weight is not untied.token_embedding.weight
    assert untied.num_parameters() - tied.num_parameters() == VOCAB * 32
    with torch.no_grad():
        tied.token_embedding.weight[3].fill_(1.5)
    assert (tied.lm_head.weight[3] == 1.5).all()
    # Both uses contribute to the one gradient.
    x = torch.randint(0, VOCAB, (2, 8))
    tied(x).sum().backward()
    assert (
        tied.token_embedding.weight.grad is not None
        and tied.lm_head.weight.grad is tied.token_embedding.weight.grad
    )


@pytest.mark.parametrize("tie_weights", [True, False])
def test_weight_decay_on_matrices_only_and_every_parameter_once(tie_weights):
    model = tiny_gpt(n_layer=2, bias=True, tie_weights=tie_weights)
    optimizer = adamw_decaying_matrices(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99))
    assert isinstance(optimizer, torch.optim.AdamW)
    decayed = [p for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]]
    plain = [p for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]]
    assert decayed and plain
    assert all(g["weight_decay"] == 0.1 for g in optimizer.param_groups if g["weight_decay"] > 0)
    assert all(p.dim() >= 2 for p in decayed)
    assert all(p.dim() < 2 for p in plain)
    grouped = [id(p) for p in decayed + plain]
    assert len(grouped) == len(set(grouped))  # nothing twice (the tied matrix included)
    assert set(grouped) == {id(p) for p in model.parameters()}  # nothing left out
    names = {id(p): n for n, p in model.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed}
    assert (
        "token_embedding.weight" in decayed_names and "position.embedding.weight" in decayed_names
    )
    assert not any(n.endswith(".bias") or n.startswith("ln_f") for n in decayed_names)
    # The model's own optimiser is this one.
    configured = tiny_gpt(
        n_layer=2, bias=True, tie_weights=tie_weights, weight_decay=0.1, lr_decay_steps=10
    ).configure_optimizers()["optimizer"]
    assert [len(g["params"]) for g in configured.param_groups] == [
        len(g["params"]) for g in optimizer.param_groups
    ]


def test_frozen_parameters_are_left_out():
    model = tiny_gpt()
    model.ln_f.weight.requires_grad_(False)
    optimizer = adamw_decaying_matrices(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99))
    assert all(p is not model.ln_f.weight for g in optimizer.param_groups for p in g["params"])


def _lr_curve(
    warmup: int, decay: int, min_ratio: float, steps: int, peak: float = 2e-3
) -> list[float]:
    """The learning rate the optimizer uses at steps 0 .. steps-1."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=peak)
    schedule = WarmupCosineSchedule(optimizer, warmup, decay, min_ratio)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return lrs


def test_warmup_cosine_schedule():
    peak, warmup, decay, min_ratio = 2e-3, 10, 50, 0.1
    lrs = _lr_curve(warmup, decay, min_ratio, 80, peak)
    # Linear warmup: equal increments, from above zero up to the peak at `warmup`.
    increments = [b - a for a, b in pairwise(lrs[: warmup + 1])]
    assert 0 < lrs[0] < lrs[1]
    assert all(math.isclose(d, increments[0], rel_tol=1e-6) for d in increments)
    assert math.isclose(lrs[warmup], peak, rel_tol=1e-9)
    assert max(lrs) == pytest.approx(peak)
    # Cosine decay: strictly down, halfway between peak and floor at the midpoint.
    decay_part = lrs[warmup : decay + 1]
    assert all(b < a for a, b in pairwise(decay_part))
    assert lrs[(warmup + decay) // 2] == pytest.approx(peak * (min_ratio + 0.5 * (1 - min_ratio)))
    # The floor is reached exactly at `decay` and kept.
    assert all(lr == pytest.approx(min_ratio * peak) for lr in lrs[decay:])
    # The scheduler and the plain function agree at every step.
    assert lrs == pytest.approx(
        [peak * warmup_cosine_factor(s, warmup, decay, min_ratio) for s in range(80)]
    )


def test_schedule_without_warmup_starts_at_the_peak():
    lrs = _lr_curve(warmup=0, decay=20, min_ratio=0.0, steps=25, peak=1.0)
    assert lrs[0] == pytest.approx(1.0)
    assert lrs[20:] == pytest.approx([0.0] * 5)


def test_lr_decay_steps_default_needs_an_end():
    from core.errors import UserError

    model = tiny_gpt()  # no trainer, no lr_decay_steps
    with pytest.raises(UserError, match="max_steps"):
        model.configure_optimizers()


def test_the_default_gpt_keeps_its_tensors():
    """The names and shapes checkpoints of earlier versions hold: they still load."""
    model = GPT(VOCAB, BLOCK, n_layer=1, n_head=2, n_embd=32)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if "eval_metrics" not in k}
    assert shapes == {
        "token_embedding.weight": (VOCAB, 32),
        "position.embedding.weight": (BLOCK, 32),
        "blocks.0.ln_attn.weight": (32,),
        "blocks.0.attn.in_proj.weight": (96, 32),
        "blocks.0.attn.out_proj.weight": (32, 32),
        "blocks.0.ln_ff.weight": (32,),
        "blocks.0.ff.fc.weight": (128, 32),
        "blocks.0.ff.proj.weight": (32, 128),
        "ln_f.weight": (32,),
        "lm_head.weight": (VOCAB, 32),
    }


def test_modern_choices_size_their_tensors():
    model = tiny_gpt(n_head=4, **{**LLAMA_STYLE, "n_kv_head": 2}, attention_bias=True)
    state = model.state_dict()
    assert state["blocks.0.attn.in_proj.weight"].shape == ((4 + 2 * 2) * 8, 32)
    assert state["blocks.0.attn.in_proj.bias"].shape == (64,)  # Q/K/V biases only
    assert "blocks.0.attn.out_proj.bias" not in state and "blocks.0.ln_attn.bias" not in state
    assert state["blocks.0.ff.fc.weight"].shape == (2 * 48, 32)  # [W_gate; W_up]
    assert "position.embedding.weight" not in state  # rope: nothing learned, nothing stored
    assert swiglu_hidden_size(4096) == 11008  # LLaMA-7B's width
    assert tiny_gpt(mlp="swiglu").hparams.n_ff == 256
    assert tiny_gpt().hparams.n_ff == 4 * 32


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"n_head": 4, "n_kv_head": 3},
            "model.init_args.n_kv_head must be a positive divisor of model.init_args.n_head=4, got 3",
        ),
        ({"n_head": 2, "n_embd": 6, "positional": "rope"}, "head size n_embd / n_head = 3"),
        (
            {"vocab_size": None},
            "model.init_args.vocab_size and model.init_args.block_size are not set",
        ),
    ],
)
def test_settings_that_cannot_build_a_model_are_named(options, message):
    with pytest.raises(UserError, match=message):
        tiny_gpt(**options)
