"""Decoding: from a model's next-token distribution to sequences, shared by every model that
generates (GPT, the recurrent language models, MLP/WaveNet, the translators).

A model takes part by being `Decodable` (the Protocol below); every strategy here works with
any such model:

    device                                   where the prompts' ids go
    decoding_mode()                          a context: eval mode and inference mode, mode restored
    start_decoding(input_ids, attention_mask) -> (logits [B, V], state)
        read left-padded prompts [B, T] (mask True at real tokens); logits of the next token
    continue_decoding(state, next_ids [B]) -> (logits [B, V], state)
        feed one more token per row
    reorder_decoding_state(state, rows [B']) -> state
        keep (and repeat) the rows `rows`, as beam search does with its surviving beams

Strategies: greedy, sampling with temperature / top-k / top-p (nucleus) and a repetition
penalty, in any combination; and beam search with a length penalty.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import torch
from torch import nn

# What a model keeps between decoding steps (caches, recurrent states, windows): only the
# model that made it reads it; the strategies just hand it back.
DecodingState = Any


@runtime_checkable
class Decodable(Protocol):
    """What the decoding strategies need of a model."""

    @property
    def device(self) -> torch.device: ...

    def decoding_mode(self) -> AbstractContextManager[None]:
        """Entered for the whole decoding: eval mode (no dropout, BatchNorm's running
        statistics) and inference mode (no autograd); the model's mode is restored on leaving."""
        ...

    def start_decoding(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, DecodingState]: ...

    def continue_decoding(
        self, state: DecodingState, next_ids: torch.Tensor
    ) -> tuple[torch.Tensor, DecodingState]: ...

    def reorder_decoding_state(self, state: DecodingState, rows: torch.Tensor) -> DecodingState: ...


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """No dropout and no autograd for a while; the module's mode is restored after. What a
    Decodable nn.Module's decoding_mode is."""
    was_training = module.training
    module.eval()
    try:
        # inference_mode: no version counters nor autograd records, cheaper than no_grad for
        # the many small calls of a KV-cache loop. force_eager: a forward compiled for
        # training (`compile: true`) would recompile for every new prompt and cache length.
        with torch.inference_mode(), torch.compiler.set_stance("force_eager"):
            yield
    finally:
        module.train(was_training)


Strategy = Literal["greedy", "sample", "beam"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


class NonFiniteProbabilities(ValueError):
    """The model's next-token distribution holds NaN or inf: its weights do (a diverged run)."""


class TextCodec(Protocol):
    """Turns text into token ids and back; the datamodules provide one (their tokenizer)."""

    eos_id: int | None  # the token that ends a text, if the vocabulary has one

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


def check_options(
    strategy: Strategy = "greedy",
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    max_new_tokens: int = 1,
    num_beams: int = 1,
) -> None:
    """Reject impossible settings with a message that says which and why."""
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown decoding strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}"
        )
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")


