"""Character models that read a fixed window of the last `block_size` characters, as built in
Karpathy's makemore lectures (parts 2-5).

MLPLanguageModel, Bengio et al. (2003), "A Neural Probabilistic Language Model":

    e = [C[x_{t-n+1}] ; ... ; C[x_t]]         the n characters embedded and concatenated
    h = tanh(BN(W_1 e))                       hidden layer(s); BatchNorm (Ioffe & Szegedy 2015)
    P(x_{t+1} | x_{t-n+1..t}) = softmax(W_2 h + b_2)

WaveNetLanguageModel, makemore part 5 after van den Oord et al. (2016): the window is not
crushed into one layer at once but fused two by two, a tree of depth log2(n):

    c1 c2 c3 c4 c5 c6 c7 c8  ->  (c1c2) (c3c4) (c5c6) (c7c8)  ->  (c1..c4) (c5..c8)  ->  (c1..c8)

each fusion a Linear over a pair, BatchNorm and tanh. The MLP is the same thing with a single
fusion of all n characters, so both share one code path: `FlattenConsecutive`.

Initialisation, as makemore part 3 derives it: hidden weights N(0, (5/3)^2 / fan_in) (Kaiming,
with tanh's gain) so that tanh starts neither saturated nor linear; the output layer scaled by
0.1 with a zero bias, so that the first predictions are nearly uniform and the first loss is
about ln(vocab_size) (3.30 for 27 characters) instead of a confident, wrong guess.

Optimisation, as in the lectures: plain SGD at lr 0.1, divided by 10 after 75% of the steps
(the defaults, and configs/mlp_names.yaml). AdamW is the alternative (`optimizer: adamw`, with
weight decay on the matrices only); configs/wavenet_names.yaml uses it, at lr 2e-3.
"""

from __future__ import annotations

import math
import random
from typing import Literal

import torch
from torch import nn

from core.checks import (
    require_betas,
    require_in_range,
    require_non_negative,
    require_positive,
    require_probability,
)
from core.errors import UserError
from lit_models.language_model import LanguageModel
from lit_models.modules.decoding import TextCodec, generate
from lit_models.optim import adamw_decaying_matrices, planned_steps

Optimizer = Literal["sgd", "adamw"]


class FlattenConsecutive(nn.Module):
    """[B, T, C] -> [B, T / n, n * C]: each run of n consecutive vectors becomes one."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return x.reshape(B, T // self.n, C * self.n)

    def extra_repr(self) -> str:
        return f"n={self.n}"


class BatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last dimension, the statistics taken over every other one (batch and
    positions alike, as makemore's BatchNorm1d does for [B, T, C])."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.size(-1))).view_as(x)


def fusion(fan_in: int, n_hidden: int, batch_norm: bool, dropout: float) -> nn.Sequential:
    """Linear -> (BatchNorm) -> tanh (-> dropout). With BatchNorm the Linear needs no bias:
    BN's shift is one."""
    return nn.Sequential(
        nn.Linear(fan_in, n_hidden, bias=not batch_norm),
        BatchNorm(n_hidden) if batch_norm else nn.Identity(),
        nn.Tanh(),
        *([nn.Dropout(dropout)] if dropout > 0 else []),
    )


def check_optimizer(
    learning_rate: float,
    lr_decay: float,
    momentum: float,
    betas: tuple[float, float],
    weight_decay: float,
) -> None:
    """The settings `ContextWindowLanguageModel.configure_optimizers` reads."""
    require_non_negative("model", learning_rate=learning_rate, weight_decay=weight_decay)
    require_in_range("model", 0, 1, "(]", lr_decay=lr_decay)  # the rate's multiplier; 1 keeps it
    require_in_range("model", 0, 1, "[)", momentum=momentum)
    require_betas("model", betas)


class ContextWindowLanguageModel(LanguageModel):
    """What the MLP and the WaveNet share: the embedding, the output layer, the init, the
    optimiser and generation. A subclass passes its hidden layers to `build`."""

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_embd: int,
        lr_milestones: tuple[float, ...],
        start_id: int,
    ):
        super().__init__()
        require_positive("model", vocab_size=vocab_size, block_size=block_size, n_embd=n_embd)
        require_in_range("model", 0, vocab_size, "[)", start_id=start_id)  # a token id
        if any(not 0.0 < m < 1.0 for m in lr_milestones):
            raise UserError(
                f"model.init_args.lr_milestones are fractions of the run, each in (0, 1); got {list(lr_milestones)}."
            )
        self.block_size = block_size
        self.embedding = nn.Embedding(vocab_size, n_embd)  # C; N(0, 1) as in the lectures

    def build(self, hidden: nn.Module, n_hidden: int) -> None:
        """Set the hidden layers ([B, T, n_embd] -> [B, 1, n_hidden]), add the output layer and
        initialise both."""
        self.hidden = hidden
        self.output = nn.Linear(n_hidden, self.hparams.vocab_size)
        gain = nn.init.calculate_gain("tanh")  # 5/3
        for module in self.hidden.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=gain / math.sqrt(module.in_features))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # A near-uniform first guess: an overconfident softmax would spend the first steps
        # (and a hockey-stick loss curve) only on squashing its logits down.
        nn.init.normal_(self.output.weight, std=0.1 / math.sqrt(self.output.in_features))
        nn.init.zeros_(self.output.bias)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits of the character after each window: [B, block_size] -> [B, 1, vocab_size]."""
        if input_ids.size(1) != self.block_size:
            raise ValueError(
                f"the model reads windows of exactly block_size={self.block_size} characters, "
                f"got {input_ids.size(1)}"
            )
        return self.output(self.hidden(self.embedding(input_ids)))

    # --- decoding (lit_models.modules.decoding drives these) --------------------------------
    # The state is the window itself: the last block_size tokens, '.'-padded on the left, so a
    # prompt "." (or nothing but padding) starts a new name and "em" continues one.

    def start_decoding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        start_id = self.hparams.start_id
        window = input_ids.masked_fill(~attention_mask, start_id)[:, -self.block_size :]
        pad = window.new_full((window.size(0), self.block_size - window.size(1)), start_id)
        window = torch.cat([pad, window], dim=1)
        return self(window)[:, -1], window

    def continue_decoding(self, window: torch.Tensor, next_ids: torch.Tensor):
        window = torch.cat([window[:, 1:], next_ids[:, None]], dim=1)
        return self(window)[:, -1], window

    def reorder_decoding_state(self, window: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return window.index_select(0, rows)

    # --- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                self.parameters(),
                lr=hp.learning_rate,
                momentum=hp.momentum,
                weight_decay=hp.weight_decay,
            )
        else:  # weight decay on the matrices and the embedding only, as for the GPT
            optimizer = adamw_decaying_matrices(
                self, hp.learning_rate, hp.weight_decay, tuple(hp.betas)
            )
        total = planned_steps(
            self, "set trainer.max_steps: the learning-rate milestones are fractions of it."
        )
        milestones = sorted(int(m * total) for m in hp.lr_milestones)
        # Step decay: lr x lr_decay at each milestone (makemore: 0.1 -> 0.01 after 75%).
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: hp.lr_decay ** sum(step >= m for m in milestones)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class MLPLanguageModel(ContextWindowLanguageModel):
    """Bengio et al.'s MLP as makemore parts 2-3 build it: defaults are the lecture's (context 3,
    10-dim embeddings, 200 hidden units, BatchNorm, SGD 0.1 -> 0.01)."""

    def __init__(
        self,
        vocab_size: int,
        block_size: int = 3,
        n_embd: int = 10,
        n_hidden: int = 200,
        n_layer: int = 1,
        batch_norm: bool = True,
        dropout: float = 0.0,
        optimizer: Optimizer = "sgd",
        learning_rate: float = 0.1,
        lr_milestones: tuple[float, ...] = (0.75,),
        lr_decay: float = 0.1,
        momentum: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        start_id: int = 0,
    ):
        """
        Args:
            vocab_size, block_size: set by the datamodule (linked by the CLI).
            n_layer: hidden tanh layers (the paper and the lecture: 1).
            dropout: after each tanh (Srivastava et al. 2014); the lectures use none.
            optimizer: `sgd` (the lectures; `momentum`) or `adamw` (`betas`).
            lr_milestones: fractions of the run after which the learning rate is multiplied
                by `lr_decay`.
            start_id: the token that pads a window and starts a name ('.' = 0 in names).
        """
        require_positive("model", n_hidden=n_hidden, n_layer=n_layer)
        require_probability("model", dropout=dropout)
        check_optimizer(learning_rate, lr_decay, momentum, betas, weight_decay)
        super().__init__(vocab_size, block_size, n_embd, lr_milestones, start_id)
        self.save_hyperparameters()
        hidden = nn.Sequential(
            FlattenConsecutive(block_size),  # the whole window, concatenated: [B, 1, n*n_embd]
            fusion(block_size * n_embd, n_hidden, batch_norm, dropout),
            *(fusion(n_hidden, n_hidden, batch_norm, dropout) for _ in range(n_layer - 1)),
        )
        self.build(hidden, n_hidden)


class WaveNetLanguageModel(ContextWindowLanguageModel):
    """makemore part 5's hierarchical MLP: pairs of consecutive characters fused level by level.
    Defaults are the lecture's final model (context 8, 24-dim embeddings, 128 hidden units)."""

    def __init__(
        self,
        vocab_size: int,
        block_size: int = 8,
        n_embd: int = 24,
        n_hidden: int = 128,
        batch_norm: bool = True,
        dropout: float = 0.0,
        optimizer: Optimizer = "sgd",
        learning_rate: float = 0.1,
        lr_milestones: tuple[float, ...] = (0.75,),
        lr_decay: float = 0.1,
        momentum: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        start_id: int = 0,
    ):
        """
        Args:
            vocab_size, block_size: set by the datamodule (linked by the CLI); block_size must
                be a power of 2, one fusion level per halving (8 -> 3 levels).
            Others as MLPLanguageModel.
        """
        if block_size < 2 or block_size & (block_size - 1):
            raise UserError(
                f"WaveNetLanguageModel fuses pairs of characters level by level, so block_size "
                f"(data.init_args.block_size) must be a power of 2 (2, 4, 8, 16, ...); got {block_size}."
            )
        require_positive("model", n_hidden=n_hidden)
        require_probability("model", dropout=dropout)
        check_optimizer(learning_rate, lr_decay, momentum, betas, weight_decay)
        super().__init__(vocab_size, block_size, n_embd, lr_milestones, start_id)
        self.save_hyperparameters()
        layers, fan_in = [], 2 * n_embd
        for _ in range(block_size.bit_length() - 1):  # log2(block_size) levels of pairs
            layers += [FlattenConsecutive(2), *fusion(fan_in, n_hidden, batch_norm, dropout)]
            fan_in = 2 * n_hidden
        self.build(nn.Sequential(*layers), n_hidden)


def sample_names(
    model: ContextWindowLanguageModel,
    codec: TextCodec,
    n: int = 10,
    seed: int | None = None,
    prefix: str = "",
    max_length: int = 50,
    temperature: float = 1.0,
) -> list[str]:
    """`n` new names drawn from the model, each from '.' (and `prefix`) to the end token.

    Each name draws from its own random stream, all of them from `seed`: the same seed gives
    the same names. `codec` is the NamesDataModule (its encode / decode / eos_id).
    """
    prompt = codec.encode(codec.decode([codec.eos_id]) + prefix)
    rng = random.Random(seed)
    names = []
    for _ in range(n):
        new = generate(
            model,
            [prompt],
            max_new_tokens=max_length,
            strategy="sample",
            temperature=temperature,
            eos_id=codec.eos_id,
            seed=rng.getrandbits(62),
        )[0]
        names.append(prefix + codec.decode(new))
    return names