# --- shaping the next-token distribution ------------------------------------------------


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float
) -> torch.Tensor:
    """CTRL (Keskar et al. 2019): make tokens already in `seen` [B, L] less likely, dividing a
    positive logit by `penalty` and multiplying a negative one."""
    if penalty == 1.0 or seen.numel() == 0:
        return logits
    picked = logits.gather(1, seen)
    logits = logits.clone()
    logits.scatter_(1, seen, torch.where(picked > 0, picked / penalty, picked * penalty))
    return logits


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k most likely tokens of each row; the rest get -inf."""
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus (Holtzman et al. 2020): keep the smallest set of most likely tokens whose
    probability mass reaches p; the rest get -inf."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of the tokens ranked above each one
    drop_sorted = mass_before >= p  # the set already reached p without this token
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_token_logits(
    logits: torch.Tensor,
    seen: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
) -> torch.Tensor:
    logits = apply_repetition_penalty(logits.float(), seen, repetition_penalty)
    if temperature > 0:
        logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits


# --- greedy and sampling --------------------------------------------------------------------


def left_pad(
    prompts: list[list[int]], pad_id: int = 0, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths as one [B, T] batch padded on the left, and its mask."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(prompts), T), dtype=torch.bool, device=device)
    for row, p in enumerate(prompts):
        ids[row, T - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[row, T - len(p) :] = True
    return ids, mask


def generate(
    model: Decodable,
    prompts: list[list[int]],
    max_new_tokens: int = 100,
    strategy: str = "greedy",
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    eos_id: int | None = None,
    seed: int | None = None,
    stop: Callable[[list[int]], bool] | None = None,
) -> list[list[int]]:
    """New tokens for each prompt (without the prompt, cut before `eos_id`).

    `stop(new_tokens)`, if given, ends a row early when it returns True (stop strings).

    Greedy takes the most likely token; `sample` draws from the (tempered, filtered)
    distribution, where temperature 0 falls back to greedy. Each row draws from its own
    generator, seeded from `seed` and its prompt, so a prompt gets the same text alone or in
    a batch.
    """
    check_options(strategy, temperature, top_k, top_p, repetition_penalty, max_new_tokens)
    if strategy == "beam":
        raise ValueError("use beam_search() for strategy 'beam'")
    device = model.device
    ids, mask = left_pad(prompts, device=device)
    with model.decoding_mode():
        generators = _generators(prompts, seed, device) if strategy == "sample" else None
        logits, state = model.start_decoding(ids, mask)
        seen = [torch.tensor(p, device=device) for p in prompts]
        out: list[list[int]] = [[] for _ in prompts]
        done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
        for step in range(max_new_tokens):
            scores = torch.stack(
                [
                    next_token_logits(
                        logits[r : r + 1],
                        seen[r][None],
                        temperature,
                        top_k,
                        top_p,
                        repetition_penalty,
                    )[0]
                    for r in range(len(prompts))
                ]
            )
            if strategy == "greedy" or temperature == 0:
                token = scores.argmax(dim=-1)
            else:
                probs = scores.softmax(dim=-1)
                if not torch.isfinite(probs).all():  # torch.multinomial would raise deep inside
                    raise NonFiniteProbabilities(
                        "the model's next-token probabilities are not finite: its weights hold "
                        "NaN or inf (a diverged run?)"
                    )
                token = torch.cat(
                    [torch.multinomial(probs[r], 1, generator=g) for r, g in enumerate(generators)]
                )
            for r in range(len(prompts)):
                if not done[r]:
                    if eos_id is not None and token[r].item() == eos_id:
                        done[r] = True
                    else:
                        out[r].append(token[r].item())
                        seen[r] = torch.cat([seen[r], token[r : r + 1]])
                        if stop is not None and stop(out[r]):
                            done[r] = True
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            logits, state = model.continue_decoding(state, token)
        return out


def _generators(prompts: list[list[int]], seed: int | None, device) -> list[torch.Generator]:
    """One random stream per row, from the seed and the row's own prompt: a prompt samples the
    same text alone or in any batch, and different prompts sample differently."""
    seed = torch.seed() if seed is None else seed
    streams = [(seed * 1_000_003 + zlib.crc32(str(p).encode())) % 2**63 for p in prompts]
    return [torch.Generator(device=device).manual_seed(s) for s in streams]


# --- beam search ---------------------------------------------------------------------------


@dataclass(order=True)
class Hypothesis:
    score: float  # log-probability / length ** length_penalty
    tokens: list[int] = field(compare=False)
    log_prob: float = field(compare=False, default=0.0)


def beam_search(
    model: Decodable,
    prompt: list[int],
    num_beams: int = 4,
    max_new_tokens: int = 50,
    length_penalty: float = 1.0,
    eos_id: int | None = None,
    n_best: int = 1,
) -> list[Hypothesis]:
    """The `n_best` continuations of `prompt` by score, best first.

    A hypothesis scores log P(tokens | prompt) / len(tokens) ** length_penalty (Wu et al.
    2016 in its simple form; 0 compares raw log-probabilities, 1 averages per token). It ends
    at `eos_id` (not included in `tokens`); the search stops once `num_beams` hypotheses have
    ended and none of the live ones scores better than they do, or after `max_new_tokens`.
    """
    check_options("beam", max_new_tokens=max_new_tokens, num_beams=num_beams)
    if not 1 <= n_best <= num_beams:
        raise ValueError(f"n_best must be between 1 and num_beams={num_beams}, got {n_best}")
    if not prompt:
        raise ValueError("the prompt needs at least one token")
    device = model.device
    with model.decoding_mode():
        ids, mask = left_pad([prompt], device=device)
        logits, state = model.start_decoding(ids, mask)
        previous = [Hypothesis(0.0, [], 0.0)]  # live hypotheses, one per state row
        finished: list[Hypothesis] = []
        for step in range(max_new_tokens):
            log_probs = logits.float().log_softmax(dim=-1)  # [beams, V]
            totals = (
                torch.tensor([b.log_prob for b in previous], device=device)[:, None] + log_probs
            )
            top = torch.topk(totals.flatten(), min(2 * num_beams, totals.numel()))
            vocab = log_probs.size(-1)
            beams, rows = [], []
            for total, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                row, token = divmod(flat, vocab)
                before = previous[row].tokens
                if eos_id is not None and token == eos_id:
                    length = len(before) + 1  # the end token counts as a step
                    finished.append(Hypothesis(total / length**length_penalty, before, total))
                else:
                    new = [*before, token]
                    beams.append(Hypothesis(total / len(new) ** length_penalty, new, total))
                    rows.append(row)
                if len(beams) == num_beams:
                    break
            if not beams or _search_is_done(finished, beams, num_beams):
                break
            if step == max_new_tokens - 1:
                finished.extend(beams)  # out of steps: the live beams compete as they are
                break
            previous = beams
            state = model.reorder_decoding_state(state, torch.tensor(rows, device=device))
            next_ids = torch.tensor([b.tokens[-1] for b in beams], device=device)
            logits, state = model.continue_decoding(state, next_ids)
        return sorted(finished, reverse=True)[:n_best]


def _search_is_done(finished: list[Hypothesis], live: list[Hypothesis], num_beams: int) -> bool:
    """`num_beams` hypotheses have ended and no live one scores better than the worst of them.
    With length_penalty 0 a score only falls as a hypothesis grows, so none of the live ones
    can still overtake them; with other penalties this is the usual heuristic (the live
    hypotheses scored as they are now)."""
    if len(finished) < num_beams:
        return False
    worst_kept = sorted(finished, reverse=True)[num_beams - 1].score
    return max(h.score for h in live) <= worst_kept


# --- text in, text out ---------------------------------------------------------------------


def generate_text(
    model: Decodable,
    prompts: list[str],
    tokenizer: TextCodec,
    max_new_tokens: int = 100,
    strategy: str = "greedy",
    stop: list[str] | None = None,
    num_beams: int = 4,
    length_penalty: float = 1.0,
    **sampling,
) -> list[str]:
    """The continuation of each prompt as text. `strategy` is greedy, sample (with the
    `sampling` options of `generate`: temperature, top_k, top_p, repetition_penalty, seed) or
    beam; `stop` strings end a continuation (the stop string itself is left out)."""
    check_options(
        strategy, max_new_tokens=max_new_tokens, num_beams=num_beams, **_only_checked(sampling)
    )
    if strategy == "beam":
        return [
            generate_text_beam_search(
                model, p, tokenizer, num_beams, max_new_tokens, length_penalty, stop=stop
            )[0][0]
            for p in prompts
        ]
    ids = [tokenizer.encode(p) for p in prompts]
    stop_fn = (lambda new: any(s in tokenizer.decode(new) for s in stop)) if stop else None
    outs = generate(
        model, ids, max_new_tokens, strategy, eos_id=tokenizer.eos_id, stop=stop_fn, **sampling
    )
    return [
        cut_at_stop(continuation(tokenizer, i, o), stop) for i, o in zip(ids, outs, strict=True)
    ]


def generate_text_beam_search(
    model: Decodable,
    prompt: str,
    tokenizer: TextCodec,
    num_beams: int = 4,
    max_new_tokens: int = 50,
    length_penalty: float = 1.0,
    n_best: int = 1,
    stop: list[str] | None = None,
) -> list[tuple[str, float]]:
    """The `n_best` beam-search continuations of `prompt` with their scores, best first."""
    ids = tokenizer.encode(prompt)
    hyps = beam_search(
        model, ids, num_beams, max_new_tokens, length_penalty, tokenizer.eos_id, n_best
    )
    return [(cut_at_stop(continuation(tokenizer, ids, h.tokens), stop), h.score) for h in hyps]


def continuation(tokenizer: TextCodec, prompt_ids: list[int], new_ids: list[int]) -> str:
    """The text the new tokens add after the prompt, with the spacing the tokenizer puts
    between them (a word-level continuation starts with its space: "The game" + " Forest")."""
    head, whole = tokenizer.decode(prompt_ids), tokenizer.decode([*prompt_ids, *new_ids])
    return whole[len(head) :] if whole.startswith(head) else tokenizer.decode(new_ids)


def cut_at_stop(text: str, stop: list[str] | None) -> str:
    """`text` up to the first stop string."""
    cuts = [text.find(s) for s in stop or [] if s and s in text]
    return text[: min(cuts)] if cuts else text


def _only_checked(sampling: dict) -> dict:
    return {
        k: v
        for k, v in sampling.items()
        if k in ("temperature", "top_k", "top_p", "repetition_penalty")
    }
